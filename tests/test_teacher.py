"""Teacher loading: label alignment by names, input-space conversion, frozen eval mode."""

import pytest
import torch

from hf_deit.config import ModelConfig
from hf_deit.losses import deit_distillation_loss
from hf_deit.modeling import student_image_processor
from hf_deit.teacher import label_permutation, load_teacher

from helpers import CIFAR10_NAMES, save_tiny_teacher


@pytest.fixture(scope="module")
def student_processor():
    return student_image_processor(ModelConfig(image_size=32, patch_size=4))


def test_permutation_matches_by_name_case_insensitively():
    teacher = {0: "Dog", 1: "cat", 2: "BIRD"}
    assert label_permutation(teacher, ["bird", "cat", "dog"]) == [2, 1, 0]


def test_reordered_teacher_gives_identical_logits_and_loss(tmp_path, student_processor):
    reordered = list(reversed(CIFAR10_NAMES))
    path_a = save_tiny_teacher(tmp_path / "a", CIFAR10_NAMES, seed=1)
    path_b = save_tiny_teacher(tmp_path / "b", reordered, seed=1)
    # Same weights, but teacher b's classifier rows are permuted to its reversed label order.
    teacher_a = load_teacher(str(path_a), CIFAR10_NAMES, student_processor)
    teacher_b = load_teacher(str(path_b), CIFAR10_NAMES, student_processor)
    head_a = teacher_a.teacher.classifier[-1]
    head_b = teacher_b.teacher.classifier[-1]
    with torch.no_grad():
        head_b.weight.copy_(head_a.weight.flip(0))
        head_b.bias.copy_(head_a.bias.flip(0))
    pixels = torch.randn(4, 3, 32, 32)
    logits_a, logits_b = teacher_a(pixels), teacher_b(pixels)
    torch.testing.assert_close(logits_a, logits_b)
    assert not teacher_b.identity_order
    cls, dist, labels = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 3, 5, 9])
    for kind in ("soft", "hard"):
        loss_a = deit_distillation_loss(cls, dist, labels, logits_a, kind).loss
        loss_b = deit_distillation_loss(cls, dist, labels, logits_b, kind).loss
        torch.testing.assert_close(loss_a, loss_b)


def test_disjoint_label_sets_raise_naming_both(tmp_path, student_processor):
    other = ["apple", "banana", "cherry"] + CIFAR10_NAMES[3:]
    path = save_tiny_teacher(tmp_path / "fruit", other)
    with pytest.raises(ValueError, match="do not match") as error:
        load_teacher(str(path), CIFAR10_NAMES, student_processor)
    message = str(error.value)
    assert "apple" in message and "airplane" in message


def test_different_number_of_labels_raises(tmp_path, student_processor):
    path = save_tiny_teacher(tmp_path / "five", CIFAR10_NAMES[:5])
    with pytest.raises(ValueError, match=r"teacher \(5\)"):
        load_teacher(str(path), CIFAR10_NAMES, student_processor)


def test_missing_teacher_is_explained(tmp_path, student_processor):
    with pytest.raises(OSError, match="Could not load the teacher"):
        load_teacher(str(tmp_path / "nowhere"), CIFAR10_NAMES, student_processor)


def test_teacher_stays_frozen_in_eval_mode(tiny_teacher, student_processor):
    teacher = load_teacher(str(tiny_teacher), CIFAR10_NAMES, student_processor)
    teacher.train()
    assert not teacher.teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())


def test_batch_is_converted_into_the_teachers_input_space(tmp_path, sample_dir, student_processor):
    """Teacher at 48x48 with other mean/std: the on-device conversion of the student's batch must
    match the teacher's own image processor on the raw images (up to resampling differences)."""
    from datasets import load_dataset
    from transformers import AutoImageProcessor

    path = save_tiny_teacher(tmp_path / "t48", CIFAR10_NAMES, image_size=48, mean=[0.3, 0.4, 0.5], std=[0.2, 0.3, 0.4])
    teacher = load_teacher(str(path), CIFAR10_NAMES, student_processor)
    images = list(load_dataset(str(sample_dir), split="test[:16]")["img"])
    student_pixels = student_processor(images, return_tensors="pt")["pixel_values"]
    converted = teacher.to_teacher_space(student_pixels)
    reference = AutoImageProcessor.from_pretrained(path)(images, return_tensors="pt")["pixel_values"]
    assert converted.shape == reference.shape == (16, 3, 48, 48)
    # Both bicubic-resample the same 32x32 image; PIL rounds to uint8 on the way, so allow a few
    # grey levels (1 level = 1/255/std ~ 0.01-0.02 here) on average.
    assert (converted - reference).abs().mean() < 0.03
    logits = teacher(student_pixels)
    reference_logits = teacher.teacher(pixel_values=reference).logits
    assert (logits.argmax(-1) == reference_logits.argmax(-1)).float().mean() >= 0.9


