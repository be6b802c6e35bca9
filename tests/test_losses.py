"""The distillation objective against numbers computed by hand (math, not torch.nn.functional)."""

import math

import pytest
import torch

from hf_deit.losses import deit_distillation_loss

CLS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
DIST = [[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]
TEACHER = [[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]]
LABELS = [0, 1]


def log_softmax(row):
    top = max(row)
    log_sum = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - log_sum for v in row]


def ce(rows, targets):
    """Mean cross-entropy; targets are indices or probability rows."""
    total = 0.0
    for row, target in zip(rows, targets):
        logp = log_softmax(row)
        if isinstance(target, int):
            total -= logp[target]
        else:
            total -= sum(t * lp for t, lp in zip(target, logp))
    return total / len(rows)


def kl_sum(student_rows, teacher_rows, tau):
    total = 0.0
    for s, t in zip(student_rows, teacher_rows):
        ls = log_softmax([v / tau for v in s])
        lt = log_softmax([v / tau for v in t])
        total += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    return total


def run(kind, labels=LABELS, alpha=0.5, tau=1.0, **kw):
    label_tensor = torch.tensor(labels) if isinstance(labels[0], int) else torch.tensor(labels, dtype=torch.float32)
    return deit_distillation_loss(
        torch.tensor(CLS), torch.tensor(DIST), label_tensor, torch.tensor(TEACHER), kind, alpha, tau, **kw
    )


def test_none_trains_both_heads_on_labels():
    out = run("none", alpha=0.5)
    expected = 0.5 * ce(CLS, LABELS) + 0.5 * ce(DIST, LABELS)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.base_loss.item() == pytest.approx(ce(CLS, LABELS), rel=1e-6)


def test_hard_uses_teacher_argmax():
    out = run("hard", alpha=0.3)
    teacher_argmax = [1, 0]
    expected = 0.7 * ce(CLS, LABELS) + 0.3 * ce(DIST, teacher_argmax)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.distillation_loss.item() == pytest.approx(ce(DIST, teacher_argmax), rel=1e-6)


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_teacher_on_the_first_rows_only_skipping_the_others_averages_its_term_over_its_rows(kind):
    partial = deit_distillation_loss(
        torch.tensor(CLS), torch.tensor(DIST), torch.tensor(LABELS), torch.tensor(TEACHER[:1]), kind,
        rows_without_teacher="skip",
    )
    first_row = deit_distillation_loss(
        torch.tensor(CLS[:1]), torch.tensor(DIST[:1]), torch.tensor(LABELS[:1]), torch.tensor(TEACHER[:1]), kind
    )
    assert partial.distillation_loss.item() == pytest.approx(first_row.distillation_loss.item(), rel=1e-6)
    assert partial.base_loss.item() == pytest.approx(ce(CLS, LABELS), rel=1e-6)


def test_rows_without_teacher_train_the_distillation_head_on_their_labels_by_default():
    partial = deit_distillation_loss(
        torch.tensor(CLS), torch.tensor(DIST), torch.tensor(LABELS), torch.tensor(TEACHER[:1]), "hard"
    )
    assert partial.distillation_loss.item() == pytest.approx(ce(DIST, [1, LABELS[1]]), rel=1e-6)
    assert partial.base_loss.item() == pytest.approx(ce(CLS, LABELS), rel=1e-6)


def test_rows_without_teacher_on_labels_weights_soft_and_smoothed_label_terms_by_row_count():
    smoothing = 0.1
    smoothed = [smoothing / 3 + (1 - smoothing) * (k == LABELS[1]) for k in range(3)]
    partial = deit_distillation_loss(
        torch.tensor(CLS), torch.tensor(DIST), torch.tensor(LABELS), torch.tensor(TEACHER[:1]), "soft", tau=2.0,
        label_smoothing=smoothing, rows_without_teacher="labels",
    )
    expected = (4.0 * kl_sum(DIST[:1], TEACHER[:1], 2.0) + ce(DIST[1:], [smoothed])) / 2
    assert partial.distillation_loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_rows_without_teacher_changes_nothing_when_the_teacher_sees_every_row(kind):
    labels, skip = run(kind, rows_without_teacher="labels"), run(kind, rows_without_teacher="skip")
    assert labels.loss.item() == pytest.approx(skip.loss.item(), rel=1e-7)


def test_teacher_rows_beyond_the_batch_are_rejected():
    too_many = torch.tensor(TEACHER + TEACHER)
    with pytest.raises(ValueError, match="must cover 1 to 2 rows"):
        deit_distillation_loss(torch.tensor(CLS), torch.tensor(DIST), torch.tensor(LABELS), too_many, "hard")


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_is_per_sample_kl_times_tau_squared(tau):
    out = run("soft", alpha=0.5, tau=tau)
    kl_batchmean = kl_sum(DIST, TEACHER, tau) / 2
    expected = 0.5 * ce(CLS, LABELS) + 0.5 * tau * tau * kl_batchmean
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_soft_elementwise_mean_matches_official_code_normalisation():
    out = run("soft", tau=2.0, kl_reduction="elementwise_mean")
    assert out.distillation_loss.item() == pytest.approx(kl_sum(DIST, TEACHER, 2.0) * 4.0 / 6, rel=1e-5)


def test_soft_labels_mixup_style():
    soft = [[0.7, 0.3, 0.0], [0.1, 0.1, 0.8]]
    out = run("hard", labels=soft, alpha=0.5)
    expected = 0.5 * ce(CLS, soft) + 0.5 * ce(DIST, [1, 0])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    none = run("none", labels=soft, alpha=0.5)
    assert none.loss.item() == pytest.approx(0.5 * ce(CLS, soft) + 0.5 * ce(DIST, soft), rel=1e-6)


def test_one_hot_soft_labels_equal_index_labels():
    one_hot = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert run("soft", labels=one_hot).loss.item() == pytest.approx(run("soft").loss.item(), rel=1e-6)


def test_without_distillation_token_class_head_takes_both_terms():
    out = deit_distillation_loss(
        torch.tensor(CLS), None, torch.tensor(LABELS), torch.tensor(TEACHER), "hard", 0.5, 1.0
    )
    assert out.loss.item() == pytest.approx(0.5 * ce(CLS, LABELS) + 0.5 * ce(CLS, [1, 0]), rel=1e-6)


def test_teacher_gets_no_gradient():
    teacher = torch.tensor(TEACHER, requires_grad=True)
    student = torch.tensor(DIST, requires_grad=True)
    deit_distillation_loss(torch.tensor(CLS), student, torch.tensor(LABELS), teacher, "soft").loss.backward()
    assert teacher.grad is None and student.grad is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.5}, "distillation_alpha must be in \\[0, 1\\]"),
        ({"alpha": -0.1}, "distillation_alpha must be in \\[0, 1\\]"),
        ({"tau": 0.0}, "distillation_tau must be > 0"),
        ({"tau": -1.0}, "distillation_tau must be > 0"),
        ({"rows_without_teacher": "teacher"}, "distillation_rows_without_teacher must be one of"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run("soft", **kwargs)


def test_unknown_type_and_missing_teacher():
    with pytest.raises(ValueError, match="distillation_type must be one of"):
        run("medium")
    with pytest.raises(ValueError, match="needs teacher_logits"):
        deit_distillation_loss(torch.tensor(CLS), torch.tensor(DIST), torch.tensor(LABELS), None, "hard")
