"""distillation_teacher_cache: the teacher runs once per training view, and the loss reads the same targets."""

import time

import pytest
import torch

from hf_deit.config import ConfigError, parse_config
from hf_deit.data.device import DeviceResidentImages
from hf_deit.data.samplers import SampleKey

from helpers import TINY_STUDENT_ARGS

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def flips_only(n=6, size=8, **kwargs):
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return DeviceResidentImages(images, torch.arange(n) % 3, MEAN, STD, random_crop_padding=0, **kwargs)


def test_each_batch_carries_the_targets_of_exactly_the_views_it_shows():
    dataset = flips_only()
    assert dataset.views_per_image == 2
    dataset.attach_view_targets(torch.arange(12, dtype=torch.float32)[:, None])  # target = the view's number
    for seed in range(4):
        batch = dataset.collate([SampleKey(row, seed) for row in (5, 0, 3, 3, 1)])
        views = batch["teacher_logits"][:, 0].long()
        assert torch.equal(views // 2, torch.tensor([5, 0, 3, 3, 1]))
        assert torch.equal(dataset.view_pixels(views), batch["pixel_values"])
    every_view = dataset.view_pixels(torch.arange(12))
    assert torch.equal(every_view[1::2], every_view[0::2].flip(-1))  # odd views: the image mirrored
    dataset.attach_view_targets(None)
    assert "teacher_logits" not in dataset.collate([SampleKey(0, 0)])


def test_views_without_flips_and_refused_view_sets():
    assert flips_only(horizontal_flip=False).views_per_image == 1
    cropped = DeviceResidentImages(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2), MEAN, STD, 2)
    assert cropped.views_per_image is None
    with pytest.raises(ValueError, match="set random_crop_padding: 0"):
        cropped.view_pixels(torch.arange(2))
    with pytest.raises(ValueError, match="5 view targets for 6 images of 2 views"):
        flips_only().attach_view_targets(torch.zeros(5, 3))


@pytest.mark.parametrize("flags, message", [
    (["--distillation_type", "none"], "caches targets no loss reads"),
    (["--mixup_alpha", "0.8"], "set mixup_alpha: 0"),
    (["--distillation_teacher_fraction", "0.25"], "set distillation_teacher_fraction: 1.0"),
])
def test_settings_the_cache_cannot_follow_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(["--distillation_teacher_cache", "true", *flags])


def cached_run(sample_dir, tiny_teacher, tmp_path, *flags):
    from hf_deit.training.distill import build_distillation_run

    configs = parse_config([
        "--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
        "--teacher_model_name_or_path", str(tiny_teacher), "--device_resident_data", "true",
        "--random_crop_padding", "0", "--mixup_alpha", "0", "--cutmix_alpha", "0",
        "--distillation_teacher_cache", "true", "--max_train_samples", "48", "--max_eval_samples", "16",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "20",
        "--logging_steps", "1", "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true",
        *TINY_STUDENT_ARGS, *flags,
    ])
    return build_distillation_run(*configs)


def test_data_without_two_views_per_image_is_refused_before_loading(sample_dir, tiny_teacher, tmp_path):
    with pytest.raises(ConfigError, match="set device_resident_data: true and random_crop_padding: 0"):
        cached_run(sample_dir, tiny_teacher, tmp_path, "--random_crop_padding", "4")


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_training_reads_the_cache_and_never_runs_the_teacher_per_step(sample_dir, tiny_teacher, tmp_path, mode):
    trainer = cached_run(sample_dir, tiny_teacher, tmp_path, "--distillation_type", mode).trainer
    teacher_batches = []
    trainer.teacher.register_forward_hook(lambda module, args, output: teacher_batches.append(len(output)))
    trainer.train()
    assert teacher_batches == [20, 20, 20, 20, 16]  # 96 views (48 images x 2) in batches of 20, then no step
    assert trainer.train_dataset.view_targets is None  # dropped at the end of training

    # A cached target gives the loss the online teacher gives on the same batch.
    loader = trainer.get_train_dataloader()
    trainer.callback_handler.on_train_begin(trainer.args, trainer.state, trainer.control)
    batch = next(iter(loader))
    model = trainer.model.train()
    losses = []
    for inputs in (batch, {key: value for key, value in batch.items() if key != "teacher_logits"}):
        torch.manual_seed(0)
        losses.append(trainer.compute_loss(model, inputs).item())
    assert "teacher_logits" in batch and losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_the_cache_is_built_on_the_training_clock(sample_dir, tiny_teacher, tmp_path, monkeypatch):
    from hf_deit.training import teacher_cache

    build = teacher_cache.teacher_view_logits

    def slow_build(*args):
        time.sleep(1.0)
        return build(*args)

    monkeypatch.setattr(teacher_cache, "teacher_view_logits", slow_build)
    trainer = cached_run(sample_dir, tiny_teacher, tmp_path, "--num_train_epochs", "1").trainer
    trainer.train()
    assert trainer.training_clock.spent_s >= 1.0
