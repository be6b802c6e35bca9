"""The ``hf-deit`` command: ``hf-deit distill|train-teacher|evaluate|push [flags]``, the scripts' mains by name."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

COMMANDS = {
    "distill": ("hf_deit.cli.distill", "distil a DeiT student from a teacher (scripts/distill.py)"),
    "train-teacher": ("hf_deit.cli.train_teacher", "train or fine-tune a CNN teacher (scripts/train_teacher.py)"),
    "evaluate": ("hf_deit.cli.evaluate", "evaluate a student on a split (scripts/evaluate_student.py)"),
    "push": ("hf_deit.cli.push", "write the model card and upload a student (scripts/push_to_hub.py)"),
    "hpo": ("hf_deit.cli.hpo", "search a recipe's hyperparameters with optuna (scripts/hpo.py)"),
}


def usage() -> str:
    lines = ["usage: hf-deit COMMAND [flags]   (hf-deit COMMAND -h: the command's flags)", "", "commands:"]
    lines += [f"  {name:14s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(usage(), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from .common import run_script

    sys.argv = [f"hf-deit {argv[0]}", *argv[1:]]  # the command runs as its script would: flags from sys.argv
    run_script(importlib.import_module(COMMANDS[argv[0]][0]).main)
    return 0
