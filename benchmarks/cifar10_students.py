"""The CIFAR-10 students of docs/results/cifar10_cpu.md: hard / soft / none at one recipe and budget, with
test accuracy against training wall time.

Each mode trains one student config (``--config``, default ``configs/cifar10_cpu_student.yaml``) on the
50,000 training images through ``hf_deit.training.distill.main``, evaluates every ``--eval_every`` steps on
the first 2,000 test images (the curve) and once at the end on all 10,000 (the table). A run checkpoints
every ``--save_every`` steps and resumes exactly from its last checkpoint when the script is started
again, so a 90-minute run may span sessions; the clock counts training steps only (evaluation and checkpoint
writing excluded), carried across resumes in the checkpoint's trainer state (``train_wall_s`` in the logs). With
``--budget_minutes`` the run trains for that many minutes on this clock (``max_train_minutes``): the cosine
schedule follows the clock and anneals fully when the budget is spent, however fast this machine steps.

    python benchmarks/cifar10_students.py --mode hard --dataset_name ../shared/data/cifar10   # the config's epochs
    python benchmarks/cifar10_students.py --mode hard --budget_minutes 90 --dataset_name ../shared/data/cifar10
    python benchmarks/cifar10_students.py --table        # table + PNG from the finished runs
    python benchmarks/cifar10_students.py --mode hard --variant teacher_quarter --distillation_teacher_fraction 0.25

A variant (``--variant NAME`` plus any config flags) trains a mode with those flags added to the recipe, in
``<--runs_dir>/<mode>-<NAME>/``; its row sits under its mode's and is named by the flags its run recorded.

Writes ``<--runs_dir>/<mode>/`` (the runs; default ``runs/students``) and ``--out`` (default
``docs/results/students.json``, a section of ``docs/results/cifar10_cpu.md``) plus its
``*_time_to_accuracy.png`` beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, machine, machines_line, same_machine  # noqa: E402

MODES = ("hard", "soft", "none")
THRESHOLDS = (0.60, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
CONFIG = REPO / "configs" / "cifar10_cpu_student.yaml"
RUNS = REPO / "runs" / "students"


BUDGET_EPOCH_CAP = 1000  # with --budget_minutes the clock ends the run; the epochs only have to outlast it


def run_folder(mode: str, variant: str | None = None) -> str:
    """The folder of a mode's run under ``--runs_dir``: the mode, or ``<mode>-<variant>`` for a variant."""
    return f"{mode}-{variant}" if variant else mode


def mode_argv(mode: str, dataset: str, eval_every: int, save_every: int, extra: list[str], runs: Path = RUNS,
              config: Path = CONFIG, variant: str | None = None) -> list[str]:
    """The flags of one mode's run: the recipe file, this mode, the periodic evaluations and checkpoints."""
    return ["--config", str(config), "--dataset_name", dataset, "--distillation_type", mode,
            "--output_dir", str(runs / run_folder(mode, variant)), "--eval_strategy", "steps", "--eval_steps", str(eval_every),
            "--eval_samples_during_training", "2000", "--save_strategy", "steps", "--save_steps", str(save_every),
            "--save_total_limit", "1", "--disable_tqdm", "true", *extra]


def run_mode(mode: str, dataset: str, eval_every: int, save_every: int, extra: list[str], runs: Path = RUNS,
             config: Path = CONFIG, budget_minutes: float | None = None, variant: str | None = None) -> dict:
    from hf_deit.training.checkpointing import last_complete_checkpoint
    from hf_deit.config import parse_config
    from hf_deit.training.distill import run_distillation

    argv = mode_argv(mode, dataset, eval_every, save_every, extra, runs, config, variant)
    run = runs / run_folder(mode, variant)
    budget_file = run / "budget.json"
    resuming = run.is_dir() and last_complete_checkpoint(str(run)) is not None
    if budget_minutes is not None and not resuming:
        budget_file.parent.mkdir(parents=True, exist_ok=True)
        budget_file.write_text(json.dumps({"budget_minutes": budget_minutes, "schedule": "max_train_minutes"}))
    if budget_file.exists() and (resuming or budget_minutes is not None):  # a resumed run keeps its budget
        argv += budget_flags(json.loads(budget_file.read_text()))
    if resuming:
        argv += ["--resume_from_checkpoint", "true"]
    record_machine(run)
    metrics = run_distillation(*parse_config(argv))
    return metrics


