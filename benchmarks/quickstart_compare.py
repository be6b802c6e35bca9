"""The quickstart three times, same budget: no distillation vs hard vs soft.

Runs the real command (``accelerate launch scripts/distill.py --config configs/quickstart.yaml``)
once per distillation type, times it, and writes ``docs/results/quickstart.md`` / ``.json``.

    python benchmarks/quickstart_compare.py            # ~25 min on 2 CPU cores
    python benchmarks/quickstart_compare.py --types hard --extra --num_train_epochs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from hf_deit.heads import HEADS

REPO = Path(__file__).resolve().parents[1]


def run_one(distillation_type: str, output_dir: str, extra: list[str]) -> dict:
    command = [
        "accelerate", "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "scripts/distill.py", "--config", "configs/quickstart.yaml",
        "--distillation_type", distillation_type, "--output_dir", output_dir, "--disable_tqdm", "true", *extra,
    ]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    wall = time.perf_counter() - start
    results = json.loads((REPO / output_dir / "results.json").read_text())
    return {"distillation_type": distillation_type, "wall_time_s": round(wall, 1), "command": " ".join(command), **results}


def markdown(runs: list[dict]) -> str:
    lines = [
        "| distillation | " + " | ".join(f"{head.label} top-1" for head in HEADS)
        + " | train time | wall time (whole command) |",
        "|---|" + "---:|" * (len(HEADS) + 2),
    ]
    for run in runs:
        cells = [f"{100 * run[f'eval_{head.key}_top1']:.2f}" if f"eval_{head.key}_top1" in run else "-"
                 for head in HEADS]
        lines.append(
            f"| {run['distillation_type']} | " + " | ".join(cells)
            + f" | {run['train_runtime_s']:.0f} s | {run['wall_time_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["none", "hard", "soft"])
    parser.add_argument("--out", default="docs/results/quickstart")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="flags passed to every run")
    args = parser.parse_args()

    runs = []
    for kind in args.types:
        output_dir = "outputs/quickstart" if kind == "hard" else f"outputs/quickstart-{kind}"
        runs.append(run_one(kind, output_dir, args.extra))
    table = markdown(runs)
    print("\n" + table)
    environment = {
        "machine": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"environment": environment, "runs": runs}, indent=2))
    out.with_suffix(".table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
