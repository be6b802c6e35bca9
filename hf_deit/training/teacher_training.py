"""Train or fine-tune a teacher: any ``AutoModelForImageClassification`` with the stock Trainer
(plus the atomic checkpoints and exact resume of :class:`TeacherTrainer`).

The teacher sees the same data module as the student, so its label names are the dataset's
(and align with the student's by construction). A new CNN comes from ``model_type`` plus
``model_config_overrides`` (any field of that architecture's transformers config); an existing
checkpoint is re-headed for the dataset's labels.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    ViTImageProcessor,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from ..config import DataConfig, TeacherModelConfig, TeacherTrainingConfig
from ..data.datasets import load_image_classification_data
from ..data.inputs import evaluation_set
from ..metrics import classification_compute_metrics
from ..modeling import load_for_labels, new_image_classifier
from .base import ImageTrainerMixin
from .checkpointing import RobustCheckpointMixin
from .run import callbacks_or_none, save_results, train_save_evaluate, trainer_inputs
from .whitening import whiten_first_convolution

logger = logging.getLogger(__name__)


class TeacherTrainer(ImageTrainerMixin, RobustCheckpointMixin, Trainer):
    """The stock Trainer with atomic checkpoints, strict resume, no token in ``training_args.bin``
    (:mod:`hf_deit.training.checkpointing`), the samplers and device-resident data of the students
    (:mod:`hf_deit.training.base`) and optional flip test-time augmentation in evaluation."""

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """Weight decay on convolution and linear weights only: not on biases nor batch-norm scales
        (timm's ``param_groups_weight_decay``; the Trainer's own rule misses ``BatchNorm``)."""
        return [name for name, parameter in model.named_parameters() if parameter.ndim > 1]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if prediction_loss_only or not self.args.eval_flip_tta:
            return loss, logits, labels
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            mirrored = model(pixel_values=inputs["pixel_values"].flip(-1)).logits
        return loss, (logits, (logits + mirrored.to(logits.dtype)) / 2), labels


def build_teacher(model_config: TeacherModelConfig, id2label: dict[int, str]) -> tuple[Any, Any]:
    if model_config.model_name_or_path:
        path = model_config.model_name_or_path
        model = load_for_labels(
            AutoModelForImageClassification,
            path,
            id2label,
            model_config.trust_remote_code,
            fix="Pass --model_name_or_path with a local folder or Hub id of an image-classification model to "
            "fine-tune, or leave it unset to train a new model_type",
        )
        processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=model_config.trust_remote_code)
        return model, processor
    overrides = model_config.model_config_overrides or "{}"
    overrides = json.loads(overrides) if isinstance(overrides, str) else dict(overrides)
    model = new_image_classifier(model_config.model_type, overrides, id2label)
    side = model_config.image_size
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": side, "width": side},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(model_config.image_mean or IMAGENET_DEFAULT_MEAN),
        image_std=list(model_config.image_std or IMAGENET_DEFAULT_STD),
    )
    return model, processor


def preprocessed_train_images(data: Any, processor: Any, data_config: DataConfig, count: int) -> torch.Tensor:
    """The first ``count`` training images as the model reads them (the processor's size and normalisation,
    no augmentation): what the whitening statistics are taken from."""
    count = min(count, len(data.train))
    images = evaluation_set(data.train.select(range(count)), data, processor, data_config)
    return torch.stack([images[index]["pixel_values"] for index in range(count)])


def run_teacher_training(model_config: TeacherModelConfig, data_config: DataConfig,
                         training_args: TeacherTrainingConfig, callbacks: Sequence[Any] = ()) -> dict[str, float]:
    """Train, save and evaluate a teacher; ``callbacks`` (``TrainerCallback`` s) reach the Trainer."""
    data = load_image_classification_data(
        data_config, seed=training_args.seed, hold_out_for_selection=training_args.load_best_model_at_end
    )
    model, processor = build_teacher(model_config, data.id2label)
    if model_config.whiten_stem:  # a new model only: TeacherModelConfig refuses it with a checkpoint
        whiten_first_convolution(model, preprocessed_train_images(data, processor, data_config, model_config.whiten_images))
    if model_config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    logger.info("Teacher %s with %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    trainer = TeacherTrainer(
        model=model,
        args=training_args,
        **trainer_inputs(data, processor, data_config),
        compute_metrics=classification_compute_metrics,
        callbacks=callbacks_or_none(callbacks),
    )
    reported = evaluation_set(data.eval, data, processor, data_config)
    metrics = train_save_evaluate(trainer, data, reported, training_args.resume_from_checkpoint)
    trainer.save_metrics("all", metrics)
    rows = [("teacher", metrics.get("eval_top1"), metrics.get("eval_top5"))]
    if "eval_tta_top1" in metrics:
        rows.append(("teacher, flip TTA", metrics.get("eval_tta_top1"), metrics.get("eval_tta_top5")))
    save_results(rows, metrics, training_args.output_dir, title="Teacher evaluation")
    return metrics
