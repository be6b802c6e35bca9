"""The DeiT paper's distillation table (Table 3 rows) at this machine's scale.

Every student row uses the same student, data, seed and compute budget; only the distillation
setting changes. Writes ``docs/results/cifar10_table.md`` / ``.json`` and a PNG of test-accuracy
curves.

    python benchmarks/reproduce_table.py --budget cpu --dataset_name ../shared/data/cifar10
    python benchmarks/reproduce_table.py --budget gpu   # the full recipe, DeiT-Ti/4, on a GPU

Budgets (``--budget``): ``smoke`` (seconds, for tests), ``cpu`` (about an hour on 2 CPU cores),
``gpu`` (the official recipe for as many epochs as you give it with ``--epochs``). ``--train_samples``
and ``--epochs`` scale any budget up or down.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from hf_deit.config import load_yaml, yaml_to_argv
from hf_deit.cli.distill import main as distill

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from timing import QUICKSTART_MEASURED_WITH  # noqa: E402

BUDGETS: dict[str, dict] = {
    # A few seconds: checks the script end to end (used by the tests).
    "smoke": {
        "train": 64, "eval": 32, "epochs": 1, "batch": 16,
        "student": ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2",
                    "--intermediate_size", "64", "--patch_size", "8"],
        "recipe": [],
    },
    # 2 CPU cores, about 25 minutes: the quickstart student on a 5k-image subset of the full train
    # split for 5 epochs, crop + flip only (the heavy recipe needs hundreds of epochs to pay off and
    # would only add noise at this budget); evaluated on 2k test images every epoch.
    "cpu": {
        "train": 5000, "eval": 2000, "epochs": 5, "batch": 64,
        "student": ["--hidden_size", "128", "--num_hidden_layers", "6", "--num_attention_heads", "4",
                    "--intermediate_size", "512", "--patch_size", "4"],
        "recipe": ["--learning_rate", "0.001", "--weight_decay", "0.05", "--warmup_steps", "0.1"],
    },
    # One GPU: DeiT-Ti/4 at 32x32 on the full dataset with the official recipe.
    "gpu": {
        "train": None, "eval": None, "epochs": 100, "batch": 128,
        "student": ["--student_preset", "tiny", "--patch_size", "4"],
        "recipe": REPO / "configs" / "recipes" / "deit_official.yaml",
    },
}

# Keys the table itself controls (per row or per budget), never taken from a recipe file.
RUN_KEYS = ("dataset_name", "student_preset", "image_size", "patch_size", "teacher_model_name_or_path",
            "output_dir", "num_train_epochs", "per_device_train_batch_size", "distillation_type", "seed")

ROWS = [
    # (row label, flags, reported heads)
    ("student, no distillation", ["--distillation_type", "none"], ("cls", "distill", "fused")),
    ("usual distillation (soft, class token)", ["--distillation_token", "false", "--distillation_type", "soft"], ("cls",)),
    ("usual distillation (hard, class token)", ["--distillation_token", "false", "--distillation_type", "hard"], ("cls",)),
    ("DeiT⚗ soft", ["--distillation_type", "soft"], ("cls", "distill", "fused")),
    ("DeiT⚗ hard", ["--distillation_type", "hard"], ("cls", "distill", "fused")),
]
TRANSFORMER_TEACHER_ROW = "DeiT⚗ hard, transformer teacher"


def budget_flags(name: str, epochs: Optional[int]) -> list[str]:
    budget = BUDGETS[name]
    flags = ["--num_train_epochs", str(epochs or budget["epochs"]), "--per_device_train_batch_size", str(budget["batch"])]
    if budget["train"]:
        flags += ["--max_train_samples", str(budget["train"])]
    if budget["eval"]:
        flags += ["--max_eval_samples", str(budget["eval"])]
    flags += budget["student"]
    recipe = budget["recipe"]
    if isinstance(recipe, Path):  # the recipe's training keys; rows and budget set the rest
        values = load_yaml(recipe)
        for key in RUN_KEYS:
            values.pop(key, None)
        recipe = yaml_to_argv(values)
    return flags + recipe


def run_row(label: str, flags: list[str], common: list[str], output_dir: Path) -> dict:
    print(f"\n=== {label} ===", flush=True)
    start = time.perf_counter()
    metrics = distill(common + flags + ["--output_dir", str(output_dir)])
    wall = time.perf_counter() - start
    state = json.loads((output_dir / "trainer_state.json").read_text())
    curve = [
        (entry["epoch"], entry.get("eval_fused_top1", entry.get("eval_cls_top1")))
        for entry in state["log_history"]
        if "eval_cls_top1" in entry and "epoch" in entry
    ]
    return {"row": label, "flags": flags, "wall_time_s": round(wall, 1), "metrics": metrics, "curve": curve}


def pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table(rows: list[dict], teacher: dict) -> str:
    lines = [
        "| row | class head | distillation head | average (fused) | wall time |",
        "|---|---:|---:|---:|---:|",
        f"| teacher: {teacher['name']} | {pct(teacher['top1'])} | - | - | trained separately |",
    ]
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"| {row['row']} | {pct(m.get('eval_cls_top1'))} | {pct(m.get('eval_distill_top1'))} | "
            f"{pct(m.get('eval_fused_top1'))} | {row['wall_time_s']:.0f} s |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        if row["curve"]:
            epochs, accuracy = zip(*row["curve"])
            axis.plot(epochs, [100 * a for a in accuracy], marker="o", label=row["row"])
    axis.set_xlabel("epoch")
    axis.set_ylabel("test top-1 (%)")
    axis.set_title("fused head (class head for the plain-ViT rows)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--train_samples", type=int, default=None, help="override the budget's train subset")
    parser.add_argument("--dataset_name", default="uoft-cs/cifar10")
    parser.add_argument("--teacher", default="models/teacher-cifar10-resnet")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work_dir", default="outputs/table")
    parser.add_argument("--out", default="docs/results/cifar10_table")
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    common = [
        "--config", str(REPO / "configs" / "quickstart.yaml"), "--dataset_name", args.dataset_name,
        "--teacher_model_name_or_path", args.teacher, "--seed", str(args.seed), "--eval_strategy", "epoch",
        "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "50", *QUICKSTART_MEASURED_WITH,
    ] + budget_flags(args.budget, args.epochs)
    if args.train_samples:
        common += ["--max_train_samples", str(args.train_samples)]

    started = time.perf_counter()
    rows = [run_row(label, flags, common, work / f"row{i}") for i, (label, flags, _) in enumerate(ROWS)]
    # The transformer teacher is the trained DeiT of the "no distillation" row (same budget as the students).
    transformer_teacher = work / "row0"
    rows.append(
        run_row(
            TRANSFORMER_TEACHER_ROW,
            ["--distillation_type", "hard", "--teacher_model_name_or_path", str(transformer_teacher)],
            common,
            work / "row_transformer_teacher",
        )
    )
    teacher = {
        "name": Path(args.teacher).name,
        "top1": rows[-2]["metrics"].get("eval_teacher_top1"),
        "transformer_teacher_top1": rows[-1]["metrics"].get("eval_teacher_top1"),
    }
    total = time.perf_counter() - started
    markdown = table(rows, teacher)
    print("\n" + markdown)

    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, out.with_suffix(".png"))
    result = {
        "budget": args.budget,
        "budget_settings": {k: v for k, v in BUDGETS[args.budget].items()},
        "epochs": args.epochs or BUDGETS[args.budget]["epochs"],
        "dataset_name": args.dataset_name,
        "seed": args.seed,
        "teacher": teacher,
        "total_wall_time_s": round(total, 1),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()},
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".table.md").write_text(markdown + "\n")
    return result


if __name__ == "__main__":
    main()
