"""The search's best trial against the quickstart's defaults, at the quickstart's budget.

    python scripts/hpo.py --config configs/hpo/sample.yaml      # the search (~45 min on 2 CPU cores)
    python benchmarks/hpo_compare.py                            # this comparison (~20 min): docs/results/hpo.md
    python benchmarks/hpo_compare.py --table                    # the page again, from hpo.json and the study

The search scores each trial on a part of the sample's *train* split (3 epochs); this script then trains the
quickstart twice, with the same seed and the same 12 epochs on the whole sample train split: once as
``configs/quickstart.yaml`` ships, once with the best trial's values on top. Both are scored on the sample's
full 1,000-image test split, which the search never saw. The page also carries the study's trials table
and optuna's importance plot.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import REPO, RESULTS, describe_machine, machine, quickstart_argv  # noqa: E402

from hf_deit.heads import HEADS  # noqa: E402

STUDY_DIR = REPO / "outputs" / "hpo-sample"
SEARCH_COMMAND = "python scripts/hpo.py --config configs/hpo/sample.yaml"
IMPORTANCE_PNG = "hpo_importances.png"


def load_study(folder: Path, study_name: str) -> Any:
    import optuna

    database = folder / "study.db"
    if not database.exists():
        raise SystemExit(f"error: no study at {database} — run `{SEARCH_COMMAND}` first")
    return optuna.load_study(study_name=study_name, storage=f"sqlite:///{database.resolve()}")


def search_minutes(study: Any) -> float:
    """Wall time of the search: from the first trial's start to the last one's end."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return (end - start).total_seconds() / 60


def train(name: str, overrides: dict[str, Any], work: Path, dataset: str | None, extra: list[str]) -> dict:
    """One quickstart run in this process; its test metrics and wall time."""
    from hf_deit.cli.distill import main as distill

    flags = [str(item) for key, value in overrides.items() for item in (f"--{key}", value)]
    start = time.perf_counter()
    metrics = distill(quickstart_argv(work / name, *flags, *extra, dataset=dataset))
    return {"name": name, "overrides": overrides, "minutes": round((time.perf_counter() - start) / 60, 2),
            **{f"{head.key}_top1": metrics.get(f"eval_{head.key}_top1") for head in HEADS},
            "test_images": metrics.get("eval_images")}


def held_out_images(config: Path) -> int:
    """How many images the search scored each trial on: ``train_val_split`` of the search config's train split."""
    import yaml
    from datasets import load_dataset

    values = yaml.safe_load(config.read_text())
    train = load_dataset(str(REPO / values["dataset_name"]), split="train")
    return round(values["train_val_split"] * train.num_rows)


def search_reading(study: Any, held_out: int) -> str:
    """Whether the search could tell its complete trials apart: their spread against the objective's noise."""
    from optuna.trial import TrialState

    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = max(values)
    se = 100 * (best * (1 - best) / held_out) ** 0.5
    spread = 100 * (best - min(values))
    return (f"The {len(values)} complete trials score {100 * min(values):.1f}-{100 * best:.1f} % on {held_out} held-out "
            f"images, one standard error of a trial being {se:.1f} points: "
            + ("the search cannot tell them apart at this budget." if spread < 2 * se else
               "the best stands above the worst by more than two standard errors."))


def markdown(runs: list[dict], study: Any, minutes: float, environment: dict, has_plot: bool, held_out: int) -> str:
    from hf_deit.publish.study import trials_table

    best = study.best_trial
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    head_cells = " | ".join(f"{head.label} top-1" for head in HEADS)
    rows = [f"| run | values | {head_cells} | minutes |", "|---|---|" + "---:|" * (len(HEADS) + 1)]
    for run in runs:
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in run["overrides"].items())
        tops = " | ".join("—" if run.get(f"{h.key}_top1") is None else f"{100 * run[f'{h.key}_top1']:.1f}" for h in HEADS)
        rows.append(f"| {run['name']} | {values or 'configs/quickstart.yaml as shipped'} | {tops} | {run['minutes']:.1f} |")
    default, tuned = (run["fused_top1"] for run in runs)
    n = runs[0].get("test_images") or 1000
    se = 100 * ((default * (1 - default) + tuned * (1 - tuned)) / n) ** 0.5  # SE of the difference
    gap = 100 * (tuned - default)
    verdict = "within noise" if abs(gap) < 2 * se else ("better" if gap > 0 else "worse")
    lines = [
        "# Hyperparameter search on the shipped sample", "",
        f"**Best trial against the defaults:** at the quickstart's budget (12 epochs, seed 42, the whole 5,000-image "
        f"sample train split), the best trial's values give {100 * tuned:.1f} % fused top-1 on the sample's "
        f"{n:,}-image test split against {100 * default:.1f} % for the shipped defaults: {gap:+.1f} points, "
        f"{verdict} (one standard error of the difference is {se:.1f} points; one seed each).", "",
        *rows, "",
        f"## The search", "",
        f"`{SEARCH_COMMAND}`: {len(states)} trials ("
        + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        + f") in {minutes:.1f} min wall, 3 epochs each, scored on 10 % of the sample's train split held out for "
        f"selection; the median pruner stops a trial whose intermediate score falls below the median of the "
        f"earlier ones at the same epoch. Best: trial {best.number}, {100 * best.value:.2f} % on the held-out part. "
        + search_reading(study, held_out), "",
        trials_table(study), "",
    ]
    if has_plot:
        lines += [f"![optuna's importance of each key]({IMPORTANCE_PNG})", ""]
    lines += [f"Reproduce: `{SEARCH_COMMAND}`, then `python benchmarks/hpo_compare.py`. "
              f"Machine: {describe_machine(environment)}."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study_dir", default=str(STUDY_DIR))
    parser.add_argument("--study_name", default="quickstart-sample")
    parser.add_argument("--dataset_name", default=None, help="default: the shipped sample")
    parser.add_argument("--work_dir", default=str(REPO / "runs" / "hpo_compare"))
    parser.add_argument("--out", default=str(RESULTS / "hpo.json"))
    parser.add_argument("--search_config", default=str(REPO / "configs" / "hpo" / "sample.yaml"))
    parser.add_argument("--table", action="store_true", help="only rebuild the page from the JSON and the study")
    args, extra = parser.parse_known_args(argv)  # unknown flags go to both runs (e.g. --num_train_epochs 1)
    study_dir, out = Path(args.study_dir), Path(args.out)
    study = load_study(study_dir, args.study_name)
    work = Path(args.work_dir)
    saved = json.loads(out.read_text()) if args.table else {}
    runs = saved["runs"] if args.table else [
        train("defaults", {}, work, args.dataset_name, extra),
        train(f"best trial ({study.best_trial.number})", dict(study.best_trial.params), work, args.dataset_name, extra)]
    plot = study_dir / "param_importances.png"
    if plot.exists():
        shutil.copyfile(plot, out.parent / IMPORTANCE_PNG)
    environment = saved.get("machine") or machine()
    result = {"runs": runs, "search_minutes": round(search_minutes(study), 1), "best_trial": study.best_trial.number,
              "best_value": study.best_trial.value, "machine": environment}
    held_out = held_out_images(Path(args.search_config))
    result["markdown"] = markdown(runs, study, result["search_minutes"], environment, plot.exists(), held_out)
    save_section(result, out)
    out.with_suffix(".md").write_text(result["markdown"] + "\n")
    return result


if __name__ == "__main__":
    main()
