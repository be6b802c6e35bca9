"""The model card of a student folder: Hub metadata with a model-index, the recipe, results, usage, limits.

The card is built from JSON files only (``config.json``, ``all_results.json`` / ``results.json``,
``evaluation.json`` from :mod:`hf_deit.publish.evaluation`, ``trainer_state.json`` and, when the run
wrote it, ``distillation_config.json`` from :mod:`hf_deit.publish.recipe`). ``training_args.bin`` is
never read: unpickling it can run code, and it may hold a Hub token. Its prose is the template
``templates/model_card.md`` (``ModelCard.from_template``); this module computes what fills it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.facts import describe_dataset, is_local
from ..heads import STUDENT_HEADS, head_rows, prediction_head, results_table
from .recipe import RUN_CONFIG_FILE

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
PLOTS = (("confusion_matrix.png", "confusion matrix"), (CURVES_FILE, "training loss"))


def _project_url() -> Optional[str]:
    """The project's home, from the package metadata (``[project.urls]`` in pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("hf-deit").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return urls[0].split(",", 1)[1].strip() if urls else None


PROJECT_URL = _project_url()


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        return {}
    with open(path) as handle:
        return json.load(handle)


def _count_parameters(folder: Path) -> Optional[int]:
    """Parameter count from the safetensors headers (no weights loaded, nothing unpickled)."""
    from safetensors import safe_open

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


@dataclass
class StudentSummary:
    """Everything the card says about a student folder, gathered from its JSON files."""

    config: dict[str, Any]
    metrics: dict[str, float]  # cls_top1, fused_top5, teacher_top1, ... in [0, 1]
    split: Optional[str]
    num_images: Optional[int]
    train_dataset: Optional[str]
    eval_dataset: Optional[str]
    teacher: Optional[str]
    base_model: Optional[str]
    recipe: dict[str, Any] = field(default_factory=dict)
    dataset_facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name, saved at run time
    local_paths: set[str] = field(default_factory=set)  # teacher / base model names that were local folders
    trainer_state: dict[str, Any] = field(default_factory=dict)
    all_results: dict[str, Any] = field(default_factory=dict)
    parameters: Optional[int] = None

    def facts(self, dataset: Optional[str]) -> dict[str, Any]:
        """Facts saved when the dataset was at hand, else read now."""
        if not dataset:
            return {"is_local": False, "pretty_name": "", "hub_id": None}
        return self.dataset_facts.get(dataset) or describe_dataset(dataset)

    def is_local(self, name: str) -> bool:
        return name in self.local_paths or is_local(name)


def summarise_folder(folder: str | os.PathLike) -> StudentSummary:
    """Read a student folder's config, results and recipe (JSON only)."""
    folder = Path(folder)
    config = _read_json(folder, "config.json")
    if not config:
        raise FileNotFoundError(f"{folder} has no config.json: is it a student folder written by scripts/distill.py?")
    recipe = _read_json(folder, RUN_CONFIG_FILE)
    local_paths = set(recipe.get("model", {}).get("local_paths", []))
    facts = {}
    if recipe.get("data", {}).get("dataset_facts"):
        facts[recipe["data"]["dataset_name"]] = recipe["data"]["dataset_facts"]
    all_results = _read_json(folder, "all_results.json") or _read_json(folder, "results.json")
    evaluation = _read_json(folder, "evaluation.json")
    if evaluation.get("metrics"):  # a full evaluation (scripts/evaluate_student.py) beats the end-of-training one
        metrics = {k: float(v) for k, v in evaluation["metrics"].items() if k.endswith(("_top1", "_top5"))}
        split, num_images = evaluation.get("split"), evaluation.get("num_images")
        eval_dataset, teacher = evaluation.get("dataset"), evaluation.get("teacher")
        if evaluation.get("teacher_is_local"):
            local_paths.add(teacher)
    else:
        metrics = {k[len("eval_"):]: float(v) for k, v in all_results.items()
                   if k.startswith("eval_") and k.endswith(("_top1", "_top5"))}
        data = recipe.get("data", {})
        split, num_images = data.get("evaluated_split") or data.get("eval_split"), all_results.get("eval_images")
        eval_dataset, teacher = recipe.get("data", {}).get("dataset_name"), None
    teacher = recipe.get("model", {}).get("teacher_model_name_or_path") or teacher
    return StudentSummary(
        config=config,
        metrics=metrics,
        split=split,
        num_images=num_images,
        train_dataset=recipe.get("data", {}).get("dataset_name"),
        eval_dataset=eval_dataset,
        teacher=teacher or None,
        base_model=recipe.get("model", {}).get("student_model_name_or_path"),
        recipe=recipe,
        dataset_facts={**({evaluation["dataset"]: evaluation["dataset_facts"]}
                          if evaluation.get("dataset_facts") else {}), **facts},
        local_paths=local_paths,
        trainer_state=_read_json(folder, "trainer_state.json"),
        all_results=all_results,
        parameters=_count_parameters(folder) or all_results.get("student_parameters"),
    )


