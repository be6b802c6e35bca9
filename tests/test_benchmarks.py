"""The benchmark scripts run end to end (on the smoke budget: seconds, tiny models)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

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
    other_features = ["AVX2", "AVX-512"] if here["cpu_features"] == ["AVX2"] else ["AVX2"]  # differs on any CPU
    elsewhere = {**here, "cpu_features": other_features, "date": "2026-01-01"}
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


def test_parity_benchmark_smoke(sample_dir, tiny_teacher, tmp_path):
    """Both loops train on the same first images and are scored on the same test split; a rerun skips finished runs."""
    import parity

    flags = ["--dataset_name", str(sample_dir), "--teacher", str(tiny_teacher), "--train_images", "64",
             "--epochs", "1", "--seeds", "1", "--rows", "hf-deit", "reference", "--out", str(tmp_path / "parity.json")]
    runs = parity.main(flags)
    assert [(r["row"], r["seed"]) for r in runs] == [("hf-deit", 1), ("reference", 1)]
    assert all(0 <= r["fused"] <= 1 and r["seconds_per_step"] > 0 for r in runs)
    saved = json.loads((tmp_path / "parity.json").read_text())
    assert "| reference | 1 |" in saved["markdown"] and "1,000-image test split" in saved["markdown"]
    assert parity.main(flags) == runs  # resumable: nothing retrained


def test_parity_reference_criterion_is_the_official_hard_distillation():
    import torch

    from hf_deit.losses import deit_distillation_loss
    from parity import official_hard_distillation

    torch.manual_seed(0)
    cls, distill, teacher, labels = torch.randn(5, 10), torch.randn(5, 10), torch.randn(5, 10), torch.randint(0, 10, (5,))
    ours = deit_distillation_loss(cls, distill, labels, teacher, "hard", 0.5, 1.0).loss
    torch.testing.assert_close(official_hard_distillation(cls, distill, labels, teacher, 0.5), ours)


def test_teacher_result_ships_a_stock_loadable_model_with_its_card(sample_dir, tmp_path):
    import teacher_result
    from transformers import AutoModelForImageClassification

    from hf_deit.cli.train_teacher import main as train_teacher

    run = tmp_path / "teacher"
    train_teacher(["--config", "configs/teacher_cifar10_resnet.yaml", "--dataset_name", str(sample_dir),
                   "--model_config_overrides", '{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}',
                   "--image_size", "32", "--max_train_samples", "64", "--max_eval_samples", "32", "--max_steps", "2",
                   "--per_device_train_batch_size", "32", "--save_strategy", "no", "--output_dir", str(run),
                   "--disable_tqdm", "true"])
    (tmp_path / "ship").mkdir()  # a card from an earlier ship, with a section that model_table.py wrote
    table = "<!-- hf-deit:begin size-speed -->\n| the size table |\n<!-- hf-deit:end size-speed -->"
    (tmp_path / "ship" / "README.md").write_text(f"# old card\n\n{table}\n")
    teacher_result.main([str(run), "--ship", str(tmp_path / "ship"), "--out", str(tmp_path / "teacher.json")])
    saved = json.loads((tmp_path / "teacher.json").read_text())
    assert f"{100 * saved['top1']:.2f} %" in saved["markdown"] and saved["tta_top1"] is not None
    card = (tmp_path / "ship" / "README.md").read_text()
    assert f"value: {saved['top1']:.4f}" in card and "configs/teacher_cifar10_resnet.yaml" in card
    assert card.count(table) == 1 and "# old card" not in card  # the new card keeps the old one's size table
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "ship")
    assert type(model).__name__ == "ResNetForImageClassification" and model.config.num_labels == 10


def test_students_benchmark_smoke_with_resume(sample_dir, tiny_teacher, tmp_path):
    """One tiny run, interrupted after its first checkpoint and resumed: the clock carries on, the table reads it."""
    import cifar10_students

    from helpers import TINY_STUDENT_ARGS

    flags = ["--mode", "hard", "--dataset_name", str(sample_dir), "--eval_every", "2", "--save_every", "2",
             "--runs_dir", str(tmp_path / "runs"), "--out", str(tmp_path / "students.json"),
             "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "64",
             "--eval_samples_during_training", "16", "--max_eval_samples", "32", "--per_device_train_batch_size", "16",
             "--num_train_epochs", "2", "--logging_steps", "2", *TINY_STUDENT_ARGS]
    result = cifar10_students.main(flags + ["--max_steps", "4"])  # stops after 4 of 8 steps: "interrupted"
    first = result["curves"]["hard"]
    result = cifar10_students.main(flags + ["--max_steps", "8"])  # resumes from checkpoint-4
    curve = result["curves"]["hard"]
    assert len(curve) == 4 and curve[:2] == first
    assert all(later[0] >= earlier[0] for earlier, later in zip(curve, curve[1:]))  # the clock never restarts
    row = result["rows"][0]
    assert row["mode"] == "hard" and 0 <= row["fused"] <= 1 and row["seconds_per_step"] > 0
    assert row["machine"] == json.loads((tmp_path / "runs" / "hard" / "machine.json").read_text())
    assert set(row["epochs_to"]) == set(row["minutes_to"]) == {"60%", "70%", "75%", "80%", "85%", "90%", "95%"}
    assert "| hard |" in result["markdown"] and (tmp_path / "students_time_to_accuracy.png").stat().st_size > 0
    assert "## The students of `cifar10_cpu_student.yaml`" in result["markdown"]
    assert (f"--mode MODE --dataset_name {sample_dir} --runs_dir {tmp_path / 'runs'} "
            f"--out {tmp_path / 'students.json'}`") in result["markdown"]  # the command names this run's data and files
    saved = json.loads((tmp_path / "students.json").read_text())  # a row distilled from an earlier teacher
    saved["rows"][0] = {**row, "teacher": row["teacher"] - 0.1, "fused": 0.123}
    (tmp_path / "students.json").write_text(json.dumps(saved))
    result = cifar10_students.main(["--table", "--runs_dir", str(tmp_path / "runs"),
                                    "--out", str(tmp_path / "students.json")])
    assert result["rows"] == [row] and [r["fused"] for r in result["earlier_rows"]] == [0.123]
    assert "Earlier runs of a mode" in result["markdown"] and "**12.30**" in result["markdown"]
    shutil.rmtree(tmp_path / "runs")  # a later session: the run folder is gone, its row stays on the page
    result = cifar10_students.main(["--table", "--runs_dir", str(tmp_path / "runs"),
                                    "--out", str(tmp_path / "students.json")])
    assert result["rows"] == [row] and "| hard |" in result["markdown"] and len(result["curves"]["hard"]) == 4
    assert [r["fused"] for r in result["earlier_rows"]] == [0.123]  # the earlier teacher's row stays too


def test_students_table_names_each_rows_machine(tmp_path):
    """Modes of one table may run in sessions on different CPUs: each row keeps the machine that trained it (a
    row saved without one takes the page's), and the page names every machine when they differ."""
    import cifar10_students

    xeon = {"device": "CPU: Intel Xeon", "cpu_features": ["AVX2", "AVX-512", "AVX512-BF16"], "torch_threads": 2,
            "torch": "2.14.1"}
    epyc = {**xeon, "device": "CPU: AMD EPYC", "cpu_features": ["AVX2"]}
    row = {"fused": 0.7, "cls": 0.7, "distill": 0.7, "teacher": 0.89, "train_minutes": 90.0, "seconds_per_step": 1.0,
           "minutes_to": {}, "epochs_to": {}, "budget_minutes": 90.0, "epochs": 27.0}
    saved = {"rows": [{**row, "mode": "hard"}, {**row, "mode": "none", "machine": epyc}],
             "curves": {"hard": [[1.0, 0.5, 1.0]], "none": [[1.0, 0.6, 1.0]]}, "machine": xeon}
    result = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json", saved=saved)
    assert [row["machine"] for row in result["rows"]] == [xeon, epyc]
    assert "| Intel Xeon (AVX512-BF16) |" in result["markdown"] and "| AMD EPYC (AVX2) |" in result["markdown"]
    assert "Machines: hard: CPU: Intel Xeon (AVX2, AVX-512, AVX512-BF16)" in result["markdown"]
    saved["rows"][1]["machine"] = xeon  # one machine for every row: a single line
    result = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json", saved=saved)
    assert "Machines:" not in result["markdown"] and "Machine: CPU: Intel Xeon (AVX2" in result["markdown"]


def finished_student_run(run, top1: float, environment: dict):
    """The files ``cifar10_students.table`` reads from a finished run: its final metrics (every head at ``top1``),
    a one-point curve and the 90-minute clock, and its machine."""
    run.mkdir(parents=True)
    (run / "all_results.json").write_text(json.dumps(
        {"eval_fused_top1": top1, "eval_cls_top1": top1, "eval_distill_top1": top1, "eval_teacher_top1": 0.89}))
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 100, "epoch": 20.0, "log_history": [
        {"eval_fused_top1": 0.65, "train_wall_s": 600.0, "epoch": 10.0}, {"train_wall_s": 5400.0}]}))
    (run / "machine.json").write_text(json.dumps(environment))
    return run


