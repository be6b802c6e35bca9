"""Pictures of a student: where its class and distillation tokens look, confusion matrices, curves.

The attention picture shows, for one layer (the last by default), each head's map of the class
token and of the distillation token over the patch grid, and their difference. Not attention
rollout (Abnar & Zuidema, 2020): it averages the heads and adds the residual identity at every
layer, so in small students the two tokens' rollout maps are the same picture; head by head, the
maps show where the two tokens differ, or that they do not.

transformers' default SDPA attention does not return attention weights (``output_attentions=True``
gives an empty tuple and a warning), so :func:`explain_prediction` switches the model to the
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

# Mean per-head correlation of the two tokens' maps above which the picture says they "attend alike".
ALIKE_CORRELATION = 0.9


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


@dataclass
class TokenAttention:
    """Where the class and the distillation token look in one layer, head by head, over the patch grid.

    Each map is the share of the token's attention that goes to each patch (the two special tokens'
    share is left out, so a map sums to at most 1). Per-head maps of one layer are shown rather than
    rollout because rollout averages the heads and adds the residual identity at every layer, which
    makes the two tokens' maps all but identical in small students; head by head, what differs shows.
    """

    cls: np.ndarray  # (heads, grid_h, grid_w)
    distillation: np.ndarray
    layer: int  # 1-based, for titles

    @property
    def head_correlations(self) -> np.ndarray:
        """Pearson correlation of the two tokens' maps, per head (1.0 where a map is constant)."""
        values = []
        for cls_map, dist_map in zip(self.cls, self.distillation, strict=True):
            a, b = cls_map.ravel() - cls_map.mean(), dist_map.ravel() - dist_map.mean()
            norm = float(np.linalg.norm(a) * np.linalg.norm(b))
            values.append(float(a @ b) / norm if norm > 0 else 1.0)
        return np.asarray(values)

    def finding(self) -> str:
        """One sentence on whether the two tokens attend alike in this layer (a property of the model)."""
        correlations = self.head_correlations
        mean = float(correlations.mean())
        per_head = ", ".join(f"{value:.2f}" for value in correlations)
        if mean >= ALIKE_CORRELATION:
            verdict = "the two tokens attend alike: the distillation token looks where the class token looks"
        elif mean >= 0.5:
            verdict = "the two tokens attend partly alike"
        else:
            verdict = "the two tokens look at different parts of the image"
        return (f"In layer {self.layer}, {verdict} (correlation of their maps {mean:.2f}; "
                f"per head {per_head}).")



def token_head_maps(attentions: Sequence[torch.Tensor], grid: tuple[int, int], layer: int = -1) -> TokenAttention:
    """Per-head maps of the class token (token 0) and the distillation token (token 1) in ``layer``."""
    if not attentions:
        raise ValueError(
            "The model returned no attention weights: load it with attn_implementation='eager' "
            "(SDPA attention does not compute them)."
        )
    weights = attentions[layer][0].float().cpu()  # (heads, tokens, tokens) of the first image
    grid_h, grid_w = grid
    maps = weights[:, :2, 2:].reshape(weights.shape[0], 2, grid_h, grid_w).numpy()
    return TokenAttention(cls=maps[:, 0], distillation=maps[:, 1], layer=layer % len(attentions) + 1)


def plot_token_attention(attention: TokenAttention, image: Image.Image, dpi: int = 100) -> Image.Image:
    """One picture: the input, then per head (and their mean) the class token's map, the distillation
    token's map (one shared colour scale) and their difference (a diverging scale centred on 0)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cls_maps = np.concatenate([attention.cls, attention.cls.mean(0, keepdims=True)])
    dist_maps = np.concatenate([attention.distillation, attention.distillation.mean(0, keepdims=True)])
    difference = dist_maps - cls_maps
    columns = cls_maps.shape[0]
    figure = Figure(figsize=(1.9 + 1.45 * columns + 1.3, 4.9), dpi=dpi, layout="constrained")
    grid = figure.add_gridspec(3, columns + 1, width_ratios=[1.3] + [1.0] * columns)
    picture = figure.add_subplot(grid[:, 0])
    picture.imshow(image)
    picture.set_title("input", fontsize=9)
    picture.axis("off")
    share = 100 * max(float(cls_maps.max()), float(dist_maps.max()), 1e-6)
    spread = 100 * max(float(np.abs(difference).max()), 1e-6)
    rows = (("class token", cls_maps, "viridis", 0.0, share),
            ("distillation token", dist_maps, "viridis", 0.0, share),
            ("distillation - class", difference, "RdBu_r", -spread, spread))
    for row, (name, maps, colormap, low, high) in enumerate(rows):
        axes = [figure.add_subplot(grid[row, 1 + column]) for column in range(columns)]
        for column, (ax, values) in enumerate(zip(axes, maps, strict=True)):
            shown = ax.imshow(100 * values, cmap=colormap, vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("mean of heads" if column == columns - 1 else f"head {column + 1}", fontsize=9)
            if column == 0:
                ax.set_ylabel(name, fontsize=9)
        unit = "points of attention" if row == 2 else "% of attention"
        figure.colorbar(shown, ax=axes, shrink=0.9, label=unit).ax.tick_params(labelsize=7)
    figure.suptitle(f"Where each token looks, layer {attention.layer}, per head", fontsize=10)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), mode="RGB")


@dataclass
class AttentionExplanation:
    """One forward pass of a student: the three heads' logits and where its two tokens look."""

    logits: torch.Tensor
    cls_logits: torch.Tensor
    distillation_logits: torch.Tensor
    attention: TokenAttention
    figure: Image.Image


@torch.no_grad()
def explain_prediction(model: Any, image_processor: Any, image: Image.Image) -> AttentionExplanation:
    """Logits of the class head, the distillation head and their average, plus the last layer's per-head maps.

    ``image`` must be RGB. The model is switched to eager attention if needed (same logits, and the
    only implementation that returns the weights).
    """
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    device = next(model.parameters()).device
    pixel_values = image_processor(image, return_tensors="pt")["pixel_values"].to(device)
    outputs = model(pixel_values=pixel_values, output_attentions=True)
    patch = model.config.patch_size
    attention = token_head_maps(outputs.attentions, (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch))
    left, top, right, bottom = processed_region(image.size, image_processor)
    return AttentionExplanation(
        logits=outputs.logits[0].float().cpu(),
        cls_logits=outputs.cls_logits[0].float().cpu(),
        distillation_logits=outputs.distillation_logits[0].float().cpu(),
        attention=attention,
        figure=plot_token_attention(attention, image.crop((left, top, right, bottom))),
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
