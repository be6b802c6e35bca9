"""Where hf-deit once departed from facebookresearch/deit + timm: init, EMA decay, repeated augmentation on
few processes, interpolation, checkpoint selection, teacher preprocessing flags, DDP settings.

Each test fails on the code before its fix (checked by reverting it); docs/results/cifar10_cpu.md
says what each fix changed in accuracy where it was measured.
"""

import json
import logging

import pytest
import torch
from PIL import Image
from torch import nn
from transformers import ViTImageProcessor

from hf_deit.data.augment import build_rand_augment
from hf_deit.config import DataConfig, ModelConfig, parse_config
from hf_deit.data.transforms import build_train_transform
from hf_deit.training.distill import build_distillation_run
from hf_deit.cli.distill import main
from hf_deit.training.ema import EMACallback
from hf_deit.modeling import build_student
from hf_deit.teacher import load_teacher
from hf_deit.training.trainer import DistillationTrainer

from helpers import CIFAR10_NAMES, TINY_STUDENT_ARGS, save_tiny_teacher

ID2LABEL = dict(enumerate(CIFAR10_NAMES))


def small_student(**overrides):
    config = ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                         image_size=32, patch_size=4, **overrides)
    return build_student(config, ID2LABEL)[0]


# -- init: timm's VisionTransformerDistilled ----------------------------------------------------------------

def test_patch_projection_keeps_pytorch_default_init():
    torch.manual_seed(0)
    weight = small_student().base_model.embeddings.patch_embeddings.projection.weight
    fan_in = weight[0].numel()  # 3 x 4 x 4
    # PyTorch's Conv2d default (Kaiming-uniform, a=sqrt(5)): uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in) ~ 0.083.
    assert weight.abs().max() <= 1 / fan_in**0.5 + 1e-6
    assert weight.std().item() == pytest.approx(1 / (3 * fan_in) ** 0.5, rel=0.1)


def test_tokens_and_position_embeddings_start_as_in_timm():
    torch.manual_seed(0)
    embeddings = small_student().base_model.embeddings
    assert embeddings.cls_token.std().item() < 1e-5  # N(0, 1e-6)
    # trunc_normal_(std=0.02) cut at +-2 absolute, i.e. a full N(0, 0.02): std 0.02, not the 0.0175 of a +-2 sigma cut.
    positions = embeddings.position_embeddings
    assert positions.std().item() == pytest.approx(0.02, rel=0.05)
    assert positions.abs().max().item() > 0.04  # values beyond 2 sigma exist
    assert embeddings.distillation_token.std().item() == pytest.approx(0.02, rel=0.3)


def test_linear_layers_are_truncated_normal_002_with_zero_bias():
    torch.manual_seed(0)
    model = small_student()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias is None or not m.bias.any() for m in linears)


# -- EMA: constant decay by default ------------------------------------------------------------------------

def run_ema(callback, steps):
    """Live weight = step number at each step; returns the EMA weight after ``steps`` updates."""
    model = nn.Linear(1, 1, bias=False)

    class State:
        global_step = 0

    callback.on_train_begin(None, State, None, model=model)
    for step in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        State.global_step = step
        callback.on_step_end(None, State, None, model=model)
    return callback.ema.module.weight.item()


def expected_ema(decay_at, steps):
    value = 0.0
    for step in range(1, steps + 1):
        decay = decay_at(step)
        value = decay * value + (1 - decay) * step
    return value


def timm_decay(step, decay):  # ModelEmaV3.get_decay: the first update copies the weights
    step -= 1
    return 0.0 if step <= 0 else decay


def test_ema_decay_is_constant_by_default():
    _, _, args = parse_config(["--ema_decay", "0.999"])
    assert args.ema_warmup is False
    value = run_ema(EMACallback(args.ema_decay, warmup=args.ema_warmup), 200)
    assert value == pytest.approx(expected_ema(lambda t: timm_decay(t, 0.999), 200), rel=1e-5)
    assert value < 20  # a constant 0.999 lags far behind the live weight (200)