def test_students_table_keeps_a_modes_rows_from_different_machines(tmp_path):
    """A mode re-run on another CPU (to compare it with modes that ran there) adds a row: the earlier machine's
    row and curve stay, each labelled with its machine; a re-run on the same machine replaces its row."""
    import cifar10_students

    xeon = {"device": "CPU: Intel Xeon", "cpu_cores": 2, "cpu_features": ["AVX2", "AVX-512", "AVX512-BF16"],
            "torch_threads": 2, "torch": "2.14.1"}
    epyc = {**xeon, "device": "CPU: AMD EPYC", "cpu_features": ["AVX2"]}
    row = {"cls": 0.7, "distill": 0.7, "teacher": 0.89, "train_minutes": 90.0, "seconds_per_step": 1.0,
           "minutes_to": {}, "epochs_to": {}, "budget_minutes": 90.0, "epochs": 27.0}
    saved = {"rows": [{**row, "mode": "hard", "fused": 0.77, "machine": xeon},
                      {**row, "mode": "none", "fused": 0.78, "machine": epyc}],
             "curves": {"hard": [[1.0, 0.5, 1.0]], "none": [[1.0, 0.6, 1.0]]}, "machine": xeon}
    run = finished_student_run(tmp_path / "runs" / "hard", 0.74, epyc)
    result = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json",
                                    saved=json.loads(json.dumps(saved)))
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["hard on Intel Xeon (AVX512-BF16)", "hard on AMD EPYC (AVX2)", "none"]
    assert [r["fused"] for r in result["rows"]] == [0.77, 0.74, 0.78] and not result["earlier_rows"]
    assert result["curves"]["hard on Intel Xeon (AVX512-BF16)"] == [(1.0, 0.5, 1.0)]
    assert result["curves"]["hard on AMD EPYC (AVX2)"] == [(10.0, 0.65, 10.0)]
    assert "| hard on AMD EPYC (AVX2) | 89.00 | **74.00** |" in result["markdown"]
    assert "| hard on AMD EPYC (AVX2) | 10.0 |" in result["markdown"]  # the time tables name rows by label too
    again = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json",
                                   saved=json.loads(json.dumps(result, default=list)))  # the page rebuilt later
    assert [r["label"] for r in again["rows"]] == labels and again["curves"] == result["curves"]
    (run / "machine.json").write_text(json.dumps(xeon))  # the same mode re-run on the first machine: replaced
    result = cifar10_students.table(xeon, tmp_path / "runs", tmp_path / "students.json",
                                    saved=json.loads(json.dumps(saved)))
    assert [(r["label"], r["fused"]) for r in result["rows"]] == [("hard", 0.74), ("none", 0.78)]