def _architecture(config: dict[str, Any]) -> str:
    return (config.get("architectures") or ["DeiTForImageClassificationWithTeacher"])[0]


def _two_heads(config: dict[str, Any]) -> bool:
    """A DeiT student (class + distillation heads), not a plain-ViT ablation."""
    return _architecture(config) == "DeiTForImageClassificationWithTeacher"


def _student_line(summary: StudentSummary) -> str:
    config = summary.config
    tokens = "a class token and a distillation token" if _two_heads(config) else "a class token (no distillation token)"
    side, patch = config.get("image_size"), config.get("patch_size")
    parameters = f", {summary.parameters / 1e6:.2f} M parameters" if summary.parameters else ""
    return (f"**Student**: `{_architecture(config)}`, {config.get('num_hidden_layers')} layers, width "
            f"{config.get('hidden_size')}, {config.get('num_attention_heads')} heads, MLP "
            f"{config.get('intermediate_size')}, {side}x{side} inputs in {patch}x{patch} patches, {tokens}{parameters}.")


def _distillation_line(summary: StudentSummary) -> Optional[str]:
    training = summary.recipe.get("training", {})
    kind = training.get("distillation_type") or summary.all_results.get("distillation_type")
    if not kind:
        return None
    detail = ""
    if "distillation_alpha" in training:
        soft = (f", tau {training.get('distillation_tau')}, KL {training.get('distillation_kl_reduction')}"
                if kind == "soft" else "")
        detail = f" (alpha {training['distillation_alpha']}{soft})"
    teacher = f" from the teacher `{summary.teacher}`" if summary.teacher else ""
    return f"**Distillation**: {kind}{detail}{teacher}, as in DeiT (Touvron et al., 2021)."


def _data_line(summary: StudentSummary) -> Optional[str]:
    data, train_images = summary.recipe.get("data", {}), summary.all_results.get("train_images")
    if not (summary.train_dataset or train_images):
        return None
    source = f"`{summary.train_dataset}`" + (f" (split `{data['train_split']}`)" if data.get("train_split") else "")
    crop = data.get("random_crop_padding") and data.get("horizontal_flip")
    parts = [source if summary.train_dataset else None,
             f"{train_images} training images" if train_images else None,
             f"random crops (padding {data['random_crop_padding']}) and horizontal flips" if crop else None]
    return "**Data**: " + ", ".join(part for part in parts if part) + "."


def _regularisation_line(summary: StudentSummary) -> Optional[str]:
    data, training = summary.recipe.get("data", {}), summary.recipe.get("training", {})
    model = summary.recipe.get("model", {})
    extras = [f"RandAugment `{data['rand_augment']}`" if data.get("rand_augment") else None,
              f"random erasing {data['random_erasing']}" if data.get("random_erasing") else None,
              f"label smoothing {training['label_smoothing_factor']}" if training.get("label_smoothing_factor") else None,
              f"Mixup {training['mixup_alpha']}" if training.get("mixup_alpha") else None,
              f"CutMix {training['cutmix_alpha']}" if training.get("cutmix_alpha") else None,
              f"repeated augmentation x{training['repeated_augmentation']}"
              if (training.get("repeated_augmentation") or 0) > 1 else None,
              f"drop path {model['drop_path_rate']}" if model.get("drop_path_rate") else None,
              f"patch dropout {model['patch_dropout']}" if model.get("patch_dropout") else None,
              f"EMA of the weights (decay {training['ema_decay']}, saved apart, not this checkpoint)"
              if training.get("ema_decay") else None]
    extras = [extra for extra in extras if extra]
    return "**Regularisation**: " + ", ".join(extras) + "." if extras else None


