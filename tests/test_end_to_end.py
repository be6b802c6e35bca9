"""A few distillation steps through the same function the script calls, then stock loading."""

import json

import pytest
import torch

from hf_deit.config import DataConfig, ModelConfig
from hf_deit.data.datasets import load_image_classification_data
from hf_deit.data.transforms import make_eval_transform
from hf_deit.cli.distill import main

from helpers import CIFAR10_NAMES, TINY_STUDENT_ARGS


def tiny_run_args(sample_dir, output_dir, *extra):
    return [
        "--config", "configs/quickstart.yaml",
        "--dataset_name", str(sample_dir),
        "--max_train_samples", "64", "--max_eval_samples", "32",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--logging_steps", "2", "--output_dir", str(output_dir), "--disable_tqdm", "true",
        *TINY_STUDENT_ARGS, *extra,
    ]


@pytest.fixture(scope="module")
def distilled(sample_dir, tiny_teacher, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "student"
    metrics = main(tiny_run_args(sample_dir, output_dir, "--teacher_model_name_or_path", str(tiny_teacher)))
    return output_dir, metrics


def test_run_reports_every_head_and_logs_loss_parts(distilled):
    output_dir, metrics = distilled
    for head in ("cls", "distill", "fused", "teacher"):
        assert 0.0 <= metrics[f"eval_{head}_top1"] <= 1.0
        assert metrics[f"eval_{head}_top5"] >= metrics[f"eval_{head}_top1"]
    assert metrics["train_images"] == 64 and metrics["eval_images"] == 32
    results = json.loads((output_dir / "results.json").read_text())
    assert results["eval_fused_top1"] == metrics["eval_fused_top1"]
    assert "| teacher |" in (output_dir / "results.md").read_text()
    state = json.loads((output_dir / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert logged and all("loss_cls" in entry and "loss_distill" in entry for entry in logged)


def test_saved_student_loads_in_stock_transformers_and_pipeline(distilled, sample_dir):
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        DeiTForImageClassificationWithTeacher,
        pipeline,
    )

    output_dir, _ = distilled
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "preprocessor_config.json").is_file()
    model = DeiTForImageClassificationWithTeacher.from_pretrained(output_dir).eval()
    assert model.config.id2label[0] == "airplane" and model.config.image_size == 32
    auto = AutoModelForImageClassification.from_pretrained(output_dir)
    assert type(auto) is DeiTForImageClassificationWithTeacher
    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert processor.size == {"height": 32, "width": 32}

    # Our evaluation path (the eval transform the Trainer used) vs the stock pipeline, same images.
    data = load_image_classification_data(DataConfig(dataset_name=str(sample_dir), max_eval_samples=24))
    images = [data.eval[i]["img"] for i in range(24)]
    batch = make_eval_transform(data, processor)(data.eval[:24])
    with torch.no_grad():
        ours = model(pixel_values=batch["pixel_values"]).logits.argmax(-1).tolist()
    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    theirs = [predictions[0]["label"] for predictions in classifier(images, top_k=1)]
    assert theirs == [CIFAR10_NAMES[i] for i in ours]


def test_teacher_fraction_labels_a_share_of_each_training_batch_and_all_of_an_evaluation_batch(
    sample_dir, tiny_teacher, tmp_path
):
    from hf_deit.config import parse_config
    from hf_deit.training.distill import build_distillation_run

    argv = tiny_run_args(sample_dir, tmp_path / "student", "--teacher_model_name_or_path", str(tiny_teacher),
                         "--distillation_teacher_fraction", "0.25", "--max_steps", "2")
    run = build_distillation_run(*parse_config(argv))
    seen: list[tuple[bool, int]] = []
    run.trainer.teacher.register_forward_pre_hook(
        lambda module, args: seen.append((run.trainer.model.training, args[0].shape[0]))
    )
    run.trainer.train()
    run.trainer.evaluate()
    assert [rows for training, rows in seen if training] == [4, 4]  # a quarter of each 16-image batch
    assert sum(rows for training, rows in seen if not training) == 32  # every evaluation image


def test_rows_without_teacher_reach_the_loss(sample_dir, tiny_teacher, tmp_path, monkeypatch):
    from hf_deit.config import parse_config
    from hf_deit.training import trainer as trainer_module
    from hf_deit.training.distill import build_distillation_run

    settings: list[str] = []

    def recording_loss(*args, **kwargs):
        settings.append(kwargs["rows_without_teacher"])
        return deit_distillation_loss(*args, **kwargs)

    deit_distillation_loss = trainer_module.deit_distillation_loss
    monkeypatch.setattr(trainer_module, "deit_distillation_loss", recording_loss)
    argv = tiny_run_args(sample_dir, tmp_path / "student", "--teacher_model_name_or_path", str(tiny_teacher),
                         "--distillation_teacher_fraction", "0.5", "--distillation_rows_without_teacher", "skip",
                         "--max_steps", "1")
    build_distillation_run(*parse_config(argv)).trainer.train()
    assert settings == ["skip"]  # not the default: the config's value, not the function's


def test_none_needs_no_teacher(sample_dir, tmp_path):
    metrics = main(
        tiny_run_args(sample_dir, tmp_path / "none", "--distillation_type", "none", "--teacher_model_name_or_path", "")
    )
    assert "eval_teacher_top1" not in metrics and "eval_distill_top1" in metrics


def test_distillation_without_teacher_is_a_clear_error(sample_dir, tmp_path):
    with pytest.raises(ValueError, match="needs a teacher"):
        main(tiny_run_args(sample_dir, tmp_path / "x", "--distillation_type", "soft", "--teacher_model_name_or_path", ""))


def test_missing_teacher_folder_is_a_clear_error(sample_dir, tmp_path):
    with pytest.raises(OSError, match="Could not load the teacher"):
        main(tiny_run_args(sample_dir, tmp_path / "x", "--teacher_model_name_or_path", str(tmp_path / "missing")))


def test_wrong_column_is_a_clear_error(sample_dir, tmp_path, tiny_teacher):
    with pytest.raises(ValueError, match="label_column 'fine_label' is not in the dataset"):
        main(tiny_run_args(sample_dir, tmp_path / "x", "--label_column", "fine_label",
                           "--teacher_model_name_or_path", str(tiny_teacher)))
