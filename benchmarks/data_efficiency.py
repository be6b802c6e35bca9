"""How a ViT compares with a CNN as the training set shrinks, and how much of the gap distillation closes.

    python benchmarks/data_efficiency.py --dataset_name ../shared/data/cifar10            # ~2 h on 2 CPU cores
    python benchmarks/data_efficiency.py --budget gpu --dataset_name ../shared/data/cifar10  # a lent GPU
    python benchmarks/data_efficiency.py --table                                          # page + PNG only

For each training-set size n (drawn class-balanced from train with the cell's seed, ``balanced_train_samples``):
- ``cnn``: the shipped teacher's recipe (``configs/teacher_cifar10_resnet.yaml``) trained on the n images;
- ``deit_none``: the DeiT student of ``configs/data_efficiency_student.yaml`` on the labels alone;
- ``deit_hard_same_n``: the same student distilled (hard) from the ``cnn`` of the same n and seed, so the teacher
  has seen no more data than the student;
- ``deit_hard_full``: the same, from the shipped full-data teacher (what outside knowledge adds).

Every cell of a model kind takes the same number of optimisation steps at every n (the budget table below), and
is scored on the full test split. Each finished cell is written to the JSON at once; a rerun skips finished
cells, so the study spans sessions and a crash loses one cell.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, describe_machine, machine  # noqa: E402

SIZES = (1000, 2500, 5000, 10000, 25000, 50000)
MODELS = ("cnn", "deit_none", "deit_hard_same_n", "deit_hard_full")
LABELS = {"cnn": "CNN (ResNet)", "deit_none": "DeiT, labels only", "deit_hard_same_n": "DeiT, hard, teacher of the same n",
          "deit_hard_full": "DeiT, hard, full-data teacher"}
TEACHER_CONFIG = REPO / "configs" / "teacher_cifar10_resnet.yaml"
STUDENT_CONFIG = REPO / "configs" / "data_efficiency_student.yaml"
FULL_TEACHER = REPO / "models" / "teacher-cifar10-resnet"
# steps and batch of each model kind, at every n
BUDGETS = {
    "cpu": {"cnn": (80, 512), "deit": (300, 128)},
    "gpu": {"cnn": (2000, 512), "deit": (6000, 256)},
    "smoke": {"cnn": (2, 16), "deit": (2, 16)},
}


def cells(sizes, seeds_everywhere=(0,), extra_seed: int = 1) -> list[tuple[str, int, int]]:
    """(model, n, seed) in training order: the CNN of an (n, seed) before the student it teaches; a second seed
    at the smallest and the largest n."""
    order = []
    for n in sizes:
        seeds = list(seeds_everywhere) + ([extra_seed] if n in (min(sizes), max(sizes)) else [])
        for seed in seeds:
            order += [(model, n, seed) for model in MODELS]
    return order


def key(model: str, n: int, seed: int) -> str:
    return f"{model}/n={n}/seed={seed}"


def run_dir(work: Path, model: str, n: int, seed: int) -> Path:
    return work / f"{model}-n{n}-seed{seed}"


def train_cell(model: str, n: int, seed: int, args, work: Path, extra: list[str]) -> dict:
    """Train one cell through the product's own entry points; its test top-1 and wall time."""
    steps, batch = BUDGETS[args.budget]["cnn" if model == "cnn" else "deit"]
    common = ["--dataset_name", args.dataset_name, "--max_train_samples", str(n), "--balanced_train_samples", "true",
              "--max_steps", str(steps), "--per_device_train_batch_size", str(batch), "--seed", str(seed),
              "--output_dir", str(run_dir(work, model, n, seed)), "--eval_strategy", "no", "--save_strategy", "no",
              "--disable_tqdm", "true", *extra]  # unknown flags of this script go to every cell
    start = time.perf_counter()
    if model == "cnn":
        from hf_deit.cli.train_teacher import main as train_teacher

        metrics = train_teacher(["--config", args.teacher_config, *common])
        top1 = metrics["eval_top1"]
    else:
        from hf_deit.cli.distill import main as distill

        teacher = {"deit_none": FULL_TEACHER, "deit_hard_full": FULL_TEACHER,
                   "deit_hard_same_n": run_dir(work, "cnn", n, seed)}[model]
        mode = "none" if model == "deit_none" else "hard"
        metrics = distill(["--config", args.student_config, *common, "--distillation_type", mode,
                           "--teacher_model_name_or_path", str(args.full_teacher if teacher == FULL_TEACHER else teacher)])
        top1 = metrics["eval_fused_top1"] if mode == "hard" else metrics.get("eval_fused_top1", metrics.get("eval_cls_top1"))
    return {"model": model, "n": n, "seed": seed, "top1": top1, "test_images": metrics.get("eval_images"),
            "steps": steps, "batch": batch, "minutes": round((time.perf_counter() - start) / 60, 2)}


