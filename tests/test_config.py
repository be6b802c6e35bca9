"""YAML + command-line parsing into the three configuration dataclasses."""

import pytest

from pathlib import Path

from hf_deit.config import (ConfigError, DataConfig, DistillationConfig, ModelConfig, TeacherModelConfig,
                            TeacherTrainingConfig, parse_config)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_values_and_cli_overrides(tmp_path):
    config = write(
        tmp_path,
        "dataset_name: data/cifar10-sample\n"
        "distillation_type: soft\n"
        "distillation_tau: 3\n"
        "learning_rate: 5e-4\n"  # YAML reads this as a string; argparse must still give a float
        "image_mean: [0.4914, 0.4822, 0.4465]\n"
        "horizontal_flip: false\n"
        f"output_dir: {tmp_path / 'out'}\n",
    )
    model, data, train = parse_config(["--config", config, "--distillation_type", "hard", "--max_train_samples", "64"])
    assert isinstance(model, ModelConfig) and isinstance(data, DataConfig) and isinstance(train, DistillationConfig)
    assert train.distillation_type == "hard"  # the command line wins
    assert train.distillation_tau == 3.0
    assert train.learning_rate == pytest.approx(5e-4)
    assert model.image_mean == pytest.approx([0.4914, 0.4822, 0.4465])
    assert data.horizontal_flip is False
    assert data.max_train_samples == 64
    assert train.remove_unused_columns is False and train.label_names == ["labels"]


def test_quickstart_config_parses():
    model, data, train = parse_config(["--config", "configs/quickstart.yaml"])
    assert data.dataset_name == "data/cifar10-sample"
    assert model.teacher_model_name_or_path == "models/teacher-cifar10-resnet"
    assert train.distillation_type == "hard"


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_every_shipped_run_config_parses(name):
    """A shipped recipe with a renamed or misspelt key would fail only when someone runs it."""
    teacher = name.startswith("teacher")
    types = (TeacherModelConfig, DataConfig, TeacherTrainingConfig) if teacher else (
        ModelConfig, DataConfig, DistillationConfig)
    extra = [] if teacher else ["--dataset_name", "data/cifar10-sample", "--teacher_model_name_or_path", "t"]
    model, data, train = parse_config(["--config", str(CONFIGS / name), *extra], dataclass_types=types)
    assert train.num_train_epochs > 0 and train.learning_rate > 0


def test_unknown_yaml_key_names_close_match(tmp_path):
    config = write(tmp_path, "distilation_type: soft\n")
    with pytest.raises(ValueError, match="distilation_type.*did you mean 'distillation_type'"):
        parse_config(["--config", config])


def test_unknown_cli_flag_is_rejected():
    with pytest.raises(ValueError, match="learning_rat.*did you mean 'learning_rate'"):
        parse_config(["--learning_rat", "0.1"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist — pass --config"):
        parse_config(["--config", "no/such/file.yaml"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--distillation_alpha", "1.2"], "distillation_alpha must be in \\[0, 1\\]"),
        (["--distillation_tau", "0"], "distillation_tau must be > 0"),
        (["--distillation_teacher_fraction", "0"], "distillation_teacher_fraction must be in \\(0, 1\\]"),
        (["--distillation_teacher_fraction", "1.5"], "distillation_teacher_fraction must be in \\(0, 1\\]"),
        (["--distillation_rows_without_teacher", "drop"], "distillation_rows_without_teacher must be one of"),
        (["--distillation_type", "medium"], "distillation_type must be one of"),
        (["--image_size", "30", "--patch_size", "4"], "must be a positive multiple of patch_size"),
        (["--max_train_samples", "0"], "max_train_samples must be a positive"),
    ],
)
def test_invalid_values_fail_at_parse_time(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_config(flags)


@pytest.mark.parametrize("flag, value, names", [
    ("--attn_implementation", "flash", "sdpa"),
    ("--teacher_dtype", "int8", "bfloat16"),
])
def test_kernel_and_precision_keys_reject_unknown_values(flag, value, names):
    with pytest.raises(ValueError, match=names):
        parse_config([flag, value])


def test_attention_kernels_give_the_same_student():
    """sdpa (the default) and eager compute the same function: only the kernel differs."""
    import torch

    from hf_deit.modeling import build_student

    id2label = {0: "a", 1: "b"}
    args = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
            "--patch_size", "8"]
    torch.manual_seed(0)
    sdpa, _ = build_student(parse_config(args)[0], id2label)
    eager, _ = build_student(parse_config(args + ["--attn_implementation", "eager"])[0], id2label)
    eager.load_state_dict(sdpa.state_dict())
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(sdpa.eval()(pixel_values=pixels).logits, eager.eval()(pixel_values=pixels).logits,
                               rtol=1e-5, atol=1e-5)
