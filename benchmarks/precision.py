"""Precision and kernels: what each switch does to training speed and to accuracy, in one table.

One short quickstart run per variant (same seed, data order and steps), through the product's own path
(``build_distillation_run`` + ``trainer.train()``): images/s over the steps after warm-up (so a
compilation is not counted; its one-off cost is reported separately), then top-1 of the fused head on
the sample's 1,000 test images. Variants are switches users set in a config:

  attn_implementation: sdpa | eager         student attention kernel
  bf16: true (+ use_cpu on CPU)             autocast of student and teacher
  teacher_dtype: bfloat16, teacher_channels_last: true
  torch_compile: true, teacher_compile: true
  fp16: true                                GPU only

    python benchmarks/precision.py                         # ~15 min on 2 CPU cores (3 rounds)
    python benchmarks/precision.py --steps 6 --warmup 3 --repeats 1 --variants fp32_sdpa eager --out /tmp/p   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import RESULTS, StepTimer, describe_machine, machine, median, quickstart_argv, same_machine  # noqa: E402

from hf_deit.config import parse_config  # noqa: E402
from hf_deit.training.distill import build_distillation_run  # noqa: E402

CPU_FLAGS = ("--use_cpu", "true")
BASELINE = "fp32_sdpa"
VARIANTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # name: (label, flags, device it applies to: any | gpu)
    "fp32_sdpa": ("fp32, SDPA attention (default)", (), "any"),
    "eager": ("fp32, eager attention", ("--attn_implementation", "eager"), "any"),
    "bf16_autocast": ("bf16 autocast", ("--bf16", "true"), "any"),
    "teacher_bf16_cl": ("teacher bf16 + channels_last", ("--teacher_dtype", "bfloat16", "--teacher_channels_last", "true"), "any"),
    "compile_student": ("torch.compile student", ("--torch_compile", "true"), "any"),
    "compile_both": ("torch.compile student + teacher", ("--torch_compile", "true", "--teacher_compile", "true"), "any"),
    "fp16_autocast": ("fp16 autocast", ("--fp16", "true"), "gpu"),
}


def run_variant(name: str, steps: int, warmup: int, scratch: str, eval_samples: int, dataset: str | None,
                more: tuple[str, ...] = ()) -> dict:
    label, flags, device = VARIANTS[name]
    if device == "gpu" and not torch.cuda.is_available():
        return {"variant": name, "label": label, "skipped": "needs a GPU (none on this machine)"}
    extra = list(flags)
    if not torch.cuda.is_available() and "--bf16" in flags:
        extra += CPU_FLAGS  # transformers asks for use_cpu to autocast bf16 on a CPU
    argv = quickstart_argv(f"{scratch}/{name}", "--max_steps", str(warmup + steps), "--logging_steps", "1000",
                           "--max_eval_samples", str(eval_samples), *more, *extra, dataset=dataset)
    model_config, data_config, training_args = parse_config(argv)
    run = build_distillation_run(model_config, data_config, training_args)
    timer = StepTimer(warmup_steps=warmup)
    run.trainer.add_callback(timer)
    start = time.perf_counter()
    run.trainer.train()
    total = time.perf_counter() - start
    batch = training_args.per_device_train_batch_size
    images_per_s = batch / timer.seconds_per_step
    warmup_s = total - timer.seconds_per_step * steps
    metrics = run.trainer.evaluate()
    return {
        "variant": name, "label": label, "flags": " ".join(extra), "images_per_s": images_per_s,
        "images_per_s_median": batch / timer.median_seconds_per_step,
        "warmup_seconds": warmup_s, "warmup_steps": warmup, "fused_top1": metrics["eval_fused_top1"],
        "teacher_top1": metrics.get("eval_teacher_top1"), "eval_loss": metrics["eval_loss"],
    }


def combine_rounds(runs: list[dict], baseline_runs: list[dict]) -> dict:
    """One row from a variant's runs, one per round.

    Speed: the median over rounds of each run's median step. "vs default": the median over rounds of the
    ratio to the default variant's run *of the same round*, so that the shared machine's drift between
    rounds (+-30% over minutes here) cancels. Warm-up: the first round's (a cold torch.compile).
    """
    first = runs[0]
    if "skipped" in first:
        return first
    row = {key: value for key, value in first.items() if key != "round"}
    row["rounds"] = [{key: run[key] for key in ("images_per_s_median", "images_per_s", "warmup_seconds",
                                                "fused_top1")} for run in runs]
    row["images_per_s_median"] = median([run["images_per_s_median"] for run in runs])
    row["images_per_s"] = median([run["images_per_s"] for run in runs])
    by_round = {run["round"]: run for run in baseline_runs if "skipped" not in run}
    if all(run["round"] in by_round for run in runs):
        row["vs_default"] = median([run["images_per_s_median"] / by_round[run["round"]]["images_per_s_median"]
                                    for run in runs])
    return row


def markdown(result: dict) -> str:
    settings = result["settings"]
    rows = result["rows"]
    base = next((r for r in rows if r["variant"] == BASELINE and "images_per_s" in r), None)
    lines = [
        "## Precision and kernels",
        "",
        f"Short quickstart runs, one per variant: {settings['warmup']} warm-up + {settings['steps']} timed steps of "
        f"batch 64 (hard distillation, same seed and data order), then the fused head's top-1 on "
        f"{settings['eval_samples']} test images of the sample. {describe_machine(result['environment'])}.",
        *([""] if settings.get("repeats", 1) > 1 else []),
        *([f"{settings['repeats']} rounds over all variants, in an order rotated each round. Speed: median over the "
           "rounds of each run's median step time. **vs default**: median over the rounds of the ratio to the "
           "default's run of the same round (the shared machine drifts by +-30% over minutes; a ratio within a round "
           "cancels it). Warm-up: the first round's, with an empty compile cache per variant, so a cold `torch.compile`; "
           "the first variant that compiles in the process also pays inductor's one-time start-up, as a user's first "
           "run does. Top-1: the first round's (same seed "
           "and data order in every round)."] if settings.get("repeats", 1) > 1 else []),
        "",
        "| variant | config flags | train img/s (median step) | vs default | mean img/s | warm-up (incl. compile) | "
        "fused top-1 | Δ top-1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['label']} | `{' '.join(VARIANTS[row['variant']][1])}` | - | - | - | - | - | "
                         f"not run: {row['skipped']} |")
            continue
        median_speed = row.get("images_per_s_median")
        base_speed = base.get("images_per_s_median") if base else None
        if "vs_default" in row:
            speed = f"{row['vs_default']:.2f}x"
        elif median_speed and base_speed:
            speed = f"{median_speed / base_speed:.2f}x"
        else:  # measured before per-step times were kept: compare means
            speed = f"{row['images_per_s'] / base['images_per_s']:.2f}x (means)" if base else "-"
        delta = f"{100 * (row['fused_top1'] - base['fused_top1']):+.1f}" if base else "-"
        lines.append(
            f"| {row['label']} | `{row['flags'] or '(none)'}` | {f'{median_speed:.1f}' if median_speed else '-'} | "
            f"{speed} | {row['images_per_s']:.1f} | {row['warmup_seconds']:.0f} s | {100 * row['fused_top1']:.1f} | {delta} |"
        )
    if any("images_per_s_median" not in row for row in rows if "skipped" not in row):
        lines += ["", "A row without a median was measured before the benchmark recorded per-step times; its speed "
                      "is the mean over its timed steps."]
    by_command: dict[str, list[str]] = {}
    for row in rows:
        by_command.setdefault(row.get("command", settings["command"]), []).append(row["label"])
    if len(by_command) == 1:
        lines += ["", f"Reproduce: `{next(iter(by_command))}`."]
    else:  # rows kept by --update come from another invocation
        lines += ["", "Reproduce: " + "; ".join(f"`{command}` ({', '.join(labels)})"
                                                for command, labels in by_command.items()) + "."]
    return "\n".join(lines)


def compile_cache(folder: str):
    """Inductor's compile cache in ``folder``, its in-memory caches cleared on the way in and out.

    Each variant gets its own folder, empty in the first round: that round's warm-up is a cold
    ``torch.compile``, as in a user's first run (inductor keeps compiled graphs on disk across processes, and
    one variant would otherwise warm the cache for the next). Later rounds find their own variant's cache.
    """
    try:
        from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    except ImportError:  # another torch layout: fall back to the variable (read lazily by inductor)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        return contextlib.nullcontext()
    return temporary_cache_dir(folder)


def rows_measured_here(previous: dict, rerun: set[str]) -> dict[str, dict]:
    """The rows of an earlier result that ``--update`` may keep: those timed on this same kind of machine.

    A row from another CPU (other instruction sets: bf16 went from 12x slower than fp32 to 2x faster between
    two of this project's machines), another torch or thread count would sit in the table as if comparable.
    """
    kept = {}
    for row in previous.get("rows", []):
        if row["variant"] in rerun:
            continue
        environment = row.get("environment", previous.get("environment", {}))
        if same_machine(environment, machine()):
            kept[row["variant"]] = row
        else:
            print(f"--update: dropping the {row['variant']} row, timed on {describe_machine(environment)}, not on "
                  f"this machine ({describe_machine(machine())}): re-run it with --variants {row['variant']}.",
                  file=sys.stderr)
    return kept


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--eval_samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over all variants; the machine's drift between runs cancels in per-round ratios")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--dataset_name", default=None)
    parser.add_argument("--out", default=str(RESULTS / "precision"))
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of variants not run now from the existing OUT.json (re-run one variant)")
    parser.add_argument("extra", nargs="*", help="more config flags for every variant, after --")
    args = parser.parse_args(argv)
    out = Path(args.out)
    kept = {}
    if args.update and out.with_suffix(".json").exists():
        kept = rows_measured_here(json.loads(out.with_suffix(".json").read_text()), set(args.variants))
    command = " ".join(["python benchmarks/precision.py", *(sys.argv[1:] if argv is None else argv)])
    runs: dict[str, list[dict]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.repeats):
            # Rotate the order each round, so no variant always runs first (cold caches) or last.
            shift = round_index % len(args.variants)
            for name in args.variants[shift:] + args.variants[:shift]:
                with compile_cache(f"{scratch}/inductor/{name}"):
                    row = run_variant(name, args.steps, args.warmup, f"{scratch}/{round_index}", args.eval_samples,
                                      args.dataset_name, tuple(args.extra))
                row.update(command=command, environment=machine(), round=round_index)
                print(json.dumps(row), flush=True)
                runs[name].append(row)
    rows = [combine_rounds(runs[name], runs.get(BASELINE, [])) for name in args.variants]
    fresh = {row["variant"]: row for row in rows}
    rows = [fresh.get(name) or kept[name] for name in VARIANTS if name in fresh or name in kept]
    result = {
        "environment": machine(),
        "settings": {"steps": args.steps, "warmup": args.warmup, "eval_samples": args.eval_samples,
                     "repeats": args.repeats, "command": command},
        "rows": rows,
    }
    result["markdown"] = markdown(result)
    save_section(result, out)
    return result


if __name__ == "__main__":
    main()