def _schedule_line(summary: StudentSummary) -> Optional[str]:
    training, state, results = summary.recipe.get("training", {}), summary.trainer_state, summary.all_results
    epochs = training.get("num_train_epochs", state.get("num_train_epochs"))
    batch = training.get("per_device_train_batch_size", state.get("train_batch_size"))
    world = training.get("world_size", 1)
    rates = [entry["learning_rate"] for entry in state.get("log_history", []) if "learning_rate" in entry]
    peak_lr = training.get("learning_rate", max(rates) if rates else None)
    attention = summary.recipe.get("model", {}).get("attn_implementation")
    trained = state.get("epoch")
    stopped_early = epochs is not None and trained is not None and state.get("global_step", 0) < state.get("max_steps", 0)
    parts = [f"{trained:.2f} of {epochs:g} scheduled epochs (stopped early)" if stopped_early else
             f"{epochs:g} epoch{'' if epochs == 1 else 's'}" if epochs is not None else None,
             f"{state['global_step']} steps" if state.get("global_step") else None,
             f"batch {batch} per device" + (f" x {world} devices" if world > 1 else "") if batch is not None else None,
             f"peak learning rate {peak_lr:g}" if peak_lr is not None else None,
             f"{training['lr_scheduler_type']} schedule" if training.get("lr_scheduler_type") else None,
             f"weight decay {training['weight_decay']}" if "weight_decay" in training else None,
             f"optimizer {training['optim']}" if training.get("optim") else None,
             f"warm-up {training['warmup_steps']:g}" + (" of the steps" if 0 < training["warmup_steps"] < 1 else " steps")
             if training.get("warmup_steps") else None,
             f"seed {training['seed']}" if "seed" in training else None,
             f"{attention} attention" if attention else None,
             _training_time(results)]
    parts = [part for part in parts if part]
    return "**Training**: " + ", ".join(parts) + "." if parts else None


def _training_time(results: dict) -> Optional[str]:
    """A benchmark's training clock (``train_wall_s``: steps only, summed over resumed sessions) where the run
    kept one, else the wall time of the last ``train()`` call."""
    if results.get("train_wall_s"):
        return f"{results['train_wall_s']:.0f} s of training steps"
    return f"{results['train_runtime_s']:.0f} s of training" if results.get("train_runtime_s") else None


def recipe_lines(summary: StudentSummary) -> list[str]:
    lines = [_student_line(summary)]
    if summary.base_model:
        lines.append(f"**Initialised from**: `{summary.base_model}`.")
    lines += [line for line in (_distillation_line(summary), _data_line(summary), _regularisation_line(summary),
                                _schedule_line(summary)) if line]
    return lines


def changed_config(recipe: dict[str, Any]) -> str:
    """The recipe's non-default keys as one YAML mapping (what ``--config`` reads back)."""
    changed = {key: recipe[group][key] for group, keys in recipe.get("changed", {}).items() for key in keys
               if key in recipe.get(group, {})}
    return yaml.safe_dump(changed, sort_keys=False).strip() if changed else ""


def _storage_notes(summary: StudentSummary) -> list[dict[str, Any]]:
    same = summary.train_dataset == summary.eval_dataset
    roles = (("trained and evaluated", summary.train_dataset),) if same else (
        ("trained", summary.train_dataset), ("evaluated", summary.eval_dataset))
    notes = []
    for role, dataset in roles:
        storage = summary.facts(dataset).get("image_storage") or {}
        if storage.get("format") == "JPEG":
            notes.append({"role": role, "dataset": dataset, "quality": storage.get("jpeg_quality")})
    return notes


def _interval(summary: StudentSummary) -> Optional[dict[str, Any]]:
    head = prediction_head(summary.metrics)
    top1, images = summary.metrics.get(f"{head}_top1"), summary.num_images
    if top1 is None or not images:
        return None
    half_width = 1.96 * math.sqrt(max(top1 * (1 - top1), 1e-12) / images)
    return {"images": images, "head": head, "half_width": f"{100 * half_width:.1f}"}


