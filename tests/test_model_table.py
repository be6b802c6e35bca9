"""benchmarks/model_table.py on one tiny row: sizes, int8, speed, accuracy, the card section."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO
from tiny_student import tiny_student  # noqa: F401  (fixture)

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture()
def table(tiny_student, sample_dir, tmp_path, monkeypatch):
    import model_table

    folder = tmp_path / "student"
    shutil.copytree(tiny_student, folder)
    (folder / "README.md").write_text("# My student\n\nWritten by hand.\n")
    monkeypatch.setattr(model_table, "SHIPPED", {"student (DeiT, hard distillation)": folder})
    result = model_table.main(["--dataset_name", str(sample_dir), "--max_eval_samples", "40", "--seconds", "0.05",
                               "--presets", "--out", str(tmp_path / "model_table.json")])
    return result, folder


def test_one_row_has_every_column(table):
    result, _ = table
    (row,) = result["rows"]
    assert row["parameters"] > 0 and 0 <= row["top1"] <= 1 and 0 <= row["int8_top1"] <= 1
    assert row["safetensors_mb_bf16"] == pytest.approx(row["safetensors_mb_fp32"] / 2, rel=0.1)
    assert 0 < row["int8_mb"] < row["safetensors_mb_fp32"]
    assert row["images_per_s_batch_1"] == pytest.approx(1000 / row["latency_p50_ms"], rel=0.01)
    assert row["images_per_s_batch_256"] > 0 and row["int8_images_per_s_batch_256"] > 0
    assert "| student (DeiT, hard distillation) |" in result["markdown"]


def test_the_table_goes_into_the_card_once_and_keeps_the_hand_written_text(table, sample_dir):
    import model_table

    _, folder = table
    text = (folder / "README.md").read_text()
    assert text.startswith("# My student\n\nWritten by hand.") and text.count("<!-- hf-deit:begin size-speed -->") == 1
    model_table.write_into_cards([model_table.Row("student (DeiT, hard distillation)", None)],
                                 {"student (DeiT, hard distillation)": folder}, "| new table |")
    text = (folder / "README.md").read_text()
    assert text.count("<!-- hf-deit:begin size-speed -->") == 1 and "| new table |" in text


def test_int8_quantizes_only_the_linear_layers():
    import model_table

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
    quantized = model_table.int8(model)
    assert type(quantized[0]) is torch.nn.Conv2d and "quantized" in type(quantized[2]).__module__
    assert type(model[2]) is torch.nn.Linear  # the original is untouched
