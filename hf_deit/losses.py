"""The DeiT distillation objective (Touvron et al. 2021, section 4) as one pure function.

    none: (1 - a) * CE(cls, y) + a * CE(dist, y)             both heads on the labels
    soft: (1 - a) * CE(cls, y) + a * tau^2 * KL(softmax(teacher / tau) || softmax(dist / tau))
    hard: (1 - a) * CE(cls, y) + a * CE(dist, argmax(teacher))

``y`` is either class indices or a soft target distribution (Mixup/CutMix, label smoothing).

KL normalisation: by default the paper's per-sample mean (``"batchmean"``: sum over classes,
mean over images, the true KL divergence). The official code divides the summed KL by the number
of *elements* (images x classes), which scales the soft term down by the number of classes;
``kl_reduction="elementwise_mean"`` reproduces it.

With ``none`` the official code leaves the distillation head untrained; we train it on the
labels so that the fused prediction used by ``pipeline(...)`` averages two trained heads.
When ``distill_logits`` is ``None`` (a student without a distillation token) the class head
takes both terms: the paper's "usual distillation".

``teacher_logits`` may cover only the first rows of the batch (``distillation_teacher_fraction``).
The distillation head's term then also trains the head on the labels of the other rows
(``rows_without_teacher="labels"``, the ``none`` term there: a weighted mean of the two, by row
count), or averages over the teacher's rows only (``"skip"``). Hard targets equal the labels on most views of a
well-fitted teacher, so ``"labels"`` keeps the head's signal on every row at a fraction of the
teacher's cost. The class head's term always averages over all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

DISTILLATION_TYPES = ("none", "soft", "hard")
KL_REDUCTIONS = ("batchmean", "elementwise_mean")
DEFAULT_KL_REDUCTION = "batchmean"  # the paper's; the config's default too
ROWS_WITHOUT_TEACHER = ("labels", "skip")
DEFAULT_ROWS_WITHOUT_TEACHER = "labels"  # the config's default too


def validate_distillation_settings(
    distillation_type: str, alpha: float, tau: float, kl_reduction: str, rows_without_teacher: str
) -> None:
    """Fail early, with the fix in the message, rather than after hours of training."""
    if distillation_type not in DISTILLATION_TYPES:
        raise ValueError(f"distillation_type must be one of {DISTILLATION_TYPES}, got {distillation_type!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"distillation_alpha must be in [0, 1] (weight of the teacher term), got {alpha}; the paper uses 0.5."
        )
    if not tau > 0:
        raise ValueError(f"distillation_tau must be > 0, got {tau}; use 1.0 for plain soft distillation.")
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"distillation_kl_reduction must be one of {KL_REDUCTIONS}, got {kl_reduction!r}.")
    if rows_without_teacher not in ROWS_WITHOUT_TEACHER:
        raise ValueError(
            f"distillation_rows_without_teacher must be one of {ROWS_WITHOUT_TEACHER}, got {rows_without_teacher!r}."
        )


@dataclass
class DistillationLoss:
    loss: torch.Tensor
    """The total objective to back-propagate."""
    base_loss: torch.Tensor
    """Label term of the class head, CE(cls, y)."""
    distillation_loss: torch.Tensor
    """Teacher term (or label term of the distillation head with ``none``), before weighting."""


def deit_distillation_loss(
    cls_logits: torch.Tensor,
    distill_logits: Optional[torch.Tensor],
    labels: torch.Tensor,
    teacher_logits: Optional[torch.Tensor],
    distillation_type: str = "hard",
    alpha: float = 0.5,
    tau: float = 1.0,
    kl_reduction: str = DEFAULT_KL_REDUCTION,
    label_smoothing: float = 0.0,
    rows_without_teacher: str = DEFAULT_ROWS_WITHOUT_TEACHER,
) -> DistillationLoss:
    validate_distillation_settings(distillation_type, alpha, tau, kl_reduction, rows_without_teacher)
    if distill_logits is None:
        distill_logits = cls_logits
    if labels.dtype.is_floating_point and labels.shape != cls_logits.shape:
        raise ValueError(
            f"Soft labels must have the logits' shape {tuple(cls_logits.shape)}, got {tuple(labels.shape)}."
        )
    # Label smoothing applies to index labels; soft targets (Mixup) arrive already smoothed.
    smoothing = 0.0 if labels.dtype.is_floating_point else label_smoothing
    base_loss = F.cross_entropy(cls_logits, labels, label_smoothing=smoothing)

    if distillation_type == "none":
        distillation_loss = F.cross_entropy(distill_logits, labels, label_smoothing=smoothing)
    else:
        if teacher_logits is None:
            raise ValueError(f"distillation_type={distillation_type!r} needs teacher_logits.")
        teacher_logits = teacher_logits.detach()
        if not 0 < teacher_logits.shape[0] <= distill_logits.shape[0]:
            raise ValueError(
                f"teacher_logits must cover 1 to {distill_logits.shape[0]} rows of the batch, got {teacher_logits.shape[0]}."
            )
        taught = teacher_logits.shape[0]
        all_distill_logits, distill_logits = distill_logits, distill_logits[:taught]
        if distillation_type == "soft":
            kl = F.kl_div(
                F.log_softmax(distill_logits / tau, dim=-1),
                F.log_softmax(teacher_logits / tau, dim=-1),
                reduction="sum",
                log_target=True,
            )
            denominator = distill_logits.shape[0] if kl_reduction == "batchmean" else distill_logits.numel()
            distillation_loss = kl * (tau * tau) / denominator
        else:
            distillation_loss = F.cross_entropy(distill_logits, teacher_logits.argmax(dim=-1))
        rows = all_distill_logits.shape[0]
        if rows_without_teacher == "labels" and taught < rows:
            label_loss = F.cross_entropy(all_distill_logits[taught:], labels[taught:], label_smoothing=smoothing)
            distillation_loss = (taught * distillation_loss + (rows - taught) * label_loss) / rows

    loss = (1.0 - alpha) * base_loss + alpha * distillation_loss
    return DistillationLoss(loss=loss, base_loss=base_loss, distillation_loss=distillation_loss)
