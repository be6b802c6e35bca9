"""What each model costs to keep and to run, against what it scores: ``docs/results/model_table.md``.

    python benchmarks/model_table.py --dataset_name ../shared/data/cifar10     # ~5 min on 2 CPU cores

Rows: every shipped model (``models/``: the teacher and the students) and each student preset (tiny /
small / base at 32x32 with 4x4 patches, random weights: size and speed only). Columns: parameters;
safetensors MB in fp32 and bf16; dynamic int8 quantization of the Linear layers
(``torch.ao.quantization.quantize_dynamic``): its MB and, for the shipped models, its change in top-1;
CPU inference images/s at batch 1 and at batch 256 and the median latency, all in one process at the
machine's thread count (medians over repeated runs, ``hf_deit.publish.speed``); top-1 on the full test
split for the trained models (each through its own image processor, as ``pipeline()`` does).

The table also goes into each shipped model's card, between ``<!-- hf-deit:begin size-speed -->`` markers
(a section the card generator keeps when it rewrites its own).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, describe_machine, machine  # noqa: E402

TEACHER_ROW, STUDENT_ROW = "teacher (ResNet)", "student (DeiT, hard distillation)"
SHIPPED = {TEACHER_ROW: REPO / "models" / "teacher-cifar10-resnet",
           STUDENT_ROW: REPO / "models" / "deit-cifar10-student"}
PRESETS = ("tiny", "small", "base")
SECTION = "size-speed"


@dataclass
class Row:
    name: str
    model: Any
    processor: Any = None
    trained: bool = False
    values: dict[str, Any] = field(default_factory=dict)


def safetensors_mb(model: torch.nn.Module, dtype: torch.dtype) -> float:
    """MB of the model saved as safetensors with every floating-point tensor cast to ``dtype``."""
    from safetensors.torch import save_file

    state = {name: (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
             for name, tensor in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        save_file(state, path)
        return os.path.getsize(path) / 2**20


def int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized per batch)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).float().eval(), {torch.nn.Linear}, dtype=torch.qint8)


def saved_mb(model: torch.nn.Module) -> float:
    """MB of ``torch.save(state_dict)``: safetensors cannot store quantized tensors."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20


def speed(model: torch.nn.Module, side: int, seconds: float) -> dict[str, float]:
    from hf_deit.publish.speed import benchmark_inference

    measured = benchmark_inference(model, (side, side), batch_size=256, seconds=seconds)
    latency = measured["latency_ms_batch_1"]
    return {"images_per_s_batch_1": round(1000 / latency, 1), "images_per_s_batch_256":
            measured["throughput_images_per_s"], "latency_p50_ms": latency}


@torch.inference_mode()
def top1(model: torch.nn.Module, processor: Any, split: Any, batch_size: int = 500) -> float:
    """Top-1 of ``model.logits`` (the fused head of a student) through ``processor``, in the split's label order."""
    from torch.utils.data import DataLoader

    from hf_deit.data.inputs import evaluation_set
    from hf_deit.data.transforms import collate_fn
    from hf_deit.teacher import label_permutation

    index = torch.tensor(label_permutation(model.config.id2label, split.label_names))
    dataset = evaluation_set(split.dataset, split, processor)
    correct = total = 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn):
        predictions = model(pixel_values=batch["pixel_values"]).logits.index_select(-1, index).argmax(-1)
        correct += int((predictions == batch["labels"]).sum())
        total += len(batch["labels"])
    return correct / total


def input_side(row: Row) -> int:
    from hf_deit.modeling import processor_size

    return processor_size(row.processor)[0] if row.processor is not None else row.model.config.image_size


def load_rows(shipped: dict[str, Path], presets: tuple[str, ...]) -> list[Row]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_deit.config import ModelConfig
    from hf_deit.modeling import build_student

    rows = []
    for name, folder in shipped.items():
        if not (folder / "config.json").is_file():
            print(f"skipped {name}: {folder} has no model", file=sys.stderr)
            continue
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        rows.append(Row(name, model, AutoImageProcessor.from_pretrained(folder), trained=True))
    labels = dict(enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck"]))
    for preset in presets:
        model, processor = build_student(ModelConfig(student_preset=preset, image_size=32, patch_size=4), labels)
        rows.append(Row(f"DeiT-{preset} preset, 32x32 p4 (random weights)", model.eval(), processor))
    return rows


def measure(row: Row, split: Optional[Any], seconds: float) -> dict[str, Any]:
    model = row.model
    quantized = int8(model)
    values: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "safetensors_mb_fp32": round(safetensors_mb(model, torch.float32), 2),
        "safetensors_mb_bf16": round(safetensors_mb(model, torch.bfloat16), 2),
        "int8_mb": round(saved_mb(quantized), 2),
        **speed(model, input_side(row), seconds),
        "int8_images_per_s_batch_256": speed(quantized, input_side(row), seconds)["images_per_s_batch_256"],
    }
    if row.trained and split is not None:
        values["top1"] = top1(model, row.processor, split)
        values["int8_top1"] = top1(quantized, row.processor, split)
    return values


