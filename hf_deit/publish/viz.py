"""Pictures of a student: where its class and distillation tokens look, confusion matrices, curves.

Attention maps use **attention rollout** (Abnar & Zuidema, 2020) by default rather than the
last layer's attention. After the first block every token is already a mixture of patches, so
the last layer's weights say which *mixtures* the class token reads, not which image regions;
in small, shallow students they are also dominated by the two special tokens attending to each
other. Rollout multiplies the head-averaged attention of every layer, each with the residual
connection added as an identity (``0.5 * A + 0.5 * I``), which traces the two tokens back to the
input patches. ``method="last"`` is kept for comparison.

transformers' default SDPA attention does not return attention weights (``output_attentions=True``
gives an empty tuple and a warning), so :func:`attention_overlays` switches the model to the
``eager`` implementation, which computes the same logits.

Plots are drawn on ``matplotlib.figure.Figure`` objects (the Agg renderer) without ``pyplot``:
no global state, safe in threads and servers without a display.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

METHODS = ("rollout", "last")


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """(batch, tokens, tokens) relevance of every input token for every output token."""
    rollout: Optional[torch.Tensor] = None
    for layer in attentions:
        weights = layer.float().mean(dim=1)  # average the heads
        eye = torch.eye(weights.shape[-1], device=weights.device, dtype=weights.dtype)
        weights = 0.5 * weights + 0.5 * eye  # the residual connection
        weights = weights / weights.sum(dim=-1, keepdim=True)
        rollout = weights if rollout is None else weights @ rollout
    if rollout is None:
        raise ValueError("No attention weights: run the model with output_attentions=True and eager attention.")
    return rollout


def token_attention_maps(
    attentions: Sequence[torch.Tensor], grid: tuple[int, int], method: str = "rollout"
) -> tuple[np.ndarray, np.ndarray]:
    """Class-token and distillation-token maps over the patch grid of the first image, in [0, 1].

    ``attentions`` are the per-layer ``(batch, heads, tokens, tokens)`` weights of a DeiT with a
    distillation token: token 0 is the class token, token 1 the distillation token, then patches.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not attentions:
        raise ValueError(
            "The model returned no attention weights: load it with attn_implementation='eager' "
            "(SDPA attention does not compute them)."
        )
    relevance = attention_rollout(attentions) if method == "rollout" else attentions[-1].float().mean(dim=1)
    grid_h, grid_w = grid
    maps = []
    for token in (0, 1):
        patch_map = relevance[0, token, 2:].reshape(grid_h, grid_w).cpu().numpy()
        low, high = float(patch_map.min()), float(patch_map.max())
        maps.append((patch_map - low) / (high - low) if high > low else np.zeros_like(patch_map))
    return maps[0], maps[1]