def test_students_table_adds_a_variant_row_named_by_the_flags_its_run_recorded(tmp_path):
    """A variant (``--variant NAME`` plus recipe flags) gets its own row under its mode's, named by the flags in the
    command its run recorded; the row stays on the page once the run folder is gone."""
    import cifar10_students

    epyc = {"device": "CPU: AMD EPYC", "cpu_cores": 2, "cpu_features": ["AVX2"], "torch_threads": 2, "torch": "2.14.1"}
    row = {"cls": 0.7, "distill": 0.7, "teacher": 0.89, "train_minutes": 90.0, "seconds_per_step": 1.0,
           "minutes_to": {}, "epochs_to": {}, "budget_minutes": 90.0, "epochs": 18.0, "machine": epyc}
    saved = {"rows": [{**row, "mode": "hard", "fused": 0.71}, {**row, "mode": "none", "fused": 0.78}],
             "curves": {"hard": [[1.0, 0.5, 1.0]], "none": [[1.0, 0.6, 1.0]]}, "machine": epyc}
    assert cifar10_students.mode_argv("hard", "data", 200, 400, [], tmp_path, variant="quarter")[7] == str(
        tmp_path / "hard-quarter")
    recorded = {"command": "accelerate launch benchmarks/cifar10_students.py --mode hard --variant quarter "
                "--budget_minutes 90 --runs_dir runs/x --distillation_teacher_fraction 0.25 --out docs/results/x.json"}
    run = finished_student_run(tmp_path / "runs" / "hard-quarter", 0.75, epyc)
    (run / "distillation_config.json").write_text(json.dumps(recorded))
    result = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json",
                                    saved=json.loads(json.dumps(saved)))
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["hard", "hard with --distillation_teacher_fraction 0.25", "none"]
    assert [r["fused"] for r in result["rows"]] == [0.71, 0.75, 0.78]
    assert "| hard with --distillation_teacher_fraction 0.25 | 89.00 | **75.00** |" in result["markdown"]
    assert "adds them to the recipe (`--variant`)" in result["markdown"]
    assert result["curves"]["hard with --distillation_teacher_fraction 0.25"] == [(10.0, 0.65, 10.0)]
    shutil.rmtree(run)  # a later session: the folder is gone, the saved row and curve stay
    again = cifar10_students.table(epyc, tmp_path / "runs", tmp_path / "students.json",
                                   saved=json.loads(json.dumps(result, default=list)))
    assert [r["label"] for r in again["rows"]] == labels and again["curves"] == result["curves"]
    xeon = {**epyc, "device": "CPU: Intel Xeon", "cpu_features": ["AVX2", "AVX-512", "AVX512-BF16"]}
    run = finished_student_run(run, 0.77, xeon)  # the variant re-run on another CPU: a row of its own, as a mode's
    (run / "distillation_config.json").write_text(json.dumps(recorded))
    both = cifar10_students.table(xeon, tmp_path / "runs", tmp_path / "students.json",
                                  saved=json.loads(json.dumps(again, default=list)))
    assert [(r["label"], r["fused"]) for r in both["rows"]] == [
        ("hard", 0.71), ("hard with --distillation_teacher_fraction 0.25 on AMD EPYC (AVX2)", 0.75),
        ("hard with --distillation_teacher_fraction 0.25 on Intel Xeon (AVX512-BF16)", 0.77), ("none", 0.78)]


