"""Does the Trainer cost speed? ``DistillationTrainer`` vs a hand-written loop in the official DeiT style.

Same student (configs/quickstart.yaml: DeiT 128 wide, 6 layers, 32x32, 4x4 patches), same teacher
(models/teacher-cifar10-regnet), same data (the shipped sample through the same decode + crop/flip
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
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModelForImageClassification, get_cosine_schedule_with_warmup, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import write_throughput_page  # noqa: E402
from timing import RESULTS, StepTimer, machine, median, quickstart_argv  # noqa: E402

from hf_deit.config import parse_config  # noqa: E402
from hf_deit.data import attach_transforms, collate_fn, load_image_classification_data  # noqa: E402
from hf_deit.distill import build_distillation_run  # noqa: E402
from hf_deit.modeling import build_student  # noqa: E402

MODES = ("none", "soft", "hard")


def trainer_seconds_per_step(argv: list[str], steps: int) -> float:
    """(a): the product's own path, timed from the inside by a callback."""
    model_config, data_config, training_args = parse_config(argv)
    run = build_distillation_run(model_config, data_config, training_args)
    timer = StepTimer(warmup_steps=training_args.max_steps - steps)
    run.trainer.add_callback(timer)
    run.trainer.train()
    return timer.seconds_per_step


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


def reference_seconds_per_step(argv: list[str], steps: int) -> float:
    """(b): the official engine's loop, by hand, on the same student, teacher and dataset object."""
    model_config, data_config, args = parse_config(argv)
    set_seed(args.seed)
    data = load_image_classification_data(data_config, seed=args.seed)
    student, processor = build_student(model_config, data.id2label)
    teacher = AutoModelForImageClassification.from_pretrained(model_config.teacher_model_name_or_path).eval()
    teacher.requires_grad_(False)
    teacher_processor = AutoImageProcessor.from_pretrained(model_config.teacher_model_name_or_path)
    if (list(teacher_processor.image_mean), list(teacher_processor.image_std)) != (
        list(processor.image_mean), list(processor.image_std)
    ):
        raise SystemExit("The reference loop feeds the student's batch to the teacher as is: use a teacher with the "
                         "student's normalisation (the embedded one has it).")
    attach_transforms(data, processor, data_config)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
        collate_fn=collate_fn, num_workers=args.dataloader_num_workers,
    )
    optimizer = torch.optim.AdamW(parameter_groups(student, args.weight_decay), lr=args.learning_rate,
                                  betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    total_steps = args.max_steps
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.get_warmup_steps(total_steps), total_steps)
    criterion = OfficialDistillationLoss(teacher, args.distillation_type, args.distillation_alpha,
                                         args.distillation_tau)
    warmup = total_steps - steps
    student.train()
    start = None
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    for step, batch in zip(range(1, total_steps + 1), batches):
        samples, targets = batch["pixel_values"], batch["labels"]
        outputs = student(pixel_values=samples)
        loss = criterion(samples, (outputs.cls_logits, outputs.distillation_logits), targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise SystemExit(f"Loss is {loss_value}, stopping training")
        optimizer.zero_grad()
        loss.backward()
        if args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(student.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if step == warmup:
            start = time.perf_counter()
    return (time.perf_counter() - start) / steps


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
    lines = [
        "## (a) `DistillationTrainer` vs (b) a hand-written official-style loop",
        "",
        f"Training images/s, median of {settings['repeats']} interleaved runs of {settings['steps']} timed steps after "
        f"{settings['warmup']} warm-up steps; batch {settings['batch_size']}, quickstart student and teacher, "
        f"{settings['data']} (decode + crop/flip on {settings['workers']} workers), {result['environment']['device']}, "
        f"{result['environment']['torch_threads']} threads.",
        "",
        "| distillation | (a) hf-deit Trainer img/s | (b) reference loop img/s | (a)/(b) | step time vs none, (a) | floor: + teacher forward |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    none_step = 1.0 / rows["none"]["trainer_images_per_s"] * settings["batch_size"]
    for mode in MODES:
        row = rows[mode]
        step = settings["batch_size"] / row["trainer_images_per_s"]
        overhead = step / none_step
        floor_text = "1.00" if mode == "none" else f"{(floor['student_step_s'] + floor['teacher_forward_s']) / floor['student_step_s']:.2f}"
        lines.append(
            f"| {mode} | {row['trainer_images_per_s']:.1f} | {row['reference_images_per_s']:.1f} | "
            f"**{row['ratio']:.3f}** | {overhead:.2f}x | {floor_text}x |"
        )
    lines += [
        "",
        f"Alone, on one fixed batch of {settings['batch_size']}: the student's training step (forward + backward + AdamW) "
        f"takes {1000 * floor['student_step_s']:.0f} ms and the teacher's forward {1000 * floor['teacher_forward_s']:.0f} ms, "
        "so distillation cannot cost less than "
        f"{(floor['student_step_s'] + floor['teacher_forward_s']) / floor['student_step_s']:.2f}x a `none` step.",
        "",
        "Every run's numbers (images/s per repeat) are in `throughput.json`. Reproduce: "
        f"`{settings['command']}`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of (a) and (b) per mode")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dataset_name", default=None, help="default: the shipped data/cifar10-sample")
    parser.add_argument("--out", default=str(RESULTS / "throughput"), help="writes OUT.json (and the page)")
    parser.add_argument("extra", nargs="*", help="more config flags for both paths, after --")
    args = parser.parse_args(argv)
    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)

    per_run: dict[str, dict[str, list[float]]] = {mode: {"trainer": [], "reference": []} for mode in args.modes}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for mode in args.modes:
                argv = quickstart_argv(scratch, "--distillation_type", mode, "--max_steps",
                                       str(args.warmup + args.steps), *args.extra, dataset=args.dataset_name)
                model_config, _, training_args = parse_config(argv)
                batch = training_args.per_device_train_batch_size
                for path, function in (("trainer", trainer_seconds_per_step), ("reference", reference_seconds_per_step)):
                    seconds = function(argv, args.steps)
                    per_run[mode][path].append(batch / seconds)
                    print(f"repeat {repeat} {mode:>4} {path:>9}: {batch / seconds:7.1f} img/s", flush=True)
        floor = floors(argv, batch, repeats=max(10, args.steps // 2))

    rows = {}
    for mode, runs in per_run.items():
        trainer, reference = median(runs["trainer"]), median(runs["reference"])
        rows[mode] = {"trainer_images_per_s": trainer, "reference_images_per_s": reference,
                      "ratio": trainer / reference, "runs": runs}
    result = {
        "environment": machine(),
        "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "batch_size": batch,
                     "workers": training_args.dataloader_num_workers, "command": command,
                     "data": "shipped CIFAR-10 sample" if args.dataset_name is None else args.dataset_name},
        "floors": floor,
        "rows": rows,
    }
    if set(MODES) <= set(rows):
        result["markdown"] = markdown(result)
        print("\n" + result["markdown"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    if out.resolve().parent == RESULTS.resolve():
        write_throughput_page()
    return result


if __name__ == "__main__":
    main()
