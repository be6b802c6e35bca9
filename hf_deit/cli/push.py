"""``scripts/push_to_hub.py``: write a student's model card and upload it (and, optionally, its demo Space)."""

from __future__ import annotations

from typing import Optional, Sequence

from transformers import HfArgumentParser

from ..config import PushArguments
from ..publish.card import write_model_card
from ..publish.push import push_folder, push_space


def _print_plan(verb: str, plan: list[tuple[str, int]], where: str) -> None:
    print(f"{verb} {len(plan)} files to {where}:")
    for name, size in plan:
        print(f"  {name:32s} {size:>12,d} bytes")


def main(argv: Optional[Sequence[str]] = None) -> list[tuple[str, int]]:
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    card = write_model_card(args.folder, repo_id=args.repo_id, dataset_id=args.dataset_id, teacher=args.teacher,
                            base_model=args.base_model, license=args.license)
    print(f"Wrote the model card {card}")
    plan = push_folder(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    verb = "Would upload" if args.dry_run else "Uploaded"
    _print_plan(verb, plan, f"{args.repo_id} ({'private' if args.private else 'public'})")
    if not args.dry_run:
        print(f"https://huggingface.co/{args.repo_id}")
    if args.space_id:
        space = push_space(args.space_id, args.repo_id, private=args.private, dry_run=args.dry_run)
        _print_plan(verb, space, f"the Space {args.space_id} (MODEL_ID={args.repo_id})")
    return plan
