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
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    ViTImageProcessor,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from .launch import prepare_processes, use_all_cores_for_a_lone_cpu_process
from .checkpointing import RobustCheckpointMixin
from .config import DataConfig, ImageTrainingArguments, parse_config
from .data import attach_transforms, collate_fn, load_image_classification_data
from .determinism import keyed_sampler_for
from .device_data import DeviceResidentLoaderMixin, device_resident_train
from .metrics import classification_compute_metrics
from .reporting import print_and_save_results
from .safety import load_for_labels

logger = logging.getLogger(__name__)


@dataclass
class TeacherModelConfig:
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Fine-tune this checkpoint (folder or Hub id) instead of a new model."}
    )
    model_type: str = field(default="resnet", metadata={"help": "transformers model type of a new teacher (resnet, regnet, convnext, ...)."})
    model_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "JSON object (or YAML mapping) of config fields for a new teacher."}
    )
    image_size: int = field(
        default=32,
        metadata={
            "help": "Teacher input resolution (square). CNNs whose stem down-samples 4x (ResNet) see CIFAR best "
            "upsampled (64); the distillation wrapper resizes the student's batch to it on the device."
        },
    )
    image_mean: Optional[list[float]] = field(default=None, metadata={"help": "Normalisation mean (default ImageNet)."})
    image_std: Optional[list[float]] = field(default=None, metadata={"help": "Normalisation std (default ImageNet)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the Hub."})
    channels_last: bool = field(
        default=False, metadata={"help": "Train the CNN in channels_last memory format (faster convolutions)."}
    )


@dataclass
class TeacherTrainingConfig(ImageTrainingArguments):
    output_dir: Optional[str] = field(default="outputs/teacher", metadata={"help": "Where to write the run."})
    eval_flip_tta: bool = field(
        default=False,
        metadata={
            "help": "Also report flip test-time augmentation (logits of the image and its mirror averaged) as "
            "eval_tta_top1. The saved model and the distillation targets are the plain forward."
        },
    )


class TeacherTrainer(DeviceResidentLoaderMixin, RobustCheckpointMixin, Trainer):
    """The stock Trainer with atomic checkpoints, strict resume, no token in ``training_args.bin``
    (:mod:`hf_deit.checkpointing`), per-image seeded augmentation (:mod:`hf_deit.determinism`),
    device-resident training data (:mod:`hf_deit.device_data`) and optional flip test-time augmentation
    in evaluation."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        keyed = keyed_sampler_for(dataset, seed)
        return keyed if keyed is not None else super()._get_train_sampler(train_dataset)

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
    label2id = {name: index for index, name in id2label.items()}
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
    config = AutoConfig.for_model(
        model_config.model_type, num_labels=len(id2label), id2label=id2label, label2id=label2id, **overrides
    )
    model = AutoModelForImageClassification.from_config(config)
    side = model_config.image_size
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": side, "width": side},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(model_config.image_mean or IMAGENET_DEFAULT_MEAN),
        image_std=list(model_config.image_std or IMAGENET_DEFAULT_STD),
    )
    return model, processor


def run_teacher_training(
    model_config: TeacherModelConfig,
    data_config: DataConfig,
    training_args: TeacherTrainingConfig,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    """Train, save and evaluate a teacher; ``callbacks`` (``TrainerCallback`` s) reach the Trainer."""
    data = load_image_classification_data(
        data_config, seed=training_args.seed, hold_out_for_selection=training_args.load_best_model_at_end
    )
    model, processor = build_teacher(model_config, data.id2label)
    if model_config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    attach_transforms(data, processor, data_config)
    if data_config.device_resident_data:  # decoded once here; the trainer moves it to its device
        data.train = device_resident_train(
            data.train, processor, data_config.random_crop_padding, data_config.horizontal_flip,
            data_config.random_crop_padding_mode,
        )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("Teacher %s with %.2fM parameters", type(model).__name__, n_params / 1e6)
    trainer = TeacherTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.during_training(data_config.eval_samples_during_training),
        data_collator=collate_fn,
        processing_class=processor,
        compute_metrics=classification_compute_metrics,
        callbacks=list(callbacks) or None,
    )
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: the full log history
    trainer.eval_dataset = data.eval  # the reported split (checkpoints, if selected, were chosen on data.selection)
    metrics = trainer.evaluate()
    metrics.update(
        train_runtime_s=round(train_seconds, 1),
        train_images=len(data.train),
        eval_images=len(data.eval),
        parameters=n_params,
        train_loss=train_result.training_loss,
    )
    trainer.save_metrics("all", metrics)
    rows = [("teacher", metrics.get("eval_top1"), metrics.get("eval_top5"))]
    if "eval_tta_top1" in metrics:
        rows.append(("teacher, flip TTA", metrics.get("eval_tta_top1"), metrics.get("eval_tta_top5")))
    print_and_save_results(rows, metrics, training_args.output_dir, title="Teacher evaluation")
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    if argv is None:  # a script launch: `accelerate launch --cpu --num_processes N` starts N ranks
        exit_code = prepare_processes()
        if exit_code is not None:
            raise SystemExit(exit_code)
    use_all_cores_for_a_lone_cpu_process()
    model_config, data_config, training_args = parse_config(
        argv, (TeacherModelConfig, DataConfig, TeacherTrainingConfig)
    )
    return run_teacher_training(model_config, data_config, training_args)
