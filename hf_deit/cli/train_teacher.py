"""``scripts/train_teacher.py``: train or fine-tune an image-classification teacher."""

from __future__ import annotations

from typing import Optional, Sequence

from ..config import DataConfig, TeacherModelConfig, TeacherTrainingConfig
from ..training.teacher_training import run_teacher_training
from .common import training_main


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    return training_main(run_teacher_training, (TeacherModelConfig, DataConfig, TeacherTrainingConfig), argv)
