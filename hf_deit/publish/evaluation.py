"""Evaluate any student on any dataset split: the paper's Table 3 columns and more, in one report.

Reported: top-1/top-5 of the class head, the distillation head and their average (the model's
``logits``, what ``pipeline`` predicts), the teacher's when one is given and how often student
and teacher agree; per-class accuracy and a confusion matrix of the fused prediction; inference
throughput on the current device. Written as ``evaluation.json`` (read by the model card, see
:mod:`hf_deit.publish.card`), ``eval_report.md`` and ``confusion_matrix.png``.

Images go through the student's own image processor (:func:`hf_deit.data.inputs.evaluation_set`),
i.e. exactly what ``pipeline("image-classification")`` does. Students and datasets are matched
by label *names*: the student's logits are re-ordered into the dataset's label order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import DataConfig, EvaluationArguments
from ..data.datasets import LabelledSplit, load_split
from ..data.facts import describe_dataset, is_local
from ..data.inputs import evaluation_set
from ..data.transforms import collate_fn
from ..heads import head_rows, prediction_head, results_table
from ..metrics import TopKAccuracy, head_accuracies
from ..modeling import default_device, load_student, processor_size
from ..teacher import label_permutation, load_teacher
from .speed import benchmark_inference
from .viz import plot_confusion_matrix

logger = logging.getLogger(__name__)

RESULTS_FILE = "evaluation.json"  # not eval_results.json: that name is the Trainer's save_metrics("eval") file
REPORT_FILE = "eval_report.md"
CONFUSION_FILE = "confusion_matrix.png"


def _predict(model, teacher, loader, permutation, device) -> dict[str, np.ndarray]:
    """Logits of every head over the loader, in the dataset's label order, on the host."""
    heads: dict[str, list[torch.Tensor]] = {"cls": [], "distill": [], "fused": [], "teacher": [], "labels": []}
    index = torch.tensor(permutation, device=device)
    with torch.inference_mode():
        for batch in tqdm(loader, desc="evaluating", unit="batch", disable=None):  # None: only on a terminal
            pixel_values = batch["pixel_values"].to(device)
            outputs = model(pixel_values=pixel_values)
            distill = getattr(outputs, "distillation_logits", None)
            if distill is None:  # a single-head student (plain ViT ablation): its logits are the class head
                heads["cls"].append(outputs.logits.index_select(-1, index).float().cpu())
            else:
                heads["cls"].append(outputs.cls_logits.index_select(-1, index).float().cpu())
                heads["distill"].append(distill.index_select(-1, index).float().cpu())
                heads["fused"].append(outputs.logits.index_select(-1, index).float().cpu())
            if teacher is not None:
                heads["teacher"].append(teacher(pixel_values).float().cpu())
            heads["labels"].append(batch["labels"])
    return {name: torch.cat(parts).numpy() for name, parts in heads.items() if parts}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _label_order(model: Any, split: LabelledSplit, dataset_name: str) -> list[int]:
    """Student logits re-ordered into the dataset's order, matched by name (a clear error if they differ)."""
    try:
        return label_permutation(model.config.id2label, split.label_names)
    except ValueError:
        student_names = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        raise ValueError(
            f"The student's classes do not match those of {dataset_name!r}, so its accuracy there is "
            f"undefined.\n  dataset ({len(split.label_names)}): {split.label_names}\n"
            f"  student ({len(student_names)}): {student_names}"
        ) from None