def processed_region(size: tuple[int, int], image_processor: Any) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the part of a ``size`` = (width, height) image the model sees.

    The whole image, unless the processor centre-crops after resizing (e.g. 256 -> 224 on
    ImageNet DeiTs); then only the central box reaches the model and the map belongs there.
    """
    width, height = size
    if not getattr(image_processor, "do_center_crop", False):
        return 0, 0, width, height
    resized_w, resized_h = float(width), float(height)
    if getattr(image_processor, "do_resize", True):
        target = dict(image_processor.size)
        if "shortest_edge" in target:
            scale = target["shortest_edge"] / min(width, height)
            resized_w, resized_h = width * scale, height * scale
        elif "height" in target and "width" in target:
            resized_w, resized_h = float(target["width"]), float(target["height"])
    crop = dict(image_processor.crop_size)
    crop_w = min(float(crop.get("width", resized_w)), resized_w) * width / resized_w
    crop_h = min(float(crop.get("height", resized_h)), resized_h) * height / resized_h
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return round(left), round(top), round(left + crop_w), round(top + crop_h)


def overlay_heatmap(
    image: Image.Image,
    heatmap: np.ndarray,
    region: Optional[tuple[int, int, int, int]] = None,
    alpha: float = 0.55,
    colormap: str = "inferno",
) -> Image.Image:
    """An RGB image of ``image``'s size with ``heatmap`` (values in [0, 1]) blended over ``region``.

    Pixels outside ``region`` (cropped away by the processor) are dimmed: the model never saw them.
    """
    from matplotlib import colormaps

    image = image.convert("RGB")
    left, top, right, bottom = region or (0, 0, image.width, image.height)
    box_w, box_h = max(right - left, 1), max(bottom - top, 1)
    heat = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F").resize((box_w, box_h), Image.BILINEAR)
    colours = colormaps[colormap](np.clip(np.asarray(heat), 0.0, 1.0))[..., :3] * 255.0
    base = np.asarray(image, dtype=np.float32)
    out = base * 0.4
    patch = base[top : top + box_h, left : left + box_w]
    colours = colours[: patch.shape[0], : patch.shape[1]]
    out[top : top + box_h, left : left + box_w] = (1 - alpha) * patch + alpha * colours
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="RGB")


@dataclass
class AttentionExplanation:
    """One forward pass of a student: the three heads' logits and the two tokens' overlays."""

    logits: torch.Tensor
    cls_logits: torch.Tensor
    distillation_logits: torch.Tensor
    cls_overlay: Image.Image
    distillation_overlay: Image.Image


@torch.no_grad()
def attention_overlays(
    model: Any, image_processor: Any, image: Image.Image, method: str = "rollout"
) -> AttentionExplanation:
    """Logits of the class head, distillation head and their average, plus both tokens' overlays.

    ``image`` must be RGB; the overlays have its size. The model is switched to eager attention
    if needed (same logits, and the only implementation that returns the weights).
    """
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    device = next(model.parameters()).device
    pixel_values = image_processor(image, return_tensors="pt")["pixel_values"].to(device)
    outputs = model(pixel_values=pixel_values, output_attentions=True)
    patch = model.config.patch_size
    grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
    cls_map, dist_map = token_attention_maps(outputs.attentions, grid, method)
    region = processed_region(image.size, image_processor)
    return AttentionExplanation(
        logits=outputs.logits[0].float().cpu(),
        cls_logits=outputs.cls_logits[0].float().cpu(),
        distillation_logits=outputs.distillation_logits[0].float().cpu(),
        cls_overlay=overlay_heatmap(image, cls_map, region),
        distillation_overlay=overlay_heatmap(image, dist_map, region),
    )


def plots_available() -> bool:
    """matplotlib is an extra (``pip install "hf-deit[plots]"``): without it, reports and cards skip their plots."""
    import importlib.util

    available = importlib.util.find_spec("matplotlib") is not None
    if not available:
        logger.warning('matplotlib is not installed: no plot written (pip install "hf-deit[plots]" adds them).')
    return available


def plot_confusion_matrix(
    matrix: np.ndarray, label_names: Sequence[str], path: str, title: str = ""
) -> Optional[str]:
    """Row-normalised confusion matrix (each row: where images of that class went), counts written in."""
    if not plots_available():
        return None
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    n = len(label_names)
    side = max(4.0, 0.45 * n + 2.5)
    figure = Figure(figsize=(side + 1.0, side), dpi=120, layout="constrained")
    axes = figure.subplots()
    shown = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, label="fraction of the true class")
    ticks = np.arange(n)
    axes.set_xticks(ticks, labels=list(label_names), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(label_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    if n <= 30:
        for row in range(n):
            for col in range(n):
                colour = "white" if rates[row, col] > 0.5 else "black"
                axes.text(col, row, str(int(matrix[row, col])), ha="center", va="center", fontsize=7, color=colour)
    figure.savefig(path)
    return path


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str, title: str = "") -> Optional[str]:
    """Loss (and its class / distillation parts) against the step, from ``trainer_state.json``."""
    if not plots_available():
        return None
    from matplotlib.figure import Figure

    series = {key: [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
              for key in ("loss", "loss_cls", "loss_distill")}
    series = {key: points for key, points in series.items() if points}
    if not series:
        return None
    figure = Figure(figsize=(6, 3.5), dpi=120, layout="constrained")
    axes = figure.subplots()
    for key, points in series.items():
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, label=key)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.legend()
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    figure.savefig(path)
    return path
