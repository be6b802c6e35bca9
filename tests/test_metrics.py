"""The offline evaluate module: top-k from class indices, never logits."""

import numpy as np
import pytest

import hf_deit.metrics
from hf_deit.metrics import TopKAccuracy, distillation_compute_metrics, head_accuracies, top_k_indices


def test_top_k_accuracy_values():
    logits = [[0.1, 0.9, 0.0, 0.0], [0.8, 0.15, 0.05, 0.0], [0.2, 0.3, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    labels = [1, 1, 0, 0]
    # top-1 hits: row 0; top-2: rows 0 and 1 (1 is 2nd); top-3: rows 0, 1, 2 (0 is 3rd); row 3's label is last.
    result = TopKAccuracy().compute(predictions=top_k_indices(logits, 3), references=labels, top_k=(1, 2, 3))
    assert result == {"top1": pytest.approx(0.25), "top2": pytest.approx(0.5), "top3": pytest.approx(0.75)}


def test_indices_are_ranked_best_first_and_cut_at_k():
    ranked = top_k_indices(np.array([[0.1, 0.7, 0.2, 0.0, 0.3, 0.9, 0.05]]), k=5)
    assert ranked.tolist() == [[5, 1, 4, 2, 0]]


def test_ties_rank_the_lower_class_first_like_argmax():
    logits = np.array([[0.1, 0.5, 0.2, 0.5, 0.0], [0.3, 0.3, 0.3, 0.3, 0.3]], dtype=np.float32)
    assert top_k_indices(logits, k=3).tolist() == [[1, 3, 2], [0, 1, 2]]
    assert (top_k_indices(logits, k=1)[:, 0] == logits.argmax(-1)).all()
    signed = np.array([[-2.0, -0.5, -0.5, 3.0, -np.inf]], dtype=np.float32)  # negative scores order too
    assert top_k_indices(signed, k=5).tolist() == [[3, 1, 2, 0, 4]]


def test_top_k_matches_a_stable_sort_on_random_logits():
    logits = np.round(np.random.default_rng(0).standard_normal((300, 50)), 1).astype(np.float32)  # many ties
    expected = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
    assert (top_k_indices(logits) == expected).all()


def test_top5_skipped_when_fewer_classes():
    assert set(head_accuracies({"cls": [[0.0, 1.0]]}, [1])) == {"cls_top1"}


def test_the_metric_reads_indices_not_logits():
    """A logits row would be read as class indices: top-1 of [[0.0, 1.0]] as indices is class 0."""
    assert TopKAccuracy().compute(predictions=[[0, 1]], references=[1])["top1"] == 0.0
    assert TopKAccuracy().compute(predictions=[[1, 0]], references=[1])["top1"] == 1.0


def test_loads_offline_through_evaluate_load():
    import evaluate

    metric = evaluate.load(hf_deit.metrics.__file__)
    assert metric.compute(predictions=top_k_indices([[0.0, 1.0], [1.0, 0.0]]), references=[1, 1])["top1"] == 0.5


def test_compute_metrics_names_every_head():
    from transformers import EvalPrediction

    labels = np.array([0, 1])
    right = np.array([[1.0, 0.0], [0.0, 1.0]])
    wrong = right[:, ::-1]
    metrics = distillation_compute_metrics(EvalPrediction(predictions=(right, wrong, right, right), label_ids=labels))
    assert metrics == {"cls_top1": 1.0, "distill_top1": 0.0, "fused_top1": 1.0, "teacher_top1": 1.0}
