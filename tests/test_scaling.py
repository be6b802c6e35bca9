"""benchmarks/scaling.py: the fit and projection arithmetic on synthetic numbers, the FLOP counts
against published figures, and the --quick path end to end (seconds, tiny models)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import scaling  # noqa: E402


def test_linear_fit_recovers_a_perfect_line():
    images = [1000, 2500, 5000]
    fit = scaling.linear_fit(images, [3.0 + 0.02 * n for n in images])
    assert fit["slope"] == pytest.approx(0.02)
    assert fit["intercept"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_linear_fit_on_noisy_points_and_bad_input():
    fit = scaling.linear_fit([1, 2, 3, 4], [1.0, 2.5, 2.5, 4.0])
    assert 0.0 < fit["r2"] < 1.0
    assert fit["slope"] == pytest.approx(0.9)
    assert scaling.linear_fit([1, 2], [5.0, 5.0])["r2"] == 1.0  # a flat line is a perfect fit too
    with pytest.raises(ValueError):
        scaling.linear_fit([1], [1.0])
    with pytest.raises(ValueError):
        scaling.linear_fit([2, 2], [1.0, 3.0])


def test_projection_arithmetic():
    peak = scaling.H100_BF16_DENSE_TFLOPS * 1e12
    assert scaling.gpu_seconds(peak * 100, mfu=0.5, gpus=1) == pytest.approx(200.0)
    one = scaling.gpu_seconds(1e18, mfu=0.4, gpus=1)
    assert scaling.gpu_seconds(1e18, mfu=0.4, gpus=8) == pytest.approx(one / (8 * scaling.SCALING_EFFICIENCY_8GPU))
    row = scaling.projection_row("CIFAR-10", 50_000, 300, "s", 2.0, "t", 0.5, None, "")
    assert row["total_flops"] == pytest.approx(2.5e9 * 50_000 * 300)
    assert set(row["gpu_seconds"]) == {f"{g}xH100@{m}" for g in (1, 8) for m in scaling.MFU_SCENARIOS}
    assert row["images_per_s_needed_8gpu"] == pytest.approx(50_000 * 300 / row["gpu_seconds"]["8xH100@40%"])
    assert scaling.human_time(90) == "1.5 min" and scaling.human_time(3 * 86400) == "3.0 d"
    assert scaling.human_time(None) == "-"


def test_flop_counts_match_published_figures():
    # FLOP = 2 multiply-adds; timm / the papers quote multiply-adds ("GFLOPs"): DeiT-Ti 1.3, DeiT-B 17.6,
    # RegNetY-16GF 15.9 (and 84 M parameters).
    tiny, base = (scaling.student_flops(s, 1000) for s in (scaling.IMAGENET_STUDENTS[0], scaling.IMAGENET_STUDENTS[2]))
    assert tiny["gflops_fwd"] / 2 == pytest.approx(1.26, rel=0.03)
    assert base["gflops_fwd"] / 2 == pytest.approx(17.6, rel=0.03)
    assert tiny["tokens"] == 198 and base["gflops_fwd_bwd"] / base["gflops_fwd"] == pytest.approx(3.0, rel=0.02)
    regnet = scaling.regnety_16gf_flops()
    assert regnet["gflops_fwd"] / 2 == pytest.approx(15.9, rel=0.02)
    assert regnet["params"] / 1e6 == pytest.approx(83.6, rel=0.02)


def test_scaling_quick_run(sample_dir, tiny_teacher, tmp_path):
    result = scaling.main([
        "--quick", "--dataset_name", str(sample_dir), "--teacher", str(tiny_teacher),
        "--work_dir", str(tmp_path / "work"), "--out", str(tmp_path / "scaling"),
    ])
    names = [s.name for s in scaling.QUICK_STUDENTS]
    assert [s["name"] for s in result["students"]] == names
    assert sorted((r["student"], r["images"]) for r in result["runs"]) == sorted(
        (n, size) for n in names for size in scaling.QUICK_SIZES
    )
    for run in result["runs"]:
        assert run["epoch_s"] > 0 and run["steps"] == -(-run["images"] // scaling.QUICK_BATCH)
        assert run["first_step_s"] > 0 and run["steady_images_per_s"] > 0
    flops = [s["gflops_fwd_bwd"] for s in result["students"]]
    assert flops == sorted(flops) and all(f > 0 for f in flops)
    assert set(result["fits"]["per_student"]) == set(names)
    assert result["teacher"]["name"] == "tiny-teacher" and result["breakdown"]["teacher_ms_per_image"] > 0
    datasets = [row["dataset"] for row in result["projection"]["rows"]]
    assert datasets == ["CIFAR-10"] * 3 + ["ImageNet-1k"] * 3

    saved = json.loads((tmp_path / "scaling.json").read_text())
    markdown = saved["markdown"]
    for text in ("### Measured", "### Projected, not measured", "DeiT-B/16", "RegNetY-16GF", "53 h", "QUICK MODE",
                 *names):
        assert text in markdown
    assert markdown.split("\n", 2)[2] in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
