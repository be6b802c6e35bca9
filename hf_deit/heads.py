"""The heads a student (and its teacher) is scored on, and the one table that reports them.

Every place that names a head reads :data:`HEADS`: the metric keys (``fused_top1``), the rows of
results tables, the model card's model-index names and the demo's labels. The order is the order
of the rows and of the logits that :class:`hf_deit.training.trainer.DistillationTrainer` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence


@dataclass(frozen=True)
class Head:
    key: str
    """Prefix of its metrics: ``<key>_top1``, ``<key>_top5``."""
    label: str
    """Its row in a results table."""
    index_name: Optional[str]
    """``metric_name`` of its top-1 in a model card's model-index (None: not a property of the model)."""


HEADS: tuple[Head, ...] = (
    Head("cls", "class head", "Top-1 accuracy (class head)"),
    Head("distill", "distillation head", "Top-1 accuracy (distillation head)"),
    Head("fused", "average (cls + distill)", "Top-1 accuracy (fused)"),
    Head("teacher", "teacher", None),
)
HEADS_BY_KEY: dict[str, Head] = {head.key: head for head in HEADS}
STUDENT_HEADS: tuple[Head, ...] = tuple(head for head in HEADS if head.index_name is not None)

Row = tuple[str, Optional[float], Optional[float]]


def prediction_head(metrics: Mapping[str, Any], prefix: str = "") -> str:
    """The head ``pipeline()`` predicts with: the fused average for a two-token student, else the class head."""
    return "fused" if f"{prefix}fused_top1" in metrics else "cls"


def head_rows(
    metrics: Mapping[str, Any], prefix: str = "", label_prefix: str = "", heads: Sequence[Head] = HEADS
) -> list[Row]:
    """(label, top-1, top-5) of every head in ``heads`` that ``metrics`` has (keys ``<prefix><key>_top1``)."""
    return [
        (label_prefix + head.label, metrics.get(f"{prefix}{head.key}_top1"), metrics.get(f"{prefix}{head.key}_top5"))
        for head in heads
        if f"{prefix}{head.key}_top1" in metrics
    ]


def percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def results_table(rows: Sequence[Row]) -> str:
    """Markdown table of (head, top-1, top-5) rows, accuracies in percent."""
    lines = ["| head | top-1 (%) | top-5 (%) |", "|---|---:|---:|"]
    lines += [f"| {name} | {percent(top1)} | {percent(top5)} |" for name, top1, top5 in rows]
    return "\n".join(lines)
