"""Hyperparameter search through ``Trainer.hyperparameter_search`` with optuna (``pip install "hf-deit[hpo]"``).

The space comes from a YAML file (:func:`load_space`); every trial trains the same student recipe with the
sampled values and is scored on a part of *train* held out for selection (``train_val_split``): the test
split is never seen by the search. Intermediate evaluations go to optuna's pruner through the Trainer's
own hook. The study lives in a database (SQLite by default, any SQLAlchemy URL), so a crashed search
resumes where it stopped (a trial that was running when it crashed is marked failed a minute later and
replaced), and several workers (processes, machines, GPUs) pointed at one database share one study: a
worker starts no further trial once the study holds ``n_trials`` finished or running ones (so workers
that start trials at the same moment may add one each beyond it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from ..config import ConfigError, DataConfig, DistillationConfig, ModelConfig, SearchArguments
from ..modeling import build_student
from .distill import build_distillation_run

logger = logging.getLogger(__name__)

TYPES = ("float", "int", "categorical")
MODEL_KEYS = ("drop_path_rate",)  # sampled keys that shape the student, applied in model_init
OBJECTIVE = "eval_fused_top1"
# Trials that count toward n_trials: a failed one (a crash) does not, so a resumed search replaces it.
COUNTED_STATES = ("COMPLETE", "PRUNED", "RUNNING")


@dataclass
class Dimension:
    """One key of the space: ``float``/``int`` in [low, high] (``log`` scale), or one of ``choices``."""

    name: str
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)
    only_if: dict[str, Any] = field(default_factory=dict)  # e.g. distillation_tau only if distillation_type: soft

    def check(self, known: set[str], earlier: set[str]) -> None:
        where = f"search space key {self.name!r}"
        if self.name not in known:
            raise ConfigError(f"{where} is not a configuration key", "use a DistillationConfig key or drop_path_rate")
        if self.type not in TYPES:
            raise ConfigError(f"{where} has type {self.type!r}", f"use one of {', '.join(TYPES)}")
        if self.type == "categorical" and not self.choices:
            raise ConfigError(f"{where} has no choices", "list them: choices: [a, b]")
        if self.type != "categorical" and (self.low is None or self.high is None or not self.low < self.high):
            raise ConfigError(f"{where} needs low < high, got {self.low} and {self.high}", "set both bounds")
        if unknown := set(self.only_if) - earlier:
            raise ConfigError(f"{where} depends on {sorted(unknown)}, not sampled before it",
                              "list the keys it depends on above it")

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def load_space(path: str) -> list[Dimension]:
    """The space of a YAML mapping ``key: {type, low, high, log, choices, only_if}``, checked key by key."""
    if not os.path.isfile(path):
        raise ConfigError(f"search space file {path!r} does not exist", "pass --search_space configs/hpo/space.yaml")
    with open(path) as handle:
        entries = yaml.safe_load(handle) or {}
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"search space file {path!r} holds no `key: {{type: ...}}` entries", "see configs/hpo/")
    known = {f.name for f in dataclasses.fields(DistillationConfig)} | set(MODEL_KEYS)
    space, earlier = [], set()
    for name, spec in entries.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"search space key {name!r} is not a mapping", "write {type: float, low: ..., high: ...}")
        unknown = set(spec) - {f.name for f in dataclasses.fields(Dimension)}
        if unknown:
            raise ConfigError(f"search space key {name!r} has unknown field(s) {sorted(unknown)}",
                              "use type, low, high, log, choices, only_if")
        dimension = Dimension(name=name, **spec)
        dimension.check(known, earlier)
        space.append(dimension)
        earlier.add(name)
    return space


def sample(trial: Any, space: list[Dimension]) -> dict[str, Any]:
    """The trial's values, dimension by dimension (a conditional one only when its condition holds)."""
    values: dict[str, Any] = {}
    for dimension in space:
        if all(values.get(key) == value for key, value in dimension.only_if.items()):
            values[dimension.name] = dimension.suggest(trial)
    return values


def stop_when_full(trial: Any, n_trials: int) -> None:
    """Tell this worker to start no further trial once the shared study has ``n_trials`` counted ones."""
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, name) for name in COUNTED_STATES)
    if len(trial.study.get_trials(deepcopy=False, states=states)) >= n_trials:
        trial.study.stop()


def open_storage(url: str, attempts: int = 5) -> Any:
    """Optuna's database at ``url``, retried when another worker is creating its tables at the same moment
    (both see an empty database, one loses the race on ``alembic_version``); the retry finds them made."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=20, grace_period=60)
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def study_settings(search: SearchArguments, output_dir: str) -> dict[str, Any]:
    """``optuna.create_study`` keywords: a resumable database with heartbeats (a crashed trial is failed, not
    left running), the pruner and a seeded sampler."""
    import optuna

    url = search.storage or f"sqlite:///{os.path.abspath(os.path.join(output_dir, 'study.db'))}"
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    storage = open_storage(url)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=search.pruner_startup_trials)
              if search.pruner == "median" else optuna.pruners.NopPruner())
    return {"storage": storage, "study_name": search.study_name, "load_if_exists": True, "pruner": pruner,
            "sampler": optuna.samplers.TPESampler(seed=search.sampler_seed)}


def remaining_trials(settings: dict[str, Any], n_trials: int) -> int:
    """Trials still to run in the (maybe resumed) study; running ones of other workers count as taken."""
    import optuna

    try:
        study = optuna.load_study(study_name=settings["study_name"], storage=settings["storage"])
    except KeyError:  # no such study yet
        return n_trials
    states = tuple(getattr(optuna.trial.TrialState, name) for name in COUNTED_STATES)
    return max(0, n_trials - len(study.get_trials(deepcopy=False, states=states)))


def run_search(model_config: ModelConfig, data_config: DataConfig, training_args: DistillationConfig,
               search: SearchArguments) -> Any:
    """Run (or resume) the study; returns it (``optuna.Study``), the best trial first in ``best_trial``."""
    import optuna

    space = load_space(search.search_space)
    if training_args.eval_strategy == "no":
        logger.warning("eval_strategy is 'no': each trial is scored once at its end and nothing is pruned.")
    training_args.save_strategy = "no"  # a trial cannot resume mid-way: checkpoints would only fill the disk
    run = build_distillation_run(model_config, data_config, training_args, hold_out_for_selection=True)

    def model_init(trial: Any = None) -> Any:
        # The Trainer builds the model before it asks for the trial's training values: sample here first (optuna
        # returns the same value when the same key is suggested again within a trial).
        params = sample(trial, space) if trial is not None else {}
        overrides = {key: params[key] for key in MODEL_KEYS if key in params}
        student, _ = build_student(dataclasses.replace(model_config, **overrides), run.data.id2label)
        return student

    def training_space(trial: Any) -> dict[str, Any]:
        stop_when_full(trial, search.n_trials)
        values = sample(trial, space)
        return {key: value for key, value in values.items() if key not in MODEL_KEYS}

    run.trainer.model_init = model_init
    settings = study_settings(search, training_args.output_dir)
    if remaining_trials(settings, search.n_trials):  # n_trials bounds this worker; stop_when_full, the study
        run.trainer.hyperparameter_search(
            direction="maximize", backend="optuna", hp_space=training_space, n_trials=search.n_trials,
            compute_objective=lambda metrics: metrics[OBJECTIVE],
            timeout=None if search.timeout_minutes is None else 60 * search.timeout_minutes, **settings)
    else:
        logger.info("The study %r already holds %d trials: nothing to run.", search.study_name, search.n_trials)
    return optuna.load_study(study_name=search.study_name, storage=settings["storage"])