def test_students_row_names_the_machine_a_run_was_resumed_on(tmp_path, monkeypatch):
    """A run resumed in a later session on another CPU mixes two speeds in its minutes: its folder records both,
    and the row's cell and the page's machine line name both; a resume on the same machine records nothing."""
    import cifar10_students

    xeon = {"device": "CPU: Intel Xeon", "cpu_cores": 2, "cpu_features": ["AVX2", "AVX-512", "AVX512-BF16"],
            "torch_threads": 2, "torch": "2.14.1", "date": "2026-12-05"}
    epyc = {**xeon, "device": "CPU: AMD EPYC", "cpu_features": ["AVX2"], "date": "2026-12-06"}
    run = tmp_path / "hard"
    for current in (xeon, {**xeon, "date": "2026-12-06"}, epyc, epyc):
        monkeypatch.setattr(cifar10_students, "machine", lambda current=current: current)
        cifar10_students.record_machine(run)
    recorded = cifar10_students.run_machine(run, fallback={})
    assert recorded == {**xeon, "resumed_on": [epyc]}
    assert cifar10_students.short_machine(recorded) == "Intel Xeon (AVX512-BF16) + AMD EPYC (AVX2)"
    line = cifar10_students.machines_line({"hard": recorded, "none": epyc})
    assert line.startswith("Machines: hard: CPU: Intel Xeon") and ", resumed on CPU: AMD EPYC (AVX2)" in line
    assert line.endswith("none: CPU: AMD EPYC (AVX2), 2 threads, torch 2.14.1.")


