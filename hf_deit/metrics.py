"""Top-k accuracy as an ``evaluate`` module that works offline, and the Trainer's metric hooks.

``evaluate.load("accuracy")`` downloads its script from the Hub; this module ships in the
package instead. Use it as ``TopKAccuracy()`` or ``evaluate.load(hf_deit.metrics.__file__)``.

The module takes each row's *top-k class indices*, never its logits: an ``evaluate`` metric
stores its inputs in Arrow, and a round trip of full logit matrices costs a hundredfold the
top-k itself (``docs/results/layout.md``). :func:`top_k_indices` reduces logits to indices in
torch first.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import datasets
import evaluate
import numpy as np
import torch

from .heads import HEADS

TOP_K = (1, 5)

_DESCRIPTION = "Top-k accuracy: the fraction of rows whose label is among their k highest-scoring classes."
_INPUTS = """
Args:
    predictions: for each example, class indices sorted by decreasing score (at least max(top_k) of them,
        or all classes when there are fewer; see hf_deit.metrics.top_k_indices).
    references: the integer label of each example.
    top_k: the k values to report (default (1, 5)); k larger than the number of indices given is skipped.
Returns:
    top1, top5, ...: accuracies in [0, 1].
"""


class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=TOP_K):
        ranked = np.asarray(predictions, dtype=np.int64).reshape(len(references), -1)
        labels = np.asarray(references, dtype=np.int64)
        hits = ranked == labels[:, None]
        return {f"top{k}": float(hits[:, :k].any(axis=-1).mean()) for k in top_k if k <= ranked.shape[-1]}


def top_k_indices(logits: Any, k: int = max(TOP_K)) -> np.ndarray:
    """Each row's ``min(k, classes)`` highest-scoring class indices, best first; equal scores rank the lower class
    index first, as ``argmax`` does (bf16 teachers tie now and then, and a top-1 must not depend on the sort)."""
    scores = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    # One exact int64 key per score, ordered like the score and, among equal scores, like the reversed index:
    # a top-k over it breaks ties lower class first without a full sort of every row.
    bits = scores.view(torch.int32)
    ordered = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)
    index = torch.arange(scores.shape[-1], dtype=torch.int64)
    keys = ordered * (1 << 32) + (scores.shape[-1] - 1 - index)
    return keys.topk(min(k, scores.shape[-1]), dim=-1).indices.numpy()


def head_accuracies(
    head_logits: Mapping[str, Any], labels: Any, metric: Optional[TopKAccuracy] = None
) -> dict[str, float]:
    """``{"<head>_top1": ..., "<head>_top5": ...}`` for each head present in ``head_logits``."""
    metric = metric if metric is not None else TopKAccuracy()
    results = {}
    for head, logits in head_logits.items():
        if logits is None:
            continue
        for name, value in metric.compute(predictions=top_k_indices(logits), references=labels).items():
            results[f"{head}_{name}"] = value
    return results


def make_compute_metrics(head_names: Sequence[str] = tuple(head.key for head in HEADS)):
    """Trainer ``compute_metrics`` for students whose predictions are one logits array per head, in
    ``head_names`` order (``DistillationTrainer.prediction_step`` returns them so)."""

    def compute_metrics(eval_prediction):
        predictions = eval_prediction.predictions
        if not isinstance(predictions, (tuple, list)):
            predictions = (predictions,)
        return head_accuracies(dict(zip(head_names, predictions)), eval_prediction.label_ids)

    return compute_metrics


distillation_compute_metrics = make_compute_metrics()


def classification_compute_metrics(eval_prediction):
    """Trainer ``compute_metrics`` for plain classifiers such as teachers: ``top1``/``top5`` of the first
    logits array, ``tta_top1``/``tta_top5`` of a second one (flip test-time augmentation) if present."""
    predictions = eval_prediction.predictions
    if not isinstance(predictions, (tuple, list)):
        predictions = (predictions,)
    labels = eval_prediction.label_ids
    results = TopKAccuracy().compute(predictions=top_k_indices(predictions[0]), references=labels)
    if len(predictions) > 1:
        results.update(head_accuracies({"tta": predictions[1]}, labels))
    return results
