"""One distillation run, end to end: config -> data -> (student, teacher) -> train -> evaluate -> save.

``scripts/distill.py`` is a thin wrapper around :func:`main`, so tests drive exactly the code
path that users launch with ``accelerate launch``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from transformers import set_seed

from .config import DataConfig, DistillationConfig, ModelConfig, parse_config
from .ema import EMA_FOLDER, EMACallback
from .hardware import resolve_teacher_dtype, warn_if_bf16_is_emulated
from .launch import prepare_processes, use_all_cores_for_a_lone_cpu_process
from .hub import push_folder, save_run_config, write_model_card
from .data import ImageClassificationData, attach_transforms, collate_fn, load_image_classification_data
from .device_data import device_resident_train
from .metrics import make_compute_metrics
from .modeling import build_student
from .reporting import print_and_save_results
from .teacher import load_teacher
from .trainer import DistillationTrainer

logger = logging.getLogger(__name__)

RESULT_ROWS = (
    ("class head", "cls"),
    ("distillation head", "distill"),
    ("average (cls + distill)", "fused"),
    ("teacher", "teacher"),
)


def evaluate_weights(trainer: DistillationTrainer, state_dict: dict, metric_key_prefix: str) -> dict[str, float]:
    """Evaluate other weights (the EMA) in the trainer's model, then put the live weights back."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    live = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(state_dict)
    try:
        return trainer.evaluate(metric_key_prefix=metric_key_prefix)
    finally:
        model.load_state_dict(live)


@dataclass
class DistillationRun:
    trainer: DistillationTrainer
    data: ImageClassificationData
    ema: Optional[EMACallback]


def build_distillation_run(
    model_config: ModelConfig,
    data_config: DataConfig,
    training_args: DistillationConfig,
    callbacks: Sequence[Any] = (),
) -> DistillationRun:
    """Everything up to ``trainer.train()``: data, student, teacher, trainer (the EMA callback and ``callbacks``)."""
    if training_args.distillation_type != "none" and not model_config.teacher_model_name_or_path:
        raise ValueError(
            f"distillation_type={training_args.distillation_type!r} needs a teacher: set teacher_model_name_or_path "
            "(e.g. models/teacher-cifar10-resnet), or use distillation_type: none to train on labels only."
        )
    if training_args.process_index == 0:  # one warning per run, not one per rank
        warn_if_bf16_is_emulated(training_args.bf16, training_args.device.type)
    set_seed(training_args.seed)
    data = load_image_classification_data(
        data_config, seed=training_args.seed, hold_out_for_selection=training_args.load_best_model_at_end
    )
    student, processor = build_student(model_config, data.id2label)
    teacher = None
    if model_config.teacher_model_name_or_path:
        teacher = load_teacher(
            model_config.teacher_model_name_or_path,
            data.label_names,
            processor,
            trust_remote_code=model_config.trust_remote_code,
            torch_dtype=resolve_teacher_dtype(model_config.teacher_dtype, training_args.device.type),
            channels_last=model_config.teacher_channels_last,
            compile=model_config.teacher_compile,
        )
    attach_transforms(data, processor, data_config)
    if data_config.device_resident_data:  # decoded once here; the trainer moves it to its device
        data.train = device_resident_train(
            data.train, processor, data_config.random_crop_padding, data_config.horizontal_flip,
            data_config.random_crop_padding_mode,
        )

    ema = (
        EMACallback(training_args.ema_decay, warmup=training_args.ema_warmup, processor=processor)
        if training_args.ema_decay
        else None
    )
    trainer = DistillationTrainer(
        model=student,
        args=training_args,
        teacher_model=teacher,
        train_dataset=data.train,
        eval_dataset=data.during_training(data_config.eval_samples_during_training),
        data_collator=collate_fn,
        processing_class=processor,
        callbacks=([ema] if ema is not None else []) + list(callbacks) or None,
    )
    trainer.compute_metrics = make_compute_metrics(trainer.head_names)
    return DistillationRun(trainer, data, ema)


def run_distillation(
    model_config: ModelConfig,
    data_config: DataConfig,
    training_args: DistillationConfig,
    callbacks: Sequence[Any] = (),
) -> dict[str, float]:
    # hf_deit.hub publishes at the end: the Trainer's own push would also upload training_args.bin (it may hold
    # the token), checkpoints and a generic card.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    run = build_distillation_run(model_config, data_config, training_args, callbacks)
    trainer, data, ema, student = run.trainer, run.data, run.ema, run.trainer.model
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    trainer.save_model()  # student weights + config + image processor, stock-loadable
    trainer.save_state()  # trainer_state.json: the full log history (loss parts, eval metrics)
    trainer.eval_dataset = data.eval  # the reported split (checkpoints, if selected, were chosen on data.selection)
    metrics = trainer.evaluate()
    if ema is not None:
        if trainer.is_world_process_zero():
            ema.save(os.path.join(training_args.output_dir, EMA_FOLDER))
        metrics.update(evaluate_weights(trainer, ema.ema.module.state_dict(), metric_key_prefix="eval_ema"))
    metrics.update(
        train_runtime_s=round(train_seconds, 1),
        train_loss=train_result.training_loss,
        train_images=len(data.train),
        eval_images=len(data.eval),
        **({"selection_images": len(data.selection)} if data.selection is not None else {}),
        student_parameters=sum(p.numel() for p in student.parameters()),
        distillation_type=training_args.distillation_type,
    )
    if trainer.is_world_process_zero():
        trainer.save_metrics("all", metrics)
        save_run_config(training_args.output_dir, model_config, data_config, training_args)  # the card's recipe
        rows = [
            (prefix_label + label, metrics.get(f"{prefix}_{head}_top1"), metrics.get(f"{prefix}_{head}_top5"))
            for prefix, prefix_label in (("eval", ""), ("eval_ema", "EMA "))
            for label, head in RESULT_ROWS
            if f"{prefix}_{head}_top1" in metrics and not (prefix == "eval_ema" and head == "teacher")
        ]
        print_and_save_results(
            rows,
            metrics,
            training_args.output_dir,
            title=f"Evaluation ({training_args.distillation_type} distillation, {len(data.eval)} images)",
        )
        if push_to_hub:
            repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
            write_model_card(training_args.output_dir, repo_id=repo_id)
            push_folder(training_args.output_dir, repo_id, private=bool(training_args.hub_private_repo),
                        token=training_args.hub_token)
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    if argv is None:  # a script launch: make `accelerate launch --cpu --num_processes N` start N ranks
        exit_code = prepare_processes()
        if exit_code is not None:
            raise SystemExit(exit_code)
    use_all_cores_for_a_lone_cpu_process()
    model_config, data_config, training_args = parse_config(argv)
    return run_distillation(model_config, data_config, training_args)
