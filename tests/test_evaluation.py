"""scripts/evaluate_student.py: every head, the teacher, agreement, per-class accuracy, confusion matrix, speed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import CIFAR10_NAMES, REPO
from tiny_student import tiny_student  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def evaluated(tiny_student, tiny_teacher, sample_dir, tmp_path_factory):
    """The script itself, as users run it (it must not shadow the `evaluate` library it imports)."""
    output_dir = tmp_path_factory.mktemp("eval")
    command = [
        sys.executable, str(REPO / "scripts" / "evaluate_student.py"),
        "--student", str(tiny_student), "--dataset_name", str(sample_dir), "--split", "test",
        "--max_eval_samples", "60", "--teacher", str(tiny_teacher), "--output_dir", str(output_dir),
        "--batch_size", "32", "--benchmark_seconds", "0.2",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output_dir, json.loads((output_dir / "evaluation.json").read_text()), completed.stdout


def test_results_json_has_every_head_teacher_and_agreement(evaluated):
    _, results, stdout = evaluated
    assert results["num_images"] == 60 and results["split"] == "test"
    metrics = results["metrics"]
    for head in ("cls", "distill", "fused", "teacher"):
        assert 0.0 <= metrics[f"{head}_top1"] <= metrics[f"{head}_top5"] <= 1.0
    assert 0.0 <= metrics["student_teacher_agreement"] <= 1.0
    assert 0.0 <= metrics["cls_distill_agreement"] <= 1.0
    assert "| teacher |" in stdout


def test_per_class_accuracy_confusion_matrix_and_report(evaluated):
    output_dir, results, _ = evaluated
    per_class = results["per_class_accuracy"]
    assert list(per_class) == CIFAR10_NAMES
    assert sum(entry["images"] for entry in per_class.values()) == 60
    matrix = results["confusion_matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == 60
    correct = sum(matrix[i][i] for i in range(10))
    assert correct / 60 == pytest.approx(results["metrics"]["fused_top1"])
    png = output_dir / results["confusion_matrix_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (output_dir / "eval_report.md").read_text()
    assert "Per-class accuracy" in report and "images/s" in report


def test_throughput_names_the_device(evaluated):
    inference = evaluated[1]["inference"]
    assert inference["device"].startswith(("cpu", "cuda", "mps"))
    assert inference["throughput_batch_size"] == 32
    assert inference["throughput_images_per_s"] > 0 and inference["latency_ms_batch_1"] > 0


def test_labels_are_matched_by_name_not_index(tiny_student, sample_dir, tmp_path):
    """A student whose classes are stored in another order scores exactly the same."""
    from transformers import DeiTForImageClassificationWithTeacher, DeiTImageProcessor

    from hf_deit.config import EvaluationArguments
    from hf_deit.publish.evaluation import evaluate_student

    model = DeiTForImageClassificationWithTeacher.from_pretrained(tiny_student)
    order = list(reversed(range(10)))
    with torch.no_grad():
        for head in (model.cls_classifier, model.distillation_classifier):
            head.weight.copy_(head.weight[order])
            head.bias.copy_(head.bias[order])
    model.config.id2label = {i: CIFAR10_NAMES[j] for i, j in enumerate(order)}
    model.config.label2id = {name: i for i, name in model.config.id2label.items()}
    reordered = tmp_path / "reordered"
    model.save_pretrained(reordered)
    DeiTImageProcessor.from_pretrained(tiny_student).save_pretrained(reordered)

    def run(student: Path, out: str):
        args = EvaluationArguments(student=str(student), dataset_name=str(sample_dir), max_eval_samples=40,
                                   output_dir=str(tmp_path / out), benchmark=False, device="cpu")
        return evaluate_student(args)

    original, permuted = run(tiny_student, "a"), run(reordered, "b")
    for key in ("cls_top1", "cls_top5", "distill_top1", "fused_top1", "fused_top5"):
        assert permuted["metrics"][key] == pytest.approx(original["metrics"][key])
    assert permuted["confusion_matrix"] == original["confusion_matrix"]
    assert "inference" not in permuted


def test_mismatched_labels_are_a_clear_error(tiny_student, tmp_path):
    from PIL import Image

    from hf_deit.config import EvaluationArguments
    from hf_deit.publish.evaluation import evaluate_student

    folder = tmp_path / "fruit"  # an image folder: test/<class>/<image>
    for i in range(4):
        name = ["apple", "pear"][i % 2]
        (folder / "test" / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / "test" / name / f"{i}.png")
    args = EvaluationArguments(student=str(tiny_student), dataset_name=str(folder), split="test",
                               output_dir=str(tmp_path / "out"), benchmark=False, device="cpu")
    with pytest.raises(ValueError, match="student's classes do not match"):
        evaluate_student(args)


def test_single_head_student_reports_its_class_head(tiny_student, sample_dir, tmp_path):
    """Plain-ViT ablation students (no distillation token) are evaluated on their one head."""
    from transformers import DeiTImageProcessor, ViTConfig, ViTForImageClassification

    from hf_deit.config import EvaluationArguments
    from hf_deit.publish.evaluation import evaluate_student

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, num_labels=10, id2label=dict(enumerate(CIFAR10_NAMES)),
                       label2id={name: i for i, name in enumerate(CIFAR10_NAMES)})
    folder = tmp_path / "vit"
    ViTForImageClassification(config).save_pretrained(folder)
    DeiTImageProcessor.from_pretrained(tiny_student).save_pretrained(folder)
    results = evaluate_student(EvaluationArguments(student=str(folder), dataset_name=str(sample_dir),
                                                   max_eval_samples=20, benchmark=False, device="cpu"))
    assert set(results["metrics"]) == {"cls_top1", "cls_top5"} and results["confusion_matrix_head"] == "cls"
    assert (folder / "evaluation.json").is_file()  # default output_dir: the student folder