def test_machines_line_groups_rows_by_machine():
    """Reference and pilot tables name each row's machine only when the rows ran on different ones, grouped."""
    from timing import machines_line

    xeon = {"device": "CPU: Intel Xeon", "cpu_features": ["AVX2"], "torch_threads": 2, "torch": "2.14.1"}
    epyc = {**xeon, "device": "CPU: AMD EPYC"}
    assert machines_line({"a": xeon, "b": xeon}) == "Machine: CPU: Intel Xeon (AVX2), 2 threads, torch 2.14.1."
    assert machines_line({"a": xeon, "b": epyc, "c": xeon}) == (
        "Machines: a, c: CPU: Intel Xeon (AVX2), 2 threads, torch 2.14.1; b: CPU: AMD EPYC (AVX2), 2 threads, "
        "torch 2.14.1.")
    assert machines_line({}, fallback=epyc) == "Machine: CPU: AMD EPYC (AVX2), 2 threads, torch 2.14.1."


def test_students_budget_trains_its_minutes_on_the_clock_across_a_resume(sample_dir, tiny_teacher, tmp_path):
    """--budget_minutes: the run trains that many minutes of steps (max_train_minutes, the schedule on the clock) and
    is tabled as usual; started again, it resumes from its last checkpoint with the clock's reading there, so the
    budget is not spent twice; without a budget a fresh run trains the config's epochs."""
    import cifar10_students

    from helpers import TINY_STUDENT_ARGS

    runs = tmp_path / "runs"
    flags = ["--mode", "hard", "--dataset_name", str(sample_dir), "--eval_every", "4", "--save_every", "4",
             "--runs_dir", str(runs), "--out", str(tmp_path / "students.json"), "--budget_minutes", "0.02",
             "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "64",
             "--eval_samples_during_training", "16", "--max_eval_samples", "32", "--per_device_train_batch_size", "16",
             "--logging_steps", "2", *TINY_STUDENT_ARGS]
    result = cifar10_students.main(flags)
    row = result["rows"][0]
    assert row["budget_minutes"] == 0.02 and "--budget_minutes 0.02 --runs_dir" in result["markdown"]
    state = json.loads((runs / "hard" / "trainer_state.json").read_text())
    assert state["max_steps"] == 4 * cifar10_students.BUDGET_EPOCH_CAP and 4 <= state["global_step"] < state["max_steps"]
    assert 0.02 <= row["train_minutes"] < 0.02 + 0.02  # the budget, plus at most one step of the tiny model
    assert row["epochs"] == pytest.approx(state["global_step"] / 4, abs=0.01) and 0 <= row["fused"] <= 1
    assert f"| {row['train_minutes']:.1f} | {row['epochs']:.2f} |" in result["markdown"]

    checkpoint = max((runs / "hard").glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["TrainingClock"]
    assert 0 < saved["attributes"]["spent_s"] <= 0.02 * 60 + 0.5
    resumed = cifar10_students.main(flags)["rows"][0]  # resumes from the checkpoint with its clock
    assert 0.02 <= resumed["train_minutes"] < 0.02 + 0.02

    for checkpoint in (runs / "hard").glob("checkpoint-*"):  # a fresh run without a budget: the config's epochs
        shutil.rmtree(checkpoint)
    unbudgeted = [flag for flag in flags if flag not in ("--budget_minutes", "0.02")]
    cifar10_students.main(unbudgeted + ["--num_train_epochs", "1"])
    assert json.loads((runs / "hard" / "trainer_state.json").read_text())["max_steps"] == 4


def test_student_speed_smoke(sample_dir, tmp_path):
    import student_speed

    result = student_speed.main(["--dataset_name", str(sample_dir), "--train_images", "64", "--steps", "1",
                                 "--warmup", "1", "--rounds", "2", "--variants", "shipped", "no_teacher",
                                 "--config", "configs/cifar10_cpu_student_w128.yaml",
                                 "--out", str(tmp_path / "student_speed.json")])
    rows = {row["variant"]: row for row in result["rows"]}
    assert rows["shipped"]["vs_shipped"] == 1.0 and rows["no_teacher"]["images_per_s"] > 0
    assert [sorted(r) for r in result["rounds"]] == [["no_teacher", "shipped"]] * 2
    assert "| no teacher (distillation_type: none) |" in result["markdown"]
    assert "| cifar10_cpu_student_w128.yaml as committed |" in result["markdown"]  # not the default config's label
    assert "--config configs/cifar10_cpu_student_w128.yaml --variants shipped no_teacher --out" in result["markdown"]


def test_teacher_pilot_runs_on_held_out_train_and_records_a_curve(tmp_path, monkeypatch):
    """A tiny pilot of benchmarks/teacher_pilots.py: per-epoch held-out accuracies, the test split never read."""
    import teacher_pilots
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(96) % 10
    monkeypatch.setattr(teacher_pilots, "OUT", tmp_path / "teacher_pilots.json")
    monkeypatch.setattr(teacher_pilots, "load_uint8", lambda name: {"train": (images, labels)})
    tiny = '{"embedding_size":8,"hidden_sizes":[8,16],"depths":[1,1],"layer_type":"basic"}'
    teacher_pilots.main(["--pilot", "48px_whiten", "--arch", tiny, "--size", "32", "--epochs", "2", "--bs", "16",
                         "--holdout", "32", "--dataset_name", "unused"])
    saved = json.loads((tmp_path / "teacher_pilots.json").read_text())
    epochs = saved["pilots"]["48px_whiten"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(0 <= e["heldout_top1"] <= 1 for e in epochs)
    assert saved["pilots"]["48px_whiten"]["recipe"]["whiten"] == 2  # the pilot's flags, then the command line's
    assert saved["pilots"]["48px_whiten"]["recipe"]["size"] == 32
    assert "| 48px_whiten |" in saved["markdown"]


def test_teacher_pilot_trains_a_timm_network_through_the_timm_wrapper(tmp_path, monkeypatch):
    """``--model_type timm_wrapper``: the pilot builds any timm architecture with its ``model_args``."""
    import teacher_pilots
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    monkeypatch.setattr(teacher_pilots, "OUT", tmp_path / "teacher_pilots.json")
    monkeypatch.setattr(teacher_pilots, "load_uint8", lambda name: {"train": (images, torch.arange(64) % 10)})
    built = []  # what the pilot trained: AutoConfig takes unknown keys, so a dropped --model_type would still run
    build = teacher_pilots.new_image_classifier
    monkeypatch.setattr(teacher_pilots, "new_image_classifier", lambda *args: built.append(build(*args)) or built[-1])
    tiny = ('{"architecture":"resnet18d","model_args":{"layers":[1,1,1,1],"channels":[8,8,8,8],"stem_width":8,'
            '"aa_layer":"avg","replace_stem_pool":true}}')
    teacher_pilots.main(["--pilot", "timm_resnet_aa", "--arch", tiny, "--size", "32", "--epochs", "1", "--bs", "16",
                         "--holdout", "16", "--dataset_name", "unused"])
    assert [type(model).__name__ for model in built] == ["TimmWrapperForImageClassification"]
    assert built[0].timm_model.layer4[0].conv2.out_channels == 8  # the command line's model_args, not the pilot's
    recipe = json.loads((tmp_path / "teacher_pilots.json").read_text())["pilots"]["timm_resnet_aa"]["recipe"]
    assert recipe["model_type"] == "timm_wrapper"


def test_student_pilot_trains_on_a_train_only_view_and_scores_held_out_images(sample_dir, tiny_teacher, tmp_path):
    """benchmarks/student_pilots.py: the run sees a dataset with no test split, so it evaluates on held-out train."""
    import student_pilots

    from helpers import TINY_STUDENT_ARGS

    view = student_pilots.train_only_view(sample_dir, tmp_path / "view")
    from datasets import load_dataset

    assert list(load_dataset(str(view))) == ["train"]
    out = tmp_path / "student_pilots.json"
    result = student_pilots.main(["--pilot", "lr_1e-3", "--dataset_name", str(sample_dir), "--epochs", "1",
                                  "--eval_every", "2", "--out", str(out), "--teacher_model_name_or_path",
                                  str(tiny_teacher), "--max_train_samples", "40", "--max_eval_samples", "10",
                                  "--per_device_train_batch_size", "16", *TINY_STUDENT_ARGS])
    pilot = result["pilots"]["lr_1e-3"]
    assert pilot["heldout_images"] == 10 and 0 <= pilot["heldout_fused_top1"] <= 1
    assert "--learning_rate" in pilot["flags"] and pilot["curve"]
    assert "| lr_1e-3 |" in json.loads(out.read_text())["markdown"]


def test_student_pilot_reads_its_own_view_not_a_cached_namesake(sample_dir, tmp_path, monkeypatch):
    """`datasets` caches a local folder by its name and file patterns, so a "train_only" view of another dataset
    loaded earlier (the sample, in these tests) must not be served in place of the pilot's own view."""
    import datasets
    import student_pilots

    from hf_deit.data.datasets import load_image_classification_data
    from hf_deit.training import distill

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "default_cache"))
    namesake = tmp_path / "namesake"
    (namesake / "plain_text").mkdir(parents=True)
    (namesake / "README.md").write_text((sample_dir / "README.md").read_text())
    sample_train = datasets.load_dataset(str(sample_dir), split="train", cache_dir=str(tmp_path / "c0"))
    sample_train.select(range(7)).to_parquet(str(namesake / "plain_text" / "train-00000-of-00001.parquet"))
    cached = datasets.load_dataset(str(student_pilots.train_only_view(namesake, tmp_path / "other" / "train_only")))
    assert cached["train"].num_rows == 7

    seen = {}

    def read_data_only(model_config, data_config, training_args, callbacks=()):
        data = load_image_classification_data(data_config, seed=0, hold_out_for_selection=False)
        seen["images"] = len(data.train) + len(data.eval)
        raise StopIteration

    monkeypatch.setattr(distill, "run_distillation", read_data_only)
    with pytest.raises(StopIteration):
        student_pilots.run_pilot("shipped", sample_dir, 1, 10, tmp_path / "scratch", [])
    assert seen["images"] == sample_train.num_rows


