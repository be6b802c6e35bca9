"""Shared pieces of the speed benchmarks: a step timer for the Trainer, config building, the machine.

Timings exclude start-up (data and model loading, the first steps: allocator warm-up, compilation):
a :class:`StepTimer` records the wall clock at the end of step ``warmup_steps`` and of the last step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from transformers import TrainerCallback

from hf_deit.hardware import cpu_model_and_flags

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
LOCAL_CIFAR10 = "../shared/data/cifar10"  # the local CIFAR-10 copy the results pages were measured on


class StepTimer(TrainerCallback):
    """Wall-clock marks of the training loop: its start (``begin``) and the end of every optimizer step
    (``marks``, the device synchronised first), and the step times after ``warmup_steps`` (data loading,
    forward, backward, optimizer, scheduler, logging: everything the Trainer does per step)."""

    def __init__(self, warmup_steps: int = 0, device: Optional[torch.device] = None) -> None:
        self.warmup_steps = warmup_steps
        self.device = device
        self.begin: Optional[float] = None
        self.marks: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append(time.perf_counter())

    @property
    def step_seconds(self) -> list[float]:
        first = max(self.warmup_steps, 1)
        return [self.marks[i] - self.marks[i - 1] for i in range(first, len(self.marks))]

    @property
    def steps(self) -> int:
        return len(self.step_seconds)

    @property
    def seconds_per_step(self) -> float:
        """Mean over the timed steps: the throughput a run sees."""
        if not self.step_seconds:
            raise RuntimeError("StepTimer saw no timed step: max_steps must exceed warmup_steps.")
        return sum(self.step_seconds) / len(self.step_seconds)

    @property
    def median_seconds_per_step(self) -> float:
        """Median over the timed steps: robust to bursts of load from other tenants of a shared machine."""
        return median(self.step_seconds)


# The speed switches the quickstart-based pages were measured with (the data-loader, fp32, SDPA): the
# shipped quickstart turns them on (docs/results/quickstart.md), and a benchmark that studies one of them
# sets it explicitly, so that each page keeps measuring what it says.
QUICKSTART_MEASURED_WITH = ("--device_resident_data", "false", "--auto_bf16", "false", "--attn_implementation", "sdpa")


def quickstart_argv(output_dir: str | os.PathLike, *overrides: str, dataset: Optional[str] = None) -> list[str]:
    """The quickstart config with benchmark settings (no saving, no evaluation, quiet, the measured speed
    switches) plus ``overrides``."""
    argv = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--output_dir", str(output_dir),
            "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
            "--teacher_model_name_or_path", str(REPO / "models" / "teacher-cifar10-resnet"),
            *QUICKSTART_MEASURED_WITH]
    argv += ["--dataset_name", dataset or str(REPO / "data" / "cifar10-sample")]
    return argv + list(overrides)


# The instruction sets that decide what a CPU does with fp32 and bf16 matrix products (oneDNN picks its
# kernels from them): without AVX512-BF16 or AMX, bf16 is emulated and slower than fp32.
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}


def machine() -> dict[str, object]:
    """What a timing depends on: the device, the CPU and its instruction sets, the thread count, torch.

    Two results are comparable only if these agree (the date aside): a CPU with AVX512-BF16 trains bf16
    2x faster than fp32 where one without it runs bf16 12x slower (docs/results/throughput.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name, flags = cpu_model_and_flags()
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU: {name}",
        "cpu_cores": cores,
        "cpu_features": [label for flag, label in CPU_FEATURES.items() if flag in flags],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def describe_machine(environment: dict) -> str:
    """One line for a results table: ``CPU: AMD EPYC (AVX2, AVX-512, AVX512-BF16), 2 threads, torch 2.15.0``."""
    features = environment.get("cpu_features")
    isa = f" ({', '.join(features) or 'none of ' + ', '.join(CPU_FEATURES.values())})" if features is not None else ""
    device = environment["device"]
    resumed = "".join(f", resumed on {describe_machine(later)}" for later in environment.get("resumed_on", []))
    return (f"{device}{isa if device.startswith('CPU') else ''}, {environment['torch_threads']} threads, "
            f"torch {environment['torch']}{resumed}")


def machines_line(machines: dict[str, dict], fallback: dict | None = None) -> str:
    """The machine a table's rows were timed on, or each row's (keyed by its label) when they differ: a
    minutes budget buys different work on different CPUs, so a reader must see which row ran where.
    ``fallback`` names this machine when the table has no rows yet."""
    rows_on: dict[str, list[str]] = {}
    for label, environment in machines.items():
        rows_on.setdefault(describe_machine(environment), []).append(label)
    if len(rows_on) <= 1:
        only = next(iter(rows_on), None) or (describe_machine(fallback) if fallback else "none recorded")
        return f"Machine: {only}."
    return "Machines: " + "; ".join(f"{', '.join(labels)}: {text}" for text, labels in rows_on.items()) + "."


def same_machine(first: dict, second: dict) -> bool:
    """Whether two results were timed on the same kind of machine and software (dates may differ)."""
    keys = ("device", "cpu_cores", "cpu_features", "torch_threads", "torch")
    return all(first.get(key) == second.get(key) for key in keys)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def rotated_rounds(names: Sequence[str], measure, rounds: int) -> list[dict[str, float]]:
    """``measure(name)`` for every variant, in ``rounds`` rounds that each start one variant later: a slow
    drift of a shared machine then weighs on every variant alike."""
    results = []
    for index in range(rounds):
        shift = index % len(names)
        order = list(names[shift:]) + list(names[:shift])
        results.append({name: measure(name) for name in order})
        print(results[-1], flush=True)
    return results


def variant_rows(names: Sequence[str], labels: dict[str, str], rounds: list[dict[str, float]],
                 reference: str) -> list[dict]:
    """Per variant: the median rate over rounds and the median ratio to ``reference`` within each round."""
    rows = []
    for name in names:
        rates = [r[name] for r in rounds]
        ratios = [r[name] / r[reference] for r in rounds] if reference in names else [float("nan")]
        rows.append({"variant": name, "label": labels[name], "images_per_s": median(rates),
                     "vs_shipped": median(ratios), "rounds": rates})
    return rows


def variant_speed_section(names: Sequence[str], labels: dict[str, str], rounds: list[dict[str, float]],
                          setup: str, command: str) -> dict:
    """The section of a one-switch-at-a-time speed benchmark: rows, rounds, machine and its Markdown table."""
    rows = variant_rows(names, labels, rounds, "shipped")
    environment = machine()
    lines = ["| variant | train img/s (median) | vs shipped |", "|---|---:|---:|"]
    lines += [f"| {r['label']} | {r['images_per_s']:.0f} | {r['vs_shipped']:.2f}× |" for r in rows]
    lines += ["", f"{setup}; {describe_machine(environment)}. Reproduce: `{command}`."]
    return {"machine": environment, "rows": rows, "rounds": rounds, "markdown": "\n".join(lines)}
