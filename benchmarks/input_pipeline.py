"""Is the input pipeline ever the bottleneck? The training data path alone against the model's training step.

Builds each run exactly as ``scripts/distill.py`` does (:func:`hf_deit.training.distill.build_distillation_run`
from parsed config) and times the Trainer's own training loader (``trainer.get_train_dataloader()``:
sampler, decode, augmentation, collate, workers) with no model attached, in images/s, for

* the quickstart augmentation (``configs/quickstart.yaml``: random crop + flip),
* the full DeiT recipe's per-image augmentation (RandAugment, random erasing, repeated augmentation,
  read from ``configs/recipes/deit_official.yaml``), whose Mixup/CutMix runs on the device inside the
  loss and is timed apart as a per-batch device op,
* the device-resident option (``device_resident_data: true``: decoded once, cropped/flipped/normalised
  in batch on the device),

at ``dataloader_num_workers`` 0 (the quickstart's default) and the recipe's 8 clamped to this
machine's cores. The model's training throughput is ``trainer.train()`` on pre-made batches (the
quickstart student, the RegNet teacher, hard distillation), a few steps after warm-up; the ratio
pipeline / model must be >= 2. Optionally (on by default) each pipeline also feeds a real
``trainer.train()``, to show what the data path costs end to end.

    python benchmarks/input_pipeline.py                                     # the shipped 5k sample
    python benchmarks/input_pipeline.py --dataset_name ../shared/data/cifar10  # full CIFAR-10 (50k)
    python benchmarks/input_pipeline.py --quick                             # a few seconds, smoke only

Writes ``docs/results/input_pipeline.json`` (with the Markdown section under ``"markdown"``) and
``docs/results/input_pipeline.md``; ``--quick`` writes under ``outputs/`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import QUICKSTART_MEASURED_WITH, StepTimer, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
RECIPE = REPO / "configs" / "recipes" / "deit_official.yaml"
# The recipe's per-image augmentation (data-loader) and its batch augmentation (device, in the loss).
RECIPE_PIPELINE_KEYS = ("rand_augment", "random_erasing", "repeated_augmentation")
RECIPE_STEP_KEYS = ("mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob", "label_smoothing_factor")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recipe_flags() -> tuple[list[str], list[str], dict[str, Any]]:
    from hf_deit.config import load_yaml, yaml_to_argv

    recipe = load_yaml(RECIPE)
    pipeline = {key: recipe[key] for key in RECIPE_PIPELINE_KEYS}
    step = {key: recipe[key] for key in RECIPE_STEP_KEYS}
    return yaml_to_argv(pipeline), yaml_to_argv(step), {**pipeline, **step, "dataloader_num_workers": recipe.get(
        "dataloader_num_workers")}


@contextlib.contextmanager
def timed_device_decode(record: dict) -> Iterator[None]:
    """Time the one-off decode of a device-resident run inside ``build_distillation_run``."""
    import hf_deit.data.inputs as inputs

    original = inputs.device_resident_train

    def timed(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        dataset = original(*args, **kwargs)
        record.update(decode_s=round(time.perf_counter() - start, 2), images=len(dataset),
                      megabytes=round(dataset.nbytes / 1e6, 1))
        return dataset

    inputs.device_resident_train = timed
    try:
        yield
    finally:
        inputs.device_resident_train = original


def build_run(common: list[str], extra: Sequence[str]):
    from hf_deit.config import parse_config
    from hf_deit.training.distill import build_distillation_run

    model_config, data_config, training_args = parse_config([*common, *extra])
    return model_config, build_distillation_run(model_config, data_config, training_args)


def describe_model(model_config, trainer) -> str:
    student = trainer.accelerator.unwrap_model(trainer.model)
    config = student.config
    side, patch = model_config.image_size, model_config.patch_size
    parameters = sum(p.numel() for p in student.parameters()) / 1e6
    teacher = f"`{model_config.teacher_model_name_or_path}`" if model_config.teacher_model_name_or_path else "none"
    return (f"DeiT student (width {config.hidden_size}, {config.num_hidden_layers} layers, "
            f"{config.num_attention_heads} heads, MLP {config.intermediate_size}, {patch}x{patch} patches at "
            f"{side}x{side}, {parameters:.2f} M parameters), teacher {teacher}, {trainer.args.distillation_type} "
            "distillation")


def time_loader(loader, device: torch.device, warmup: int, batches: int) -> dict[str, Any]:
    """Images/s of iterating the loader alone (batches materialised, nothing else done with them)."""
    loader.set_epoch(0)
    available = len(loader)
    if warmup + batches > available:
        batches = max(1, available - warmup)
        print(f"  (epoch has {available} batches: timing {batches} after {warmup} warm-up)", flush=True)
    iterator = iter(loader)
    start = time.perf_counter()
    for _ in range(warmup):
        next(iterator)
    synchronize(device)
    warm = time.perf_counter()
    images = 0
    for _ in range(batches):
        batch = next(iterator)
        images += batch["pixel_values"].shape[0]
    synchronize(device)
    elapsed = time.perf_counter() - warm
    del iterator  # shut the workers down before the next measurement
    return {"images_per_s": images / elapsed, "batches": batches, "warmup_s": round(warm - start, 2)}


def time_training(trainer, batch_size: int, warmup: int, steps: int, batches: Optional[list] = None) -> float:
    """Training images/s of ``trainer.train()`` over ``steps`` steps after ``warmup`` steps; from ``batches``
    (pre-made, on the device) in place of the trainer's loader when given."""
    trainer.args.max_steps = warmup + steps
    timer = StepTimer(device=trainer.args.device)
    trainer.add_callback(timer)
    if batches is not None:
        trainer.get_train_dataloader = lambda: batches
    trainer.train()
    trainer.remove_callback(timer)
    return steps * batch_size / (timer.marks[-1] - timer.marks[warmup - 1])


