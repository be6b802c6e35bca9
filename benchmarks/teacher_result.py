"""The teacher's section of docs/results/cifar10_cpu.md, from a finished ``scripts/train_teacher.py`` run.

Reads the run folder (``all_results.json``, ``trainer_state.json``, ``config.json``), re-measures nothing,
and writes ``docs/results/teacher.json``. With ``--ship DIR`` it also copies the stock-loadable files
(weights, config, processor, results) into ``DIR`` (``models/teacher-cifar10-resnet``) with a model card.

    python benchmarks/teacher_result.py outputs/teacher-cifar10-resnet --ship models/teacher-cifar10-resnet
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import RESULTS, describe_machine, machine  # noqa: E402

COMMAND = ("accelerate launch scripts/train_teacher.py --config configs/teacher_cifar10_resnet.yaml "
           "--dataset_name ../shared/data/cifar10")
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "results.json")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "teacher_cifar10_resnet.yaml"


def recipe_text(config_path: Path, epochs) -> str:
    """The training recipe, in words, from the config the reproduce command runs (one place for the facts)."""
    import yaml

    recipe = yaml.safe_load(config_path.read_text())
    momentum = dict(part.split("=") for part in recipe.get("optim_args", "").split(",") if "=" in part)
    nesterov = " with Nesterov momentum" if momentum.get("nesterov") == "True" else " with momentum"
    return (f"{epochs} epochs, batch {recipe['per_device_train_batch_size']}, {recipe['optim'].upper()}{nesterov} "
            f"{momentum.get('momentum', '0')}, lr {recipe['learning_rate']} ({100 * recipe['warmup_steps']:.0f} % "
            f"linear warm-up, then {recipe['lr_scheduler_type']} decay to 0), weight decay {recipe['weight_decay']} on "
            f"weights only, label smoothing {recipe['label_smoothing_factor']}, bf16 autocast, channels_last, data "
            f"resident in memory with random crop ({recipe['random_crop_padding']} px reflect padding at "
            f"{recipe['image_size']}x{recipe['image_size']}) + flip")


def stage_sides(side: int, stages: int) -> list[int]:
    """Feature-map sides of a transformers ResNet's stages: the stem divides by 4, each later stage by 2."""
    sides = [side // 4]
    for _ in range(stages - 1):
        sides.append((sides[-1] + 1) // 2)
    return sides


def summary(run: Path) -> dict:
    metrics = json.loads((run / "all_results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text())
    return {
        "top1": metrics["eval_top1"], "top5": metrics["eval_top5"],
        "tta_top1": metrics.get("eval_tta_top1"), "tta_top5": metrics.get("eval_tta_top5"),
        "train_seconds": metrics["train_runtime_s"], "train_images": metrics["train_images"],
        "eval_images": metrics["eval_images"], "parameters": metrics["parameters"],
        "safetensors_mb": (run / "model.safetensors").stat().st_size / 1e6,
        "epochs": state.get("num_train_epochs"), "steps": state.get("global_step"),
        "architecture": config["architectures"][0],
        "shape": {key: config.get(key) for key in ("embedding_size", "hidden_sizes", "depths", "layer_type")},
        "image_size": json.loads((run / "preprocessor_config.json").read_text())["size"]["height"],
        "recipe": recipe_text(CONFIG, state.get("num_train_epochs")),
    }


def markdown(result: dict, environment: dict) -> str:
    tta = (f" Flip test-time augmentation (the image and its mirror, logits averaged) gives "
           f"**{100 * result['tta_top1']:.2f} %**; the distillation targets are the plain forward."
           if result.get("tta_top1") is not None else "")
    shape = result["shape"]
    return "\n".join([
        "## The teacher",
        "",
        f"`models/teacher-cifar10-resnet`: a stock `{result['architecture']}` (basic blocks, widths "
        f"{shape['hidden_sizes']}, depths {shape['depths']}, stem {shape['embedding_size']}), "
        f"{result['parameters'] / 1e6:.2f} M parameters, {result['safetensors_mb']:.1f} MB of safetensors, "
        f"reading CIFAR-10 upsampled to {result['image_size']}x{result['image_size']} (its processor's size; the "
        "distillation wrapper resizes the student's batch on the device).",
        "",
        "| test top-1 | test top-5 | flip-TTA top-1 | training wall time | epochs (steps) | train images |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| **{100 * result['top1']:.2f} %** | {100 * result['top5']:.2f} % | "
        + (f"{100 * result['tta_top1']:.2f} %" if result.get("tta_top1") is not None else "n/a")
        + f" | {result['train_seconds'] / 60:.1f} min | {result['epochs']} ({result['steps']}) | "
        f"{result['train_images']:,} |",
        "",
        f"Top-1 on all {result['eval_images']:,} test images, from the last step (no checkpoint selection)."
        + tta,
        "",
        f"Reproduce: `{COMMAND}`. Machine: {describe_machine(environment)}.",
    ])


def model_card(result: dict) -> str:
    shape = result["shape"]
    side = result["image_size"]
    sides = ", ".join(map(str, stage_sides(side, len(shape["hidden_sizes"]))))
    command = COMMAND.replace(" --dataset_name", " \\\n    --dataset_name")
    return f"""---
library_name: transformers
pipeline_tag: image-classification
tags: [image-classification, resnet, cifar10, teacher, hf-deit]
datasets: [uoft-cs/cifar10]
model-index:
- name: teacher-cifar10-resnet
  results:
  - task: {{type: image-classification}}
    dataset: {{name: CIFAR-10 (JPEG q75 copy), type: uoft-cs/cifar10, split: test}}
    metrics:
    - {{type: accuracy, value: {result['top1']:.4f}, name: top-1}}
    - {{type: top-5-accuracy, value: {result['top5']:.4f}, name: top-5}}
---

# teacher-cifar10-resnet

The CNN teacher that hf-deit ships and uses by default: a stock `{result['architecture']}` (no remote code)
trained from scratch on the 50,000 CIFAR-10 training images in {result['train_seconds'] / 60:.0f} minutes on
2 CPU cores. Basic blocks with widths {shape['hidden_sizes']}, depths {shape['depths']} and a
{shape['embedding_size']}-channel stem; {result['parameters'] / 1e6:.2f} M parameters,
{result['safetensors_mb']:.1f} MB. ResNet's stem down-samples 4x, so the processor upsamples the 32x32
images to {side}x{side} (bicubic) and the stages run at {sides} pixels.

| | |
|---|---|
| test top-1 / top-5 (full CIFAR-10 test split, 10,000 images) | **{100 * result['top1']:.2f} % / {100 * result['top5']:.2f} %** |
| with flip test-time augmentation | {100 * result['tta_top1']:.2f} % top-1 |
| training | {result['recipe']} |

Reproduce (the data is the local JPEG-q75 copy of `uoft-cs/cifar10`; accuracies on it run a little below
those on the original lossless images):

```bash
{command}
```

```python
from transformers import pipeline
classifier = pipeline("image-classification", model="models/teacher-cifar10-resnet")
```

Details and the measured effect of each speed choice: `docs/results/cifar10_cpu.md` in the hf-deit repository.
"""


def with_sections_of(card: str, existing: str) -> str:
    """``card`` plus the marked sections that other tools wrote into the card it replaces (the size / speed table
    of ``benchmarks/model_table.py``), so re-shipping the teacher does not drop them."""
    from hf_deit.publish.card import marked_sections

    return card.rstrip() + "".join(f"\n\n{section}" for section in marked_sections(existing).values()) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the output_dir of the teacher run")
    parser.add_argument("--ship", default=None, help="copy the model into this folder with its card")
    parser.add_argument("--out", default=str(RESULTS / "teacher.json"))
    args = parser.parse_args(argv)
    run = Path(args.run)
    result = summary(run)
    environment = machine()
    save_section({**result, "command": COMMAND, "machine": environment, "markdown": markdown(result, environment)},
                 Path(args.out))
    if args.ship:
        ship = Path(args.ship)
        ship.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copy2(run / name, ship / name)
        card = ship / "README.md"
        card.write_text(with_sections_of(model_card(result), card.read_text() if card.exists() else ""))


if __name__ == "__main__":
    main()