def _eval_results(summary: StudentSummary, evaluated_on: Optional[str]) -> Optional[list[EvalResult]]:
    if not evaluated_on:
        return None
    facts = summary.facts(evaluated_on)
    dataset_type = facts.get("hub_id") or os.path.basename(evaluated_on.rstrip("/"))
    results = [EvalResult(task_type="image-classification", task_name="Image Classification",
                          dataset_type=dataset_type, dataset_name=facts["pretty_name"], dataset_split=summary.split,
                          metric_type="accuracy", metric_name=head.index_name,
                          metric_value=round(summary.metrics[f"{head.key}_top1"], 4))
               for head in STUDENT_HEADS if f"{head.key}_top1" in summary.metrics]
    return results or None


def _card_data(summary: StudentSummary, model_name: str, dataset_id: Optional[str], license: str) -> ModelCardData:
    hub_ids = [summary.facts(name).get("hub_id") for name in (summary.train_dataset, summary.eval_dataset) if name]
    dataset_hub_id = dataset_id or next((hub_id for hub_id in hub_ids if hub_id), None)
    extra: dict[str, Any] = {}
    if summary.teacher and not summary.is_local(summary.teacher):
        extra["teacher"] = summary.teacher  # no standard key; recorded for readers and search
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=["deit", "distillation", "image-classification", "vision"],
        datasets=[dataset_hub_id] if dataset_hub_id else None,
        base_model=summary.base_model if summary.base_model and not summary.is_local(summary.base_model) else None,
        metrics=["accuracy"],
        model_name=model_name,
        eval_results=_eval_results(summary, summary.eval_dataset or summary.train_dataset or dataset_id),
        **extra,
    )


