"""Crash and resume: SIGKILL a training process during a checkpoint save, resume, and end with the
weights, EMA and metrics of an uninterrupted run (bit for bit on CPU; the tolerance is stated below).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_deit.training.checkpointing import STAGING_FOLDER, last_complete_checkpoint, resolve_resume_checkpoint
from hf_deit.config import ModelConfig, parse_config
from hf_deit.cli.distill import main
from hf_deit.modeling import build_student

from helpers import CIFAR10_NAMES, REPO
from test_end_to_end import tiny_run_args

# Every source of randomness on: augmentation (crop, flip, RandAugment, erasing), Mixup/CutMix, drop-path,
# repeated augmentation, EMA. 64 images / batch 16 = 4 steps per epoch, 2 epochs; checkpoints every 3 steps,
# so checkpoint-3 is in the middle of epoch 1 and the kill hits the save of checkpoint-6 (mid epoch 2).
RECIPE = [
    "--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "3",
    "--rand_augment", "rand-m9-mstd0.5-inc1", "--random_erasing", "0.25", "--mixup_alpha", "0.8",
    "--cutmix_alpha", "1.0", "--drop_path_rate", "0.1", "--repeated_augmentation", "3", "--ema_decay", "0.9",
    "--device_resident_data", "false",  # RandAugment and erasing run per image in the data-loader
]
# Tolerance of "equal to an uninterrupted run": CPU, same seeds, same machine -> bit-identical is expected.
WEIGHT_ATOL = 0.0

# Runs scripts/distill.py, but holds the process once checkpoint-6 is fully staged and not yet
# published (the last moment of a save), so the test can SIGKILL it there.
KILLABLE = """
import runpy, sys, time
import hf_deit.training.checkpointing as checkpointing
publish = checkpointing.publish
def held_publish(staged, final):
    if final.endswith("checkpoint-6"):
        print("STAGED", staged, flush=True)
        time.sleep(3600)
    publish(staged, final)
checkpointing.publish = held_publish
sys.argv = ["scripts/distill.py", *sys.argv[1:]]
runpy.run_path("scripts/distill.py", run_name="__main__")
"""


def args_for(sample_dir, teacher, output_dir, *extra):
    return tiny_run_args(sample_dir, output_dir, "--teacher_model_name_or_path", str(teacher), *RECIPE, *extra)


@pytest.fixture(scope="module")
def uninterrupted(sample_dir, tiny_teacher, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    return output_dir, main(args_for(sample_dir, tiny_teacher, output_dir))


@pytest.fixture(scope="module")
def killed_during_save(sample_dir, tiny_teacher, tmp_path_factory):
    """A subprocess running scripts/distill.py, SIGKILLed while checkpoint-6 is being saved."""
    output_dir = tmp_path_factory.mktemp("killed") / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, *args_for(sample_dir, tiny_teacher, output_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    timer = threading.Timer(900, process.kill)  # never hang the suite
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("STAGED"):
                process.send_signal(signal.SIGKILL)
                break
        process.wait()
    finally:
        timer.cancel()
    assert process.returncode == -signal.SIGKILL, "".join(lines[-40:])
    return output_dir


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_a_kill_during_a_save_leaves_no_broken_checkpoint(killed_during_save):
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = killed_during_save
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3"]
    staged = output_dir / STAGING_FOLDER / "checkpoint-6"
    assert (staged / "trainer_state.json").is_file()  # it was killed at the very end of the save
    assert get_last_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-3")  # what --resume true uses
    assert (output_dir / "checkpoint-3" / "ema" / "model.safetensors").is_file()  # EMA inside, not next to it


def test_resume_after_sigkill_equals_the_uninterrupted_run(killed_during_save, uninterrupted, sample_dir,
                                                             tiny_teacher, tmp_path):
    reference_dir, reference = uninterrupted
    output_dir = tmp_path / "resumed"
    shutil.copytree(killed_during_save, output_dir)
    # Same as the uninterrupted run up to the last checkpoint (the killed process did steps 1-6).
    assert max_difference(weights(output_dir / "checkpoint-3"), weights(reference_dir / "checkpoint-3")) == 0.0

    resumed = main(args_for(sample_dir, tiny_teacher, output_dir, "--resume_from_checkpoint", "true"))

    assert not (output_dir / STAGING_FOLDER).exists()  # the unfinished save was cleared
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]
    assert max_difference(weights(output_dir), weights(reference_dir)) <= WEIGHT_ATOL
    assert max_difference(weights(output_dir / "ema"), weights(reference_dir / "ema")) <= WEIGHT_ATOL
    for key, value in reference.items():
        if key.startswith("eval_") and not key.endswith(("runtime", "per_second")):
            assert resumed[key] == pytest.approx(value, abs=WEIGHT_ATOL), key


def test_half_written_checkpoint_is_never_picked(uninterrupted, tmp_path, caplog):
    reference_dir, _ = uninterrupted
    output_dir = tmp_path / "run"
    shutil.copytree(reference_dir / "checkpoint-3", output_dir / "checkpoint-3")
    broken = output_dir / "checkpoint-9"  # what a kill during a stock, non-atomic save leaves
    broken.mkdir()
    shutil.copy(reference_dir / "checkpoint-3" / "config.json", broken)
    with caplog.at_level(logging.WARNING, logger="hf_deit.checkpointing"):
        assert last_complete_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-3")
        assert resolve_resume_checkpoint("true", str(output_dir)) == str(output_dir / "checkpoint-3")
    assert "Skipping" in caplog.text and "checkpoint-9" in caplog.text
    assert broken.is_dir()  # never deleted: it may be all that is left of someone's run
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(str(broken), str(output_dir))


@pytest.mark.parametrize(
    "value, message",
    [("true", "no complete checkpoint-N folder"), ("missing/checkpoint-5", "is not a folder")],
)
def test_resume_without_a_checkpoint_is_a_clear_error(value, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        resolve_resume_checkpoint(value, str(tmp_path))


def test_resume_loads_every_weight_of_the_checkpoint(tmp_path):
    """transformers 5.23's Trainer resumes with load_state_dict(strict=False) on the saved (legacy) key
    names and silently skips the encoder (huggingface/transformers#43701); ours loads all of it."""
    from hf_deit.training.trainer import DistillationTrainer

    config = ModelConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8)
    id2label = dict(enumerate(CIFAR10_NAMES))
    saved, _ = build_student(config, id2label)
    saved.save_pretrained(tmp_path / "checkpoint")
    torch.manual_seed(1)
    fresh, _ = build_student(config, id2label)
    _, _, args = parse_config(["--distillation_type", "none", "--output_dir", str(tmp_path / "out")])
    DistillationTrainer(model=fresh, args=args)._load_from_checkpoint(str(tmp_path / "checkpoint"))
    expected = saved.state_dict()
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_keyed_augmentation_depends_only_on_its_key(sample_dir):
    """The same (row, seed) key gives the same augmented pixels whatever the global RNG did before, and
    fetching it leaves the global RNG untouched (the training step's dropout stream)."""
    from hf_deit.config import DataConfig
    from hf_deit.data.inputs import train_set
    from hf_deit.data.datasets import load_image_classification_data
    from hf_deit.modeling import student_image_processor

    config = DataConfig(dataset_name=str(sample_dir), max_train_samples=8, max_eval_samples=8,
                        rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.5)
    data = load_image_classification_data(config)
    train = train_set(data, student_image_processor(ModelConfig()), config)
    torch.manual_seed(0)
    first = train.__getitems__([(3, 1234), (5, 99)])
    torch.rand(100)  # another global RNG state
    again = train.__getitems__([(3, 1234), (5, 99)])
    for a, b in zip(first, again):
        assert torch.equal(a["pixel_values"], b["pixel_values"])
    other = train.__getitems__([(3, 1235)])
    assert not torch.equal(other[0]["pixel_values"], first[0]["pixel_values"])
    before = torch.get_rng_state()
    train.__getitems__([(3, 7)])
    assert torch.equal(before, torch.get_rng_state())


