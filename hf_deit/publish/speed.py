"""Inference speed of a model on its device: throughput at a large batch and latency at batch 1.

The latency is the median of repeated single-image forwards, reported with the thread count: on a
shared CPU a mean is dominated by whatever else runs at the time.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

import torch


def device_description(device: torch.device) -> str:
    """Human-readable device name for the report: a throughput number without it means nothing."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        name = platform.processor() or platform.machine()
        return f"cpu ({name}, {torch.get_num_threads()} threads)"
    return device.type


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def _timed_runs(model: torch.nn.Module, batch: torch.Tensor, seconds: float, warmup: int) -> list[float]:
    """Seconds of each forward after ``warmup`` untimed ones, repeating until ``seconds`` have passed."""
    for _ in range(warmup):
        model(pixel_values=batch)
    _synchronize(batch.device)
    times: list[float] = []
    while sum(times) < seconds and len(times) < 1000:
        start = time.perf_counter()
        model(pixel_values=batch)
        _synchronize(batch.device)
        times.append(time.perf_counter() - start)
    return times


def benchmark_inference(
    model: torch.nn.Module, image_size: tuple[int, int], batch_size: int = 256, seconds: float = 3.0
) -> dict[str, Any]:
    """Images/s at ``batch_size`` and the median milliseconds per image at batch 1, on the model's device."""
    device = next(model.parameters()).device
    height, width = image_size
    big = torch.randn(batch_size, 3, height, width, device=device)
    batch_times = _timed_runs(model, big, seconds, warmup=2)
    single_times = _timed_runs(model, big[:1].clone(), seconds, warmup=5)
    return {
        "device": device_description(device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "throughput_batch_size": batch_size,
        "throughput_images_per_s": round(batch_size / statistics.median(batch_times), 1),
        "latency_ms_batch_1": round(1000 * statistics.median(single_times), 3),
        "threads": torch.get_num_threads(),
        "timed_runs": {"batch": len(batch_times), "single": len(single_times)},
        "torch": torch.__version__,
    }