def time_mixup(trainer, batch: dict, repeats: int) -> dict[str, float]:
    from hf_deit.data.augment import apply_mixup

    device = trainer.args.device
    pixels, labels = batch["pixel_values"].to(device), batch["labels"].to(device)
    for _ in range(3):
        apply_mixup(trainer.mixup, pixels, labels)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        apply_mixup(trainer.mixup, pixels, labels)
    synchronize(device)
    per_batch = (time.perf_counter() - start) / repeats
    return {"ms_per_batch": per_batch * 1e3, "images_per_s": pixels.shape[0] / per_batch}


def fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def verdict(goal: dict) -> str:
    if goal["ratio"] is None:
        return "not measured (pass those workers in --workers)"
    return f"{goal['ratio']:.1f}x ({'met' if goal['met'] else 'NOT met'})"


def markdown(result: dict) -> str:
    model = result["model"]["images_per_s"]
    setup = result["setup"]
    lines = [
        "| input pipeline | augmentation | workers | pipeline alone (img/s) | pipeline / model | "
        "training with this pipeline (img/s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['pipeline']} | {row['augmentation']} | {row['workers_label']} | {fmt(row['images_per_s'])} | "
            f"**{row['ratio']:.1f}x** | {fmt(row.get('train_images_per_s'))} |"
        )
    lines.append(
        f"| *model alone: training step on pre-made batches* | - | - | - | 1.0x | **{fmt(model)}** |"
    )
    mixup, device = result["mixup"], result["device_resident"]
    goal = result["goal"]
    notes = [
        "",
        f"Machine: {setup['machine']}; torch {setup['torch']} ({setup['torch_threads']} threads), "
        f"training device `{setup['device']}`. Data: `{setup['dataset_name']}` ({setup['train_images']:,} train "
        f"images), batch {setup['batch_size']}. Model: {setup['model']}. Pipeline rates count images after "
        f"{setup['pipeline_warmup_batches']} warm-up batches over {setup['pipeline_batches']} batches; training "
        f"rates count {setup['train_steps']} steps after {setup['train_warmup_steps']} warm-up steps of "
        "`trainer.train()`.",
        "",
        f"- **Goal (pipeline >= 2x model) at the default workers:** quickstart augmentation at "
        f"{goal['quickstart']['workers']} workers: {verdict(goal['quickstart'])}; full recipe at "
        f"{goal['recipe']['workers']} workers (the recipe's {goal['recipe']['recipe_workers']} clamped to "
        f"{setup['cores']} cores): {verdict(goal['recipe'])}.",
        "- **Mixup/CutMix**: not measured (no recipe row)." if mixup is None else
        f"- **Mixup/CutMix** (recipe: {mixup['config']}) runs on the training device inside the loss, per batch: "
        f"{mixup['ms_per_batch']:.2f} ms per batch of {setup['batch_size']} ({fmt(mixup['images_per_s'])} img/s, "
        f"{100 * mixup['fraction_of_step']:.1f} % of a training step); the recipe rows' last column includes it.",
        f"- **Device-resident data** (`device_resident_data: true`): the train split is decoded once, "
        f"{device['images']:,} images in {device['decode_s']:.1f} s ({device['megabytes']:.0f} MB of uint8 on "
        f"`{setup['device']}`), then every batch is one gather + multiply-add on the device, with no worker "
        "processes and no host-to-device copy of pixels. Crop + flip only (no RandAugment / random erasing).",
        "",
        "What it means: with 0 workers the data path runs in the training process between steps, so a ratio r "
        "makes it cost 1/r of the step time; with workers it runs beside the step but, on this 2-core machine, on "
        "the same cores, which the last column shows. A ratio of 2 or more keeps the data path off the critical "
        "path; on a GPU, where the step is orders of magnitude faster and the CPU-side pipeline is not, the "
        "device-resident option is the one that keeps up.",
    ]
    return "\n".join(lines + notes)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="data/cifar10-sample")
    parser.add_argument("--teacher", default="models/teacher-cifar10-resnet")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="dataloader_num_workers to measure (default: 0 and the recipe's, clamped to the cores)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the quickstart's (64)")
    parser.add_argument("--pipeline_batches", type=int, default=40)
    parser.add_argument("--pipeline_warmup", type=int, default=4)
    parser.add_argument("--train_steps", type=int, default=20)
    parser.add_argument("--train_warmup", type=int, default=3)
    parser.add_argument("--no_end_to_end", action="store_true", help="skip the training runs fed by each pipeline")
    parser.add_argument("--quick", action="store_true", help="a few batches and steps: a smoke run, not a measurement")
    parser.add_argument("--out", default=None, help="output stem (default: docs/results/input_pipeline)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="config flags passed to every run")
    args = parser.parse_args(argv)
    if args.quick:
        args.pipeline_batches, args.pipeline_warmup, args.train_steps, args.train_warmup = 4, 1, 2, 1
        args.no_end_to_end = True
    out = Path(args.out or ("outputs/input_pipeline-quick" if args.quick else "docs/results/input_pipeline"))
    out = out if out.is_absolute() else REPO / out

    pipeline_flags, step_flags, recipe = recipe_flags()
    recipe_workers = int(recipe["dataloader_num_workers"] or 0)
    workers = args.workers if args.workers is not None else sorted({0, min(recipe_workers, cores())})
    work_dir = tempfile.mkdtemp(prefix="input_pipeline-")
    common = [
        "--config", str(QUICKSTART), "--dataset_name", args.dataset_name, "--teacher_model_name_or_path", args.teacher,
        "--output_dir", work_dir, "--disable_tqdm", "true", "--report_to", "none", "--save_strategy", "no",
        "--eval_strategy", "no", "--logging_steps", "1000000", *QUICKSTART_MEASURED_WITH,
        *(["--per_device_train_batch_size", str(args.batch_size)] if args.batch_size else []), *args.extra,
    ]
    recipe_label = (f"DeiT recipe: crop + flip + RandAugment `{recipe['rand_augment']}` + random erasing "
                    f"{recipe['random_erasing']} + repeated aug. x{recipe['repeated_augmentation']}")
    loader_label = "data-loader (decode + augment + collate)"
    configs = [("quickstart", loader_label, "quickstart: crop + flip", [], w) for w in workers]
    configs += [("recipe", loader_label, recipe_label, pipeline_flags + step_flags, w) for w in workers]
    configs.append(("device", "device-resident (`device_resident_data`)", "quickstart: crop + flip on the device",
                    ["--device_resident_data", "true"], None))

    # The model alone: the quickstart run's own batches, made in advance and put on the device.
    print("model: training step on pre-made batches", flush=True)
    model_config, run = build_run(common, ["--dataloader_num_workers", "0"])
    trainer = run.trainer
    model_desc = describe_model(model_config, trainer)
    device, batch_size = trainer.args.device, trainer.args.per_device_train_batch_size
    loader = trainer.get_train_dataloader()
    loader.set_epoch(0)
    made = []
    for batch in loader:
        made.append({key: value.to(device) for key, value in batch.items()})
        if len(made) == args.train_warmup + args.train_steps:
            break
    model_rate = time_training(trainer, batch_size, args.train_warmup, args.train_steps, made)
    train_images = len(run.data.train)
    print(f"  {model_rate:,.0f} img/s", flush=True)

    rows, device_record, mixup = [], {}, None
    for kind, pipeline, augmentation, flags, worker_count in configs:
        extra = list(flags) + (["--dataloader_num_workers", str(worker_count)] if worker_count is not None else [])
        print(f"{pipeline} | {augmentation} | workers {worker_count if worker_count is not None else '-'}", flush=True)
        with timed_device_decode(device_record) if worker_count is None else contextlib.nullcontext():
            _, run = build_run(common, extra)
        trainer = run.trainer
        timing = time_loader(trainer.get_train_dataloader(), device, args.pipeline_warmup, args.pipeline_batches)
        row = {
            "kind": kind, "pipeline": pipeline, "augmentation": augmentation, "workers": worker_count,
            "workers_label": str(worker_count) if worker_count is not None else "none (on device)",
            "flags": extra, **timing, "ratio": timing["images_per_s"] / model_rate,
        }
        print(f"  pipeline alone {row['images_per_s']:,.0f} img/s = {row['ratio']:.1f}x the model", flush=True)
        if trainer.mixup is not None and mixup is None:
            mixup = time_mixup(trainer, made[0], repeats=10 if args.quick else 100)
        if not args.no_end_to_end:
            row["train_images_per_s"] = time_training(trainer, batch_size, args.train_warmup, args.train_steps)
            print(f"  training with it {row['train_images_per_s']:,.0f} img/s", flush=True)
        rows.append(row)

    default_workers = {"quickstart": 0, "recipe": min(recipe_workers, cores())}

    goal = {}
    for kind, worker_count in default_workers.items():
        found = [r["ratio"] for r in rows if r["kind"] == kind and r["workers"] == worker_count]
        ratio = found[0] if found else None
        goal[kind] = {"workers": worker_count, "ratio": ratio, "met": ratio is not None and ratio >= 2.0}
    goal["recipe"]["recipe_workers"] = recipe_workers
    if mixup is not None:
        mixup["fraction_of_step"] = mixup["ms_per_batch"] / 1e3 / (batch_size / model_rate)
        mixup["config"] = ", ".join(f"{k} {recipe[k]}" for k in RECIPE_STEP_KEYS[:2])
    result = {
        "setup": {
            "machine": f"{cores()} CPU cores ({platform.machine()}; {', '.join(machine()['cpu_features']) or 'no AVX2'})" + (
                f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ", no GPU"),
            "cores": cores(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": str(device), "dataset_name": args.dataset_name, "train_images": train_images,
            "batch_size": batch_size, "model": model_desc, "pipeline_batches": args.pipeline_batches,
            "pipeline_warmup_batches": args.pipeline_warmup, "train_steps": args.train_steps,
            "train_warmup_steps": args.train_warmup, "quick": args.quick, "date": time.strftime("%Y-%m-%d"),
        },
        "command": "python benchmarks/input_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": {"images_per_s": model_rate},
        "rows": rows,
        "mixup": mixup,
        "device_resident": device_record,
        "goal": goal,
    }
    result["markdown"] = markdown(result) + f"\n\nReproduce: `{result['command'].strip()}`."
    print("\n" + result["markdown"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        "# Input pipeline vs training step\n\n"
        f"```bash\n{result['command'].strip()}\n```\n\n" + result["markdown"] + "\n"
    )
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    if out.resolve().parent == (REPO / "docs" / "results").resolve():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_page import write_throughput_page

        write_throughput_page()
    return result


if __name__ == "__main__":
    main()
