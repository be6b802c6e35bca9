"""Shared pieces of the speed benchmarks: a step timer for the Trainer, config building, the machine.

Timings exclude start-up (data and model loading, the first steps: allocator warm-up, compilation):
a :class:`StepTimer` records the wall clock at the end of step ``warmup_steps`` and of the last step.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


class StepTimer(TrainerCallback):
    """Wall time of training steps ``warmup_steps + 1 .. max_steps`` (data loading, forward, backward,
    optimizer, scheduler, logging: everything the Trainer does per step)."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup_steps:
            self.start = time.perf_counter()
        elif state.global_step > self.warmup_steps:
            self.end = time.perf_counter()
            self.steps = state.global_step - self.warmup_steps

    @property
    def seconds_per_step(self) -> float:
        if self.start is None or self.end is None or not self.steps:
            raise RuntimeError("StepTimer saw no timed step: max_steps must exceed warmup_steps.")
        return (self.end - self.start) / self.steps


def quickstart_argv(output_dir: str | os.PathLike, *overrides: str, dataset: Optional[str] = None) -> list[str]:
    """The quickstart config with benchmark settings (no saving, no evaluation, quiet) plus ``overrides``."""
    argv = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--output_dir", str(output_dir),
            "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
            "--teacher_model_name_or_path", str(REPO / "models" / "teacher-cifar10-regnet")]
    argv += ["--dataset_name", dataset or str(REPO / "data" / "cifar10-sample")]
    return argv + list(overrides)


def machine() -> dict[str, object]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU: {name}",
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
