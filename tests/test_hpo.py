"""scripts/hpo.py: the space from YAML, trials through Trainer.hyperparameter_search, a resumable shared study."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO, TINY_STUDENT_ARGS

optuna = pytest.importorskip("optuna", reason='the search needs optuna (pip install -e ".[hpo]")')

from hf_deit.config import ConfigError, parse_config  # noqa: E402
from hf_deit.training.search import load_space  # noqa: E402

SPACE = """\
learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
distillation_type: {type: categorical, choices: [hard, soft]}
distillation_tau: {type: float, low: 1.0, high: 4.0, only_if: {distillation_type: soft}}
drop_path_rate: {type: float, low: 0.0, high: 0.2}
"""


def _flags(tmp_path, sample_dir, tiny_teacher, n_trials: int, study: str = "test") -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return ["--config", str(REPO / "configs" / "hpo" / "sample.yaml"), "--search_space", str(space),
            "--n_trials", str(n_trials), "--study_name", study, "--storage", f"sqlite:///{tmp_path / 'study.db'}",
            "--dataset_name", str(sample_dir), "--teacher_model_name_or_path", str(tiny_teacher),
            "--max_train_samples", "80", "--max_eval_samples", "16", "--num_train_epochs", "2",
            "--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "out"), *TINY_STUDENT_ARGS]


def _study(tmp_path, name: str = "test"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.parametrize("entry, message", [
    ("not_a_key: {type: float, low: 0, high: 1}", "is not a configuration key"),
    ("learning_rate: {type: gaussian, low: 0, high: 1}", "has type 'gaussian'"),
    ("learning_rate: {type: float, low: 1, high: 0}", "needs low < high"),
    ("distillation_type: {type: categorical, choices: []}", "has no choices"),
    ("distillation_tau: {type: float, low: 1, high: 2, only_if: {distillation_type: soft}}", "not sampled before it"),
    ("learning_rate: {type: float, low: 0, high: 1, step: 2}", "unknown field(s) ['step']"),
])
def test_a_bad_space_is_a_clear_error(tmp_path, entry, message):
    path = tmp_path / "space.yaml"
    path.write_text(entry + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_space(str(path))


def test_two_trials_score_on_held_out_train_and_write_a_ready_config(tmp_path, sample_dir, tiny_teacher, monkeypatch):
    import hf_deit.training.search as search
    from hf_deit.cli.hpo import main

    runs = []
    original = search.build_distillation_run
    monkeypatch.setattr(search, "build_distillation_run", lambda *a, **k: runs.append(original(*a, **k)) or runs[-1])
    report = main(_flags(tmp_path, sample_dir, tiny_teacher, n_trials=2))
    (run,) = runs
    assert run.data.selection is not None and len(run.trainer.eval_dataset) == len(run.data.selection)
    trials = _study(tmp_path).get_trials()
    assert [trial.state.name for trial in trials] == ["COMPLETE", "COMPLETE"]
    assert all(trial.intermediate_values for trial in trials)  # each evaluation reached the pruner
    assert all(("distillation_tau" in trial.params) == (trial.params["distillation_type"] == "soft") for trial in trials)
    assert report["trials"] == 2 and "| trial | state | objective |" in (tmp_path / "out" / "study.md").read_text()
    best = tmp_path / "out" / "best_config.yaml"
    model, data, train = parse_config(["--config", str(best)])
    assert train.learning_rate == pytest.approx(report["best_params"]["learning_rate"])
    assert model.drop_path_rate == pytest.approx(report["best_params"]["drop_path_rate"])
    assert data.dataset_name == str(sample_dir)


def test_an_interrupted_search_resumes_where_it_stopped(tmp_path, sample_dir, tiny_teacher):
    from hf_deit.cli.hpo import main

    main(_flags(tmp_path, sample_dir, tiny_teacher, n_trials=1))  # "interrupted" after one of two trials
    first = _study(tmp_path).get_trials()[0].params
    main(_flags(tmp_path, sample_dir, tiny_teacher, n_trials=2))
    trials = _study(tmp_path).get_trials()
    assert [trial.number for trial in trials] == [0, 1] and trials[0].params == first
    main(_flags(tmp_path, sample_dir, tiny_teacher, n_trials=2))  # a full study: nothing more runs
    assert len(_study(tmp_path).get_trials()) == 2


def test_two_worker_processes_share_one_sqlite_study(tmp_path, sample_dir, tiny_teacher):
    flags = _flags(tmp_path, sample_dir, tiny_teacher, n_trials=3, study="shared")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "scripts/hpo.py", *flags, "--output_dir", str(tmp_path / f"w{i}")],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    trials = _study(tmp_path, "shared").get_trials()
    assert 3 <= len(trials) <= 4 and {trial.state.name for trial in trials} == {"COMPLETE"}
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))


def test_the_comparison_trains_the_defaults_and_the_best_trial_at_the_quickstart_budget(tmp_path, sample_dir,
                                                                                       tiny_teacher, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import hpo_compare

    import hf_deit.cli.distill as distill

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                     "distillation_type": optuna.distributions.CategoricalDistribution(["hard", "soft"])}
    for value, rate in ((0.3, 1e-3), (0.5, 2.5e-3)):
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": rate, "distillation_type": "soft"},
                                                  distributions=distributions, value=value))
    study.add_trial(optuna.trial.create_trial(params={"learning_rate": 1e-2, "distillation_type": "hard"},  # pruned
                                              distributions=distributions, value=0.05, intermediate_values={0: 0.05},
                                              state=optuna.trial.TrialState.PRUNED))
    argvs, real = [], distill.main
    monkeypatch.setattr(distill, "main", lambda argv: argvs.append(argv) or real(argv))
    result = hpo_compare.main(["--study_dir", str(tmp_path), "--study_name", "s", "--dataset_name", str(sample_dir),
                               "--work_dir", str(tmp_path / "runs"), "--out", str(tmp_path / "hpo.json"),
                               "--teacher_model_name_or_path", str(tiny_teacher), "--max_steps", "2",
                               "--max_eval_samples", "32", "--per_device_train_batch_size", "16", *TINY_STUDENT_ARGS])
    defaults, tuned = argvs
    assert "--learning_rate" not in defaults
    assert tuned[tuned.index("--learning_rate") + 1] == "0.0025" and "soft" in tuned
    assert [run["overrides"] for run in result["runs"]] == [{}, {"learning_rate": 2.5e-3, "distillation_type": "soft"}]
    page = (tmp_path / "hpo.md").read_text()
    assert "Best trial against the defaults" in page and "| trial | state | objective |" in page
    assert "The 2 complete trials score 30.0-50.0 %" in page  # pruned trials are not among them
    assert "best trial (1)" in page and all(0 <= run["fused_top1"] <= 1 for run in result["runs"])


def test_storage_is_retried_when_another_worker_creates_the_tables_at_once(tmp_path, monkeypatch):
    """Two workers on a new SQLite study: the one that loses the race on ``alembic_version`` retries, not dies."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    from hf_deit.training.search import open_storage

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(calls) == 2 and isinstance(storage, real)