def budget_flags(budget: dict) -> list[str]:
    """The flags of a budgeted run: the minutes on the training clock, and epochs that outlast them."""
    return ["--max_train_minutes", str(budget["budget_minutes"]), "--num_train_epochs", str(BUDGET_EPOCH_CAP)]


def record_machine(run: Path) -> None:
    """Write the machine that trains ``run`` into its folder, so that a table assembled in a later session names
    the CPU each row was timed on. A run resumed on a different machine adds it under ``resumed_on``: its
    minutes then mix two speeds, and the row must say so."""
    path = run / "machine.json"
    current = machine()
    if not path.exists():
        run.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2))
        return
    recorded = json.loads(path.read_text())
    if not any(same_machine(seen, current) for seen in [recorded, *recorded.get("resumed_on", [])]):
        recorded["resumed_on"] = [*recorded.get("resumed_on", []), current]
        path.write_text(json.dumps(recorded, indent=2))


def run_machine(run: Path, fallback: dict) -> dict:
    """The machine recorded in ``run`` (see ``record_machine``), else ``fallback``."""
    path = run / "machine.json"
    return json.loads(path.read_text()) if path.exists() else fallback


def short_machine(environment: dict) -> str:
    """A table cell for a row's machine: the CPU (or GPU) and its widest instruction set, and each machine the run
    was resumed on."""
    device = environment["device"].removeprefix("CPU: ").replace("(R)", "").replace(" Processor", "")
    features = environment.get("cpu_features") or []
    cell = f"{device} ({features[-1]})" if features and environment["device"].startswith("CPU") else device
    return " + ".join([cell, *(short_machine(later) for later in environment.get("resumed_on", []))])


def curve(state: dict) -> list[tuple[float, float, float]]:
    """(training minutes, fused top-1 on the 2,000 test images, epoch) at each periodic evaluation of a run's
    ``trainer_state.json``."""
    return [(entry["train_wall_s"] / 60, entry["eval_fused_top1"], entry["epoch"]) for entry in state["log_history"]
            if "eval_fused_top1" in entry and "train_wall_s" in entry]


def minutes_to(points: list[tuple[float, float, float]], threshold: float, column: int = 0):
    """The first time (column 0: minutes, 2: epochs) a periodic evaluation reached ``threshold``; None if never."""
    return next((round(point[column], 1) for point in points if point[1] >= threshold), None)


def training_seconds(state: dict) -> float:
    """Seconds of training steps over the whole run (the clock's last reading: the Trainer logs once more when
    training ends)."""
    return max(entry.get("train_wall_s", 0.0) for entry in state["log_history"])


