"""The benchmark scripts run end to end (on the smoke budget: seconds, tiny models)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_reproduce_table_smoke(sample_dir, tiny_teacher, tmp_path):
    import reproduce_table

    result = reproduce_table.main([
        "--budget", "smoke", "--dataset_name", str(sample_dir), "--teacher", str(tiny_teacher),
        "--work_dir", str(tmp_path / "work"), "--out", str(tmp_path / "table"),
    ])
    labels = [row["row"] for row in result["rows"]]
    assert labels == [label for label, _, _ in reproduce_table.ROWS] + [reproduce_table.TRANSFORMER_TEACHER_ROW]
    markdown = (tmp_path / "table.table.md").read_text()
    assert "usual distillation (hard, class token)" in markdown and "teacher: tiny-teacher" in markdown
    assert (tmp_path / "table.png").stat().st_size > 0
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["rows"][1]["metrics"].get("eval_distill_top1") is None  # plain ViT: class head only
    assert all(row["curve"] for row in saved["rows"])
    # The transformer-teacher row really distilled from the trained DeiT of row 0.
    assert saved["teacher"]["transformer_teacher_top1"] == saved["rows"][0]["metrics"]["eval_fused_top1"]


def test_official_style_criterion_of_the_throughput_reference_matches_our_loss():
    """The reference loop's loss (deit/losses.py as written) and ours are the same objective, so the
    speed comparison compares the same work: soft with the official per-element KL, hard as is."""
    import torch

    from hf_deit.losses import deit_distillation_loss
    from throughput import OfficialDistillationLoss

    torch.manual_seed(0)
    images = torch.randn(6, 3, 8, 8)
    teacher_logits = torch.randn(6, 10)

    class Teacher(torch.nn.Module):
        def forward(self, pixel_values):
            assert pixel_values is images
            return type("Out", (), {"logits": teacher_logits})()

    cls_logits, distill_logits, labels = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    for kind, reduction in (("soft", "elementwise_mean"), ("hard", "batchmean")):
        official = OfficialDistillationLoss(Teacher(), kind, alpha=0.5, tau=3.0)(images, (cls_logits, distill_logits), labels)
        ours = deit_distillation_loss(cls_logits, distill_logits, labels, teacher_logits, kind, 0.5, 3.0, reduction).loss
        torch.testing.assert_close(official, ours)


def test_throughput_benchmark_smoke(tmp_path):
    import throughput

    from helpers import TINY_STUDENT_ARGS

    result = throughput.main(["--steps", "2", "--warmup", "1", "--repeats", "1", "--out", str(tmp_path / "throughput"),
                              "--", *TINY_STUDENT_ARGS, "--max_train_samples", "256"])
    assert set(result["rows"]) == {"none", "soft", "hard"}
    for row in result["rows"].values():
        assert row["trainer_images_per_s"] > 0 and row["reference_images_per_s"] > 0 and row["ratio"] > 0
    assert result["floors"]["teacher_forward_s"] > 0
    assert "| hard |" in result["markdown"]
    assert json.loads((tmp_path / "throughput.json").read_text())["settings"]["steps"] == 2


def test_precision_benchmark_smoke(tmp_path):
    import precision

    from helpers import TINY_STUDENT_ARGS

    result = precision.main(["--steps", "2", "--warmup", "1", "--eval_samples", "32", "--repeats", "2", "--variants", "fp32_sdpa",
                             "eager", "teacher_bf16_cl", "fp16_autocast", "--out", str(tmp_path / "precision"),
                             "--", *TINY_STUDENT_ARGS, "--max_train_samples", "256"])
    rows = {row["variant"]: row for row in result["rows"]}
    assert rows["fp16_autocast"].get("skipped", "").startswith("needs a GPU") or rows["fp16_autocast"]["images_per_s"] > 0
    for name in ("fp32_sdpa", "eager", "teacher_bf16_cl"):
        assert rows[name]["images_per_s"] > 0 and 0 <= rows[name]["fused_top1"] <= 1
        assert len(rows[name]["rounds"]) == 2 and rows[name]["vs_default"] > 0
    assert rows["fp32_sdpa"]["vs_default"] == 1.0
    assert "--attn_implementation eager" in result["markdown"]


def test_precision_update_keeps_only_rows_timed_on_this_machine():
    """Rows from a CPU without bf16 instructions must not sit beside this machine's as if comparable."""
    import precision
    from timing import machine

    here = machine()
    elsewhere = {**here, "cpu_features": ["AVX2"], "date": "2026-01-01"}
    previous = {"environment": elsewhere, "rows": [
        {"variant": "fp32_sdpa", "environment": {**here, "date": "2026-01-01"}},  # same machine, another day
        {"variant": "eager", "environment": elsewhere},
        {"variant": "teacher_bf16_cl"},  # older file: the row has no environment of its own, the file's applies
        {"variant": "bf16_autocast", "environment": here},  # being re-run now
        {"variant": "fp16_autocast", "skipped": "needs a GPU", "environment": here},  # still true here: kept
        {"variant": "compile_both", "skipped": "needs a GPU", "environment": elsewhere},
    ]}
    kept = precision.rows_measured_here(previous, rerun={"bf16_autocast"})
    assert set(kept) == {"fp32_sdpa", "fp16_autocast"}


def test_input_pipeline_benchmark_smoke(sample_dir, tmp_path):
    import input_pipeline

    from helpers import TINY_STUDENT_ARGS

    result = input_pipeline.main(["--quick", "--dataset_name", str(sample_dir), "--workers", "0", "--no_end_to_end",
                                  "--out", str(tmp_path / "input_pipeline"), "--extra", *TINY_STUDENT_ARGS])
    assert "| input pipeline |" in result["markdown"] and "Reproduce:" in result["markdown"]
    assert json.loads((tmp_path / "input_pipeline.json").read_text())["markdown"] == result["markdown"]
