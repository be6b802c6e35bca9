"""The run's recipe, saved next to the checkpoint for its model card: every key of the run's dataclasses.

Derived from the dataclasses themselves (``TrainingArguments.to_dict()`` masks tokens), so a key added
to a config reaches the card without anyone remembering to list it. ``changed`` names the keys whose
value differs from its default: the card shows them as a config file that reruns the training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from typing import Any, Optional

from ..data.datasets import ImageClassificationData
from ..data.facts import describe_dataset, is_local

RUN_CONFIG_FILE = "distillation_config.json"
# Not part of how the model was trained: where the run logged and what it resumed from. Secrets (``*_token``)
# are masked by ``to_dict`` and left out of ``changed`` as well.
_NOT_RECIPE = ("logging_dir", "resume_from_checkpoint")


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(getattr(value, "value", value))  # enums (lr_scheduler_type) and the like


def _defaults(config: Any) -> dict[str, Any]:
    defaults = {}
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = jsonable(field.default)
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[field.name] = jsonable(field.default_factory())  # type: ignore[misc]
    return defaults


def _values(config: Any) -> dict[str, Any]:
    if hasattr(config, "to_dict"):  # TrainingArguments: tokens masked
        return {key: jsonable(value) for key, value in config.to_dict().items()}
    return {field.name: jsonable(getattr(config, field.name)) for field in dataclasses.fields(config) if field.init}


def _changed(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    return [key for key, value in values.items()
            if key in defaults and value != defaults[key] and key not in _NOT_RECIPE and not key.endswith("_token")]


def _command() -> str:
    """How this run was started, as a user would type it again."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        return "accelerate launch " + shlex.join(argv)
    return shlex.join([os.path.basename(argv[0]) if argv else "hf-deit", *argv[1:]])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("hf-deit", "transformers", "torch", "datasets", "accelerate", "timm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def run_recipe(model_config: Any, data_config: Any, training_args: Any,
               data: Optional[ImageClassificationData] = None) -> dict[str, Any]:
    """``{"model": ..., "data": ..., "training": ..., "changed": {group: [keys]}, ...}`` of one run."""
    recipe: dict[str, Any] = {"changed": {}}
    for group, config in (("model", model_config), ("data", data_config), ("training", training_args)):
        recipe[group] = _values(config)
        recipe["changed"][group] = _changed(recipe[group], _defaults(config))
    recipe["training"]["world_size"] = int(getattr(training_args, "world_size", 1) or 1)
    dataset = recipe["data"].get("dataset_name")
    if dataset:
        recipe["data"]["dataset_facts"] = describe_dataset(
            dataset, data.train if data else None, data.image_column if data else None)
    if data is not None:
        recipe["data"]["evaluated_split"] = data.eval_split_name
    recipe["command"] = _command()
    recipe["versions"] = _versions()
    models = (recipe["model"].get("teacher_model_name_or_path"), recipe["model"].get("student_model_name_or_path"))
    recipe["model"]["local_paths"] = [name for name in models if name and is_local(name)]
    return recipe


def save_run_config(output_dir: str, model_config: Any, data_config: Any, training_args: Any,
                    data: Optional[ImageClassificationData] = None) -> str:
    """Write :func:`run_recipe` as JSON next to the checkpoint, for the card."""
    path = os.path.join(output_dir, RUN_CONFIG_FILE)
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(run_recipe(model_config, data_config, training_args, data), handle, indent=2)
    return path

