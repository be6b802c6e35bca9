"""How cost grows: measured epoch time on this CPU, and a FLOP-based projection to GPUs.

Measured (this machine): the wall time of one full training epoch through the real training path
(``hf_deit.training.distill.build_distillation_run`` + ``trainer.train()``, hard distillation against the
shipped teacher, eval and saving off) for 3 student sizes x 3 dataset sizes. Model and data loading
are not timed; a short warm-up run per student (discarded) absorbs first-use costs, and the first
step of every measured epoch is reported separately. Fitted: epoch time = fixed + per-image x images
per student, and the per-image cost against the student's training GFLOPs.

Projected (not measured): CIFAR-10 and ImageNet-1k, 300 epochs, on 1 and 8 H100s, from counted
FLOPs (``torch.utils.flop_counter``) and a stated sustained throughput (MFU) and 8-GPU scaling
efficiency, cross-checked against the DeiT paper's training times.

    python benchmarks/scaling.py          # about 6 minutes on 2 CPU cores (the committed results)
    python benchmarks/scaling.py --quick  # seconds: tiny students and datasets, 1 thread (the tests)
    python benchmarks/scaling.py --dataset_name ../shared/data/cifar10 --sizes 5000 10000 20000  # longer

Writes ``docs/results/scaling.json`` (with a ``markdown`` key holding the whole section),
``scaling.md`` and ``scaling.png``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import QUICKSTART_MEASURED_WITH, StepTimer  # noqa: E402

from hf_deit.config import ModelConfig, parse_config  # noqa: E402
from hf_deit.training.distill import build_distillation_run  # noqa: E402
from hf_deit.hardware import NATIVE_BF16_FLAGS, cpu_model_and_flags  # noqa: E402
from hf_deit.modeling import STUDENT_PRESETS, student_class, student_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/scaling.py"


@dataclass(frozen=True)
class Student:
    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    image_size: int = 32
    patch_size: int = 4

    @property
    def shape(self) -> str:
        return (f"{self.hidden_size}w x {self.num_hidden_layers}L, {self.num_attention_heads} heads, "
                f"MLP {self.intermediate_size}, {self.image_size}px/{self.patch_size}")

    def flags(self) -> list[str]:
        return [
            "--student_preset", "tiny", "--hidden_size", str(self.hidden_size),
            "--num_hidden_layers", str(self.num_hidden_layers), "--num_attention_heads", str(self.num_attention_heads),
            "--intermediate_size", str(self.intermediate_size), "--image_size", str(self.image_size),
            "--patch_size", str(self.patch_size),
        ]


def preset(name: str, key: str, image_size: int, patch_size: int) -> Student:
    return Student(name, image_size=image_size, patch_size=patch_size, **STUDENT_PRESETS[key])


# Measured students, all 32x32 / patch 4 (64 patches + class + distillation token): ~12x apart in FLOPs.
STUDENTS = [
    Student("mini", 96, 4, 3, 384),
    Student("quickstart", 128, 6, 4, 512),
    preset("DeiT-Ti/4", "tiny", 32, 4),
]
SIZES = [1000, 2500, 5000]  # training images per epoch (the shipped sample holds 5,000)
BATCH = 64  # the quickstart's

# --quick: the same code path in seconds (tests, development). Timings mean nothing at this size.
QUICK_STUDENTS = [
    Student("q-16", 16, 1, 2, 32, patch_size=8),
    Student("q-32", 32, 2, 2, 64, patch_size=8),
    Student("q-48", 48, 2, 2, 96, patch_size=8),
]
QUICK_SIZES = [16, 32, 48]
QUICK_BATCH = 16

# ---------------------------------------------------------------------------------------------
# Projection assumptions (stated in the report; change them here).
H100_BF16_DENSE_TFLOPS = 989.4  # H100 SXM, dense bf16 tensor-core peak (1979 is with 2:4 sparsity)
V100_FP16_TFLOPS = 125.0  # V100 SXM2 tensor-core peak, for the cross-check with the DeiT paper
MFU_SCENARIOS = {"40%": 0.40, "20%": 0.20}  # sustained fraction of peak: tuned bf16 run / paper-era efficiency
SCALING_EFFICIENCY_8GPU = 0.90  # 8 GPUs in one NVLink node, DDP: 8 x 0.9 = 7.2x one GPU
EPOCHS = 300  # DeiT's schedule
CIFAR10_TRAIN = 50_000
IMAGENET_TRAIN = 1_281_167
# ImageNet students: the DeiT paper's Table 1 shapes at 224 px / patch 16 (196 patches + 2 tokens),
# with the distillation token; teacher RegNetY-16GF (the paper's best teacher), as transformers builds it.
IMAGENET_STUDENTS = [preset("DeiT-Ti/16", "tiny", 224, 16), preset("DeiT-S/16", "small", 224, 16),
                     preset("DeiT-B/16", "base", 224, 16)]
REGNETY_16GF = dict(embedding_size=32, hidden_sizes=[224, 448, 1232, 3024], depths=[2, 4, 11, 1],
                    groups_width=112, layer_type="y")
# Quoted from the DeiT paper (Touvron et al., 2021, section "Training time"), not measured here.
PAPER_FACTS = [
    {"quote": "DeiT-B, 300 epochs on ImageNet: 53 h on a single 8-GPU node (37 h on 2 nodes)",
     "model": "DeiT-B/16", "hours": 53.0, "gpus": 8, "distilled": False, "bound": "equal"},
    {"quote": "DeiT-S and DeiT-Ti: trained in less than 3 days on 4 GPUs",
     "model": "DeiT-S/16", "hours": 72.0, "gpus": 4, "distilled": False, "bound": "at most"},
]


# ---------------------------------------------------------------------------------------------
# FLOPs (forward and forward + backward), counted by torch's FlopCounterMode. FLOP = 2 x MAC.
def count_flops(model: torch.nn.Module, pixel_values: torch.Tensor, backward: bool) -> int:
    counter = FlopCounterMode(display=False)
    if backward:
        model.train()
        with counter:
            outputs = model(pixel_values=pixel_values)
            logits = outputs.logits if hasattr(outputs, "logits") else outputs
            logits.float().sum().backward()
    else:
        model.eval()
        with counter, torch.no_grad():
            model(pixel_values=pixel_values)
    return counter.get_total_flops()


@functools.lru_cache(maxsize=None)
def student_flops(student: Student, num_labels: int) -> dict:
    """Params, forward and forward+backward GFLOPs per image of a student, built on the meta device.

    Eager attention so that the attention matmuls are counted (CPU SDPA kernels are not)."""
    model_config = ModelConfig(**{k: getattr(student, k) for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size", "patch_size")})
    config = student_config(model_config, {i: str(i) for i in range(num_labels)})
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = student_class(model_config)(config)
        x = torch.empty(1, 3, student.image_size, student.image_size)
        forward = count_flops(model, x, backward=False)
        train = count_flops(model, x, backward=True)
    return {"params": sum(p.numel() for p in model.parameters()), "gflops_fwd": forward / 1e9,
            "gflops_fwd_bwd": train / 1e9, "tokens": (student.image_size // student.patch_size) ** 2 + 2}


@functools.lru_cache(maxsize=None)
def regnety_16gf_flops(image_size: int = 224, num_labels: int = 1000) -> dict:
    from transformers import RegNetConfig, RegNetForImageClassification

    with torch.device("meta"):
        model = RegNetForImageClassification(RegNetConfig(num_labels=num_labels, **REGNETY_16GF))
        forward = count_flops(model, torch.empty(1, 3, image_size, image_size), backward=False)
    return {"name": "RegNetY-16GF", "params": sum(p.numel() for p in model.parameters()), "gflops_fwd": forward / 1e9}


def teacher_flops(teacher: torch.nn.Module, image_size: int, name: str) -> dict:
    """The shipped teacher as the trainer runs it (TeacherWrapper: renormalise, resize, forward)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        teacher(torch.zeros(1, 3, image_size, image_size))
    return {"name": name, "params": sum(p.numel() for p in teacher.parameters()),
            "gflops_fwd": counter.get_total_flops() / 1e9}


