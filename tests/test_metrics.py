"""The offline evaluate module."""

import numpy as np
import pytest

import hf_deit.metrics
from hf_deit.metrics import TopKAccuracy, distillation_compute_metrics


def test_top_k_accuracy_values():
    logits = [[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]]
    labels = [1, 1, 0, 2]
    # top-1 hits: row 0 only; top-2 hits: row 0, row 1 (1 is 2nd), row 3 (2 ties 0 at 0.3: either is fine)
    result = TopKAccuracy().compute(predictions=logits, references=labels, top_k=(1, 3))
    assert result == {"top1": pytest.approx(0.25), "top3": pytest.approx(1.0)}


def test_top5_skipped_when_fewer_classes():
    assert set(TopKAccuracy().compute(predictions=[[0.0, 1.0]], references=[1])) == {"top1"}


def test_loads_offline_through_evaluate_load():
    import evaluate

    metric = evaluate.load(hf_deit.metrics.__file__)
    assert metric.compute(predictions=[[0.0, 1.0], [1.0, 0.0]], references=[1, 1])["top1"] == pytest.approx(0.5)


def test_compute_metrics_names_every_head():
    from transformers import EvalPrediction

    labels = np.array([0, 1])
    right = np.array([[1.0, 0.0], [0.0, 1.0]])
    wrong = right[:, ::-1]
    metrics = distillation_compute_metrics(EvalPrediction(predictions=(right, right, wrong, right), label_ids=labels))
    assert metrics == {"fused_top1": 1.0, "cls_top1": 1.0, "distill_top1": 0.0, "teacher_top1": 1.0}