def test_airbench_reference_whitens_its_first_layer_and_scores_the_test_split_once(tmp_path, monkeypatch):
    """benchmarks/airbench_reference.py on tiny random data: the frozen first layer whitens 2x2 patches, and the
    run reports plain, mirror and mirror + translate test accuracies."""
    import airbench_reference
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(64) % 10
    normalized = airbench_reference.normalize(images)
    layer = torch.nn.Conv2d(3, 24, 2)
    airbench_reference.init_whitening(layer, normalized)
    half = torch.nn.functional.conv2d(normalized, layer.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = half.T @ half / len(half)
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)  # unit variance, decorrelated

    monkeypatch.setitem(airbench_reference.HYP, "batch_size", 16)
    monkeypatch.setitem(airbench_reference.HYP, "widths", (8, 16, 16))
    monkeypatch.setattr(airbench_reference, "load_uint8",
                        lambda name, names: {"train": (images, labels), "test": (images[:32], labels[:32])})
    out = tmp_path / "airbench_reference.json"
    for epochs in ("2", "1"):
        run = airbench_reference.main(["--dataset_name", "unused", "--epochs", epochs, "--out", str(out)])
    assert run["steps"] == 4 and run["train_images"] == 64 and [e["epoch"] for e in run["curve"]] == [1]
    assert set(run["test_top1"]) == {"plain", "mirror", "mirror_translate"}
    assert all(0 <= value <= 1 for value in run["test_top1"].values())
    saved = json.loads(out.read_text())
    assert sorted(saved["runs"]) == ["1", "2"]  # a second run is added beside the first
    rows = [line for line in saved["markdown"].splitlines() if line.startswith("| 1.0 (4) |") or
            line.startswith("| 2.0 (8) |")]
    assert [row.split(" |")[0] for row in rows] == ["| 1.0 (4)", "| 2.0 (8)"]  # sorted by epochs


