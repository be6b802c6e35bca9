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