def run_study(args, results: Path, extra: list[str]) -> dict:
    state = json.loads(results.read_text()) if results.exists() else {"cells": {}}
    state["budget"] = {"name": args.budget, **{kind: {"steps": s, "batch": b} for kind, (s, b) in
                                               BUDGETS[args.budget].items()}}
    work = Path(args.work_dir)
    for model, n, seed in cells(tuple(args.sizes)):
        name = key(model, n, seed)
        if name in state["cells"]:
            continue
        state["cells"][name] = train_cell(model, n, seed, args, work, extra)
        results.write_text(json.dumps(state, indent=2) + "\n")  # each cell as soon as it is done
        print(name, state["cells"][name], flush=True)
    return state


def table(state: dict, png: Path, environment: dict) -> dict:
    by = {}
    for cell in state["cells"].values():
        by.setdefault((cell["model"], cell["n"]), []).append(cell["top1"])
    sizes = sorted({n for _, n in by})
    lines = ["| n | " + " | ".join(LABELS[m] for m in MODELS) + " | hard (same n) - none | hard (full) - none |",
             "|---:|" + "---:|" * (len(MODELS) + 2)]
    for n in sizes:
        means = {m: sum(by[(m, n)]) / len(by[(m, n)]) for m in MODELS if (m, n) in by}
        cells_ = [_cell(by.get((m, n))) for m in MODELS]
        gains = [f"{100 * (means[m] - means['deit_none']):+.1f}" if m in means and "deit_none" in means else "—"
                 for m in ("deit_hard_same_n", "deit_hard_full")]
        lines.append(f"| {n:,} | " + " | ".join(cells_) + " | " + " | ".join(gains) + " |")
    if sizes:
        plot(by, sizes, png)
    budget = state.get("budget", {})
    markdown = "\n".join([
        "# Data efficiency: a ViT against a CNN as the training set shrinks", "",
        reading(by, sizes), "",
        budget_reading(budget, sizes, state.get("full_teacher_train_top1")), "",
        "Test top-1 (%) on all 10,000 test images; a ± is half the gap between the two seeds where there are two. "
        f"Every cell of a kind takes the same steps at every n (budget `{budget.get('name')}`: CNN "
        f"{budget.get('cnn', {}).get('steps')} steps of {budget.get('cnn', {}).get('batch')}, DeiT "
        f"{budget.get('deit', {}).get('steps')} steps of {budget.get('deit', {}).get('batch')}).", "",
        *lines, "", "![test top-1 against training-set size](data_efficiency.png)", "",
        "Reproduce: `python benchmarks/data_efficiency.py --dataset_name ../shared/data/cifar10` "
        f"(resumable; `--table` rebuilds this page). Wall time: {wall_minutes(state):.0f} min of training over "
        f"{len(state['cells'])} cells. Machine: {describe_machine(environment)}.",
    ])
    return {**state, "machine": environment, "markdown": markdown}


def wall_minutes(state: dict) -> float:
    return sum(cell["minutes"] for cell in state["cells"].values())


def _cell(values) -> str:
    if not values:
        return "—"
    mean = sum(values) / len(values)
    spread = f" ± {50 * (max(values) - min(values)):.1f}" if len(values) > 1 else ""
    return f"{100 * mean:.1f}{spread}"


def reading(by: dict, sizes: list[int], test_images: int = 10_000) -> str:
    """The sentences that read the curves: where the ViT crosses the CNN, and what distillation recovers at each
    n, each gain marked against two standard errors of a difference of two test accuracies."""
    def mean(model, n):
        values = by.get((model, n))
        return sum(values) / len(values) if values else math.nan

    def gains(model) -> str:
        parts = []
        for n in sizes:
            a, b = mean(model, n), mean("deit_none", n)
            if math.isnan(a - b):
                continue
            se = math.sqrt((a * (1 - a) + b * (1 - b)) / test_images)
            parts.append(f"{100 * (a - b):+.1f} at {n:,}" + ("" if abs(a - b) >= 2 * se else " (within noise)"))
        return ", ".join(parts)

    if not sizes:
        return "No cell has finished yet."
    above = [n for n in sizes if mean("deit_none", n) > mean("cnn", n)]
    crossing = (f"The ViT trained on labels alone overtakes the CNN from n = {min(above):,}" if above else
                f"The ViT trained on labels alone stays below the CNN at every n up to {max(sizes):,}")
    return (f"{crossing}. Distillation from a CNN of the same n changes it by {gains('deit_hard_same_n')} points; "
            f"from the full-data teacher by {gains('deit_hard_full')} points (a gain is within noise under two "
            f"standard errors of the difference on {test_images:,} test images).")