def test_ema_warmup_is_opt_in_and_ramps_like_timm():
    value = run_ema(EMACallback(0.999, warmup=True), 200)
    ramp = lambda t: 0.0 if t <= 1 else min(0.999, 1 - (1 + (t - 1)) ** (-2 / 3))  # noqa: E731
    assert value == pytest.approx(expected_ema(ramp, 200), rel=1e-5)
    assert value > 150  # the ramped decay (~0.97 at step 200) follows the live weight closely


def test_distillation_run_builds_the_ema_from_the_config(sample_dir, tiny_teacher, tmp_path):
    flags = ["--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
             "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "16",
             "--max_eval_samples", "16", "--output_dir", str(tmp_path), "--ema_decay", "0.9996", *TINY_STUDENT_ARGS]
    run = build_distillation_run(*parse_config(flags))
    assert run.ema.decay == 0.9996 and run.ema.warmup is False
    run = build_distillation_run(*parse_config(flags + ["--ema_warmup", "true"]))
    assert run.ema.warmup is True


# -- repeated augmentation only where copies land on other processes ---------------------------------------

def test_repeated_augmentation_falls_back_on_one_process(tmp_path, caplog):
    _, _, args = parse_config(["--repeated_augmentation", "3", "--distillation_type", "none",
                               "--output_dir", str(tmp_path)])
    trainer = DistillationTrainer(model=small_student(), args=args, train_dataset=list(range(256)))
    with caplog.at_level(logging.WARNING, logger="hf_deit.trainer"):
        sampler = trainer._get_train_sampler()
    indices = list(sampler)
    assert sorted(indices) == list(range(256))  # every image once per epoch, no copies in a batch
    assert "repeated_augmentation=3 needs at least 3 processes" in caplog.text


# -- bicubic everywhere --------------------------------------------------------------------------------------

def test_train_resize_and_rand_augment_are_bicubic():
    from torchvision.transforms import v2

    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    transform = build_train_transform(processor, DataConfig(rand_augment="rand-m9-mstd0.5-inc1"))
    resizes = [step for step in transform.transforms if isinstance(step, v2.Resize)]
    assert resizes and all(step.interpolation == v2.InterpolationMode.BICUBIC for step in resizes)
    rand_augment = build_rand_augment("rand-m9-mstd0.5-inc1", 32, processor.image_mean)
    assert all(op.kwargs["resample"] == Image.BICUBIC for op in rand_augment.ops)


def test_device_resident_decode_resizes_bicubic_like_the_processor(sample_dir):
    """Images stored at another size than the processor's are resized once at decode time, as the processor does."""
    import numpy as np

    from hf_deit.data.datasets import load_image_classification_data
    from hf_deit.data.device import device_resident_train

    config = DataConfig(dataset_name=str(sample_dir), max_train_samples=4, max_eval_samples=4)
    data = load_image_classification_data(config)
    processor = ViTImageProcessor(size={"height": 48, "width": 48}, do_normalize=False)
    resident = device_resident_train(data, processor, DataConfig(random_crop_padding=0, horizontal_flip=False))
    raw = data.train[0][data.image_column]
    expected = np.asarray(raw.convert("RGB").resize((48, 48), Image.BICUBIC), dtype=np.int16)
    got = resident.images[0].permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(got - expected).max() <= 1


# -- checkpoint selection never on the reported split --------------------------------------------------------

def test_best_checkpoint_is_selected_on_held_out_train_and_test_is_reported(sample_dir, tiny_teacher, tmp_path):
    output_dir = tmp_path / "run"
    metrics = main([
        "--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
        "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "80", "--max_eval_samples", "24",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
        "--metric_for_best_model", "fused_top1", "--train_val_split", "0.25",
        "--output_dir", str(output_dir), "--disable_tqdm", "true", *TINY_STUDENT_ARGS,
    ])
    assert metrics["train_images"] == 60 and metrics["selection_images"] == 20
    assert metrics["eval_images"] == 24  # the test split, reported once at the end
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    per_epoch = [entry for entry in history if "eval_fused_top1" in entry]
    assert len(per_epoch) == 2
    # Selection metrics were computed on the 20 held-out images: accuracies are multiples of 1/20.
    assert all(abs(entry["eval_fused_top1"] * 20 - round(entry["eval_fused_top1"] * 20)) < 1e-6 for entry in per_epoch)
    assert abs(metrics["eval_fused_top1"] * 24 - round(metrics["eval_fused_top1"] * 24)) < 1e-6


