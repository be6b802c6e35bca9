"""Checkpoints that survive a crash, and a resume that restores what was saved.

Three problems with the stock ``Trainer``, each fixed here by a small mixin,
:class:`RobustCheckpointMixin`, shared by the distillation and the teacher trainers:

* **Saves are not atomic.** ``Trainer._save_checkpoint`` writes straight into
  ``checkpoint-N/``: a process killed mid-save leaves a folder that ``get_last_checkpoint`` (and
  ``--resume_from_checkpoint true``) picks up, then fails on, or resumes from half-written state.
  We let the Trainer write into ``<output_dir>/.incomplete/checkpoint-N`` (a name
  ``get_last_checkpoint`` and the rotation never match), add the extras (the EMA), and only then
  ``os.replace`` it to ``checkpoint-N``: a rename within one file system is atomic, so
  ``checkpoint-N`` either does not exist or is complete.
* **Resume silently drops weights.** ``Trainer._load_from_checkpoint`` feeds ``model.safetensors``
  to ``load_state_dict(strict=False)``, but ``save_pretrained`` writes the checkpoint's
  (legacy) key names, e.g. ``deit.encoder.layer.0...`` for the model's ``deit.layers.0...``: the
  encoder is not loaded and training restarts it from scratch with a mere warning
  (``docs/results/robustness.md``). We load through ``from_pretrained``, which converts the names,
  and copy with ``strict=True``.
* **Callbacks have no resume hook.** Callbacks that keep state in checkpoint folders (the EMA) get
  ``save_checkpoint_extras(folder)`` before the folder is published and
  ``load_checkpoint_extras(folder)`` before training resumes.

It also wraps ``args.hub_token`` (:func:`hf_deit.training.secrets.protect_hub_token`) so that the
``training_args.bin`` pickled into every checkpoint never holds the token.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from typing import Any, Optional, Union

import torch
from transformers import PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .secrets import protect_hub_token

logger = logging.getLogger(__name__)

STAGING_FOLDER = ".incomplete"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def is_complete_checkpoint(folder: str) -> bool:
    """The Trainer writes ``trainer_state.json`` last (after weights, optimizer, scheduler, RNG
    states), so a folder without it comes from an interrupted save, ours or a stock Trainer's."""
    return os.path.isfile(os.path.join(folder, TRAINER_STATE))


def has_only_pickled_weights(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "pytorch_model.bin")) and not any(
        os.path.isfile(os.path.join(folder, name)) for name in ("model.safetensors", "model.safetensors.index.json")
    )


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The highest ``checkpoint-N`` in ``output_dir`` that is complete, or None.

    Incomplete ones (left by an older, non-atomic save or copied in part) are skipped with a
    warning and never deleted: they may be all that is left of a user's run.
    """
    if not os.path.isdir(output_dir):
        return None
    numbered = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(numbered):
        folder = os.path.join(output_dir, name)
        if is_complete_checkpoint(folder):
            return folder
        logger.warning(
            "Skipping %s: it has no %s, so its save was interrupted. It is left untouched.", folder, TRAINER_STATE
        )
    return None


def resolve_resume_checkpoint(value: Union[str, bool, None], output_dir: str) -> Optional[str]:
    """Turn ``--resume_from_checkpoint`` (a path, ``true``/``last``, or nothing) into a checkpoint folder.

    ``TrainingArguments.resume_from_checkpoint`` is a string, so ``--resume_from_checkpoint true``
    arrives as ``"true"``, which the Trainer would take for a folder name.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "last")):
        found = last_complete_checkpoint(output_dir)
        if found is None:
            raise ValueError(
                f"--resume_from_checkpoint true: no complete checkpoint-N folder in {output_dir!r} "
                f"(unfinished saves in {STAGING_FOLDER}/ are ignored). Pass the path of a checkpoint folder, "
                "or drop --resume_from_checkpoint to start a new run."
            )
        folder = found
    else:
        folder = str(value)
        if not os.path.isdir(folder):
            raise ValueError(
                f"--resume_from_checkpoint {folder!r} is not a folder. Pass a checkpoint-N folder written by a "
                f"previous run, or 'true' to take the last complete one in output_dir ({output_dir!r})."
            )
    if has_only_pickled_weights(folder):
        raise ValueError(
            f"{folder!r} holds pickled weights (pytorch_model.bin) and no model.safetensors: refusing to load "
            "them (unpickling can run code). Convert the checkpoint to safetensors or resume from another one."
        )
    if not is_complete_checkpoint(folder):
        raise ValueError(
            f"{folder!r} is not a complete checkpoint: it has no {TRAINER_STATE}, which the Trainer writes last, so "
            "its save was interrupted. Resume from an earlier checkpoint-N, or use 'true' to take the last complete "
            "one."
        )
    return folder


def load_pretrained_weights(model: torch.nn.Module, folder: str) -> None:
    """Load ``folder``'s safetensors weights into ``model`` as ``from_pretrained`` would, strictly.

    ``from_pretrained`` is the one loader that maps the checkpoint's serialised key names back to
    the model's; a fresh copy is loaded that way and copied over, so every parameter and buffer
    must match (``strict=True``) instead of being silently skipped.
    """
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"Expected a transformers PreTrainedModel, got {type(model).__name__}.")
    fresh = type(model).from_pretrained(folder, use_safetensors=True, trust_remote_code=False, dtype=model.dtype)
    model.load_state_dict(fresh.state_dict(), strict=True)


