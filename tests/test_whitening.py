"""Patch-whitening initialisation of a teacher's first convolution (``whiten_stem``)."""

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForImageClassification

from hf_deit.training.whitening import first_convolution, whiten_first_convolution

from helpers import REPO


def correlated_images(count: int = 64, side: int = 16) -> torch.Tensor:
    """Smooth random images: neighbouring pixels and channels are strongly correlated, like real ones."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(count, 1, side // 4, side // 4, generator=generator)
    smooth = F.interpolate(noise, size=(side, side), mode="bilinear", align_corners=False)
    return smooth.repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1) \
        + 0.05 * torch.randn(count, 3, side, side, generator=generator)


def test_whitened_convolution_decorrelates_the_top_patch_directions():
    images = correlated_images()
    model = nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, stride=1, bias=False), nn.ReLU())
    whiten_first_convolution(model, images, eps=1e-6)
    outputs = model[0](images).permute(0, 2, 3, 1).reshape(-1, 8)
    positive = outputs[:, :4] - outputs[:, :4].mean(0)
    covariance = positive.T @ positive / len(positive)
    torch.testing.assert_close(covariance, torch.eye(4), atol=0.02, rtol=0)
    torch.testing.assert_close(outputs[:, 4:], -outputs[:, :4])  # each direction as +v and -v
    assert not model[0].weight.requires_grad


def test_whitening_can_leave_the_layer_trainable_and_finds_the_first_convolution():
    model = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 2), nn.Conv2d(4, 4, 3))
    whiten_first_convolution(model, correlated_images(), freeze=False)
    assert first_convolution(model) is model[1]
    assert model[1].weight.requires_grad and model[2].weight.requires_grad
    assert model[1].weight.abs().sum() > 0


def test_teacher_trained_with_a_whitened_stem_keeps_it_frozen_and_loads_stock(sample_dir, tmp_path):
    from hf_deit.cli.train_teacher import main as train_teacher

    output_dir = tmp_path / "teacher"
    train_teacher([
        "--config", str(REPO / "configs/teacher_cifar10_resnet.yaml"), "--dataset_name", str(sample_dir),
        "--model_config_overrides", '{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], '
        '"layer_type": "basic"}', "--image_size", "32", "--whiten_stem", "true", "--whiten_images", "32",
        "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--eval_strategy", "no",
        "--save_strategy", "no", "--output_dir", str(output_dir), "--disable_tqdm", "true"])
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert type(model).__name__ == "ResNetForImageClassification"
    saved = load_file(output_dir / "model.safetensors")
    stem = "resnet.embedder.embedder.convolution.weight"
    # Whitening filters come in +v / -v pairs; two SGD steps on a trainable layer would break the symmetry.
    torch.testing.assert_close(saved[stem][4:], -saved[stem][:4], atol=0, rtol=0)


def test_whitening_a_checkpoint_is_refused_with_the_fix():
    import pytest

    from hf_deit.config import ConfigError, TeacherModelConfig

    with pytest.raises(ConfigError, match="whiten_stem: false"):
        TeacherModelConfig(model_name_or_path="models/teacher-cifar10-resnet", whiten_stem=True)