def markdown(rows: list[Row], environment: dict, command: str, dataset: Optional[str]) -> str:
    header = ("| model | parameters | fp32 MB | bf16 MB | int8 MB | int8 Δ top-1 | images/s, batch 1 | "
              "images/s, batch 256 | int8 images/s, batch 256 | p50 latency | top-1 |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        v = row.values
        delta = f"{100 * (v['int8_top1'] - v['top1']):+.2f}" if "top1" in v else "—"
        accuracy = f"**{100 * v['top1']:.2f} %**" if "top1" in v else "—"
        lines.append(f"| {row.name} | {v['parameters'] / 1e6:.2f} M | {v['safetensors_mb_fp32']:.1f} | "
                     f"{v['safetensors_mb_bf16']:.1f} | {v['int8_mb']:.1f} | {delta} | "
                     f"{v['images_per_s_batch_1']:,.0f} | {v['images_per_s_batch_256']:,.0f} | "
                     f"{v['int8_images_per_s_batch_256']:,.0f} | {v['latency_p50_ms']:.2f} ms | {accuracy} |")
    lines += ["", ratio_sentence(rows), "",
              f"Top-1 on the full test split of `{dataset}`; int8 Δ is the quantized model's top-1 minus fp32's. "
              "Speeds: fp32, one process, medians of repeated forwards on random inputs at each model's input size "
              f"(the teacher runs at its processor's 64x64). Reproduce: `{command}`. Machine: "
              f"{describe_machine(environment)}."]
    return "\n".join(lines)


def ratio_sentence(rows: list[Row]) -> str:
    by_name = {row.name: row.values for row in rows}
    teacher, student = by_name.get(TEACHER_ROW), by_name.get(STUDENT_ROW)
    if not teacher or not student:
        return "(The student-to-teacher ratios need both shipped models.)"
    return (f"The distilled student is {student['parameters'] / teacher['parameters']:.2f}x its teacher's parameters "
            f"and {student['safetensors_mb_fp32'] / teacher['safetensors_mb_fp32']:.2f}x its size on disk, and runs "
            f"{student['images_per_s_batch_256'] / teacher['images_per_s_batch_256']:.2f}x as many images per second "
            f"at batch 256 ({student['images_per_s_batch_1'] / teacher['images_per_s_batch_1']:.2f}x at batch 1).")


def write_into_cards(rows: list[Row], shipped: dict[str, Path], table: str) -> None:
    from hf_deit.publish.card import replace_section

    for name, folder in shipped.items():
        card = folder / "README.md"
        if card.is_file() and any(row.name == name for row in rows):
            body = f"## Size, speed and accuracy beside the other models\n\n{table}\n"
            card.write_text(replace_section(card.read_text(encoding="utf-8"), SECTION, body), encoding="utf-8")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="tests only; the table uses all")
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget of each speed measurement")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--out", default=str(RESULTS / "model_table.json"))
    parser.add_argument("--no_cards", action="store_true", help="leave the shipped models' cards as they are")
    args = parser.parse_args(argv)
    from hf_deit.config import DataConfig
    from hf_deit.data.datasets import load_split

    split = load_split(DataConfig(dataset_name=args.dataset_name, max_eval_samples=args.max_eval_samples), args.split)
    rows = load_rows(SHIPPED, tuple(args.presets))
    for row in rows:
        row.values = measure(row, split, args.seconds)
        print(row.name, row.values, flush=True)
    command = "python benchmarks/model_table.py --dataset_name " + args.dataset_name
    environment = machine()
    table = markdown(rows, environment, command, args.dataset_name)
    if not args.no_cards:
        write_into_cards(rows, SHIPPED, table)
    result = {"rows": [{"name": row.name, **row.values} for row in rows], "machine": environment,
              "command": command, "markdown": "# Size, speed and accuracy of the models\n\n" + table}
    save_section(result, Path(args.out))
    Path(args.out).with_suffix(".md").write_text(result["markdown"] + "\n")
    return result


if __name__ == "__main__":
    main()
