"""How often hard distillation's targets differ from the labels: the teacher's argmax on the training views.

Hard distillation trains the distillation token on the teacher's argmax of each augmented view, the class token
on the label. Where the two agree, the distillation token learns nothing the class token does not. This runs a
student config's own training pipeline (``--config``: its data, augmentation and teacher, through
``build_distillation_run``) for ``--epochs`` passes over the training images, without training anything, and
counts the views whose teacher argmax is not the label.

    python benchmarks/teacher_agreement.py --dataset_name ../shared/data/cifar10     # ~6 min on 2 CPU cores
    python benchmarks/teacher_agreement.py --dataset_name ../shared/data/cifar10 --random_crop_padding 2

Flags it does not know are the config's overrides (as ``scripts/distill.py`` takes them); each set of overrides
adds a row to the table, or replaces its own.

Writes ``--out`` (default ``docs/results/teacher_agreement.json``, a section of ``docs/results/cifar10_cpu.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from cifar10_students import shown  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, machine, machines_line  # noqa: E402

CONFIG = REPO / "configs" / "cifar10_cpu_student_w128_patch_drop.yaml"


def count_disagreements(trainer, epochs: int) -> dict[str, int]:
    """Views seen, and those whose teacher argmax differs from the label, over ``epochs`` passes of the trainer's
    own training data loader (a new random augmentation of every image in each pass)."""
    seen = differ = 0
    for epoch in range(epochs):
        loader = trainer.get_train_dataloader()
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for batch in loader:
            with torch.no_grad():
                predicted = trainer.teacher(batch["pixel_values"]).argmax(-1)
            labels = batch["labels"]
            labels = labels.argmax(-1) if labels.dim() > 1 else labels  # mixed (soft) labels: their top class
            seen += labels.numel()
            differ += int((predicted != labels).sum())
    return {"views": seen, "differ": differ}


def section(rows: list[dict], config: str, dataset: str) -> str:
    """One row per measured pipeline (the config's own, and each set of overrides run since)."""
    lines = ["## How often hard distillation's targets differ from the labels", "",
             f"The teacher of `{config}` on the training views its student sees (passes over the training images "
             "through the config's own augmentation, with the row's overrides; nothing trained): where its argmax "
             "is the label, the distillation token's target is the class token's.", "",
             "| overrides | crop padding (px) | passes | training views | teacher argmax ≠ label | share |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        share = row["differ"] / row["views"]
        error = math.sqrt(share * (1 - share) / row["views"])
        lines.append(f"| {row['overrides'] or 'none (the config as committed)'} | {row['crop_padding']} | "
                     f"{row['epochs']} | {row['views']:,} | {row['differ']:,} | {100 * share:.2f} % ± "
                     f"{100 * error:.2f} |")
    lines += ["", f"Reproduce a row: `python benchmarks/teacher_agreement.py --dataset_name {dataset} --config {config} "
              "--epochs PASSES OVERRIDES`. " + machines_line({row["overrides"] or "as committed": row["machine"]
                                                             for row in rows})]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "teacher_agreement.json"))
    args, extra = parser.parse_known_args(argv)

    from hf_deit.config import parse_config
    from hf_deit.training.distill import build_distillation_run

    with tempfile.TemporaryDirectory() as scratch:
        flags = ["--config", args.config, "--dataset_name", args.dataset_name, "--distillation_type", "hard",
                 "--output_dir", scratch, "--eval_strategy", "no", "--save_strategy", "no", *extra]
        model_config, data_config, training_args = parse_config(flags)
        run = build_distillation_run(model_config, data_config, training_args)
        counts = count_disagreements(run.trainer, args.epochs)
    out, config = Path(args.out), shown(Path(args.config))
    row = {**counts, "overrides": " ".join(extra), "crop_padding": data_config.random_crop_padding,
           "epochs": args.epochs, "machine": machine()}
    saved = json.loads(out.read_text()) if out.exists() else {}
    same_table = saved.get("config") == config  # another config starts a new table
    rows = [old for old in saved.get("rows", []) if same_table and old["overrides"] != row["overrides"]] + [row]
    result = {"config": config, "rows": rows, "markdown": section(rows, config, args.dataset_name)}
    save_section(result, out)
    return result


if __name__ == "__main__":
    main()