def budget_reading(budget: dict, sizes: list[int], full_teacher_train_top1: float | None) -> str:
    """What the fixed budget means for the curves: how many epochs each n gets, and why hard labels from a
    teacher that has seen the student's images carry little beyond the labels themselves."""
    steps, batch = budget.get("deit", {}).get("steps"), budget.get("deit", {}).get("batch")
    if not (steps and batch and sizes):
        return ""
    seen = steps * batch
    text = (f"Each DeiT cell sees {seen:,} training images ({steps} steps of {batch}): "
            f"{seen / min(sizes):.0f} epochs at n = {min(sizes):,}, {seen / max(sizes):.1f} at n = {max(sizes):,}. "
            "At this budget the curves measure what a fixed number of steps makes of more data; the GPU budget "
            "(`--budget gpu`) trains long enough for the largest n to be seen many times.")
    if full_teacher_train_top1 is not None:
        text += (f" The full-data teacher agrees with the true label on {100 * full_teacher_train_top1:.1f} % of "
                 "the training images (it was trained on them), so its hard labels are nearly the labels "
                 "again. That fits the same-n gains too: they are largest where the same-n CNN has seen each of its "
                 "images least (under one epoch at the largest n), so that its labels differ most from the true ones; "
                 "this study does not measure the same-n teachers' agreement.")
    return text


def full_teacher_train_top1(args, images: int = 2000) -> float:
    """The full-data teacher's top-1 against the true labels on the first ``images`` training images, through
    the same wrapper and preprocessing as distillation: how much its hard labels can differ from the labels."""
    import torch
    from datasets import load_dataset
    from transformers import AutoImageProcessor

    from hf_deit.teacher import load_teacher

    train = load_dataset(args.dataset_name, split="train").select(range(images))
    processor = AutoImageProcessor.from_pretrained(REPO / "models" / "deit-cifar10-student")
    teacher = load_teacher(args.full_teacher, train.features["label"].names, processor)
    pixels = processor([image.convert("RGB") for image in train["img"]], return_tensors="pt")["pixel_values"]
    predictions = torch.cat([teacher(batch).argmax(-1) for batch in pixels.split(250)])
    return (predictions == torch.tensor(train["label"])).float().mean().item()


def plot(by: dict, sizes: list[int], png: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    axis = figure.subplots()
    for model in MODELS:
        points = [(n, by[(model, n)]) for n in sizes if (model, n) in by]
        if not points:
            continue
        xs = [n for n, _ in points]
        means = [100 * sum(v) / len(v) for _, v in points]
        errors = [50 * (max(v) - min(v)) for _, v in points]
        axis.errorbar(xs, means, yerr=errors, marker="o", markersize=4, capsize=3, label=LABELS[model])
    axis.set_xscale("log")
    axis.set_xlabel("training images (class-balanced)")
    axis.set_ylabel("test top-1 (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(png)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--work_dir", default=str(REPO / "runs" / "data_efficiency"))
    parser.add_argument("--out", default=str(RESULTS / "data_efficiency.json"))
    parser.add_argument("--table", action="store_true", help="only rebuild the page and the PNG")
    parser.add_argument("--teacher_config", default=str(TEACHER_CONFIG), help="the CNN's recipe")
    parser.add_argument("--student_config", default=str(STUDENT_CONFIG), help="the DeiT's recipe")
    parser.add_argument("--full_teacher", default=str(FULL_TEACHER), help="the full-data teacher")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    state = json.loads(out.read_text()) if args.table and out.exists() else (
        {"cells": {}} if args.table else run_study(args, out, extra))
    if "full_teacher_train_top1" not in state and Path(args.dataset_name).exists():
        state["full_teacher_train_top1"] = full_teacher_train_top1(args, 64 if args.budget == "smoke" else 2000)
    environment = state.get("machine") if args.table and state.get("machine") else machine()  # where it trained
    result = table(state, out.with_suffix(".png"), environment)
    save_section(result, out)
    out.with_suffix(".md").write_text(result["markdown"] + "\n")
    return result


if __name__ == "__main__":
    main()