def build_model_card(
    folder: str | os.PathLike,
    repo_id: Optional[str] = None,
    dataset_id: Optional[str] = None,
    teacher: Optional[str] = None,
    base_model: Optional[str] = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """A ``ModelCard`` for a student folder: Hub metadata + model-index, recipe, results, usage, limitations.

    ``dataset_id`` / ``teacher`` / ``base_model`` override what the folder's files say; local paths
    are kept out of the metadata (the Hub cannot resolve them) but named in the text.
    """
    folder = Path(folder)
    summary = summarise_folder(folder)
    summary.teacher = teacher or summary.teacher
    summary.base_model = base_model or summary.base_model
    model_name = (repo_id or folder.resolve().name).split("/")[-1]
    id2label = summary.config.get("id2label", {})
    return ModelCard.from_template(
        _card_data(summary, model_name, dataset_id, license),
        template_path=str(TEMPLATE),
        model_name=model_name,
        architecture=_architecture(summary.config),
        recipe_lines=recipe_lines(summary),
        changed_config=changed_config(summary.recipe),
        evaluated_on=summary.eval_dataset or summary.train_dataset or dataset_id,
        split=summary.split,
        num_images=summary.num_images,
        results_table=results_table(head_rows(summary.metrics)) if summary.metrics else "",
        two_heads=_two_heads(summary.config),
        plots=[{"file": name, "alt": alt} for name, alt in PLOTS if (folder / name).is_file()],
        reference=repo_id or str(folder),
        labels=[id2label[key] for key in sorted(id2label, key=int)],
        side=summary.config.get("image_size"),
        storage_notes=_storage_notes(summary),
        interval=_interval(summary),
        command=summary.recipe.get("command"),
        versions=summary.recipe.get("versions") or {},
        project_url=PROJECT_URL,
    )


_SECTION = re.compile(r"<!-- hf-deit:begin (?P<name>[\w-]+) -->.*?<!-- hf-deit:end (?P=name) -->", re.DOTALL)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` (between its markers) holding ``body``; appended if it has none.

    For sections written by other tools (the size / speed table of ``benchmarks/model_table.py``):
    :func:`merge_into_existing` keeps any section the generated card does not have.
    """
    section = f"<!-- hf-deit:begin {name} -->\n{body.strip()}\n<!-- hf-deit:end {name} -->"
    pattern = re.compile(rf"<!-- hf-deit:begin {re.escape(name)} -->.*?<!-- hf-deit:end {re.escape(name)} -->", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    return text.rstrip() + "\n\n" + section + "\n"


def marked_sections(text: str) -> dict[str, str]:
    """Each ``<!-- hf-deit:begin NAME -->`` ... ``<!-- hf-deit:end NAME -->`` block of ``text``, by name."""
    return {match.group("name"): match.group(0) for match in _SECTION.finditer(text)}


def merge_into_existing(generated: ModelCard, existing_text: str) -> ModelCard:
    """The generated metadata and sections, with everything a person wrote outside the markers kept.

    Each generated section sits between ``<!-- hf-deit:begin NAME -->`` and ``<!-- hf-deit:end NAME -->``; a
    card without markers (written by hand) keeps its whole text and only gets the new metadata.
    """
    sections = marked_sections(generated.text)
    body = ModelCard(existing_text).text
    if not _SECTION.search(body):
        logger.warning("README.md has no hf-deit sections: kept its text as written, updated only its metadata.")
    merged = _SECTION.sub(lambda match: sections.get(match.group("name"), match.group(0)), body)
    return ModelCard(f"---\n{generated.data.to_yaml()}\n---\n{merged}")


def model_card_for(folder: str | os.PathLike, existing_text: Optional[str] = None, **card_kwargs: Any) -> ModelCard:
    """The card :func:`write_model_card` would write, merged into ``existing_text`` (the published card, which
    its owner may have edited on the Hub) or else into the folder's own README.md; nothing is written."""
    generated = build_model_card(folder, **card_kwargs)
    readme = Path(folder) / "README.md"
    if existing_text is None and readme.is_file():
        existing_text = readme.read_text(encoding="utf-8")
    return merge_into_existing(generated, existing_text) if existing_text is not None else generated


def write_model_card(folder: str | os.PathLike, existing_text: Optional[str] = None,
                     out_dir: Optional[str | os.PathLike] = None, **card_kwargs: Any) -> Path:
    """Write ``README.md`` (and ``training_curves.png`` when the log allows) into the folder, keeping what a
    person edited outside the generated sections (of ``existing_text``, else of the folder's README.md).

    ``out_dir``: write there instead (a dry run renders into a scratch folder and leaves ``folder`` as it is).
    """
    folder = Path(folder)
    target = Path(out_dir) if out_dir is not None else folder
    state = _read_json(folder, "trainer_state.json")
    if state.get("log_history"):
        from .viz import plot_training_curves

        plot_training_curves(state["log_history"], str(target / CURVES_FILE), title="training loss")
    card = model_card_for(folder, existing_text, **card_kwargs)
    path = target / "README.md"
    card.save(path)
    return path


def reported_accuracy(id_or_path: str) -> dict[str, Any]:
    """Accuracies a student reports about itself (folder files, else its card's model-index); {} if none.

    For the demo's banner and model-info panel: never raises. A Hub id is read through its JSON files
    and card (from the local cache when offline, as in a Space that preloads its model).
    """
    try:
        folder = id_or_path if os.path.isdir(id_or_path) else _hub_files(id_or_path)
        summary = summarise_folder(folder) if folder and (Path(folder) / "config.json").is_file() else None
        if summary is not None and summary.metrics:
            dataset = summary.eval_dataset
            return {"metrics": summary.metrics, "dataset": dataset, "split": summary.split,
                    "num_images": summary.num_images, "dataset_name": summary.facts(dataset).get("pretty_name")}
        card_path = Path(folder or "") / "README.md"
        if not card_path.is_file():
            return {}
        card = ModelCard.load(card_path)
        metrics: dict[str, Any] = {}
        dataset = split = name = None
        for result in card.data.eval_results or []:
            for head in STUDENT_HEADS:
                if result.metric_type == "accuracy" and result.metric_name == head.index_name:
                    metrics[f"{head.key}_top1"] = float(result.metric_value)
                    dataset, split, name = result.dataset_type, result.dataset_split, result.dataset_name
        return ({"metrics": metrics, "dataset": dataset, "split": split, "num_images": None, "dataset_name": name}
                if metrics else {})
    except Exception as error:  # a demo must start without a card
        logger.info("No reported accuracy for %s: %s", id_or_path, error)
        return {}


def _hub_files(repo_id: str) -> Optional[str]:
    """A local folder with a Hub model's JSON files and card (the cache when offline); None if unreachable."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, allow_patterns=["*.json", "README.md"])
    except Exception as error:  # offline and not cached, private, missing: the banner goes without numbers
        logger.info("Could not read %s from the Hub: %s", repo_id, error)
        return None
