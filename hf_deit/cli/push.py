"""``scripts/push_to_hub.py``: write a student's model card and upload it (and, optionally, its demo Space)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..config import PushArguments, parse_config
from ..publish.card import model_card_for, write_model_card
from ..publish.push import published_card_text, push_folder, push_space


def _print_plan(verb: str, plan: list[tuple[str, int]], where: str) -> None:
    print(f"{verb} {len(plan)} files to {where}:")
    for name, size in plan:
        print(f"  {name:32s} {size:>12,d} bytes")


def main(argv: Optional[Sequence[str]] = None) -> list[tuple[str, int]]:
    (args,) = parse_config(argv, (PushArguments,))
    card_kwargs = {"repo_id": args.repo_id, "dataset_id": args.dataset_id, "teacher": args.teacher,
                   "base_model": args.base_model, "license": args.license,
                   "existing_text": published_card_text(args.repo_id)}  # keep edits made on the Hub
    if args.dry_run:
        with tempfile.TemporaryDirectory() as scratch:  # the card and curves as they would be, away from the folder
            card = write_model_card(args.folder, out_dir=scratch, **card_kwargs)
            generated = {path.name: path.stat().st_size for path in Path(scratch).iterdir()}
        print(f"Would write the model card {Path(args.folder) / card.name} ({generated[card.name]:,} bytes); "
              "a dry run changes nothing on disk.")
        plan = sorted({**dict(push_folder(args.folder, args.repo_id, dry_run=True)), **generated}.items())
    else:
        print(f"Wrote the model card {write_model_card(args.folder, **card_kwargs)}")
        plan = push_folder(args.folder, args.repo_id, private=args.private)
    verb = "Would upload" if args.dry_run else "Uploaded"
    _print_plan(verb, plan, f"{args.repo_id} ({'private' if args.private else 'public'})")
    if not args.dry_run:
        print(f"https://huggingface.co/{args.repo_id}")
    if args.space_id:
        space = push_space(args.space_id, args.repo_id, private=args.private, dry_run=args.dry_run)
        _print_plan(verb, space, f"the Space {args.space_id} (MODEL_ID={args.repo_id})")
    return plan
