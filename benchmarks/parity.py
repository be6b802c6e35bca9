"""Accuracy parity: hf-deit's Trainer beside an independent official-style loop, same data, teacher, budget, seeds.

(a) hf-deit: ``hf_deit.training.distill.main`` with the recipe below as flags.
(b) reference: timm's ``VisionTransformerDistilled``, a plain PyTorch AdamW loop with timm's weight-decay
    groups, torchvision transforms and the official DeiT criterion (hard distillation), written here without
    any hf_deit import, so that a departure of hf-deit from the official recipe shows as a gap.

Both train on the first ``--train_images`` CIFAR-10 training images (``RandomCrop(32, padding=4)`` + flip,
ImageNet mean/std), learn from the same teacher, and are scored on the full test split (fused = mean of the
class and distillation heads' logits). Rows run interleaved (a, b, a, b), one process at a time. The
``hf-deit, transformers init`` row re-applies the initialisation hf-deit used before it matched timm's
(the ablation of that fix).

    python benchmarks/parity.py --dataset_name ../shared/data/cifar10        # ~35 min on 2 CPU cores

Writes ``docs/results/parity.json`` (every run, resumable: a finished run is skipped on a rerun), whose
table is a section of ``docs/results/cifar10_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, RESULTS, REPO, StepTimer, describe_machine, machine, median  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RECIPE = {  # the settings of both loops
    "depth": 6, "embed_dim": 192, "num_heads": 3, "mlp_ratio": 4, "patch_size": 4, "image_size": 32,
    "epochs": 15, "batch_size": 128, "learning_rate": 5e-4, "weight_decay": 0.05, "alpha": 0.5,
}
ROWS = ("hf-deit", "reference", "hf-deit, transformers init")


def first_images(dataset_name: str, count: int, folder: Path) -> tuple[Path, int]:
    """The first ``count`` training images and the whole test split, as a local dataset both loops read;
    returns the folder and the number of test images."""
    from datasets import load_dataset

    raw = load_dataset(dataset_name)
    folder.mkdir(parents=True, exist_ok=True)
    raw["train"].select(range(count)).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    raw["test"].to_parquet(str(folder / "test-00000-of-00001.parquet"))
    return folder, len(raw["test"])


# -- (a) hf-deit ----------------------------------------------------------------------------------------------

def transformers_init(model) -> None:
    """hf-deit's initialisation before it matched timm's: transformers' own (normal 0.02 everywhere, patch
    projection included) with tokens and position embeddings from trunc_normal(0.02) cut at +-2 sigma."""
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        for name in ("cls_token", "distillation_token", "position_embeddings"):
            torch.nn.init.trunc_normal_(getattr(embeddings, name), std=0.02, a=-0.04, b=0.04)


def run_hf_deit(data: Path, teacher: str, seed: int, output_dir: Path, teacher_dtype: str,
                legacy_init: bool = False) -> dict:
    import hf_deit.modeling
    from hf_deit.config import parse_config
    from hf_deit.training.distill import run_distillation

    argv = [
        "--dataset_name", str(data), "--teacher_model_name_or_path", teacher, "--output_dir", str(output_dir),
        "--student_preset", "tiny", "--num_hidden_layers", str(RECIPE["depth"]),
        "--hidden_size", str(RECIPE["embed_dim"]), "--num_attention_heads", str(RECIPE["num_heads"]),
        "--intermediate_size", str(RECIPE["embed_dim"] * RECIPE["mlp_ratio"]),
        "--image_size", str(RECIPE["image_size"]), "--patch_size", str(RECIPE["patch_size"]),
        "--random_crop_padding", "4", "--random_crop_padding_mode", "constant", "--horizontal_flip", "true",
        "--distillation_type", "hard", "--distillation_alpha", str(RECIPE["alpha"]),
        "--num_train_epochs", str(RECIPE["epochs"]), "--per_device_train_batch_size", str(RECIPE["batch_size"]),
        "--per_device_eval_batch_size", "500", "--learning_rate", str(RECIPE["learning_rate"]),
        "--weight_decay", str(RECIPE["weight_decay"]), "--lr_scheduler_type", "cosine", "--warmup_steps", "0",
        "--max_grad_norm", "0", "--optim", "adamw_torch", "--eval_strategy", "no", "--save_strategy", "no",
        "--logging_steps", "50", "--dataloader_num_workers", "0", "--seed", str(seed), "--disable_tqdm", "true",
        "--report_to", "none", "--teacher_dtype", teacher_dtype, "--teacher_channels_last", "true",
    ]
    original = hf_deit.modeling.init_like_timm
    if legacy_init:
        hf_deit.modeling.init_like_timm = transformers_init
    timer = StepTimer(warmup_steps=5)
    try:
        metrics = run_distillation(*parse_config(argv), callbacks=[timer])
    finally:
        hf_deit.modeling.init_like_timm = original
    steps = math.ceil(metrics["train_images"] / RECIPE["batch_size"]) * RECIPE["epochs"]
    return {
        "fused": metrics["eval_fused_top1"], "cls": metrics["eval_cls_top1"], "distill": metrics["eval_distill_top1"],
        "train_seconds": metrics["train_runtime_s"], "seconds_per_step": metrics["train_runtime_s"] / steps,
        **({"median_step_seconds": timer.median_seconds_per_step} if timer.steps else {}),
    }


# -- (b) the reference loop -------------------------------------------------------------------------------------

class TeacherInReferenceSpace(torch.nn.Module):
    """The teacher fed from the reference's normalised batch: un-normalise, resize, apply its processor's
    rescale/normalisation (plain transformers, no hf_deit code)."""

    def __init__(self, path: str, dtype: str):
        super().__init__()
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.dtype = getattr(torch, dtype)
        self.model = AutoModelForImageClassification.from_pretrained(path, dtype=self.dtype).eval().requires_grad_(False)
        self.model.to(memory_format=torch.channels_last)
        processor = AutoImageProcessor.from_pretrained(path)
        size = processor.size
        self.size = (size["height"], size["width"])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("teacher_mean", torch.tensor(processor.image_mean).view(1, 3, 1, 1))
        self.register_buffer("teacher_std", torch.tensor(processor.image_std).view(1, 3, 1, 1))
        self.normalize = getattr(processor, "do_normalize", True)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images * self.std + self.mean  # back to [0, 1]
        if tuple(pixels.shape[-2:]) != self.size:
            pixels = F.interpolate(pixels, size=self.size, mode="bicubic", align_corners=False)
        if self.normalize:
            pixels = (pixels - self.teacher_mean) / self.teacher_std
        pixels = pixels.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model(pixel_values=pixels).logits.float()


def official_hard_distillation(outputs, outputs_kd, labels, teacher_outputs, alpha):
    """facebookresearch/deit ``DistillationLoss`` with ``distillation_type='hard'``."""
    base_loss = F.cross_entropy(outputs, labels)
    distillation_loss = F.cross_entropy(outputs_kd, teacher_outputs.argmax(dim=1))
    return base_loss * (1 - alpha) + distillation_loss * alpha


def run_reference(data: Path, teacher_path: str, seed: int, teacher_dtype: str) -> dict:
    from datasets import load_dataset
    from timm.models.deit import VisionTransformerDistilled
    from timm.optim import param_groups_weight_decay
    from torchvision import transforms

    torch.manual_seed(seed)
    raw = load_dataset(str(data))
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize,
    ])
    eval_transform = transforms.Compose([transforms.ToTensor(), normalize])

    def collate(transform):
        return lambda rows: (torch.stack([transform(r["img"].convert("RGB")) for r in rows]),
                             torch.tensor([r["label"] for r in rows]))

    generator = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(raw["train"], batch_size=RECIPE["batch_size"], shuffle=True,
                                               generator=generator, collate_fn=collate(train_transform))
    test_loader = torch.utils.data.DataLoader(raw["test"], batch_size=500, collate_fn=collate(eval_transform))
    model = VisionTransformerDistilled(
        img_size=RECIPE["image_size"], patch_size=RECIPE["patch_size"], embed_dim=RECIPE["embed_dim"],
        depth=RECIPE["depth"], num_heads=RECIPE["num_heads"], mlp_ratio=RECIPE["mlp_ratio"], num_classes=10,
    )
    model.set_distilled_training(True)  # training forward returns (class head, distillation head)
    teacher = TeacherInReferenceSpace(teacher_path, teacher_dtype)
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, RECIPE["weight_decay"], model.no_weight_decay()),
                                  lr=RECIPE["learning_rate"])
    total_steps = len(train_loader) * RECIPE["epochs"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    step_seconds, start = [], time.perf_counter()
    model.train()
    for _ in range(RECIPE["epochs"]):
        for images, labels in train_loader:
            began = time.perf_counter()
            outputs, outputs_kd = model(images)  # training mode: (class head, distillation head)
            loss = official_hard_distillation(outputs, outputs_kd, labels, teacher(images), RECIPE["alpha"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step_seconds.append(time.perf_counter() - began)
    train_seconds = time.perf_counter() - start
    model.eval()
    correct = {"fused": 0, "cls": 0, "distill": 0}
    with torch.no_grad():
        for images, labels in test_loader:
            tokens = model.forward_features(images)  # final norm applied; token 0: class, 1: distillation
            cls, distill = model.head(tokens[:, 0]), model.head_dist(tokens[:, 1])
            for head, logits in (("fused", (cls + distill) / 2), ("cls", cls), ("distill", distill)):
                correct[head] += (logits.argmax(-1) == labels).sum().item()
    count = len(raw["test"])
    return {**{head: value / count for head, value in correct.items()}, "train_seconds": round(train_seconds, 1),
            "seconds_per_step": train_seconds / total_steps, "median_step_seconds": median(step_seconds)}


# -- table ------------------------------------------------------------------------------------------------------

def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for row in ROWS:
        done = [r for r in runs if r["row"] == row]
        if not done:
            continue
        fused = [r["fused"] for r in done]
        stderr = statistics.stdev(fused) / math.sqrt(len(fused)) if len(fused) > 1 else float("nan")
        rows.append({
            "row": row, "seeds": [r["seed"] for r in done], "fused": fused, "fused_mean": statistics.mean(fused),
            "fused_seed_stderr": stderr, "cls_mean": statistics.mean(r["cls"] for r in done),
            "distill_mean": statistics.mean(r["distill"] for r in done),
            "seconds_per_step": statistics.mean(r["seconds_per_step"] for r in done),
            # median step time (start-up excluded) where every run recorded it: the like-for-like speed column
            "median_step_seconds": (statistics.mean(r["median_step_seconds"] for r in done)
                                    if all("median_step_seconds" in r for r in done) else None),
        })
    return rows


def markdown(rows: list[dict], runs: list[dict], environment: dict, test_images: int, train_images: int,
             teacher: str) -> str:
    binomial = 100 * math.sqrt(0.45 * 0.55 / test_images)
    lines = [
        "## Accuracy parity with an independent loop",
        "",
        f"Hard distillation from `{teacher}`, a d{RECIPE['depth']}/h{RECIPE['embed_dim']}/p{RECIPE['patch_size']} "
        f"student at 32 px, the first {train_images:,} CIFAR-10 training images with `RandomCrop(32, padding=4)` + "
        f"flip, {RECIPE['epochs']} epochs, batch {RECIPE['batch_size']}, AdamW lr {RECIPE['learning_rate']}, "
        f"wd {RECIPE['weight_decay']}, cosine without warm-up, no clipping, fp32 student, "
        f"{RECIPE.get('teacher_dtype', 'float32')} teacher in both loops. Top-1 on the full {test_images:,}-image "
        f"test split (JPEG q75 copy). One run's binomial standard error is about {binomial:.1f} points; seeds move "
        "runs by more, so the table compares means over seeds.",
        "",
        "| loop | seeds | fused top-1 per seed (%) | fused mean (%) | ± s.e. over seeds | class head (%) | "
        "distillation head (%) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['row']} | {', '.join(map(str, row['seeds']))} | "
            f"{', '.join(f'{100 * v:.1f}' for v in row['fused'])} | {100 * row['fused_mean']:.1f} | "
            f"{100 * row['fused_seed_stderr']:.1f} | {100 * row['cls_mean']:.1f} | {100 * row['distill_mean']:.1f} |"
        )
    lines += ["", *speed_lines(runs)]
    lines += ["", f"Machine of the last run: {describe_machine(environment)}. Reproduce: `python benchmarks/parity.py "
              "--dataset_name ../shared/data/cifar10`."]
    return "\n".join(lines)


def speed_lines(runs: list[dict]) -> list[str]:
    """Seconds per step compared only between runs on the same machine (seeds may run in different sessions)."""
    lines = ["Speed, per machine and seed (s/step, all: training time over steps, start-up included for hf-deit; "
             "median: the median step after 5 warm-up steps):", "",
             "| machine | seed | loop | s/step, all | s/step, median |", "|---|---|---|---:|---:|"]
    for run in sorted(runs, key=lambda r: (r.get("machine", ""), r["seed"], r["row"])):
        median_step = run.get("median_step_seconds")
        lines.append(f"| {run.get('machine', 'not recorded')} | {run['seed']} | {run['row']} | "
                     f"{run['seconds_per_step']:.3f} | " + ("n/a" if median_step is None else f"{median_step:.3f}") + " |")
    return lines


def weights_digest(folder: Path) -> str:
    """The first 16 hex digits of the teacher's weights' SHA-256: a retrained teacher invalidates saved runs."""
    import hashlib

    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--teacher", default=str(REPO / "models" / "teacher-cifar10-resnet"))
    parser.add_argument("--train_images", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--teacher_dtype", default="auto",
                        help="the teacher's dtype in both loops (auto: bfloat16 where the CPU has bf16 instructions)")
    parser.add_argument("--out", default=str(RESULTS / "parity.json"))
    args = parser.parse_args(argv)
    RECIPE["epochs"] = args.epochs
    from hf_deit.hardware import resolve_teacher_dtype  # one resolution, handed to both loops

    RECIPE["teacher_dtype"] = resolve_teacher_dtype(args.teacher_dtype, "cpu")
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    key = {"recipe": RECIPE, "train_images": args.train_images, "teacher": Path(args.teacher).name,
           "teacher_sha256": weights_digest(Path(args.teacher))}
    runs = saved.get("runs", []) if saved.get("key") == key else []
    with tempfile.TemporaryDirectory() as tmp:
        data, test_images = first_images(args.dataset_name, args.train_images, Path(tmp) / "data")
        for seed in args.seeds:
            for row in args.rows:
                if any(r["row"] == row and r["seed"] == seed for r in runs):
                    continue
                print(f"== {row}, seed {seed}", flush=True)
                if row == "reference":
                    result = run_reference(data, args.teacher, seed, RECIPE["teacher_dtype"])
                else:
                    result = run_hf_deit(data, args.teacher, seed, Path(tmp) / f"run-{seed}", RECIPE["teacher_dtype"],
                                         legacy_init=row != "hf-deit")
                runs.append({"row": row, "seed": seed, **result, "machine": describe_machine(machine())})
                print(json.dumps(runs[-1]), flush=True)
                rows = summarise(runs)
                environment = machine()
                page = markdown(rows, runs, environment, test_images, args.train_images, key["teacher"])
                save_section({"key": key, "machine": environment, "runs": runs, "rows": rows, "markdown": page}, out)
    return runs


if __name__ == "__main__":
    main()
