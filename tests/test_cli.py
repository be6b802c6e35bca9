"""The command line as a newcomer meets it: --help, dashed flags, --config=, and user errors as one line, exit 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, SAMPLE_DIR
from tiny_student import tiny_student  # noqa: F401  (fixture)

from hf_deit.config import ConfigError, DataConfig, DistillationConfig, ModelConfig, PushArguments, parse_config


def run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A script as a user runs it, from the repository root, with this checkout's package first."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("HF_DEIT_DEBUG", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=180)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and " — " in error_lines[0], result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


@pytest.mark.parametrize("script", ["distill.py", "train_teacher.py"])
def test_help_lists_the_project_keys_first_grouped(script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"usage: {script}") and len(lines) < 200
    groups = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert groups, result.stdout[:1000]
    assert "--dataset_name" in result.stdout and "huggingface.co/docs/transformers" in result.stdout
    assert "--help-all" in result.stdout
    assert "--gradient_checkpointing" not in result.stdout  # TrainingArguments keys: linked, not listed


def test_distill_help_groups_model_data_distillation_and_recipe():
    stdout = run("distill.py", "--help").stdout
    headings = [line for line in stdout.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    order = [next(i for i, h in enumerate(headings) if word in h.lower()) for word in ("model", "data", "distillation",
                                                                                         "recipe")]
    assert order == sorted(order), headings
    assert stdout.index("--distillation_type") < stdout.index("--mixup_prob")


def test_help_all_lists_every_training_argument():
    result = run("distill.py", "--help-all")
    assert result.returncode == 0 and "--gradient_checkpointing" in result.stdout


def test_dashed_flags_and_config_equals_are_accepted(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("dataset_name: data/cifar10-sample\noutput_dir: out\n")
    model, data, train = parse_config([f"--config={config}", "--distillation-type", "soft", "--num-train-epochs=2",
                                       "--student-preset", "small"])
    assert train.distillation_type == "soft" and train.num_train_epochs == 2 and model.student_preset == "small"
    assert data.dataset_name == "data/cifar10-sample"


def test_a_typo_names_the_closest_key_in_every_script():
    with pytest.raises(ConfigError, match="did you mean 'distillation_type'"):
        parse_config(["--distilation_type", "hard"])
    assert_user_error(run("evaluate_student.py", "--student", "x", "--splt", "test"), "'splt'", "did you mean 'split'")


def test_a_missing_required_flag_is_named_with_its_fix():
    with pytest.raises(ConfigError, match=r"--folder is required .* — pass --folder VALUE"):
        parse_config(["--repo_id", "me/x"], (PushArguments,))
    assert_user_error(run("push_to_hub.py", "--repo_id", "me/x", "--dry_run"), "--folder is required")


def test_an_unknown_split_names_the_splits_there_are(tiny_student):
    result = run("evaluate_student.py", "--student", str(tiny_student), "--dataset_name", str(SAMPLE_DIR),
                 "--split", "validation")
    assert_user_error(result, "split 'validation' is not a split of this dataset", "'test'", "pass --split")


@pytest.mark.parametrize("path", ["data/does-not-exist", "./cifar", "/nowhere/cifar10", "~/no/such/folder"])
def test_a_missing_dataset_path_is_named_as_neither_folder_nor_hub_id(path):
    from hf_deit.data.datasets import load_image_classification_data

    with pytest.raises(ConfigError, match="neither a folder on this machine nor a dataset the Hub could give"):
        load_image_classification_data(DataConfig(dataset_name=path))


def test_a_missing_dataset_path_is_one_error_line_from_the_script(tmp_path):
    result = run("distill.py", "--config", "configs/quickstart.yaml", "--dataset_name", "data/does-not-exist",
                 "--output_dir", str(tmp_path / "out"))
    assert_user_error(result, "'data/does-not-exist' is neither a folder")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback():
    for env, args in (({}, ["--debug"]), ({"HF_DEIT_DEBUG": "1"}, [])):
        result = run("evaluate_student.py", "--student", "x", "--splt", "test", *args, env=env)
        assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_pin_memory_is_off_on_cpu(tmp_path):
    train = DistillationConfig(output_dir=str(tmp_path), use_cpu=True)
    assert train.dataloader_pin_memory is False


def _checksums(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_push_dry_run_changes_nothing_on_disk(tiny_student, tmp_path):
    import shutil

    folder = tmp_path / "student"
    shutil.copytree(tiny_student, folder)
    before = _checksums(folder)
    result = run("push_to_hub.py", "--folder", str(folder), "--repo_id", "me/deit-tiny", "--dry_run",
                 env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a dry run changes nothing on disk" in result.stdout
    assert _checksums(folder) == before


def test_quickstart_model_config_parses_with_every_dataclass():
    model, data, train = parse_config(["--config", str(REPO / "configs" / "quickstart.yaml")])
    assert isinstance(model, ModelConfig) and isinstance(train, DistillationConfig) and data.dataset_name


def test_given_values_are_the_config_file_with_the_flags_on_top(tmp_path):
    from hf_deit.config import given_values

    config = tmp_path / "run.yaml"
    config.write_text("dataset_name: data/cifar10-sample\nnum_train_epochs: 12\nn_trials: 5\n")
    values = given_values([f"--config={config}", "--num-train-epochs", "2", "--label_names", "a", "b",
                           "--learning_rate=0.01"], (ModelConfig, DataConfig, DistillationConfig))
    assert values == {"dataset_name": "data/cifar10-sample", "num_train_epochs": "2", "label_names": ["a", "b"],
                      "learning_rate": "0.01"}  # n_trials is not a run key: left out
