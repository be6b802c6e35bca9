"""Top-k accuracy as an ``evaluate`` module that works offline, and the Trainer's metric hooks.

``evaluate.load("accuracy")`` downloads its script from the Hub; this module ships in the
package instead. Use it as ``TopKAccuracy()`` or ``evaluate.load(hf_deit.metrics.__file__)``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Top-k accuracy of classification logits: the fraction of rows whose label is among the k largest logits."
_INPUTS = """
Args:
    predictions: logits (or probabilities), one row of num_labels scores per example.
    references: the integer label of each example.
    top_k: the k values to report (default (1, 5)); k larger than num_labels is skipped.
Returns:
    top1, top5, ...: accuracies in [0, 1].
"""
_CITATION = ""

HEADS = ("cls", "distill", "fused", "teacher")


class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float32)
        labels = np.asarray(references, dtype=np.int64)
        results = {}
        for k in top_k:
            if k > scores.shape[-1]:
                continue
            top = np.argpartition(-scores, kth=k - 1, axis=-1)[:, :k]
            results[f"top{k}"] = float((top == labels[:, None]).any(axis=-1).mean())
        return results


def head_accuracies(head_logits, labels, metric=None):
    """``{"<head>_top1": ..., "<head>_top5": ...}`` for each head present in ``head_logits``."""
    metric = metric if metric is not None else TopKAccuracy()
    results = {}
    for head, logits in head_logits.items():
        if logits is None:
            continue
        for name, value in metric.compute(predictions=logits, references=labels).items():
            results[f"{head}_{name}"] = value
    return results


def make_compute_metrics(head_names=("fused", "cls", "distill", "teacher")):
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
    results = TopKAccuracy().compute(predictions=predictions[0], references=eval_prediction.label_ids)
    if len(predictions) > 1:
        results.update(head_accuracies({"tta": predictions[1]}, eval_prediction.label_ids))
    return results