def _scores(logits: dict[str, np.ndarray], labels: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Top-k of every head, head agreement, and the confusion matrix and per-class accuracy of the predicted head."""
    metrics = head_accuracies(logits, labels, TopKAccuracy())
    predictions = {head: values.argmax(-1) for head, values in logits.items()}
    student_head = prediction_head(metrics)
    if "distill" in predictions:
        metrics["cls_distill_agreement"] = float((predictions["cls"] == predictions["distill"]).mean())
    if "teacher" in predictions:
        metrics["student_teacher_agreement"] = float((predictions[student_head] == predictions["teacher"]).mean())
    matrix = confusion_matrix(labels, predictions[student_head], len(label_names))
    totals = matrix.sum(axis=1)
    per_class = {
        name: {"accuracy": float(matrix[i, i] / totals[i]) if totals[i] else None, "images": int(totals[i])}
        for i, name in enumerate(label_names)
    }
    return {"metrics": metrics, "per_class_accuracy": per_class, "confusion_matrix": matrix.tolist(),
            "confusion_matrix_head": student_head, "num_images": int(len(labels))}


def evaluate_student(args: EvaluationArguments) -> dict[str, Any]:
    """Run the whole evaluation and write ``evaluation.json``, ``eval_report.md`` and the confusion PNG."""
    device = torch.device(args.device) if args.device else default_device()
    model, processor = load_student(args.student, device=device, require_distillation_token=False)
    data_config = DataConfig(dataset_name=args.dataset_name, dataset_config_name=args.dataset_config_name,
                             image_column=args.image_column, label_column=args.label_column,
                             max_eval_samples=args.max_eval_samples)
    split = load_split(data_config, args.split)
    permutation = _label_order(model, split, args.dataset_name)
    teacher = load_teacher(args.teacher, split.label_names, processor).to(device) if args.teacher else None
    # Images stay undecoded until our transform: a corrupt one is skipped (or fails) naming its row, as in training.
    dataset = evaluation_set(split.dataset, split, processor, data_config)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_fn, num_workers=args.num_workers)
    start = time.perf_counter()
    logits = _predict(model, teacher, loader, permutation, device)
    eval_seconds = time.perf_counter() - start
    scores = _scores(logits, logits.pop("labels"), split.label_names)
    os.makedirs(args.output_dir, exist_ok=True)
    title = f"{os.path.basename(args.student.rstrip('/'))} on {args.split} ({scores['confusion_matrix_head']} head)"
    plot_confusion_matrix(np.asarray(scores["confusion_matrix"]), split.label_names,
                          os.path.join(args.output_dir, CONFUSION_FILE), title=title)
    results: dict[str, Any] = {
        "student": args.student, "teacher": args.teacher, "dataset": args.dataset_name,
        "dataset_config": args.dataset_config_name, "dataset_facts": describe_dataset(args.dataset_name, split.dataset, split.image_column),
        "teacher_is_local": bool(args.teacher) and is_local(args.teacher), "split": args.split, **scores,
        "confusion_matrix_png": CONFUSION_FILE, "label_names": list(split.label_names),
        "eval_seconds": round(eval_seconds, 2), "arguments": asdict(args),
    }
    if args.benchmark:
        results["inference"] = benchmark_inference(model, processor_size(processor), args.batch_size,
                                                   args.benchmark_seconds)
    with open(os.path.join(args.output_dir, RESULTS_FILE), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(args.output_dir, REPORT_FILE), "w") as handle:
        handle.write(render_report(results))
    return results


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report: accuracies per head, agreement, per-class accuracy, speed."""
    metrics = results["metrics"]
    rows = head_rows(metrics)
    lines = [
        f"# Evaluation of `{results['student']}`",
        "",
        f"Dataset `{results['dataset']}`" + (f" ({results['dataset_config']})" if results["dataset_config"] else "")
        + f", split `{results['split']}`, {results['num_images']} images."
        + (f" Teacher: `{results['teacher']}`." if results["teacher"] else ""),
        "",
        results_table(rows),
        "",
    ]
    if "cls_distill_agreement" in metrics:
        agreement = 100 * metrics["cls_distill_agreement"]
        lines.append(f"- class head and distillation head agree on {agreement:.2f}% of the images")
    if "student_teacher_agreement" in metrics:
        lines.append(f"- student and teacher top-1 agree on {100 * metrics['student_teacher_agreement']:.2f}%")
    head = results.get("confusion_matrix_head", "fused")
    lines += ["", f"## Per-class accuracy ({head} head)", "", "| class | accuracy (%) | images |", "|---|---:|---:|"]
    for name, entry in results["per_class_accuracy"].items():
        accuracy = "-" if entry["accuracy"] is None else f"{100 * entry['accuracy']:.2f}"
        lines.append(f"| {name} | {accuracy} | {entry['images']} |")
    lines += ["", f"![confusion matrix]({results['confusion_matrix_png']})", ""]
    speed = results.get("inference")
    if speed:
        lines += [
            "## Inference speed",
            "",
            f"On {speed['device']}, {speed['dtype']}, torch {speed['torch']}, "
            f"{speed['attn_implementation']} attention, random inputs after a warm-up:",
            "",
            f"- throughput at batch {speed['throughput_batch_size']}: {speed['throughput_images_per_s']:.1f} images/s",
            f"- latency at batch 1: {speed['latency_ms_batch_1']:.2f} ms per image",
            "",
        ]
    return "\n".join(lines)