# ---------------------------------------------------------------------------------------------
# Measurement.
def common_flags(args: argparse.Namespace, batch: int) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "quickstart.yaml"), "--dataset_name", args.dataset_name,
        "--teacher_model_name_or_path", args.teacher, "--distillation_type", "hard", "--distillation_token", "true",
        "--num_train_epochs", "1", "--per_device_train_batch_size", str(batch), "--max_eval_samples", "16",
        "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
        "--seed", str(args.seed), *QUICKSTART_MEASURED_WITH,
    ]


def measure_epoch(argv: list[str], probe_teacher: bool = False) -> dict:
    """Build the run (untimed), then time ``trainer.train()`` for one epoch."""
    model_config, data_config, training_args = parse_config(argv)
    run = build_distillation_run(model_config, data_config, training_args)
    teacher = None
    if probe_teacher and run.trainer.teacher is not None:
        teacher = teacher_flops(run.trainer.teacher, model_config.image_size,
                                Path(model_config.teacher_model_name_or_path).name)
    timer = StepTimer()
    run.trainer.add_callback(timer)
    start = time.perf_counter()
    run.trainer.train()
    epoch_s = time.perf_counter() - start
    images = len(run.data.train)
    marks = [timer.begin] + timer.marks
    step_s = [b - a for a, b in zip(marks, marks[1:])]
    steady = step_s[1:-1] or step_s[1:] or step_s  # the last step may be a partial batch
    steady_median = statistics.median(steady)
    result = {
        "images": images,
        "steps": len(timer.marks),
        "epoch_s": epoch_s,
        "setup_s": timer.begin - start,  # inside train(): optimizer, dataloader, accelerate prepare
        "first_step_s": step_s[0],
        "steady_step_s": steady_median,
        "steady_images_per_s": training_args.per_device_train_batch_size / steady_median,
        "after_last_step_s": epoch_s - (timer.marks[-1] - start),
        "threads": torch.get_num_threads(),
    }
    breakdown = input_and_teacher_cost(run) if probe_teacher else None
    del run
    return {"result": result, "teacher": teacher, "breakdown": breakdown}