def test_teacher_agreement_counts_views_whose_teacher_argmax_is_not_the_label(sample_dir, tiny_teacher, tmp_path):
    """The share of hard distillation's targets that differ from the labels, over the config's own training views."""
    import teacher_agreement
    import torch
    from timing import describe_machine

    from helpers import TINY_STUDENT_ARGS

    class AlwaysClassZero:
        def __init__(self, batches):
            self.batches, self.passes = batches, 0

        def get_train_dataloader(self):
            self.passes += 1
            return self.batches

        def teacher(self, pixel_values):
            return torch.nn.functional.one_hot(torch.zeros(len(pixel_values), dtype=torch.long), 10).float()

    batches = [{"pixel_values": torch.zeros(4, 3, 8, 8), "labels": torch.tensor([0, 1, 2, 0])},
               {"pixel_values": torch.zeros(2, 3, 8, 8), "labels": torch.tensor([[0.9, 0.1] + [0] * 8,
                                                                                 [0.2, 0.8] + [0] * 8])}]
    trainer = AlwaysClassZero(batches)
    assert teacher_agreement.count_disagreements(trainer, epochs=3) == {"views": 18, "differ": 9}
    assert trainer.passes == 3

    flags = ["--dataset_name", str(sample_dir), "--epochs", "1", "--out", str(tmp_path / "agreement.json"),
             "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "32",
             "--per_device_train_batch_size", "16", *TINY_STUDENT_ARGS]
    result = teacher_agreement.main(flags)
    (row,) = result["rows"]
    assert row["views"] == 32 and 0 <= row["differ"] <= 32 and row["crop_padding"] == 4
    assert f"| 4 | 1 | 32 | {row['differ']} |" in result["markdown"]
    assert "Machine: " + describe_machine(row["machine"]) + "." in result["markdown"]
    result = teacher_agreement.main(flags + ["--random_crop_padding", "2"])  # another pipeline: a second row
    assert [r["crop_padding"] for r in result["rows"]] == [4, 2]
    assert "--random_crop_padding 2" in result["rows"][1]["overrides"] and result["rows"][0] == row
    result = teacher_agreement.main(flags + ["--random_crop_padding", "2"])  # the same pipeline again: replaced
    assert [r["crop_padding"] for r in result["rows"]] == [4, 2]
    assert json.loads((tmp_path / "agreement.json").read_text())["rows"] == result["rows"]
