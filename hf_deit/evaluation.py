"""Evaluate any student on any dataset split: the paper's Table 3 columns and more, in one report.

Reported: top-1/top-5 of the class head, the distillation head and their average (the model's
``logits``, what ``pipeline`` predicts), the teacher's when one is given and how often student
and teacher agree; per-class accuracy and a confusion matrix of the fused prediction; inference
throughput on the current device. Written as ``eval_results.json`` (read by the model card, see
:mod:`hf_deit.hub`), ``eval_report.md`` and ``confusion_matrix.png``.

Images go through the student's own image processor (:func:`hf_deit.data.make_eval_transform`),
i.e. exactly what ``pipeline("image-classification")`` does. Students and datasets are matched
by label *names*: the student's logits are re-ordered into the dataset's label order.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from .config import DataConfig
from .data import collate_fn, load_image_classification_data, make_eval_transform, processor_size, undecoded
from .hub import describe_dataset, is_local
from .loading import default_device, load_student
from .metrics import TopKAccuracy, head_accuracies
from .reporting import results_table
from .teacher import label_permutation, load_teacher
from .viz import plot_confusion_matrix

logger = logging.getLogger(__name__)

RESULTS_FILE = "eval_results.json"
REPORT_FILE = "eval_report.md"
CONFUSION_FILE = "confusion_matrix.png"
HEAD_ROWS = (
    ("class head", "cls"),
    ("distillation head", "distill"),
    ("average (cls + distill)", "fused"),
    ("teacher", "teacher"),
)


@dataclass
class EvaluationArguments:
    """What to evaluate, on what, and where to write the report (``scripts/evaluate_student.py`` flags)."""

    student: str = field(metadata={"help": "Student folder or Hub id (a DeiTForImageClassificationWithTeacher)."})
    dataset_name: str = field(
        default="uoft-cs/cifar10",
        metadata={"help": "Hub dataset id, a local folder in the Hub layout, or an image folder (class sub-folders)."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Dataset configuration name, if any."})
    split: str = field(default="test", metadata={"help": "Split to evaluate on."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N images only."})
    image_column: Optional[str] = field(default=None, metadata={"help": "Image column. Default: found automatically."})
    label_column: Optional[str] = field(default=None, metadata={"help": "Label column. Default: found automatically."})
    teacher: Optional[str] = field(default=None, metadata={"help": "Also evaluate this teacher (folder or Hub id)."})
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where to write the report. Default: the student folder (so its model card finds it), "
                          "or outputs/eval/<hub id> for a Hub student."},
    )
    batch_size: int = field(default=256, metadata={"help": "Evaluation batch size."})
    num_workers: int = field(default=0, metadata={"help": "Data-loader worker processes (decoding)."})
    device: Optional[str] = field(default=None, metadata={"help": "cuda, cpu, mps... Default: the fastest present."})
    benchmark: bool = field(default=True, metadata={"help": "Measure throughput (batch 256) and latency (batch 1)."})
    benchmark_seconds: float = field(default=3.0, metadata={"help": "Time budget of each throughput measurement."})

    def __post_init__(self) -> None:
        if self.max_eval_samples is not None and self.max_eval_samples <= 0:
            raise ValueError(f"max_eval_samples must be positive, got {self.max_eval_samples}; omit it to use all.")
        if self.output_dir is None:
            if os.path.isdir(self.student):
                self.output_dir = self.student
            else:
                self.output_dir = os.path.join("outputs", "eval", self.student.replace("/", "__"))


def device_description(device: torch.device) -> str:
    """Human-readable device name for the report: a throughput number without it means nothing."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        name = platform.processor() or platform.machine()
        return f"cpu ({name}, {torch.get_num_threads()} threads)"
    return device.type


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def _timed_runs(model: torch.nn.Module, batch: torch.Tensor, seconds: float, warmup: int) -> tuple[float, int]:
    """Mean seconds per forward after ``warmup`` untimed ones, repeating until ``seconds`` have passed."""
    for _ in range(warmup):
        model(pixel_values=batch)
    _synchronize(batch.device)
    runs, start = 0, time.perf_counter()
    while True:
        model(pixel_values=batch)
        runs += 1
        _synchronize(batch.device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or runs >= 1000:
            return elapsed / runs, runs


def benchmark_inference(
    model: torch.nn.Module, image_size: tuple[int, int], batch_size: int = 256, seconds: float = 3.0
) -> dict[str, Any]:
    """Images/s at ``batch_size`` and milliseconds per image at batch 1, on the model's device, fp32."""
    device = next(model.parameters()).device
    height, width = image_size
    big = torch.randn(batch_size, 3, height, width, device=device)
    per_batch, batch_runs = _timed_runs(model, big, seconds, warmup=2)
    one = big[:1].clone()
    per_image, single_runs = _timed_runs(model, one, seconds, warmup=5)
    return {
        "device": device_description(device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "throughput_batch_size": batch_size,
        "throughput_images_per_s": round(batch_size / per_batch, 1),
        "latency_ms_batch_1": round(1000 * per_image, 3),
        "timed_runs": {"batch": batch_runs, "single": single_runs},
        "torch": torch.__version__,
    }


def _predict(model, teacher, loader, permutation, device) -> dict[str, np.ndarray]:
    """Logits of every head over the loader, in the dataset's label order, on the host."""
    heads: dict[str, list[torch.Tensor]] = {"cls": [], "distill": [], "fused": [], "teacher": [], "labels": []}
    index = torch.tensor(permutation, device=device)
    with torch.inference_mode():
        for batch in loader:
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


def evaluate_student(args: EvaluationArguments) -> dict[str, Any]:
    """Run the whole evaluation and write ``eval_results.json``, ``eval_report.md`` and the confusion PNG."""
    device = torch.device(args.device) if args.device else default_device()
    model, processor = load_student(args.student, device=device, require_distillation_token=False)
    data_config = DataConfig(
        dataset_name=args.dataset_name,
        dataset_config_name=args.dataset_config_name,
        train_split=args.split,  # only this split is read; it stands in for "train" in the loader
        eval_split=args.split,
        image_column=args.image_column,
        label_column=args.label_column,
        max_eval_samples=args.max_eval_samples,
    )
    data = load_image_classification_data(data_config)
    # Student logits re-ordered into the dataset's order, matched by name (a clear error if they differ).
    try:
        permutation = label_permutation(model.config.id2label, data.label_names)
    except ValueError:
        student_names = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        raise ValueError(
            f"The student's classes do not match those of {args.dataset_name!r}, so its accuracy there is "
            f"undefined.\n  dataset ({len(data.label_names)}): {data.label_names}\n"
            f"  student ({len(student_names)}): {student_names}"
        ) from None
    teacher = None
    if args.teacher:
        teacher = load_teacher(args.teacher, data.label_names, processor).to(device)
    # Images stay undecoded until our transform: a corrupt one is skipped (or fails) naming its row, as in training.
    dataset = undecoded(data.eval, data.image_column).with_transform(make_eval_transform(data, processor, data_config))
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_fn, num_workers=args.num_workers)

    start = time.perf_counter()
    logits = _predict(model, teacher, loader, permutation, device)
    eval_seconds = time.perf_counter() - start
    labels = logits.pop("labels")
    metrics = head_accuracies(logits, labels, TopKAccuracy())
    predictions = {head: values.argmax(-1) for head, values in logits.items()}
    student_head = "fused" if "fused" in predictions else "cls"  # what pipeline() predicts
    if "distill" in predictions:
        metrics["cls_distill_agreement"] = float((predictions["cls"] == predictions["distill"]).mean())
    if "teacher" in predictions:
        metrics["student_teacher_agreement"] = float((predictions[student_head] == predictions["teacher"]).mean())

    num_classes = len(data.label_names)
    matrix = confusion_matrix(labels, predictions[student_head], num_classes)
    totals = matrix.sum(axis=1)
    per_class = {
        name: {"accuracy": float(matrix[i, i] / totals[i]) if totals[i] else None, "images": int(totals[i])}
        for i, name in enumerate(data.label_names)
    }
    os.makedirs(args.output_dir, exist_ok=True)
    plot_confusion_matrix(
        matrix,
        data.label_names,
        os.path.join(args.output_dir, CONFUSION_FILE),
        title=f"{os.path.basename(args.student.rstrip('/'))} on {args.split} ({student_head} head)",
    )

    results: dict[str, Any] = {
        "student": args.student,
        "teacher": args.teacher,
        "dataset": args.dataset_name,
        "dataset_config": args.dataset_config_name,
        "dataset_facts": describe_dataset(args.dataset_name),
        "teacher_is_local": bool(args.teacher) and is_local(args.teacher),
        "split": args.split,
        "num_images": int(len(labels)),
        "metrics": metrics,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_head": student_head,
        "confusion_matrix_png": CONFUSION_FILE,
        "label_names": list(data.label_names),
        "eval_seconds": round(eval_seconds, 2),
        "arguments": asdict(args),
    }
    if args.benchmark:
        results["inference"] = benchmark_inference(
            model, processor_size(processor), args.batch_size, args.benchmark_seconds
        )
    with open(os.path.join(args.output_dir, RESULTS_FILE), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(args.output_dir, REPORT_FILE), "w") as handle:
        handle.write(render_report(results))
    return results


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report: accuracies per head, agreement, per-class accuracy, speed."""
    metrics = results["metrics"]
    rows = [(name, metrics.get(f"{head}_top1"), metrics.get(f"{head}_top5"))
            for name, head in HEAD_ROWS if f"{head}_top1" in metrics]
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


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses(args=argv)
    results = evaluate_student(args)
    print(render_report(results))
    print(f"Wrote {RESULTS_FILE}, {REPORT_FILE} and {CONFUSION_FILE} to {args.output_dir}", flush=True)
    return results
