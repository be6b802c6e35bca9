"""One distillation run, end to end: config -> data -> (student, teacher) -> train -> evaluate -> save.

``scripts/distill.py`` (through :mod:`hf_deit.cli.distill`) calls :func:`run_distillation`, so tests
drive exactly the code path that users launch with ``accelerate launch``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from transformers import set_seed

from ..config import DataConfig, DistillationConfig, ModelConfig, check_teacher_cache_data
from ..data.datasets import ImageClassificationData, load_image_classification_data
from ..data.inputs import evaluation_set
from ..hardware import resolve_teacher_dtype, warn_if_bf16_is_emulated
from ..heads import STUDENT_HEADS, head_rows
from ..metrics import make_compute_metrics
from ..modeling import build_student
from ..publish.card import write_model_card
from ..publish.push import push_folder
from ..publish.recipe import save_run_config
from ..teacher import TeacherWrapper, load_teacher
from .ema import EMA_FOLDER, EMACallback
from .run import callbacks_or_none, save_results, train_save_evaluate, trainer_inputs
from .trainer import DistillationTrainer

logger = logging.getLogger(__name__)


@dataclass
class DistillationRun:
    trainer: DistillationTrainer
    data: ImageClassificationData
    ema: Optional[EMACallback]
    reported: Any
    """The evaluation split as the final evaluation reads it (all its images, preprocessed)."""


def evaluate_weights(trainer: DistillationTrainer, state_dict: dict, metric_key_prefix: str) -> dict[str, float]:
    """Evaluate other weights (the EMA) in the trainer's model, then put the live weights back."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    live = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(state_dict)
    try:
        return trainer.evaluate(metric_key_prefix=metric_key_prefix)
    finally:
        model.load_state_dict(live)


def _teacher(model_config: ModelConfig, data: ImageClassificationData, processor: Any, device_type: str):
    if not model_config.teacher_model_name_or_path:
        return None
    return load_teacher(
        model_config.teacher_model_name_or_path,
        data.label_names,
        processor,
        trust_remote_code=model_config.trust_remote_code,
        torch_dtype=resolve_teacher_dtype(model_config.teacher_dtype, device_type),
        channels_last=model_config.teacher_channels_last,
        compile=model_config.teacher_compile,
    )


def _require_teacher(model_config: ModelConfig, training_args: DistillationConfig) -> None:
    if training_args.distillation_type != "none" and not model_config.teacher_model_name_or_path:
        raise ValueError(
            f"distillation_type={training_args.distillation_type!r} needs a teacher: set teacher_model_name_or_path "
            "(e.g. models/teacher-cifar10-resnet), or use distillation_type: none to train on labels only."
        )


def build_distillation_run(
    model_config: ModelConfig,
    data_config: DataConfig,
    training_args: DistillationConfig,
    callbacks: Sequence[Any] = (),
    hold_out_for_selection: Optional[bool] = None,
) -> DistillationRun:
    """Everything up to ``trainer.train()``: data, student, teacher, trainer (the EMA callback and ``callbacks``).

    ``hold_out_for_selection``: evaluate during training on a held-out part of train (default: when checkpoints
    are selected, ``load_best_model_at_end``); a hyperparameter search always does.
    """
    if hold_out_for_selection is None:
        hold_out_for_selection = training_args.load_best_model_at_end
    _require_teacher(model_config, training_args)
    check_teacher_cache_data(training_args, data_config)
    if training_args.process_index == 0:  # one warning per run, not one per rank
        warn_if_bf16_is_emulated(training_args.bf16, training_args.device.type)
    set_seed(training_args.seed)
    data = load_image_classification_data(
        data_config, seed=training_args.seed, hold_out_for_selection=hold_out_for_selection
    )
    student, processor = build_student(model_config, data.id2label)
    teacher: Optional[TeacherWrapper] = _teacher(model_config, data, processor, training_args.device.type)
    ema = None
    if training_args.ema_decay:
        ema = EMACallback(training_args.ema_decay, warmup=training_args.ema_warmup, processor=processor)
    trainer = DistillationTrainer(
        model=student,
        args=training_args,
        teacher_model=teacher,
        **trainer_inputs(data, processor, data_config),
        callbacks=callbacks_or_none([ema] if ema else None, callbacks),
    )
    trainer.compute_metrics = make_compute_metrics(trainer.head_names)
    return DistillationRun(trainer, data, ema, evaluation_set(data.eval, data, processor, data_config))


def _publish(output_dir: str, training_args: DistillationConfig) -> None:
    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
    write_model_card(output_dir, repo_id=repo_id)
    push_folder(output_dir, repo_id, private=bool(training_args.hub_private_repo), token=training_args.hub_token)


def _result_rows(metrics: dict[str, Any]) -> list:
    return head_rows(metrics, "eval_") + head_rows(metrics, "eval_ema_", "EMA ", heads=STUDENT_HEADS)


def run_distillation(
    model_config: ModelConfig,
    data_config: DataConfig,
    training_args: DistillationConfig,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    # hf_deit.publish uploads at the end: the Trainer's own push would also upload training_args.bin (it may hold
    # the token), checkpoints and a generic card.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    run = build_distillation_run(model_config, data_config, training_args, callbacks)
    trainer, output_dir = run.trainer, training_args.output_dir
    metrics = train_save_evaluate(trainer, run.data, run.reported, training_args.resume_from_checkpoint)
    if run.ema is not None:
        if trainer.is_world_process_zero():
            run.ema.save(os.path.join(output_dir, EMA_FOLDER))
        metrics.update(evaluate_weights(trainer, run.ema.ema.module.state_dict(), metric_key_prefix="eval_ema"))
    metrics["student_parameters"] = metrics.pop("parameters")
    metrics["distillation_type"] = training_args.distillation_type
    if trainer.is_world_process_zero():
        trainer.save_metrics("all", metrics)
        save_run_config(output_dir, model_config, data_config, training_args, run.data)  # the card's recipe
        title = f"Evaluation ({training_args.distillation_type} distillation, {metrics['eval_images']} images)"
        save_results(_result_rows(metrics), metrics, output_dir, title)
        if push_to_hub:
            _publish(output_dir, training_args)
    return metrics