def clear_staging(run_dir: str) -> None:
    """Remove unfinished checkpoint saves (``.incomplete/checkpoint-*``) left by a killed process."""
    staging = os.path.join(run_dir, STAGING_FOLDER)
    if not os.path.isdir(staging):
        return
    for name in os.listdir(staging):
        if _CHECKPOINT_NAME.match(name):
            logger.warning("Removing the unfinished checkpoint save %s.", os.path.join(staging, name))
            shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
    if not os.listdir(staging):
        os.rmdir(staging)


def publish(staged: str, final: str) -> None:
    """Move a fully written checkpoint folder into place with an atomic rename.

    If ``final`` already exists (the same step saved twice), it is moved aside first and deleted
    only once the new one is in place: at every instant ``final`` is absent or complete.
    """
    previous = None
    if os.path.exists(final):
        previous = final + ".replaced"
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(staged, final)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


class RobustCheckpointMixin:
    """Atomic checkpoint saves, strict conversion-aware resume, and checkpoint hooks for callbacks.

    Mix in before ``transformers.Trainer``: ``class MyTrainer(RobustCheckpointMixin, Trainer)``.
    """

    _staging_checkpoint = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None:
            protect_hub_token(training_args)
        super().__init__(*args, **kwargs)

    # -- saving ------------------------------------------------------------------------------
    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)  # type: ignore[misc]
        # While a checkpoint is being written, the Trainer writes it under the staging folder.
        return os.path.join(run_dir, STAGING_FOLDER) if self._staging_checkpoint else run_dir

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        args = self.args  # type: ignore[attr-defined]
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"  # type: ignore[attr-defined]
        staged, final = os.path.join(run_dir, STAGING_FOLDER, name), os.path.join(run_dir, name)
        if args.should_save and os.path.exists(staged):
            shutil.rmtree(staged)
        push_to_hub = args.push_to_hub
        self._staging_checkpoint = True
        args.push_to_hub = False  # pushed below, from the published folder
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._staging_checkpoint = False
            args.push_to_hub = push_to_hub
        self._fix_best_model_checkpoint(run_dir, staged)
        if args.should_save:
            for callback in self.callback_handler.callbacks:  # type: ignore[attr-defined]
                if hasattr(callback, "save_checkpoint_extras"):
                    callback.save_checkpoint_extras(staged)
        # Every process has written its part (RNG states, shards) before the folder is published.
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if args.should_save:
            publish(staged, final)
            staging = os.path.dirname(staged)
            if os.path.isdir(staging) and not os.listdir(staging):
                os.rmdir(staging)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,  # type: ignore[attr-defined]
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if push_to_hub:
            self._push_from_checkpoint(final)  # type: ignore[attr-defined]

    def _fix_best_model_checkpoint(self, run_dir: str, staged: str) -> None:
        """The Trainer derived ``best_model_checkpoint`` from the staging path: point it at the real one."""
        state = self.state  # type: ignore[attr-defined]
        best = state.best_model_checkpoint
        staging = os.path.join(run_dir, STAGING_FOLDER)
        if best is None or not os.path.abspath(best).startswith(os.path.abspath(staging) + os.sep):
            return
        state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
        if self.args.should_save:  # type: ignore[attr-defined]
            state.save_to_json(os.path.join(staged, "trainer_state.json"))

    # -- resuming ----------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: Union[str, bool, None] = None, *args: Any, **kwargs: Any):
        output_dir = self.args.output_dir  # type: ignore[attr-defined]
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, output_dir)
        if self.args.should_save:  # type: ignore[attr-defined]
            clear_staging(output_dir)
        if checkpoint is not None:
            logger.info("Resuming from %s.", checkpoint)
            for callback in self.callback_handler.callbacks:  # type: ignore[attr-defined]
                if hasattr(callback, "load_checkpoint_extras"):
                    callback.load_checkpoint_extras(checkpoint)
        return super().train(checkpoint, *args, **kwargs)  # type: ignore[misc]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[torch.nn.Module] = None) -> None:
        target = self.accelerator.unwrap_model(model if model is not None else self.model)  # type: ignore[attr-defined]
        if self._loads_plain_weights(target, resume_from_checkpoint):
            logger.info("Loading model weights from %s.", resume_from_checkpoint)
            load_pretrained_weights(target, resume_from_checkpoint)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint  # type: ignore[attr-defined]
        target = self.accelerator.unwrap_model(self.model)  # type: ignore[attr-defined]
        if best is not None and self._loads_plain_weights(target, best):
            logger.info("Loading the best model from %s.", best)
            load_pretrained_weights(target, best)
            return
        super()._load_best_model()  # type: ignore[misc]

    def _loads_plain_weights(self, model: torch.nn.Module, folder: str) -> bool:
        """Whether our loader applies: a plain (not DeepSpeed/FSDP/PEFT) transformers model and a
        single-file safetensors checkpoint; anything else goes through the Trainer's own code."""
        return (
            isinstance(model, PreTrainedModel)
            and not getattr(self, "is_deepspeed_enabled", False)
            and not getattr(self, "is_fsdp_enabled", False)
            and os.path.isfile(os.path.join(folder, "model.safetensors"))
        )
