"""The teacher's logits computed once per training view (``distillation_teacher_cache``).

With flips only, each training image has two views, so a frozen teacher's targets for a whole epoch, or for
fifty, are the same 2N rows. :class:`TeacherTargetCache` computes them when training begins and attaches them
to the device-resident training set, which hands each batch its rows (``teacher_logits``); the distillation
loss reads those instead of running the teacher. A step then costs what training on labels alone costs.

The cache is built in ``on_train_begin`` after the :class:`hf_deit.training.clock.TrainingClock` has started,
so its minutes count as training time and a ``max_train_minutes`` budget pays for them; a resumed run builds
it again. Every process builds the whole cache (each holds the whole training set already).
"""

from __future__ import annotations

import logging
import time

import torch
from transformers import TrainerCallback

from ..data.device import DeviceResidentImages

logger = logging.getLogger(__name__)


@torch.no_grad()
def teacher_view_logits(teacher: torch.nn.Module, dataset: DeviceResidentImages, batch_size: int) -> torch.Tensor:
    """``float32 (views, classes)``: the teacher's logits for every view of ``dataset``, in view order."""
    views = torch.arange(len(dataset) * dataset.views_per_image)
    return torch.cat([teacher(dataset.view_pixels(chunk)) for chunk in views.split(batch_size)])


class TeacherTargetCache(TrainerCallback):
    """Builds the cache as each ``train()`` begins and drops it when it ends (evaluation runs the teacher)."""

    def __init__(self, teacher: torch.nn.Module, dataset: DeviceResidentImages, batch_size: int) -> None:
        self.teacher, self.dataset, self.batch_size = teacher, dataset, batch_size

    def on_train_begin(self, args, state, control, **kwargs):
        start = time.perf_counter()
        self.dataset.attach_view_targets(teacher_view_logits(self.teacher, self.dataset, self.batch_size))
        logger.info(
            "Teacher targets cached for %d views in %.1f s (counted as training time).",
            self.dataset.view_targets.shape[0], time.perf_counter() - start,
        )

    def on_train_end(self, args, state, control, **kwargs):
        self.dataset.attach_view_targets(None)
