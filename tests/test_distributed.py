"""Two CPU processes (gloo) through `torchrun`: disjoint shards, identical weights,
gathered evaluation equal to a single-process evaluation of the saved checkpoint."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_deit.config import DataConfig
from hf_deit.data.datasets import load_image_classification_data
from hf_deit.data.transforms import make_eval_transform

from helpers import TINY_STUDENT_ARGS

REPO = Path(__file__).resolve().parents[1]
# Odd on purpose: 2 ranks get 26 images each, one of them a padding copy that gathering must drop.
EVAL_IMAGES = 51



def torchrun_cpu(num_processes: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [torchrun, "--nproc_per_node", str(num_processes), "--master_port", "29517", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def run_flags(sample_dir, teacher, output_dir, *extra):
    return ["--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
            "--teacher_model_name_or_path", str(teacher), "--max_train_samples", "96", "--max_eval_samples", str(EVAL_IMAGES),
            "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--output_dir", str(output_dir), "--disable_tqdm", "true", "--logging_steps", "2",
            *TINY_STUDENT_ARGS, *extra]


@pytest.fixture(scope="module")
def two_ranks(sample_dir, tiny_teacher, tmp_path_factory):
    probe_dir = tmp_path_factory.mktemp("probe")
    output_dir = probe_dir / "student"
    torchrun_cpu(2, "tests/ddp_probe.py", str(probe_dir),
                   *run_flags(sample_dir, tiny_teacher, output_dir, "--repeated_augmentation", "2"))
    ranks = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in range(2)]
    return ranks, output_dir


def test_ranks_see_disjoint_shards_of_the_repeated_stream(two_ranks):
    ranks, _ = two_ranks
    assert [r["world_size"] for r in ranks] == [2, 2]
    first, second = (r["train_indices_epoch0"] for r in ranks)
    assert len(first) == len(second) == 48  # 96 images / 2 processes: one pass worth of compute
    assert all(0 <= i < 96 for i in first + second)
    # The official RASampler deals the stream [p0, p0, p1, p1, ...] round-robin: rank 0 takes its even
    # positions, rank 1 its odd ones, so each copy of an image is augmented on the other rank.
    # Interleaving what the two ranks saw must give that stream back: runs of 2 copies of one image, a
    # different image in every run. An undistributed sampler (each rank reading the whole stream)
    # gives runs of 4; two world-size-1 processes fail the world-size check above.
    stream = [index for pair in zip(first, second) for index in pair]
    runs = [stream[start:start + 2] for start in range(0, len(stream), 2)]
    assert all(len(set(run)) == 1 for run in runs), runs[:4]
    assert len({run[0] for run in runs}) == len(runs) == 48
    assert len(first) == len(set(first))  # no copies within a rank


def test_weights_identical_across_ranks_after_training(two_ranks):
    ranks, _ = two_ranks
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_gathered_evaluation_equals_single_process_evaluation(two_ranks, sample_dir):
    import torch
    from transformers import AutoImageProcessor, DeiTForImageClassificationWithTeacher

    ranks, output_dir = two_ranks
    assert ranks[0]["metrics"]["eval_fused_top1"] == ranks[1]["metrics"]["eval_fused_top1"]
    model = DeiTForImageClassificationWithTeacher.from_pretrained(output_dir).eval()
    processor = AutoImageProcessor.from_pretrained(output_dir)
    data = load_image_classification_data(DataConfig(dataset_name=str(sample_dir), max_eval_samples=EVAL_IMAGES))
    batch = make_eval_transform(data, processor)(data.eval[:EVAL_IMAGES])
    with torch.no_grad():
        outputs = model(pixel_values=batch["pixel_values"])
    for head, logits in (("fused", outputs.logits), ("cls", outputs.cls_logits), ("distill", outputs.distillation_logits)):
        single = (logits.argmax(-1) == batch["labels"]).float().mean().item()
        assert ranks[0]["metrics"][f"eval_{head}_top1"] == pytest.approx(single, abs=1e-6), head


def test_quickstart_command_runs_on_two_processes(sample_dir, tiny_teacher, tmp_path):
    """The documented command itself, `torchrun --nproc_per_node 2 scripts/distill.py`."""
    result = torchrun_cpu(2, "scripts/distill.py", *run_flags(sample_dir, tiny_teacher, tmp_path / "run",
                                                               "--max_steps", "3"))
    assert "| average (cls + distill) |" in result.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["eval_images"] == EVAL_IMAGES


def test_accelerates_single_process_cpu_launch_stops_with_the_torchrun_command(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts one process on CPU: it must say so, not train alone."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "scripts/distill.py", "--config", "configs/quickstart.yaml",
               "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "torchrun --nproc_per_node N scripts/distill.py --config configs/quickstart.yaml" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_time_budget_ends_every_rank_at_one_step_with_one_schedule(sample_dir, tiny_teacher, tmp_path):
    """max_train_minutes on two processes: the main process's clock decides for both. A rank stopping alone would
    hang the other at its next all-reduce; ranks reading their own clocks would step at different learning rates."""
    output_dir = tmp_path / "student"
    torchrun_cpu(2, "tests/ddp_probe.py", str(tmp_path),
                 *run_flags(sample_dir, tiny_teacher, output_dir, "--num_train_epochs", "1000",
                            "--max_train_minutes", "0.02", "--warmup_steps", "0.1"))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["steps"] == ranks[1]["steps"]
    steps, max_steps = ranks[0]["steps"]
    assert 1 <= steps < max_steps  # the clock ended the run, not its 1000 epochs
