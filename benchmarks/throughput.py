"""Does the Trainer cost speed? ``DistillationTrainer`` vs a hand-written loop in the official DeiT style.

Same student (configs/quickstart.yaml: DeiT 128 wide, 6 layers, 32x32, 4x4 patches), same teacher
(models/teacher-cifar10-resnet), same data (the shipped sample through the same decode + crop/flip
dataset), same batch, AdamW, cosine schedule and gradient clipping, same machine, runs interleaved:

  (a) ``hf_deit``: ``build_distillation_run`` + ``trainer.train()``, exactly what ``scripts/distill.py`` runs;
  (b) reference: a plain PyTorch loop written like ``facebookresearch/deit``'s ``engine.train_one_epoch``
      with its ``DistillationLoss`` (teacher forward under no_grad, KL at tau or CE on the argmax).

Reports training images/s for none / soft / hard, the ratio (a)/(b), and the distillation overhead
(soft or hard step time over none) next to its physical floor: one teacher forward on the batch,
measured alone, over the student's step. Writes docs/results/throughput.json and rebuilds
docs/results/throughput.md.

    python benchmarks/throughput.py                      # ~6 min on 2 CPU cores
    python benchmarks/throughput.py --steps 4 --warmup 2 --repeats 1 --out /tmp/t   # smoke
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    TrainerCallback,
    get_cosine_schedule_with_warmup,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import RESULTS, describe_machine, machine, median, quickstart_argv  # noqa: E402

from hf_deit.config import parse_config  # noqa: E402
from hf_deit.data.inputs import train_set  # noqa: E402
from hf_deit.data.transforms import collate_fn  # noqa: E402
from hf_deit.data.datasets import load_image_classification_data  # noqa: E402
from hf_deit.training.distill import build_distillation_run  # noqa: E402
from hf_deit.modeling import build_student  # noqa: E402

MODES = ("none", "soft", "hard")


class OfficialDistillationLoss(torch.nn.Module):
    """``deit/losses.py::DistillationLoss``, as written there (per-element KL mean for soft)."""

    def __init__(self, teacher: torch.nn.Module, distillation_type: str, alpha: float, tau: float) -> None:
        super().__init__()
        self.teacher, self.distillation_type, self.alpha, self.tau = teacher, distillation_type, alpha, tau

    def forward(self, inputs, outputs, labels):
        outputs, outputs_kd = outputs
        base_loss = F.cross_entropy(outputs, labels)
        if self.distillation_type == "none":
            return base_loss
        with torch.no_grad():
            teacher_outputs = self.teacher(pixel_values=inputs).logits
        if self.distillation_type == "soft":
            T = self.tau
            distillation_loss = F.kl_div(
                F.log_softmax(outputs_kd / T, dim=1), F.log_softmax(teacher_outputs / T, dim=1),
                reduction="sum", log_target=True,
            ) * (T * T) / outputs_kd.numel()
        else:
            distillation_loss = F.cross_entropy(outputs_kd, teacher_outputs.argmax(dim=1))
        return base_loss * (1 - self.alpha) + distillation_loss * self.alpha


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """timm's ``param_groups_weight_decay``: no decay on 1-d parameters and on the tokens."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        skip = parameter.ndim <= 1 or name.endswith(("cls_token", "distillation_token", "position_embeddings"))
        (no_decay if skip else decay).append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class ReferenceLoop:
    """(b): the official engine's loop, by hand, on the same student, teacher and dataset object; one
    :meth:`step` is one iteration of ``engine.train_one_epoch`` (next batch, forward, loss, backward, clip,
    AdamW, schedule)."""

    def __init__(self, argv: list[str]) -> None:
        model_config, data_config, args = parse_config(argv)
        set_seed(args.seed)
        data = load_image_classification_data(data_config, seed=args.seed)
        self.student, processor = build_student(model_config, data.id2label)
        teacher = AutoModelForImageClassification.from_pretrained(model_config.teacher_model_name_or_path).eval()
        teacher.requires_grad_(False)
        teacher_processor = AutoImageProcessor.from_pretrained(model_config.teacher_model_name_or_path)
        if (list(teacher_processor.image_mean), list(teacher_processor.image_std)) != (
            list(processor.image_mean), list(processor.image_std)
        ):
            raise SystemExit("The reference loop feeds the student's batch to the teacher as is: use a teacher with "
                             "the student's normalisation (the embedded one has it).")
        loader = torch.utils.data.DataLoader(
            train_set(data, processor, data_config), batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
            collate_fn=collate_fn, num_workers=args.dataloader_num_workers,
        )
        self.batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch
        self.optimizer = torch.optim.AdamW(parameter_groups(self.student, args.weight_decay), lr=args.learning_rate,
                                           betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, args.get_warmup_steps(args.max_steps),
                                                         args.max_steps)
        self.criterion = OfficialDistillationLoss(teacher, args.distillation_type, args.distillation_alpha,
                                                  args.distillation_tau)
        self.max_grad_norm = args.max_grad_norm
        self.student.train()

    def step(self) -> None:
        batch = next(self.batches)
        samples, targets = batch["pixel_values"], batch["labels"]
        outputs = self.student(pixel_values=samples)
        loss = self.criterion(samples, (outputs.cls_logits, outputs.distillation_logits), targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise SystemExit(f"Loss is {loss_value}, stopping training")
        self.optimizer.zero_grad()
        loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()


class Interleave(TrainerCallback):
    """Runs one reference step after each Trainer step, so both paths see the same moment of a shared,
    noisy machine (whose speed drifts by +-30% over minutes here). The Trainer's step is timed from the end
    of the previous reference step to its own end: fetch, forward, backward, optimizer, scheduler, logging."""

    def __init__(self, reference: ReferenceLoop, warmup_steps: int) -> None:
        self.reference, self.warmup_steps = reference, warmup_steps
        self.trainer_seconds: list[float] = []
        self.reference_seconds: list[float] = []
        self._resumed: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        trainer_done = time.perf_counter()
        self.reference.step()
        reference_done = time.perf_counter()
        if state.global_step > self.warmup_steps and self._resumed is not None:
            self.trainer_seconds.append(trainer_done - self._resumed)
            self.reference_seconds.append(reference_done - trainer_done)
        self._resumed = time.perf_counter()


def interleaved_step_seconds(argv: list[str], steps: int) -> tuple[list[float], list[float]]:
    """(a) ``build_distillation_run`` + ``trainer.train()``, with (b) stepping in lock-step beside it."""
    model_config, data_config, training_args = parse_config(argv)
    reference = ReferenceLoop(argv)
    run = build_distillation_run(model_config, data_config, training_args)
    interleave = Interleave(reference, warmup_steps=training_args.max_steps - steps)
    run.trainer.add_callback(interleave)
    run.trainer.train()
    return interleave.trainer_seconds, interleave.reference_seconds


def time_call(function: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return median(times)


def floors(argv: list[str], batch_size: int, repeats: int) -> dict[str, float]:
    """The student's training step and the teacher's forward on one fixed batch, each alone."""
    model_config, data_config, args = parse_config(argv)
    set_seed(args.seed)
    student, _ = build_student(model_config, {i: str(i) for i in range(10)})
    teacher = AutoModelForImageClassification.from_pretrained(model_config.teacher_model_name_or_path).eval()
    pixels = torch.randn(batch_size, 3, model_config.image_size, model_config.image_size)
    labels = torch.randint(0, 10, (batch_size,))
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def student_step():
        outputs = student(pixel_values=pixels)
        loss = F.cross_entropy(outputs.cls_logits, labels) + F.cross_entropy(outputs.distillation_logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def teacher_forward():
        with torch.no_grad():
            teacher(pixel_values=pixels)

    student.train()
    return {"student_step_s": time_call(student_step, repeats), "teacher_forward_s": time_call(teacher_forward, repeats)}


def markdown(result: dict) -> str:
    settings, rows, floor = result["settings"], result["rows"], result["floors"]
    batch = settings["batch_size"]
    floor_ratio = (floor["student_step_s"] + floor["teacher_forward_s"]) / floor["student_step_s"]
    lines = [
        "## (a) `DistillationTrainer` vs (b) a hand-written official-style loop",
        "",
        "Both paths run in one process, **step by step in lock-step** (one Trainer step, then one reference step, "
        "then the next Trainer step...), so both see the same moment of this shared machine, whose speed drifts by "
        "+-30% over minutes. Training images/s = batch / median step time over "
        f"{settings['repeats']} run(s) x {settings['steps']} timed steps per path and mode (after {settings['warmup']} "
        f"warm-up steps); batch "
        f"{batch}, quickstart student and teacher, {settings['data']} (decode + crop/flip in the main process, "
        f"{settings['workers']} workers), {describe_machine(result['environment'])}. **(a)/(b)** is the median over step pairs of (b)'s step time / (a)'s; the ratio of the mean step "
        "times is in the next column.",
        "",
        "| distillation | (a) hf-deit Trainer img/s | (b) reference loop img/s | **(a)/(b)** | (a)/(b) by mean step | "
        "step time vs `none`: (a) | (b) | floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    none = rows.get("none")
    for mode in MODES:
        if mode not in rows:
            continue
        row = rows[mode]
        overhead_a = none["trainer_images_per_s"] / row["trainer_images_per_s"] if none else float("nan")
        overhead_b = none["reference_images_per_s"] / row["reference_images_per_s"] if none else float("nan")
        floor_text = "1.00" if mode == "none" else f"{floor_ratio:.2f}"
        lines.append(
            f"| {mode} | {row['trainer_images_per_s']:.1f} | {row['reference_images_per_s']:.1f} | "
            f"**{row['ratio']:.3f}** | {row['ratio_by_mean']:.3f} | {overhead_a:.2f}x | {overhead_b:.2f}x | {floor_text}x |"
        )
    lines += [
        "",
        f"Floor: alone, on one fixed batch of {batch}, the student's training step (forward + backward + AdamW) takes "
        f"{1000 * floor['student_step_s']:.0f} ms and the teacher's forward {1000 * floor['teacher_forward_s']:.0f} ms, "
        f"so a distillation step cannot cost less than {floor_ratio:.2f}x a `none` step.",
        "",
        f"Per-step times of every run are in `throughput.json`. Reproduce: `{settings['command']}`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (each path)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dataset_name", default=None, help="default: the shipped data/cifar10-sample")
    parser.add_argument("--out", default=str(RESULTS / "throughput"), help="writes OUT.json (and the page)")
    parser.add_argument("extra", nargs="*", help="more config flags for both paths, after --")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/throughput.py", *(sys.argv[1:] if argv is None else argv)])

    steps: dict[str, dict[str, list[list[float]]]] = {mode: {"trainer": [], "reference": []} for mode in args.modes}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for mode in args.modes:
                argv = quickstart_argv(scratch, "--distillation_type", mode, "--max_steps",
                                       str(args.warmup + args.steps), *args.extra, dataset=args.dataset_name)
                batch = parse_config(argv)[2].per_device_train_batch_size
                trainer_seconds, reference_seconds = interleaved_step_seconds(argv, args.steps)
                for path, seconds in (("trainer", trainer_seconds), ("reference", reference_seconds)):
                    steps[mode][path].append(seconds)
                print(f"repeat {repeat} {mode:>4}: trainer {batch / median(trainer_seconds):6.1f} img/s, reference "
                      f"{batch / median(reference_seconds):6.1f} img/s (medians)", flush=True)
        floor = floors(argv, batch, repeats=max(10, args.steps))

    rows = {}
    for mode, runs in steps.items():
        pooled = {path: [t for run in runs[path] for t in run] for path in runs}
        by_median = {path: batch / median(times) for path, times in pooled.items()}
        by_mean = {path: batch * len(times) / sum(times) for path, times in pooled.items()}
        pairs = [b / a for a, b in zip(pooled["trainer"], pooled["reference"])]  # per step: (a) speed / (b) speed
        rows[mode] = {
            "trainer_images_per_s": by_median["trainer"], "reference_images_per_s": by_median["reference"],
            "ratio": median(pairs), "ratio_of_medians": by_median["trainer"] / by_median["reference"],
            "trainer_images_per_s_by_mean": by_mean["trainer"], "reference_images_per_s_by_mean": by_mean["reference"],
            "ratio_by_mean": by_mean["trainer"] / by_mean["reference"],
            "step_seconds": runs,
        }
    result = {
        "environment": machine(),
        "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "batch_size": batch,
                     "workers": parse_config(argv)[2].dataloader_num_workers, "command": command,
                     "data": "shipped CIFAR-10 sample" if args.dataset_name is None else args.dataset_name},
        "floors": floor,
        "rows": rows,
    }
    result["markdown"] = markdown(result)
    save_section(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
