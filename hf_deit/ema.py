"""Exponential moving average of the student's weights (timm's ``ModelEmaV3``) as a Trainer callback.

The EMA copy is a full ``DeiTForImageClassificationWithTeacher``: it is saved with
``save_pretrained`` in an ``ema/`` folder next to each checkpoint (and the final model), loadable by
stock transformers, and evaluated as its own model at the end of the run.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from timm.utils import ModelEmaV3
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

EMA_FOLDER = "ema"


class EMACallback(TrainerCallback):
    def __init__(self, decay: float, warmup: bool = True, processor: Any = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}; DeiT uses 0.99996 on ImageNet.")
        self.decay = decay
        self.warmup = warmup
        self.processor = processor
        self.ema: Optional[ModelEmaV3] = None

    @staticmethod
    def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
        return getattr(model, "module", model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.ema is None:
            # Warm-up (timm): decay grows as 1 - (1 + step)^(-2/3) up to `decay`, so short runs still average.
            self.ema = ModelEmaV3(self._unwrap(model), decay=self.decay, use_warmup=self.warmup)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(self._unwrap(model), step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if self.ema is not None and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", EMA_FOLDER)
            self.save(folder)

    def save(self, folder: str) -> None:
        self.ema.module.save_pretrained(folder)
        if self.processor is not None:
            self.processor.save_pretrained(folder)

