"""``DistillationTrainer``: a ``transformers.Trainer`` that trains a DeiT student against a teacher.

In the style of TRL's ``GKDTrainer``: the teacher is handed to the accelerator in evaluation mode
(placed on the device, never wrapped for DDP, never updated), ``compute_loss`` runs the student
and the teacher on the same batch and applies :func:`hf_deit.losses.deit_distillation_loss`, and
the loss parts are logged next to the Trainer's own ``loss``. Evaluation returns the logits of
the fused, class and distillation heads (and the teacher's) so ``compute_metrics`` reports
the accuracy of each, the columns of the paper's Table 3. With ``distillation_teacher_cache`` the training
batches carry their teacher logits (:mod:`hf_deit.training.teacher_cache`) and the teacher runs in evaluation only.

Reliability (``docs/results/robustness.md``): checkpoints are written atomically and resumed
strictly (:class:`hf_deit.training.checkpointing.RobustCheckpointMixin`), a NaN/inf loss stops the run
before the bad step is applied or saved (:mod:`hf_deit.training.nonfinite`), and a Hub token never reaches
``training_args.bin`` (:mod:`hf_deit.safety`).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn
from transformers import Trainer

from ..config import ConfigError, DistillationConfig
from ..data.augment import apply_mixup, build_mixup
from ..data.device import DeviceResidentImages
from ..heads import HEADS
from ..losses import deit_distillation_loss
from ..teacher import TeacherWrapper
from .base import ImageTrainerMixin
from .checkpointing import RobustCheckpointMixin, last_complete_checkpoint
from .nonfinite import NonFiniteLossGuard, resolve_mode
from .teacher_cache import TeacherTargetCache

logger = logging.getLogger(__name__)


class DistillationTrainer(ImageTrainerMixin, RobustCheckpointMixin, Trainer):
    def __init__(
        self,
        model: nn.Module,
        args: DistillationConfig,
        teacher_model: Optional[TeacherWrapper] = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DistillationConfig):
            raise TypeError("DistillationTrainer needs a DistillationConfig (TrainingArguments + distillation keys).")
        if args.distillation_type != "none" and teacher_model is None:
            raise ValueError(
                f"distillation_type={args.distillation_type!r} needs a teacher: set teacher_model_name_or_path "
                "(any image-classification model, e.g. models/teacher-cifar10-resnet), or use distillation_type: none."
            )
        super().__init__(model=model, args=args, **kwargs)
        # Our loss is already a per-batch mean: let the Trainer scale it for gradient accumulation.
        self.model_accepts_loss_kwargs = False
        self.teacher = (
            self.accelerator.prepare_model(teacher_model, evaluation_mode=True) if teacher_model is not None else None
        )
        num_labels = self.accelerator.unwrap_model(self.model).config.num_labels
        self.mixup = build_mixup(
            args.mixup_alpha,
            args.cutmix_alpha,
            args.mixup_prob,
            args.mixup_switch_prob,
            args.label_smoothing_factor,
            num_labels,
        )
        self._loss_part_sums: dict[str, torch.Tensor] = {}
        self._loss_part_count = 0
        self._last_loss_parts: Optional[torch.Tensor] = None
        self.nonfinite_guard = NonFiniteLossGuard(
            resolve_mode(args.nonfinite_loss_check, args.device, args.logging_nan_inf_filter),
            self.accelerator,
            self._describe_last_checkpoint,
        )
        if args.distillation_teacher_cache:
            self._cache_teacher_targets()

    def _cache_teacher_targets(self) -> None:
        dataset = self.train_dataset
        if not isinstance(dataset, DeviceResidentImages) or dataset.views_per_image is None:
            raise ConfigError(
                "distillation_teacher_cache needs a device-resident training set with two views per image",
                "set device_resident_data: true and random_crop_padding: 0, or drop distillation_teacher_cache")
        # Added after the training clock (ImageTrainerMixin): the cache is built on the clock.
        self.add_callback(TeacherTargetCache(self.teacher, dataset, self.args.per_device_eval_batch_size))

    @property
    def head_names(self) -> tuple[str, ...]:
        """Keys of the logits ``prediction_step`` returns, in :data:`hf_deit.heads.HEADS` order:
        ``compute_metrics`` names them so."""
        student = self.accelerator.unwrap_model(self.model)
        present = {"cls", "teacher"} if self.teacher is not None else {"cls"}
        if hasattr(student, "distillation_classifier"):
            present |= {"distill", "fused"}
        return tuple(head.key for head in HEADS if head.key in present)

    def _forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]):
        pixel_values = inputs["pixel_values"]
        labels = inputs["labels"]
        if model.training and self.mixup is not None:
            pixel_values, labels = apply_mixup(self.mixup, pixel_values, labels)
        outputs = model(pixel_values=pixel_values)
        cls_logits = getattr(outputs, "cls_logits", None)
        if cls_logits is None:  # a plain DeiTForImageClassification student ("usual distillation")
            cls_logits = outputs.logits
        distill_logits = getattr(outputs, "distillation_logits", None)
        # With `none` the loss never reads the teacher: skip its forward in training (a third of a step
        # on CPU, docs/results/throughput.md) and keep it in evaluation, where it fills the teacher column.
        needs_teacher = self.teacher is not None and (not model.training or self.args.distillation_type != "none")
        teacher_logits = inputs.get("teacher_logits") if model.training else None  # distillation_teacher_cache
        if teacher_logits is None and needs_teacher:
            teacher_logits = self.teacher(self._teacher_rows(pixel_values, model.training))
        parts = deit_distillation_loss(
            cls_logits,
            distill_logits,
            labels,
            teacher_logits,
            distillation_type=self.args.distillation_type,
            alpha=self.args.distillation_alpha,
            tau=self.args.distillation_tau,
            kl_reduction=self.args.distillation_kl_reduction,
            label_smoothing=self.args.label_smoothing_factor if model.training else 0.0,
            rows_without_teacher=self.args.distillation_rows_without_teacher,
        )
        heads = (cls_logits, distill_logits, outputs.logits) if distill_logits is not None else (cls_logits,)
        return parts, heads, teacher_logits

    def _teacher_rows(self, pixel_values: torch.Tensor, training: bool) -> torch.Tensor:
        """The images the teacher labels: in training, the first ``distillation_teacher_fraction`` of the batch
        (a random share, since the sampler shuffles); in evaluation, all of them, for the teacher's column."""
        fraction = self.args.distillation_teacher_fraction
        if not training or fraction >= 1.0:
            return pixel_values
        return pixel_values[: max(1, round(fraction * pixel_values.shape[0]))]

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Optional[torch.Tensor] = None,
    ):
        parts, heads, teacher_logits = self._forward(model, inputs)
        if model.training:
            self._accumulate_loss_parts(parts.base_loss, parts.distillation_loss)
            self._last_loss_parts = torch.stack(
                [parts.loss.detach(), parts.base_loss.detach(), parts.distillation_loss.detach()]
            ).float()
        if return_outputs:
            return parts.loss, {"heads": heads, "teacher_logits": teacher_logits}
        return parts.loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        num_items_in_batch: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        # After the backward is queued, before optimizer.step(): see hf_deit.training.nonfinite for the cost.
        self.nonfinite_guard.observe(self.state.global_step + 1, loss, self._last_loss_parts)
        return loss

    def train(self, *args: Any, **kwargs: Any):
        result = super().train(*args, **kwargs)
        self.nonfinite_guard.check()  # deferred mode: the last steps since the last log
        return result

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        self.nonfinite_guard.check()  # never save weights that went through a non-finite step
        super()._save_checkpoint(model, trial)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        self.nonfinite_guard.check()
        super().save_model(output_dir, _internal_call)

    def _describe_last_checkpoint(self) -> str:
        checkpoint = last_complete_checkpoint(self.args.output_dir)
        if checkpoint is None:
            return "no checkpoint had been saved yet."
        return f"the last checkpoint, {checkpoint}, is intact."

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: Optional[list[str]] = None,
    ):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            parts, heads, teacher_logits = self._forward(model, inputs)
        loss = parts.loss.detach()
        if prediction_loss_only:
            return loss, None, None
        logits = tuple(h.detach() for h in heads)
        if teacher_logits is not None:
            logits = logits + (teacher_logits.detach(),)
        return loss, logits, inputs["labels"]

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """No weight decay on norms and biases (the Trainer's rule) nor on the class/distillation
        tokens and position embeddings (timm's ``no_weight_decay``), as in the DeiT recipe."""
        no_decay = ("cls_token", "distillation_token", "position_embeddings", "mask_token")
        return [name for name in super().get_decay_parameter_names(model) if not name.endswith(no_decay)]

    def _accumulate_loss_parts(self, base_loss: torch.Tensor, distillation_loss: torch.Tensor) -> None:
        # Summed on the device and read at logging time only: no host sync per step.
        for name, value in (("loss_cls", base_loss), ("loss_distill", distillation_loss)):
            value = value.detach()
            self._loss_part_sums[name] = self._loss_part_sums.get(name, torch.zeros_like(value)) + value
        self._loss_part_count += 1

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        self.nonfinite_guard.check()
        if "loss" in logs and self._loss_part_count:
            for name, total in self._loss_part_sums.items():
                logs[name] = round((total / self._loss_part_count).item(), 4)
            self._loss_part_sums, self._loss_part_count = {}, 0
        super().log(logs, start_time)
