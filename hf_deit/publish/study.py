"""What a hyperparameter search found: the trials table, optuna's importance plot, the best trial as a config.

Reads an ``optuna.Study`` (any storage) and writes ``study.md``, ``param_importances.png`` and
``best_config.yaml`` into a folder; ``best_config.yaml`` is a ready ``--config`` for ``scripts/distill.py``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import yaml

logger = logging.getLogger(__name__)

STUDY_FILE, IMPORTANCE_FILE, BEST_CONFIG_FILE = "study.md", "param_importances.png", "best_config.yaml"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(study: Any) -> str:
    """One row per trial: number, state, objective, minutes and every sampled value (— where not sampled)."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({key for trial in trials for key in trial.params})
    lines = ["| trial | state | objective | minutes | " + " | ".join(keys) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(keys)]
    for trial in trials:
        minutes = trial.duration.total_seconds() / 60 if trial.duration else None
        value = f"{100 * trial.value:.2f} %" if trial.value is not None else "—"
        lines.append(f"| {trial.number} | {trial.state.name.lower()} | {value} | {_cell(minutes)} | "
                     + " | ".join(_cell(trial.params.get(key)) for key in keys) + " |")
    return "\n".join(lines)


def plot_importances(study: Any, path: str) -> Optional[str]:
    """optuna's fANOVA importance of each key for the objective (needs two complete trials and matplotlib)."""
    try:
        from optuna.visualization.matplotlib import plot_param_importances

        axes = plot_param_importances(study)
        axes.figure.set_size_inches(7, 3.5)
        axes.figure.tight_layout()
        axes.figure.savefig(path, dpi=120)
        import matplotlib.pyplot as plt

        plt.close(axes.figure)
        return path
    except (ValueError, RuntimeError, ImportError) as error:  # too few complete trials, or no matplotlib
        logger.warning("No importance plot: %s", error)
        return None


def best_config(base: dict[str, Any], study: Any) -> dict[str, Any]:
    """The run's own non-default keys with the best trial's values on top."""
    return {**base, **study.best_trial.params}


def write_study_report(study: Any, base_config: dict[str, Any], folder: str) -> dict[str, Any]:
    os.makedirs(folder, exist_ok=True)
    best = study.best_trial
    config = best_config(base_config, study)
    with open(os.path.join(folder, BEST_CONFIG_FILE), "w") as handle:
        handle.write(f"# Best trial {best.number} of the study {study.study_name!r}: objective "
                     f"{100 * best.value:.2f} % (fused top-1 on the part of train held out for selection).\n")
        yaml.safe_dump(config, handle, sort_keys=False)
    plot = plot_importances(study, os.path.join(folder, IMPORTANCE_FILE))
    states = [trial.state.name.lower() for trial in study.get_trials(deepcopy=False)]
    lines = [f"# Study `{study.study_name}`", "",
             f"{len(states)} trials: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) + ". "
             f"Best: trial {best.number}, {100 * best.value:.2f} % fused top-1 on the held-out part of train.", "",
             trials_table(study), ""]
    if plot:
        lines += [f"![importance of each key]({IMPORTANCE_FILE})", ""]
    lines += [f"Best config: `{BEST_CONFIG_FILE}` (`python scripts/distill.py --config {BEST_CONFIG_FILE}`)."]
    markdown = "\n".join(lines)
    with open(os.path.join(folder, STUDY_FILE), "w") as handle:
        handle.write(markdown + "\n")
    return {"best_trial": best.number, "best_value": best.value, "best_params": best.params, "trials": len(states),
            "markdown": markdown, "best_config": config}