def test_best_checkpoint_and_rotation_work_with_atomic_saves(sample_dir, tiny_teacher, tmp_path):
    """The Trainer writes into the staging folder; load_best_model_at_end and save_total_limit must still
    see the published checkpoint-N folders."""
    import json

    output_dir = tmp_path / "run"
    main(tiny_run_args(sample_dir, output_dir, "--teacher_model_name_or_path", str(tiny_teacher),
                       "--num_train_epochs", "2", "--eval_strategy", "steps", "--eval_steps", "2",
                       "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "2",
                       "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_loss"))
    checkpoints = sorted(p.name for p in output_dir.glob("checkpoint-*"))
    state = json.loads((output_dir / checkpoints[-1] / "trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"])
    assert best.parent == output_dir and best.is_dir() and STAGING_FOLDER not in best.parts
    assert len(checkpoints) <= 2 and best.name in checkpoints and "checkpoint-8" in checkpoints
    assert not (output_dir / STAGING_FOLDER).exists()
    # The final model is the best checkpoint's (loaded back at the end of training).
    assert max_difference(weights(output_dir), weights(best)) == 0.0


def test_teacher_training_resumes_exactly(sample_dir, tmp_path):
    """scripts/train_teacher.py's trainer (stock Trainer + the same checkpoint mixin) with the shipped teacher
    recipe (device-resident data, SGD, bf16 autocast): a ResNet with batch-norm buffers, resumed mid-epoch from
    a copied checkpoint, ends bit-identical."""
    from hf_deit.cli.train_teacher import main as train_teacher

    def run(output_dir, *extra):
        return train_teacher([
            "--config", "configs/teacher_cifar10_resnet.yaml", "--dataset_name", str(sample_dir),
            "--model_config_overrides", '{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], '
            '"layer_type": "basic"}', "--image_size", "32", "--eval_flip_tta", "false",
            "--max_train_samples", "48", "--max_eval_samples", "16", "--num_train_epochs", "2",
            "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--eval_strategy", "no",
            "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "0", "--output_dir", str(output_dir),
            "--disable_tqdm", "true", *extra])

    reference = run(tmp_path / "full")
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")  # mid epoch 1 (3 steps)
    resumed = run(resumed_dir, "--resume_from_checkpoint", "true")
    assert max_difference(weights(resumed_dir), weights(tmp_path / "full")) == 0.0
    assert resumed["eval_loss"] == reference["eval_loss"]
