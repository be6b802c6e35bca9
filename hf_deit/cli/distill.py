"""``scripts/distill.py``: distil a DeiT student from an image-classification teacher."""

from __future__ import annotations

from typing import Optional, Sequence

from ..config import DataConfig, DistillationConfig, ModelConfig
from ..training.distill import run_distillation
from .common import training_main


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    return training_main(run_distillation, (ModelConfig, DataConfig, DistillationConfig), argv)