def test_embedded_teacher_is_a_trained_cifar10_model(sample_dir, student_processor):
    """The committed default teacher: CIFAR-10 names, and real accuracy on the sample's test images
    (cut from the CIFAR-10 test split, never trained on; 88.0% on the full test split)."""
    from datasets import load_dataset

    from helpers import EMBEDDED_TEACHER

    teacher = load_teacher(str(EMBEDDED_TEACHER), CIFAR10_NAMES, student_processor)
    assert teacher.identity_order
    test = load_dataset(str(sample_dir), split="test[:400]")
    pixels = student_processor(list(test["img"]), return_tensors="pt")["pixel_values"]
    accuracy = (teacher(pixels).argmax(-1) == torch.tensor(test["label"])).float().mean().item()
    assert accuracy > 0.83


def test_bf16_channels_last_teacher_agrees_with_float32(sample_dir, student_processor):
    """The precision options change the teacher's arithmetic, not its predictions, and its logits stay float32."""
    from datasets import load_dataset

    from helpers import EMBEDDED_TEACHER

    reference = load_teacher(str(EMBEDDED_TEACHER), CIFAR10_NAMES, student_processor)
    fast = load_teacher(str(EMBEDDED_TEACHER), CIFAR10_NAMES, student_processor, torch_dtype="bfloat16",
                        channels_last=True)
    assert fast.dtype == torch.bfloat16 and reference.dtype == torch.float32
    pixels = student_processor(list(load_dataset(str(sample_dir), split="test[:64]")["img"]),
                               return_tensors="pt")["pixel_values"]
    expected, got = reference(pixels), fast(pixels)
    assert got.dtype == torch.float32
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.95
    assert (got.softmax(-1) - expected.softmax(-1)).abs().max() < 0.1


def test_compiled_teacher_gives_the_same_logits(tiny_teacher, student_processor):
    eager = load_teacher(str(tiny_teacher), CIFAR10_NAMES, student_processor)
    compiled = load_teacher(str(tiny_teacher), CIFAR10_NAMES, student_processor, compile=True)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no extra compiled-module copy
    pixels = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(compiled(pixels), eager(pixels), rtol=1e-4, atol=1e-4)


TINY_TIMM_RESNET = {"architecture": "resnet18d", "model_args": {"layers": [1, 1, 1, 1], "channels": [8, 8, 16, 16],
                                                                "stem_width": 8}}


def test_new_timm_teacher_starts_with_timms_own_init():
    """transformers' timm wrapper re-draws every convolution from N(0, 0.02) and sets every norm scale to one;
    a new timm teacher must start as timm builds it: Kaiming (fan-out) convolutions, and a zero scale on the
    last norm of each residual block."""
    import json
    import math

    from hf_deit.config import TeacherModelConfig
    from hf_deit.training.teacher_training import build_teacher

    overrides = json.dumps(TINY_TIMM_RESNET)
    model, _ = build_teacher(TeacherModelConfig(model_type="timm_wrapper", model_config_overrides=overrides),
                             dict(enumerate(CIFAR10_NAMES)))
    network = model.timm_model
    for block in (network.layer1[0], network.layer2[0], network.layer3[0], network.layer4[0]):
        assert torch.all(block.bn2.weight == 0)
    stem = network.conv1[0].weight  # 3 -> 4 channels (half the stem width), 3x3: fan-out 36
    assert stem.std().item() == pytest.approx(math.sqrt(2 / (stem.shape[0] * 9)), rel=0.3)
    assert model.config.num_labels == 10 and model.config.id2label[3] == "cat"


def test_saved_timm_teacher_loads_as_a_stock_model_and_teaches(tmp_path, student_processor):
    """A timm network saved through the wrapper is a stock ``AutoModelForImageClassification`` (no remote
    code) that ``load_teacher`` reads and runs on the student's batch at its own resolution."""
    from transformers import ViTImageProcessor

    from hf_deit.modeling import new_image_classifier

    model = new_image_classifier("timm_wrapper", TINY_TIMM_RESNET, dict(enumerate(CIFAR10_NAMES))).eval()
    model.save_pretrained(tmp_path / "timm-teacher")
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "timm-teacher")
    teacher = load_teacher(str(tmp_path / "timm-teacher"), CIFAR10_NAMES, student_processor, channels_last=True)
    pixels = torch.randn(4, 3, 32, 32)
    assert teacher.to_teacher_space(pixels).shape == (4, 3, 64, 64)
    expected = model(pixel_values=teacher.to_teacher_space(pixels)).logits
    torch.testing.assert_close(teacher(pixels), expected, rtol=1e-4, atol=1e-4)
