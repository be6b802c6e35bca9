"""``scripts/hpo.py``: a hyperparameter search of a distillation recipe (optuna, through the Trainer)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import os
import sys

from ..config import DataConfig, DistillationConfig, ModelConfig, SearchArguments, given_values
from ..publish.study import write_study_report
from .common import training_main

RUN_CONFIGS = (ModelConfig, DataConfig, DistillationConfig)


def search_and_report(base: dict[str, Any]):
    """The run: the search, then (on the main process) its report and the best trial as a config file that
    starts from ``base``, the run keys the user set."""

    def run(model_config: ModelConfig, data_config: DataConfig, training_args: DistillationConfig,
            search: SearchArguments) -> dict[str, Any]:
        try:
            import optuna  # noqa: F401

            from ..training.search import run_search
        except ImportError as error:
            raise OSError(f"the search needs optuna ({error}) — pip install -e \".[hpo]\"") from None
        study = run_search(model_config, data_config, training_args, search)
        if training_args.process_index != 0:
            return {}
        report = write_study_report(study, {**base, "output_dir": os.path.join(training_args.output_dir, "best")},
                                    training_args.output_dir)
        print(report["markdown"], flush=True)
        return report

    return run


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    base = given_values(sys.argv[1:] if argv is None else argv, RUN_CONFIGS)
    return training_main(search_and_report(base), (*RUN_CONFIGS, SearchArguments), argv)
