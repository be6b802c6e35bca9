"""Exponential moving average of the student's weights (timm's ``ModelEmaV3``) as a Trainer callback.

The EMA copy is a full ``DeiTForImageClassificationWithTeacher``: it is saved with
``save_pretrained`` in an ``ema/`` folder next to each checkpoint (and the final model), loadable by
stock transformers, and evaluated as its own model at the end of the run.

Checkpoints: with :class:`hf_deit.training.checkpointing.RobustCheckpointMixin` the EMA is written into the
checkpoint *before* the folder is published (``save_checkpoint_extras``), so a checkpoint never
exists without its EMA, and it is reloaded on resume (``load_checkpoint_extras``): without that, a
resumed run would restart the average from the resumed live weights and end with another EMA than
an uninterrupted run.

The decay is constant, as in the official DeiT code. timm's optional warm-up (``ema_warmup``) ramps it
as ``1 - (1 + step)^(-2/3)``, which reaches 0.9996 only after ~117k steps and 0.99996 after ~3.9 M,
so with it every ``ema_decay`` above ~0.9995 behaves the same on any realistic run. The warm-up decay
depends only on the global step, which the Trainer restores.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from timm.utils import ModelEmaV3
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .checkpointing import load_pretrained_weights

logger = logging.getLogger(__name__)

EMA_FOLDER = "ema"


class EMACallback(TrainerCallback):
    def __init__(self, decay: float, warmup: bool = False, processor: Any = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}; DeiT uses 0.99996 on ImageNet.")
        self.decay = decay
        self.warmup = warmup
        self.processor = processor
        self.ema: Optional[ModelEmaV3] = None
        self._resume_folder: Optional[str] = None

    @staticmethod
    def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
        return getattr(model, "module", model)

    def load_checkpoint_extras(self, checkpoint: str) -> None:
        """Remember the checkpoint being resumed: its EMA is loaded once the EMA exists (train begin)."""
        self._resume_folder = os.path.join(checkpoint, EMA_FOLDER)

    def save_checkpoint_extras(self, checkpoint: str) -> None:
        if self.ema is not None:
            self.save(os.path.join(checkpoint, EMA_FOLDER))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.ema is None:
            self.ema = ModelEmaV3(self._unwrap(model), decay=self.decay, use_warmup=self.warmup)
        if self._resume_folder is not None:
            if os.path.isdir(self._resume_folder):
                load_pretrained_weights(self.ema.module, self._resume_folder)
            else:
                logger.warning(
                    "Resuming without an EMA: %s does not exist (the checkpoint was saved without ema_decay). "
                    "The EMA restarts from the resumed weights.",
                    self._resume_folder,
                )
            self._resume_folder = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(self._unwrap(model), step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        # Trainers with RobustCheckpointMixin wrote ema/ before publishing the checkpoint; a stock
        # Trainer did not, so write it now.
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", EMA_FOLDER)
        if self.ema is not None and state.is_world_process_zero and not os.path.isdir(folder):
            self.save(folder)

    def save(self, folder: str) -> None:
        self.ema.module.save_pretrained(folder)
        if self.processor is not None:
            self.processor.save_pretrained(folder)
