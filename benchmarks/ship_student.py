"""Ship a trained student in ``models/``: its files, a full re-evaluation, its model card, a results section.

    python benchmarks/ship_student.py --run runs/students/hard --dataset_name ../shared/data/cifar10   # ~2 min

Copies what a published student consists of (weights, config, processor, the run's recipe, results and log:
``hf_deit.publish.push.ALLOW_PATTERNS``, never ``training_args.bin`` or checkpoints) into ``--dest``, then
re-measures it with ``scripts/evaluate_student.py``'s ``main`` on the full test split (with its teacher),
writes the card that ``hf_deit.publish.card`` generates, and the ``shipped_student`` section of
``docs/results/cifar10_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, describe_machine, machine  # noqa: E402

DEST = REPO / "models" / "deit-cifar10-student"
MAX_MB = 10


def copy_student(run: Path, dest: Path) -> list[str]:
    from hf_deit.publish.push import upload_plan

    dest.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in upload_plan(run) if name not in ("README.md", "training_curves.png")]
    for name in names:
        shutil.copy2(run / name, dest / name)
    return names


def resave_recipe(mode: str, dataset: str, run: Path, dest: Path) -> None:
    """The recipe of a run saved by an older hf-deit, rebuilt from the same config and flags (its keys then
    hold today's fields), with the command that trained it."""
    import cifar10_students

    from hf_deit.config import parse_config
    from hf_deit.publish.recipe import RUN_CONFIG_FILE, run_recipe

    argv = cifar10_students.mode_argv(mode, dataset, 200, 400, [], run.parent)
    recipe = run_recipe(*parse_config(argv))
    recipe["command"] = f"python benchmarks/cifar10_students.py --mode {mode} --dataset_name {dataset}"
    recipe["recipe_resaved_at_shipping"] = True
    (dest / RUN_CONFIG_FILE).write_text(json.dumps(recipe, indent=2) + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "students" / "hard"))
    parser.add_argument("--dest", default=str(DEST))
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--teacher", default="models/teacher-cifar10-resnet")
    parser.add_argument("--out", default=str(RESULTS / "shipped_student.json"))
    parser.add_argument("--resave_recipe_of_mode", default=None, choices=("hard", "soft", "none"),
                        help="rewrite the run's recipe file with today's fields (command, versions, every key) from "
                             "the same config and flags as benchmarks/cifar10_students.py --mode MODE used")
    args = parser.parse_args(argv)
    from hf_deit.cli.evaluate import main as evaluate
    from safetensors import safe_open

    from hf_deit.heads import head_rows, results_table
    from hf_deit.publish.card import write_model_card

    run, dest = Path(args.run), Path(args.dest).resolve()
    where = str(dest.relative_to(REPO)) if dest.is_relative_to(REPO) else str(dest)  # as the card and JSON name it
    copy_student(run, dest)
    if args.resave_recipe_of_mode:
        resave_recipe(args.resave_recipe_of_mode, args.dataset_name, run, dest)
    with safe_open(str(dest / "model.safetensors"), "pt") as weights:
        parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    weights_mb = (dest / "model.safetensors").stat().st_size / 2**20
    if weights_mb > MAX_MB:
        raise SystemExit(f"{dest}/model.safetensors is {weights_mb:.1f} MB, over the {MAX_MB} MB a shipped student may take")
    command = (f"python scripts/evaluate_student.py --student {where} --dataset_name {args.dataset_name}"
               f" --split test --teacher {args.teacher} --output_dir {where}")
    evaluation = evaluate(["--student", where, "--dataset_name", args.dataset_name, "--split", "test",
                           "--teacher", args.teacher, "--output_dir", where])
    write_model_card(where)
    markdown = "\n".join([
        "## The shipped student", "",
        f"`{where}` (the hard-distilled student above; {weights_mb:.1f} MB of safetensors, "
        f"{parameters / 1e6:.2f} M parameters), re-measured on all {evaluation['num_images']:,} test images:", "",
        results_table(head_rows(evaluation["metrics"])), "",
        f"Reproduce: `{command}` (its card: `{where}/README.md`). "
        f"Machine: {describe_machine(machine())}.",
    ])
    result = {"student": where, "run": str(run), "weights_mb": round(weights_mb, 2), "parameters": parameters,
              "evaluation": json.loads((dest / "evaluation.json").read_text()), "command": command,
              "markdown": markdown}
    save_section(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