def input_and_teacher_cost(run) -> dict:
    """Two student-independent parts of the per-image cost, timed apart (after the warm-up epoch):
    the input pipeline (decode, crop/flip, collate: a full pass over the warm-up dataloader) and the
    teacher's forward on those batches."""
    start, images, batches = time.perf_counter(), 0, []
    for batch in run.trainer.get_train_dataloader():
        images += len(batch["labels"])
        batches.append(batch["pixel_values"])
    data_s = time.perf_counter() - start
    teacher_s = None
    if run.trainer.teacher is not None:
        run.trainer.teacher(batches[0])  # warm
        start = time.perf_counter()
        for pixel_values in batches:
            run.trainer.teacher(pixel_values)
        teacher_s = time.perf_counter() - start
    return {"images": images, "input_ms_per_image": 1000 * data_s / images,
            "teacher_ms_per_image": None if teacher_s is None else 1000 * teacher_s / images}


# ---------------------------------------------------------------------------------------------
# Fits and projection (pure functions, tested on synthetic numbers).
def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares y = intercept + slope * x, with R^2 (1 for a perfect line)."""
    n = len(x)
    if n < 2 or len(y) != n:
        raise ValueError("linear_fit needs at least two (x, y) pairs of equal length.")
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((a - mean_x) ** 2 for a in x)
    if sxx == 0:
        raise ValueError("linear_fit needs at least two distinct x values.")
    slope = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y)) / sxx
    intercept = mean_y - slope * mean_x
    ss_res = sum((b - (intercept + slope * a)) ** 2 for a, b in zip(x, y))
    ss_tot = sum((b - mean_y) ** 2 for b in y)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return {"slope": slope, "intercept": intercept, "r2": r2}


def gpu_seconds(total_flops: float, mfu: float, gpus: int, peak_tflops: float = H100_BF16_DENSE_TFLOPS,
                scaling_efficiency: float = SCALING_EFFICIENCY_8GPU) -> float:
    """Compute time at a sustained fraction ``mfu`` of peak; more than one GPU runs at ``scaling_efficiency``."""
    effective = gpus * (scaling_efficiency if gpus > 1 else 1.0)
    return total_flops / (mfu * peak_tflops * 1e12 * effective)


def projection_row(dataset: str, images: int, epochs: int, student: str, student_train_gflops: float,
                   teacher: str, teacher_gflops: float, cpu_seconds: Optional[float], cpu_note: str) -> dict:
    per_image = student_train_gflops + teacher_gflops
    total = per_image * 1e9 * images * epochs
    row = {
        "dataset": dataset, "images_per_epoch": images, "epochs": epochs, "student": student, "teacher": teacher,
        "gflops_per_image_train": per_image, "total_flops": total, "cpu_seconds": cpu_seconds, "cpu_note": cpu_note,
        "gpu_seconds": {},
    }
    for label, mfu in MFU_SCENARIOS.items():
        for gpus in (1, 8):
            row["gpu_seconds"][f"{gpus}xH100@{label}"] = gpu_seconds(total, mfu, gpus)
    best = row["gpu_seconds"][f"8xH100@{next(iter(MFU_SCENARIOS))}"]
    row["images_per_s_needed_8gpu"] = images * epochs / best  # what the input pipeline must deliver
    return row


def human_time(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit in ("h", "min") and seconds >= size):
            value = seconds / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{seconds:.1f} s"


def repo_relative(path: str) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path


def cpu_info() -> dict:
    model, flags = cpu_model_and_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model, "cores": cores, "avx2": "avx2" in flags, "avx512": any(f.startswith("avx512") for f in flags),
        "bf16": bool(flags & NATIVE_BF16_FLAGS),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# Report.
def markdown_section(result: dict) -> str:
    env, sizes = result["environment"], result["settings"]["sizes"]
    teacher = result["teacher"]
    lines = [
        "## How cost grows",
        "",
        f"Measured on {env['cores']} CPU cores ({env['cpu']}, {'AVX2' if env['avx2'] else 'no AVX2'}"
        f"{', AVX-512' if env['avx512'] else ''}{', AVX512-BF16' if env.get('bf16') else ''}; torch {env['torch']}, {env['threads']} "
        f"thread{'s' if env['threads'] != 1 else ''}) on "
        f"{result['date']}{' — QUICK MODE: tiny models, timings meaningless' if result['settings']['quick'] else ''}.",
        f"Reproduce: `{result['command']}` (about {result['settings']['expected_minutes']} min; "
        f"this run: {result['total_wall_s'] / 60:.1f} min).",
        "",
        "### Measured: one training epoch on this CPU",
        "",
        f"Real training path (`build_distillation_run` + `trainer.train()`, 1 epoch), hard distillation against "
        f"`{teacher['name']}` ({teacher['params'] / 1e6:.2f} M params, {teacher['gflops_fwd']:.3f} GFLOPs/image), "
        f"batch {result['settings']['batch']}, crop + flip, data decoded in the main process "
        f"(`dataloader_num_workers: 0`, as the quickstart), eval and saving off. Epoch time = wall time of "
        f"`trainer.train()`; model and data loading are not included; one short warm-up epoch per student is "
        f"run first and discarded. GFLOPs are counted per image (FLOP = 2 multiply-adds) with "
        f"`torch.utils.flop_counter`.",
        "",
        "| student | shape | params | GFLOPs fwd | GFLOPs fwd+bwd | "
        + " | ".join(f"epoch, {n:,} img" for n in sizes)
        + " | fixed (s) | per image (ms) | R² | steady img/s | first step (s) |",
        "|---|---|---:|---:|---:|" + "---:|" * len(sizes) + "---:|---:|---:|---:|---:|",
    ]
    for s in result["students"]:
        runs = {r["images"]: r for r in result["runs"] if r["student"] == s["name"]}
        fit = result["fits"]["per_student"][s["name"]]
        largest = runs[max(runs)]
        lines.append(
            f"| {s['name']} | {s['shape']} | {s['params'] / 1e6:.2f} M | {s['gflops_fwd']:.3f} | "
            f"{s['gflops_fwd_bwd']:.3f} | "
            + " | ".join(f"{runs[n]['epoch_s']:.1f} s" if n in runs else "-" for n in sizes)
            + f" | {fit['intercept']:.2f} | {1000 * fit['slope']:.2f} | {fit['r2']:.4f} | "
            f"{largest['steady_images_per_s']:.0f} | {statistics.median(r['first_step_s'] for r in runs.values()):.2f} |"
        )
    flops_fit = result["fits"]["per_image_vs_gflops"]
    lines += [
        "",
        "Fixed = fitted epoch time at 0 images (optimizer, dataloader and `accelerate` setup inside `train()`); "
        "per image = fitted slope; steady img/s = batch / median step time at the largest size; first step = "
        "median over the three epochs (the first batch is not in the steady rate, it is in the epoch time).",
        "",
        f"Per-image cost vs the student's training GFLOPs: **{1000 * flops_fit['intercept']:.2f} ms + "
        f"{1000 * flops_fit['slope']:.2f} ms per GFLOP** (R² = {flops_fit['r2']:.3f}, 3 points). The intercept is the "
        f"per-image cost that does not grow with the student (JPEG decode, crop/flip, collation, the teacher's "
        f"forward, the loss); the slope is an effective "
        + (f"{1 / flops_fit['slope']:.0f} GFLOP/s" if flops_fit["slope"] > 0 else "(undefined: non-positive slope)")
        + " for the student's forward + backward + optimizer on this CPU.",
    ]
    b = result.get("breakdown")
    if b and b.get("teacher_ms_per_image") is not None:
        lines += [
            "",
            f"Timed apart (after the first student's warm-up, {b['images']} images): input pipeline "
            f"{b['input_ms_per_image']:.2f} ms/image, teacher forward {b['teacher_ms_per_image']:.2f} ms/image — "
            f"{b['input_ms_per_image'] + b['teacher_ms_per_image']:.2f} ms together, against the fitted "
            f"student-independent {1000 * flops_fit['intercept']:.2f} ms/image.",
        "",
        "![epoch time vs images](scaling.png)",
        "",
        "### Projected, not measured: CIFAR-10 and ImageNet-1k, 300 epochs",
        "",
        "Projected compute time = images × epochs × (student forward+backward + teacher forward GFLOPs per image) "
        "÷ sustained throughput. Assumptions:",
        "",
    ]
    a = result["projection"]["assumptions"]
    lines += [f"- {text}" for text in a["statements"]]
    lines += [
        "",
        "| dataset | student | teacher | GFLOPs/img (train) | total | 1×H100 @40% | 8×H100 @40% | 1×H100 @20% "
        "| 8×H100 @20% | img/s the input must feed (8×H100 @40%) | this CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["projection"]["rows"]:
        g = row["gpu_seconds"]
        lines.append(
            f"| {row['dataset']} | {row['student']} | {row['teacher']} | {row['gflops_per_image_train']:.2f} | "
            f"{row['total_flops'] / 1e18:.3g} EFLOP | {human_time(g['1xH100@40%'])} | {human_time(g['8xH100@40%'])} | "
            f"{human_time(g['1xH100@20%'])} | {human_time(g['8xH100@20%'])} | "
            f"{row['images_per_s_needed_8gpu']:,.0f} | {human_time(row['cpu_seconds'])} ({row['cpu_note']}) |"
        )
    lines += [
        "",
        "Cross-check with the DeiT paper (its training times are quoted, not measured here; its runs are without "
        "distillation, so the FLOPs are the student's alone; the GPUs are taken to be V100s, the GPU of the paper's "
        f"throughput measurements, tensor-core peak {V100_FP16_TFLOPS:.0f} TFLOPS fp16, mixed precision):",
        "",
        "| paper says | FLOPs | implied sustained per GPU | implied MFU | this projection: 8×H100 @40% |",
        "|---|---:|---:|---:|---:|",
    ]
    for check in result["projection"]["cross_check"]:
        relation = "≥ " if check["bound"] == "at most" else ""
        lines.append(
            f"| {check['quote']} | {check['total_flops'] / 1e18:.3g} EFLOP | {relation}{check['implied_tflops_per_gpu']:.1f} "
            f"TFLOPS | {relation}{100 * check['implied_mfu']:.0f}% | {human_time(check['projected_8xH100@40%'])} |"
        )
    for note in result["projection"]["notes"]:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in result["students"]:
        runs = sorted((r["images"], r["epoch_s"]) for r in result["runs"] if r["student"] == s["name"])
        fit = result["fits"]["per_student"][s["name"]]
        x, y = zip(*runs)
        line, = left.plot(x, y, "o", label=f"{s['name']} ({s['gflops_fwd_bwd']:.3g} GFLOPs fwd+bwd)")
        xs = [0, max(x)]
        left.plot(xs, [fit["intercept"] + fit["slope"] * v for v in xs], "--", color=line.get_color(), alpha=0.7)
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.set_xlabel("training images per epoch")
    left.set_ylabel("epoch wall time (s)")
    left.set_title("measured epoch time (points) and linear fit (dashed)", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    gflops = [s["gflops_fwd_bwd"] for s in result["students"]]
    per_image = [1000 * result["fits"]["per_student"][s["name"]]["slope"] for s in result["students"]]
    fit = result["fits"]["per_image_vs_gflops"]
    right.plot(gflops, per_image, "o")
    for s, x, y in zip(result["students"], gflops, per_image):
        right.annotate(s["name"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    xs = [0, max(gflops) * 1.05]
    right.plot(xs, [1000 * (fit["intercept"] + fit["slope"] * v) for v in xs], "--", color="gray",
               label=f"{1000 * fit['intercept']:.2f} ms + {1000 * fit['slope']:.2f} ms/GFLOP (R²={fit['r2']:.3f})")
    right.set_xlabel("student GFLOPs per image (forward + backward)")
    right.set_ylabel("fitted cost per image (ms)")
    right.set_title("per-image cost vs student size", fontsize=9)
    right.set_xlim(left=0)
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    env = result["environment"]
    figure.suptitle(f"hf-deit, one epoch on {env['cores']} CPU cores ({env['cpu']}), batch "
                    f"{result['settings']['batch']}, hard distillation" + (" — QUICK MODE" if result["settings"]["quick"] else ""),
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_projection(students: list[dict], teacher: dict, fits: dict, batch: int) -> dict:
    big_teacher = regnety_16gf_flops()
    imagenet_students = [{"name": student.name, "shape": student.shape, **student_flops(student, 1000)}
                         for student in IMAGENET_STUDENTS]
    ratios = [s["gflops_fwd_bwd"] / s["gflops_fwd"] for s in students + imagenet_students]
    ratio_text = f"{min(ratios):.2f}–{max(ratios):.2f}×"
    statements = [
        f"GPU: NVIDIA H100 SXM, dense bf16 peak {H100_BF16_DENSE_TFLOPS} TFLOPS. Sustained throughput = MFU × peak, "
        f"two scenarios: **40%** (a tuned bf16 run: fused attention, large batches, compiled) and **20%** (about what "
        "the DeiT paper's own DeiT-B run implies on V100, see the cross-check).",
        f"8 GPUs: one NVLink node, data-parallel, {SCALING_EFFICIENCY_8GPU:.0%} scaling efficiency "
        f"({8 * SCALING_EFFICIENCY_8GPU:.1f}× one GPU).",
        "Work per image = student forward + backward (counted by `torch.utils.flop_counter`: "
        f"{ratio_text} the forward, the usual ≈3×) + teacher "
        "forward (1×, no gradient). The optimizer step and the loss are left out (< 0.1%).",
        f"{EPOCHS} epochs (DeiT); CIFAR-10 {CIFAR10_TRAIN:,} and ImageNet-1k {IMAGENET_TRAIN:,} images per epoch "
        "(repeated augmentation changes which images an epoch sees, not how many).",
        "ImageNet students: DeiT-Ti/S/B at 224 px, patch 16, with the distillation token (198 tokens), 1,000 classes ("
        + "; ".join(f"{m['name']} {m['params'] / 1e6:.1f} M params, {m['gflops_fwd']:.1f} GFLOPs fwd"
                    for m in imagenet_students)
        + f"); teacher RegNetY-16GF at 224 px, the paper's ({big_teacher['params'] / 1e6:.1f} M params, "
        f"{big_teacher['gflops_fwd']:.1f} GFLOPs fwd), counted as transformers builds them.",
        "Compute only: the input pipeline is assumed to keep up (the 'img/s' column says how much it must deliver; "
        "JPEG decoding + RandAugment at those rates needs GPU decoding or many CPU cores), and evaluation, "
        "checkpointing and start-up are excluded.",
        f"'this CPU' for CIFAR-10 is the measured per-student fit (fixed + per-image × 50,000) × 300 at batch {batch} — "
        "a linear extrapolation in the number of images only. For ImageNet it divides the FLOPs by the CPU's "
        "fitted effective GFLOP/s: an order of magnitude, far outside the measured range.",
        "The CPU measurement is not scaled to GPU by any ratio: CPU and GPU bottlenecks differ (on this CPU a "
        "small student is dominated by data decoding and fixed costs, see the intercept).",
    ]
    effective_gflops_per_s = 1 / fits["per_image_vs_gflops"]["slope"] if fits["per_image_vs_gflops"]["slope"] > 0 else None
    rows = []
    for s in students:
        fit = fits["per_student"][s["name"]]
        cpu = (fit["intercept"] + fit["slope"] * CIFAR10_TRAIN) * EPOCHS
        rows.append(projection_row("CIFAR-10", CIFAR10_TRAIN, EPOCHS, s["name"], s["gflops_fwd_bwd"],
                                   teacher["name"], teacher["gflops_fwd"], cpu, "measured fit"))
    for flops in imagenet_students:
        per_image = flops["gflops_fwd_bwd"] + big_teacher["gflops_fwd"]
        cpu = per_image * IMAGENET_TRAIN * EPOCHS / effective_gflops_per_s if effective_gflops_per_s else None
        rows.append(projection_row("ImageNet-1k", IMAGENET_TRAIN, EPOCHS, flops["name"], flops["gflops_fwd_bwd"],
                                   big_teacher["name"], big_teacher["gflops_fwd"], cpu, "≈, FLOP-extrapolated"))
    cross_check = []
    for fact in PAPER_FACTS:
        student = next(s for s in imagenet_students if s["name"] == fact["model"])
        total = student["gflops_fwd_bwd"] * 1e9 * IMAGENET_TRAIN * EPOCHS
        per_gpu = total / (fact["hours"] * 3600 * fact["gpus"]) / 1e12
        cross_check.append({
            **fact, "total_flops": total, "implied_tflops_per_gpu": per_gpu, "implied_mfu": per_gpu / V100_FP16_TFLOPS,
            "projected_8xH100@40%": gpu_seconds(total, MFU_SCENARIOS["40%"], 8),
        })
    notes = [
        "Reading the projection: at 20% MFU the paper's DeiT-B run would take "
        + human_time(gpu_seconds(cross_check[0]["total_flops"], MFU_SCENARIOS["20%"], 8))
        + " on 8×H100, vs the paper's 53 h on 8 (V100) GPUs — H100's bf16 peak is ~8× a V100's fp16 peak. With a RegNetY-16GF "
        "teacher, distillation adds the teacher's forward: "
        + ", ".join(f"+{100 * big_teacher['gflops_fwd'] / s['gflops_fwd_bwd']:.0f}% for {s['name']}"
                    for s in imagenet_students)
        + " (the small students pay mostly for the teacher).",
        "CIFAR-size students (66 tokens, width ≤ 192) have small matrix products: on a GPU they are bound by kernel "
        "launches and the input pipeline, not FLOPs, unless the data sits on the GPU and the step is compiled "
        "(cf. cifar10-airbench). Read their GPU times as lower bounds.",
    ]
    return {
        "assumptions": {
            "statements": statements, "h100_bf16_dense_tflops": H100_BF16_DENSE_TFLOPS, "mfu_scenarios": MFU_SCENARIOS,
            "scaling_efficiency_8gpu": SCALING_EFFICIENCY_8GPU, "epochs": EPOCHS, "cifar10_images": CIFAR10_TRAIN,
            "imagenet_images": IMAGENET_TRAIN, "v100_fp16_tflops": V100_FP16_TFLOPS,
            "cpu_effective_gflops_per_s": effective_gflops_per_s,
        },
        "imagenet_students": imagenet_students,
        "imagenet_teacher": big_teacher,
        "rows": rows,
        "cross_check": cross_check,
        "notes": notes,
    }


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny students and sizes: seconds (tests)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="training images per epoch")
    parser.add_argument("--dataset_name", default=str(REPO / "data" / "cifar10-sample"))
    parser.add_argument("--teacher", default=str(REPO / "models" / "teacher-cifar10-resnet"))
    parser.add_argument("--warmup_steps", type=int, default=None,
                        help="steps of the discarded warm-up epoch per student (default 4; --quick: 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work_dir", default=str(REPO / "outputs" / "scaling"))
    parser.add_argument("--out", default="docs/results/scaling", help="prefix of the .json/.md/.png outputs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, i.e. all cores; --quick: 1, so as not to fight "
                        "other work on the machine — quick timings mean nothing anyway)")
    args = parser.parse_args(argv)
    args.command = " ".join([COMMAND, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    threads = args.threads or (1 if args.quick else None)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return run_benchmark(args)
    finally:
        torch.set_num_threads(previous_threads)


def run_benchmark(args: argparse.Namespace) -> dict:
    students = QUICK_STUDENTS if args.quick else STUDENTS
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    batch = QUICK_BATCH if args.quick else BATCH
    args.warmup_steps = args.warmup_steps or (1 if args.quick else 4)
    common = common_flags(args, batch)
    work = Path(args.work_dir)
    started = time.perf_counter()

    rows, warmups, student_rows, teacher, breakdown = [], [], [], None, None
    for student in students:
        print(f"\n=== {student.name}: {student.shape} ===", flush=True)
        warm = measure_epoch(
            common + student.flags() + ["--max_train_samples", str(args.warmup_steps * batch),
                                        "--output_dir", str(work / f"{student.name.replace('/', '_')}-warmup")],
            probe_teacher=teacher is None,
        )
        if teacher is None:
            teacher, breakdown = warm["teacher"], warm["breakdown"]
        warmups.append({"student": student.name, **warm["result"]})
        student_rows.append({"name": student.name, "shape": student.shape, **student_flops(student, 10)})
        for images in sizes:
            measured = measure_epoch(common + student.flags() + [
                "--max_train_samples", str(images),
                "--output_dir", str(work / f"{student.name.replace('/', '_')}-{images}"),
            ])["result"]
            rows.append({"student": student.name, **measured})
            print(f"  {student.name:>12} {measured['images']:>6} images: epoch {measured['epoch_s']:7.2f} s "
                  f"(first step {measured['first_step_s']:.2f} s, steady {measured['steady_images_per_s']:.0f} img/s)",
                  flush=True)
        if not args.quick:
            gc.collect()  # the trainers' reference cycles: free this student's runs before the next one

    per_student = {}
    for s in student_rows:
        points = [(r["images"], r["epoch_s"]) for r in rows if r["student"] == s["name"]]
        per_student[s["name"]] = linear_fit([p[0] for p in points], [p[1] for p in points])
    fits = {
        "per_student": per_student,
        "per_image_vs_gflops": linear_fit([s["gflops_fwd_bwd"] for s in student_rows],
                                          [per_student[s["name"]]["slope"] for s in student_rows]),
        "model": "epoch_s = intercept + slope * images (per student); per_image_s = intercept + slope * student GFLOPs fwd+bwd",
    }
    projection = build_projection(student_rows, teacher, fits, batch)
    total = time.perf_counter() - started
    result = {
        "command": args.command,
        "date": datetime.date.today().isoformat(),
        "total_wall_s": total,
        "environment": cpu_info(),
        "settings": {
            "quick": args.quick, "sizes": sizes, "batch": batch, "dataset_name": repo_relative(args.dataset_name),
            "teacher": repo_relative(args.teacher), "warmup_steps": args.warmup_steps, "seed": args.seed,
            "expected_minutes": 0.3 if args.quick else 6, "config": "configs/quickstart.yaml",
            "distillation_type": "hard",
        },
        "students": student_rows,
        "teacher": teacher,
        "breakdown": breakdown,
        "warmups": warmups,
        "runs": rows,
        "fits": fits,
        "projection": projection,
    }
    result["markdown"] = markdown_section(result)
    print("\n" + result["markdown"])

    out = Path(args.out) if Path(args.out).is_absolute() else REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(result, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text("# Scaling: epoch time on this CPU and projected GPU cost\n\n"
                                      + result["markdown"].split("\n", 2)[2])
    return result


if __name__ == "__main__":
    main()
