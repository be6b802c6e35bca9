"""How often hard distillation's targets differ from the labels: the teacher's argmax on the training views.

Hard distillation trains the distillation token on the teacher's argmax of each augmented view, the class token
on the label. Where the two agree, the distillation token learns nothing the class token does not. This runs a
student config's own training pipeline (``--config``: its data, augmentation and teacher, through
``build_distillation_run``) for ``--epochs`` passes over the training images, without training anything, and
counts the views whose teacher argmax is not the label.

    python benchmarks/teacher_agreement.py --dataset_name ../shared/data/cifar10     # ~5 min on 2 CPU cores

Writes ``--out`` (default ``docs/results/teacher_agreement.json``, a section of ``docs/results/cifar10_cpu.md``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, describe_machine, machine  # noqa: E402

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


def section(counts: dict[str, int], config: Path, epochs: int, dataset: str, environment: dict) -> str:
    share = counts["differ"] / counts["views"]
    error = math.sqrt(share * (1 - share) / counts["views"])
    try:
        shown = config.resolve().relative_to(REPO)
    except ValueError:
        shown = config
    return "\n".join([
        "## How often hard distillation's targets differ from the labels",
        "",
        f"The teacher of `{shown}` on the training views its student sees ({epochs} passes over the training "
        "images through the config's own augmentation, nothing trained): where its argmax is the label, the "
        "distillation token's target is the class token's.",
        "",
        "| training views | teacher argmax ≠ label | share |",
        "|---:|---:|---:|",
        f"| {counts['views']:,} | {counts['differ']:,} | {100 * share:.2f} % ± {100 * error:.2f} |",
        "",
        f"Reproduce: `python benchmarks/teacher_agreement.py --dataset_name {dataset} --config {shown} "
        f"--epochs {epochs}`. Machine: {describe_machine(environment)}.",
    ])


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
        run = build_distillation_run(*parse_config(flags))
        counts = count_disagreements(run.trainer, args.epochs)
    environment = machine()
    result = {**counts, "share": counts["differ"] / counts["views"], "epochs": args.epochs, "config": args.config,
              "machine": environment,
              "markdown": section(counts, Path(args.config), args.epochs, args.dataset_name, environment)}
    save_section(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