def test_without_selection_the_eval_split_is_the_test_split(sample_dir, tiny_teacher, tmp_path):
    flags = ["--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
             "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "40",
             "--max_eval_samples", "24", "--output_dir", str(tmp_path), *TINY_STUDENT_ARGS]
    run = build_distillation_run(*parse_config(flags))
    assert run.data.selection is None and len(run.trainer.eval_dataset) == 24 and len(run.data.train) == 40


# -- the teacher's preprocessing flags -------------------------------------------------------------------------

@pytest.mark.parametrize("do_rescale, do_normalize", [(True, True), (True, False), (False, True), (False, False)])
def test_teacher_input_follows_its_processor_flags(tmp_path, sample_dir, do_rescale, do_normalize):
    """The converted batch equals what the teacher's own processor makes of the same images."""
    from datasets import load_dataset

    teacher_dir = save_tiny_teacher(tmp_path / "teacher", CIFAR10_NAMES, mean=[0.3, 0.4, 0.5], std=[0.2, 0.3, 0.4])
    teacher_processor = ViTImageProcessor.from_pretrained(teacher_dir)
    teacher_processor.do_rescale, teacher_processor.do_normalize = do_rescale, do_normalize
    teacher_processor.save_pretrained(teacher_dir)
    student_processor = ViTImageProcessor(size={"height": 32, "width": 32})
    wrapper = load_teacher(str(teacher_dir), CIFAR10_NAMES, student_processor)
    images = list(load_dataset(str(sample_dir), split="test[:4]")["img"])
    student_pixels = student_processor(images, return_tensors="pt")["pixel_values"]
    expected = torch.as_tensor(teacher_processor(images, return_tensors="pt")["pixel_values"]).float()
    got = wrapper.to_teacher_space(student_pixels)
    tolerance = 1e-3 if do_rescale else 0.3  # pixels left in 0..255 when not rescaled
    assert torch.allclose(got, expected, atol=tolerance)


def test_teacher_processor_without_resize_is_refused():
    from hf_deit.teacher import teacher_processor_flags

    with pytest.raises(ValueError, match="do_resize: false"):
        teacher_processor_flags(ViTImageProcessor(do_resize=False))


# -- DDP -----------------------------------------------------------------------------------------------------------

def test_ddp_does_not_search_for_unused_parameters():
    _, _, args = parse_config([])
    assert args.ddp_find_unused_parameters is False


def test_every_student_parameter_gets_a_gradient_in_every_mode():
    """The premise of find_unused_parameters=False: a step with any distillation type touches every parameter."""
    from hf_deit.losses import deit_distillation_loss

    model = small_student()
    pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for distillation_type in ("none", "soft", "hard"):
        model.zero_grad(set_to_none=True)
        outputs = model(pixel_values=pixels)
        teacher = None if distillation_type == "none" else torch.randn(4, 10)
        deit_distillation_loss(outputs.cls_logits, outputs.distillation_logits, labels, teacher,
                               distillation_type=distillation_type).loss.backward()
        unused = [name for name, p in model.named_parameters() if p.grad is None]
        assert not unused, (distillation_type, unused)


def test_periodic_evaluations_can_read_a_fixed_part_of_the_eval_split(sample_dir, tiny_teacher, tmp_path):
    metrics = main([
        "--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
        "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "32", "--max_eval_samples", "24",
        "--eval_samples_during_training", "8", "--num_train_epochs", "2", "--per_device_train_batch_size", "16",
        "--eval_strategy", "epoch", "--output_dir", str(tmp_path), "--disable_tqdm", "true", *TINY_STUDENT_ARGS,
    ])
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    periodic = [entry["eval_fused_top1"] for entry in history if "eval_fused_top1" in entry]
    assert len(periodic) == 2 and all(abs(v * 8 - round(v * 8)) < 1e-6 for v in periodic)  # 8 images
    assert metrics["eval_images"] == 24
