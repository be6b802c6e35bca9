"""benchmarks/data_efficiency.py on two sizes of the sample, tiny models: cells, resume after a crash, the page."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


class SessionEnded(Exception):
    """Stands in for the kill at the end of a session."""


@pytest.fixture()
def tiny_configs(tmp_path):
    teacher = yaml.safe_load((REPO / "configs" / "teacher_cifar10_resnet.yaml").read_text())
    teacher.update(model_config_overrides={"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]},
                   image_size=32, eval_flip_tta=False)
    student = yaml.safe_load((REPO / "configs" / "data_efficiency_student.yaml").read_text())
    student.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8)
    paths = tmp_path / "teacher.yaml", tmp_path / "student.yaml"
    for path, values in zip(paths, (teacher, student)):
        path.write_text(yaml.safe_dump(values))
    return paths


def _flags(tmp_path, sample_dir, tiny_configs, tiny_teacher):
    teacher, student = tiny_configs
    return ["--budget", "smoke", "--dataset_name", str(sample_dir), "--sizes", "100", "200",
            "--teacher_config", str(teacher), "--student_config", str(student), "--full_teacher", str(tiny_teacher),
            "--work_dir", str(tmp_path / "runs"), "--out", str(tmp_path / "data_efficiency.json"),
            "--max_eval_samples", "32"]


def test_cells_order_the_teacher_before_its_student_and_add_a_seed_at_the_ends():
    import data_efficiency

    order = data_efficiency.cells((1000, 5000, 50000))
    assert order.index(("cnn", 1000, 0)) < order.index(("deit_hard_same_n", 1000, 0))
    seeds = {n: {seed for _, size, seed in order if size == n} for n in (1000, 5000, 50000)}
    assert seeds == {1000: {0, 1}, 5000: {0}, 50000: {0, 1}}
    assert len(order) == 4 * (2 + 1 + 2)


def test_an_interrupted_study_resumes_without_retraining_finished_cells(tmp_path, sample_dir, tiny_configs,
                                                                          tiny_teacher, monkeypatch):
    import data_efficiency

    trained, interrupted = [], []
    real = data_efficiency.train_cell

    def counting(model, n, seed, *args):
        if len(trained) == 5 and not interrupted:
            interrupted.append(True)
            raise SessionEnded("the session ended")
        trained.append((model, n, seed))
        return real(model, n, seed, *args)

    monkeypatch.setattr(data_efficiency, "train_cell", counting)
    with pytest.raises(SessionEnded):
        data_efficiency.main(_flags(tmp_path, sample_dir, tiny_configs, tiny_teacher))
    saved = json.loads((tmp_path / "data_efficiency.json").read_text())
    assert len(saved["cells"]) == 5  # every finished cell was written at once
    first = list(trained)
    result = data_efficiency.main(_flags(tmp_path, sample_dir, tiny_configs, tiny_teacher))
    assert trained[5:] and not set(trained[5:]) & set(first)  # nothing trained twice
    assert len(result["cells"]) == len(data_efficiency.cells((100, 200))) == 16
    cell = result["cells"]["deit_hard_same_n/n=100/seed=0"]
    assert 0 <= cell["top1"] <= 1 and cell["steps"] == data_efficiency.BUDGETS["smoke"]["deit"][0]
    assert "| 100 |" in result["markdown"] and "Distillation from a CNN of the same n" in result["markdown"]
    assert "The full-data teacher agrees with the true label on" in result["markdown"]
    assert (tmp_path / "data_efficiency.png").stat().st_size > 0