def run_row(mode: str, run: Path, environment: dict) -> tuple[dict, list[tuple[float, float, float]]]:
    """A finished run's row of the table and its curve, from its folder: final metrics on all test images, the
    clock, the curve's thresholds, the budget and the machine that trained it."""
    metrics = json.loads((run / "all_results.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text())
    points, seconds = curve(state), training_seconds(state)
    row = {
        "mode": mode, "fused": metrics["eval_fused_top1"], "cls": metrics["eval_cls_top1"],
        "distill": metrics["eval_distill_top1"], "teacher": metrics.get("eval_teacher_top1"),
        "train_minutes": seconds / 60 or metrics["train_runtime_s"] / 60,
        "minutes_to": {f"{t:.0%}": minutes_to(points, t) for t in THRESHOLDS},
        "epochs_to": {f"{t:.0%}": minutes_to(points, t, column=2) for t in THRESHOLDS},
        "seconds_per_step": round(seconds / max(state["global_step"], 1), 4),
        "budget_minutes": budget_minutes_of(run), "epochs": round(state["epoch"], 2),
        "machine": run_machine(run, environment),
    }
    return row, points


def variant_flags(run: Path) -> list[str]:
    """The config flags a variant's run added to the recipe: what this script did not consume in the command the
    run recorded (``distillation_config.json``), so the row's name is the run's own record, not a label typed in."""
    command = shlex.split(json.loads((run / "distillation_config.json").read_text())["command"])
    start = next(i for i, word in enumerate(command) if word.endswith(Path(__file__).name)) + 1
    return build_parser().parse_known_args(command[start:])[1]


def series_rows(mode: str, variant: str | None, runs: Path, environment: dict, saved_rows: list[dict],
                saved_curves: dict, earlier: list[dict]) -> list[tuple[dict, list]]:
    """One series of the table (a mode, or one of its variants) with its curves: the run here, if finished, and the
    saved rows of the series. A re-run on the machine of a saved row replaces it, a row distilled from another
    teacher moves to ``earlier``, and a row from another machine stays, each then labelled with its machine."""
    run = runs / run_folder(mode, variant)
    kept = [(row, saved_curves.get(row["label"], [])) for row in saved_rows
            if row["mode"] == mode and row.get("variant") == variant]
    if (run / "all_results.json").exists():
        row, points = run_row(mode, run, environment)
        if variant:
            row["variant"], row["flags"] = variant, " ".join(variant_flags(run))
        earlier += [old for old, _ in kept if another_teacher(old, row["teacher"])]
        kept = [(old, old_curve) for old, old_curve in kept
                if not another_teacher(old, row["teacher"]) and not same_machine(old["machine"], row["machine"])]
        kept.append((row, points))
    for row, _ in kept:
        name = f"{mode} with {row['flags']}" if variant else mode
        row["label"] = name if len(kept) == 1 else f"{name} on {short_machine(row['machine'])}"
    return kept


def variants_of(mode: str, runs: Path, saved_rows: list[dict]) -> list[str]:
    """A mode's variants: those with a run folder here and those only saved (run folders stay on the machine that
    trained them)."""
    here = {run.name.removeprefix(f"{mode}-") for run in runs.glob(f"{mode}-*") if run.is_dir()}
    return sorted(here | {row["variant"] for row in saved_rows if row["mode"] == mode and row.get("variant")})


def another_teacher(row: dict, teacher_top1: float | None) -> bool:
    """Whether a saved distilled row came from a teacher other than the new run's (their measured top-1 differ),
    so that re-running a mode after the teacher changed keeps the old row instead of overwriting it."""
    if row["mode"] == "none" or row.get("teacher") is None or teacher_top1 is None:
        return False
    return abs(row["teacher"] - teacher_top1) > 0.002


def students_table(rows: list[dict]) -> list[str]:
    """Markdown rows with the teacher each student learned from (``none`` trains on the labels only)."""
    lines = ["| distillation | teacher top-1 | fused | class head | distillation head | training minutes | epochs "
             "| s / step | machine |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        teacher = "not used" if r["mode"] == "none" or r.get("teacher") is None else f"{100 * r['teacher']:.2f}"
        epochs = "—" if r.get("epochs") is None else f"{r['epochs']:.2f}"  # rows saved before epochs were recorded
        lines.append(f"| {r['label']} | {teacher} | **{100 * r['fused']:.2f}** | {100 * r['cls']:.2f} | "
                     f"{100 * r['distill']:.2f} | {r['train_minutes']:.1f} | {epochs} | {r['seconds_per_step']:.2f} | "
                     f"{short_machine(r['machine'])} |")
    return lines


def budget_minutes_of(run: Path) -> float | None:
    """The minutes a budgeted run was sized for and is held to (``--budget_minutes``), None for a run of the
    config's epochs."""
    budget = run / "budget.json"
    return json.loads(budget.read_text())["budget_minutes"] if budget.exists() else None


def shown(path: Path) -> str:
    """A path as a command run from the repository root spells it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def reproduce(rows: list[dict], dataset: str, config: Path, runs: Path, out: Path) -> str:
    """The command that trains one mode of this table: the defaults' flags left out, the rest spelt out."""
    flags = [f"python benchmarks/cifar10_students.py --mode MODE --dataset_name {dataset}"]
    budgets = {row.get("budget_minutes") for row in rows} - {None}
    if len(budgets) == 1:
        flags.append(f"--budget_minutes {budgets.pop():g}")
    if config.resolve() != CONFIG.resolve():
        flags.append(f"--config {shown(config)}")
    if runs.resolve() != RUNS.resolve():
        flags.append(f"--runs_dir {shown(runs)}")
    if out.resolve() != (RESULTS / "students.json").resolve():
        flags.append(f"--out {shown(out)}")
    return " ".join(flags)


def table(environment: dict, runs: Path = RUNS, out: Path = RESULTS / "students.json", config: Path = CONFIG,
          saved: dict | None = None, dataset: str = LOCAL_CIFAR10) -> dict:
    """The page from every finished mode: its run folder when it is here, else its row and curve in ``saved``
    (the last JSON), since run folders stay on the machine that trained them and modes span sessions. The
    time-to-accuracy plot goes next to ``out``."""
    png = out.with_name(f"{out.stem}_time_to_accuracy.png")
    saved_rows = list((saved or {}).get("rows", []))
    saved_curves = (saved or {}).get("curves", {})
    earlier = list((saved or {}).get("earlier_rows", []))
    for row in [*saved_rows, *earlier]:  # rows saved before each carried its machine: the page's
        row.setdefault("machine", saved.get("machine", environment))
        row.setdefault("label", row["mode"])
    rows, curves = [], {}
    for mode in MODES:
        for variant in [None, *variants_of(mode, runs, saved_rows)]:
            for row, points in series_rows(mode, variant, runs, environment, saved_rows, saved_curves, earlier):
                rows.append(row)
                curves[row["label"]] = [tuple(point) for point in points]
    if curves:
        plot(curves, png)
    binomial = 100 * math.sqrt(0.85 * 0.15 / 10000)
    lines = [f"## The students of `{config.name}`: hard vs soft vs none", "",
             f"One recipe (`{shown(config)}`) and budget; only `distillation_type` changes"
             + ("; a row named with flags adds them to the recipe (`--variant`). " if any(r.get("variant") for r in rows)
                else ". ") +
             f"Top-1 on all 10,000 test images at the end of training (one standard error ≈ {binomial:.1f} points).",
             "", *students_table(rows)]
    lines += ["", "Minutes of training to reach a fused top-1 on the first 2,000 test images (periodic evaluations; "
              "— : not reached):", "", "| distillation | " + " | ".join(f"{t:.0%}" for t in THRESHOLDS) + " |",
              "|---|" + "---:|" * len(THRESHOLDS)]
    lines += ["| " + r["label"] + " | " + " | ".join("—" if v is None else f"{v}" for v in r["minutes_to"].values())
              + " |" for r in rows]
    lines += ["", "The same in epochs (independent of the machine; the runs may come from sessions on different "
              "CPUs, see s / step above):", "", "| distillation | " + " | ".join(f"{t:.0%}" for t in THRESHOLDS) + " |",
              "|---|" + "---:|" * len(THRESHOLDS)]
    lines += ["| " + r["label"] + " | " + " | ".join("—" if v is None else f"{v}" for v in r["epochs_to"].values())
              + " |" for r in rows]
    if earlier:
        lines += ["", "Earlier runs of a mode, distilled from another teacher (kept when the mode was re-run):", "",
                  *students_table(earlier)]
    lines += ["", f"![test accuracy against training time]({png.name})", "",
              f"Reproduce: `{reproduce(rows, dataset, config, runs, out)}` for each mode"
              + (" (a variant: add `--variant NAME` and its flags)" if any(r.get("variant") for r in rows) else "")
              + f", then the same with `--table` in place of `--mode MODE`. {machines_line({row['label']: row['machine'] for row in rows}, environment)}"]
    return {"rows": rows, "earlier_rows": earlier, "curves": curves, "machine": environment,
            "markdown": "\n".join(lines)}


def plot(curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for mode, points in curves.items():
        axis.plot([point[0] for point in points], [100 * point[1] for point in points], marker="o", markersize=3,
                  label=mode)
    axis.set_xlabel("training wall time (minutes)")
    axis.set_ylabel("fused top-1 on 2,000 test images (%)")
    axis.grid(alpha=0.3)
    axis.legend(title="distillation")
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    """This script's own flags; every other flag is the recipe's (a config key)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--variant", help="train MODE with the recipe flags given here, in RUNS_DIR/MODE-VARIANT")
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--eval_every", type=int, default=200)
    parser.add_argument("--save_every", type=int, default=400)
    parser.add_argument("--budget_minutes", type=float,
                        help="train for this many minutes of steps: the schedule runs on the training clock (max_train_minutes)")
    parser.add_argument("--table", action="store_true", help="only assemble the table and the PNG")
    parser.add_argument("--runs_dir", default=str(RUNS))
    parser.add_argument("--config", default=str(CONFIG),
                        help="the recipe; a GPU: configs/cifar10_deit_tiny_distilled.yaml with --runs_dir runs/students_gpu "
                             "--out docs/results/students_gpu.json")
    parser.add_argument("--out", default=str(RESULTS / "students.json"))
    return parser


def main(argv=None) -> dict:
    args, extra = build_parser().parse_known_args(argv)
    runs, out = Path(args.runs_dir), Path(args.out)
    if args.mode and not args.table:
        run_mode(args.mode, args.dataset_name, args.eval_every, args.save_every, extra, runs, Path(args.config),
                 args.budget_minutes, args.variant)
    saved = json.loads(out.read_text()) if out.exists() else None
    result = table(machine(), runs, out, Path(args.config), saved, args.dataset_name)
    save_section(result, out)
    return result


if __name__ == "__main__":
    main()
