"""The bf16-on-CPU warning: emulated bf16 trained ~12x slower than fp32 on an AVX2-only CPU."""

import logging

import pytest

from hf_deit import hardware


@pytest.fixture
def cpu_flags(monkeypatch):
    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("Test CPU", frozenset(flags)))

    return set_flags


def test_warns_for_bf16_on_a_cpu_without_bf16_instructions(cpu_flags, caplog):
    cpu_flags("avx2", "fma")
    with caplog.at_level(logging.WARNING, logger="hf_deit.hardware"):
        assert hardware.warn_if_bf16_is_emulated(True, "cpu") is True
    assert "Test CPU" in caplog.text and "bf16: false" in caplog.text


@pytest.mark.parametrize("flags", [("avx512f", "avx512_bf16"), ("amx_bf16", "amx_tile")])
def test_silent_where_bf16_is_native(cpu_flags, caplog, flags):
    cpu_flags(*flags)
    with caplog.at_level(logging.WARNING, logger="hf_deit.hardware"):
        assert hardware.warn_if_bf16_is_emulated(True, "cpu") is False
    assert not caplog.text


def test_silent_for_fp32_on_a_gpu_or_unknown_flags(cpu_flags):
    cpu_flags("avx2")
    assert hardware.warn_if_bf16_is_emulated(False, "cpu") is False
    assert hardware.warn_if_bf16_is_emulated(True, "cuda") is False
    cpu_flags()  # no /proc/cpuinfo (macOS, Windows): unknown, so no claim either way
    assert hardware.warn_if_bf16_is_emulated(True, "cpu") is False


def test_a_run_with_bf16_on_an_emulating_cpu_warns(cpu_flags, caplog, sample_dir, tiny_teacher, tmp_path):
    from hf_deit.config import parse_config
    from hf_deit.training.distill import build_distillation_run

    from helpers import REPO, TINY_STUDENT_ARGS

    cpu_flags("avx2")
    argv = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--dataset_name", str(sample_dir), "--teacher_model_name_or_path",
            str(tiny_teacher), "--output_dir", str(tmp_path), "--max_train_samples", "16", "--max_eval_samples", "8",
            "--bf16", "true", "--use_cpu", "true", "--report_to", "none", *TINY_STUDENT_ARGS]
    with caplog.at_level(logging.WARNING, logger="hf_deit.hardware"):
        build_distillation_run(*parse_config(argv))
    assert "no bf16 instructions" in caplog.text


def test_auto_teacher_dtype_is_bf16_only_where_native(monkeypatch):
    import hf_deit.hardware as hardware

    assert hardware.resolve_teacher_dtype("float16", "cpu") == "float16"  # explicit values pass through
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.resolve_teacher_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.resolve_teacher_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: None)  # flags unknown: the safe choice
    assert hardware.resolve_teacher_dtype("auto", "cpu") == "float32"


@pytest.mark.parametrize("flags, bf16_flag, expected", [
    (("avx512f", "avx512_bf16"), [], True),            # native: auto turns bf16 on
    (("avx2",), [], False),                            # emulated: fp32
    (("avx2",), ["--bf16", "true"], True),             # an explicit bf16 still wins
])
def test_auto_bf16_turns_bf16_on_only_where_native(cpu_flags, flags, bf16_flag, expected, tmp_path):
    from hf_deit.config import parse_config

    from helpers import REPO

    cpu_flags(*flags)
    argv = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--output_dir", str(tmp_path), "--use_cpu", "true",
            *bf16_flag]
    training = parse_config(argv)[2]
    assert training.auto_bf16 is True and training.bf16 is expected


def test_auto_bf16_false_keeps_fp32_on_a_native_cpu(cpu_flags, tmp_path):
    from hf_deit.config import parse_config

    from helpers import REPO

    cpu_flags("avx512_bf16")
    argv = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--output_dir", str(tmp_path), "--use_cpu", "true",
            "--auto_bf16", "false"]
    assert parse_config(argv)[2].bf16 is False
