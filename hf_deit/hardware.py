"""What the CPU can do fast, read once from ``/proc/cpuinfo``.

bf16 on a CPU is only a speed-up where the cores have bf16 instructions (AVX512-BF16 or AMX). Elsewhere
oneDNN emulates it, an order of magnitude slower than fp32, where native bf16 is faster than fp32
(``docs/results/throughput.md``). Users who turn ``bf16`` on for a CPU run
deserve to know which of the two they will get.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

logger = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its ``/proc/cpuinfo`` flags (no flags where that file does not exist)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def cpu_has_native_bf16() -> bool | None:
    """True or False where the CPU's flags are known (Linux), None elsewhere."""
    _, flags = cpu_model_and_flags()
    if not flags:
        return None
    return bool(flags & NATIVE_BF16_FLAGS)


def warn_if_bf16_is_emulated(bf16: bool, device_type: str) -> bool:
    """Warn when bf16 autocast is asked for on a CPU without bf16 instructions; True if it warned."""
    if not bf16 or device_type != "cpu" or cpu_has_native_bf16() is not False:
        return False
    model, _ = cpu_model_and_flags()
    logger.warning(
        "bf16 is on, but this CPU (%s) has no bf16 instructions (no avx512_bf16 or amx_bf16 in /proc/cpuinfo): "
        "bf16 is emulated there, an order of magnitude slower than fp32 (docs/results/throughput.md). Set bf16: false "
        "to train in fp32, or train on a GPU or a CPU with AVX512-BF16/AMX.",
        model,
    )
    return True


def bf16_is_native(device_type: str) -> bool:
    """Whether ``device_type`` computes bf16 in hardware: a bf16 GPU, or a CPU with AVX512-BF16/AMX."""
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device_type == "cpu" and bool(cpu_has_native_bf16())


def resolve_teacher_dtype(teacher_dtype: str, device_type: str) -> str:
    """``auto`` -> ``bfloat16`` where the device computes bf16 natively (a bf16 GPU, a CPU with AVX512-BF16/AMX),
    else ``float32``; any other value is returned as is. The teacher only infers, so bf16 costs it nothing but
    rounding (its top-1 agrees with float32 on >= 95 % of images, ``tests/test_teacher.py``)."""
    if teacher_dtype != "auto":
        return teacher_dtype
    return "bfloat16" if bf16_is_native(device_type) else "float32"
