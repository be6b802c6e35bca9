"""Short student pilots on held-out training images: which shape, learning rate and init learn most per CPU minute.

Each pilot trains ``configs/cifar10_cpu_student.yaml`` (hard distillation from the shipped teacher) with its
overrides for ``--epochs`` epochs, through hf-deit's own ``run_distillation``, on a view of the dataset that
holds only its train split: the run then holds out ``train_val_split`` (10 %, 5,000 images) of it as its
evaluation split, so the pilots never read the test split that the results page reports.

    python benchmarks/student_pilots.py --pilot shipped --dataset_name ../shared/data/cifar10   # ~12 min
    python benchmarks/student_pilots.py --table          # rebuild the section from the recorded pilots

Each pilot adds its held-out accuracy, training minutes and seconds per step to ``docs/results/student_pilots.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_students import CONFIG, curve, training_seconds  # noqa: E402
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, RESULTS, machine, machines_line  # noqa: E402

WIDTH_128_DEPTH_6 = ["--hidden_size", "128", "--num_hidden_layers", "6", "--num_attention_heads", "4",
                     "--intermediate_size", "512"]
PATCH_DROP_LR_1E3 = [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001", "--patch_dropout", "0.5"]
LABELS_ONLY_PATCH_DROP = [*PATCH_DROP_LR_1E3, "--distillation_type", "none"]
PILOTS = {
    "shipped": ("DeiT 192 wide x 5 layers, lr 2e-3 (the CPU student's recipe)", []),
    "lr_1e-3": ("the same, lr 1e-3", ["--learning_rate", "0.001"]),
    "lr_4e-3": ("the same, lr 4e-3", ["--learning_rate", "0.004"]),
    "w128_d6": ("128 wide x 6 layers, 4 heads", WIDTH_128_DEPTH_6),
    "w128_d6_lr_1e-3": ("128 wide x 6 layers, 4 heads, lr 1e-3", [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001"]),
    "w128_d8_lr_1e-3": ("128 wide x 8 layers, 4 heads, lr 1e-3", [*WIDTH_128_DEPTH_6, "--num_hidden_layers", "8",
                                                                "--learning_rate", "0.001"]),
    "w128_d6_lr_1e-3_none": ("128 wide x 6 layers, 4 heads, lr 1e-3, labels only (no teacher)",
                             [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001", "--distillation_type", "none"]),
    "w128_d6_lr_1e-3_timm_teacher": ("128 wide x 6 layers, 4 heads, lr 1e-3, hard distillation from the timm "
                                     "ResNet-D teacher (configs/teacher_cifar10_timm_resnet_d.yaml: half the "
                                     "shipped teacher's multiply-adds)",
                                     [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001", "--teacher_model_name_or_path",
                                      "outputs/teacher-cifar10-timm-resnet-d"]),
    "w128_d6_lr_1e-3_patch_drop_0.5": ("128 wide x 6 layers, 4 heads, lr 1e-3, half of each image's patches dropped "
                                       "at random in training (timm's PatchDropout)",
                                       [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001", "--patch_dropout", "0.5"]),
    "w128_d6_lr_1e-3_patch_drop_0.5_teacher_quarter": ("w128_d6_lr_1e-3_patch_drop_0.5 with the teacher asked about "
                                                        "a quarter of each batch (distillation_teacher_fraction), "
                                                        "the other rows skipped",
                                                        [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001",
                                                         "--patch_dropout", "0.5",
                                                         "--distillation_teacher_fraction", "0.25",
                                                         "--distillation_rows_without_teacher", "skip"]),
    "w128_d6_lr_1e-3_none_patch_drop_0.5": ("128 wide x 6 layers, 4 heads, lr 1e-3, labels only, half of each "
                                            "image's patches dropped at random in training",
                                            LABELS_ONLY_PATCH_DROP),
    "w128_d6_lr_1e-3_none_patch_drop_0.5_padding_2": ("w128_d6_lr_1e-3_none_patch_drop_0.5 with crops shifted by at "
                                                      "most 2 pixels (the teacher's range) instead of 4",
                                                      [*LABELS_ONLY_PATCH_DROP, "--random_crop_padding", "2"]),
    "w128_d6_lr_1e-3_none_patch_drop_0.5_padding_0": ("w128_d6_lr_1e-3_none_patch_drop_0.5 with no crop shifts at all "
                                                      "(horizontal flips only)",
                                                      [*LABELS_ONLY_PATCH_DROP, "--random_crop_padding", "0"]),
    "w128_d6_lr_1e-3_soft_quarter_patch_drop_0.5_padding_2": ("w128_d6_lr_1e-3_none_patch_drop_0.5_padding_2 with soft "
                                                              "distillation from the teacher on a quarter of each "
                                                              "batch, labels on the rest",
                                                              [*PATCH_DROP_LR_1E3, "--distillation_type", "soft",
                                                               "--random_crop_padding", "2",
                                                               "--distillation_teacher_fraction", "0.25"]),
    "w128_d6_lr_1e-3_timm_teacher_patch_drop_0.5": ("128 wide x 6 layers, 4 heads, lr 1e-3, hard distillation from the "
                                                    "timm ResNet-D teacher, half of each image's patches dropped",
                                                    [*WIDTH_128_DEPTH_6, "--learning_rate", "0.001",
                                                     "--teacher_model_name_or_path",
                                                     "outputs/teacher-cifar10-timm-resnet-d", "--patch_dropout", "0.5"]),
    "w256_d6": ("256 wide x 6 layers, 4 heads", ["--hidden_size", "256", "--num_hidden_layers", "6",
                                                 "--num_attention_heads", "4", "--intermediate_size", "1024"]),
    "d8": ("192 wide x 8 layers", ["--num_hidden_layers", "8"]),
    "mimetic": ("mimetic attention init", ["--attention_init", "mimetic"]),
    "batch_128": ("batch 128 (twice the steps)", ["--per_device_train_batch_size", "128"]),
}
OUT = RESULTS / "student_pilots.json"


def train_only_view(dataset_dir: Path, scratch: Path) -> Path:
    """A folder that loads as ``dataset_dir`` with its train split only (its README's other splits dropped, the
    data files linked, not copied)."""
    text = (dataset_dir / "README.md").read_text()
    _, front, body = text.split("---", 2)
    card = yaml.safe_load(front)
    for config in card.get("configs", []):
        config["data_files"] = [entry for entry in config["data_files"] if entry["split"] == "train"]
    infos = card.get("dataset_info", [])
    for info in infos if isinstance(infos, list) else [infos]:
        if "splits" in info:
            info["splits"] = [split for split in info["splits"] if split["name"] == "train"]
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "README.md").write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---{body}")
    for entry in dataset_dir.iterdir():
        if entry.name != "README.md" and not (scratch / entry.name).exists():
            (scratch / entry.name).symlink_to(entry.resolve())
    return scratch


def run_pilot(name: str, dataset: Path, epochs: float, eval_every: int, scratch: Path, extra: list[str]) -> dict:
    from hf_deit.config import parse_config
    from hf_deit.training.distill import run_distillation

    output_dir = scratch / "runs" / name
    # A cache of its own: `datasets` keys a local folder's cache by its name and data-file patterns, so a
    # "train_only" view of another dataset (the sample, in the tests) would be served in its place.
    argv = ["--config", str(CONFIG), "--dataset_name", str(train_only_view(dataset, scratch / "train_only")),
            "--cache_dir", str(scratch / "datasets_cache"),
            "--train_val_split", "0.1", "--num_train_epochs", str(epochs), "--output_dir", str(output_dir),
            "--eval_strategy", "steps", "--eval_steps", str(eval_every), "--save_strategy", "no",
            "--disable_tqdm", "true", *PILOTS[name][1], *extra]
    metrics = run_distillation(*parse_config(argv))
    state = json.loads((output_dir / "trainer_state.json").read_text())
    points = curve(state)
    minutes = training_seconds(state) / 60 or metrics["train_runtime_s"] / 60
    return {"what": PILOTS[name][0], "flags": PILOTS[name][1] + extra, "epochs": epochs,
            "heldout_images": metrics["eval_images"], "heldout_fused_top1": metrics["eval_fused_top1"],
            "train_minutes": round(minutes, 2), "seconds_per_step": round(60 * minutes / max(state["global_step"], 1), 3),
            "curve": points, "machine": machine()}


def section(results: dict) -> str:
    lines = ["## Student pilots: shape, learning rate and init", "",
             "Short runs of `python benchmarks/student_pilots.py --pilot NAME` (the CPU student's recipe, hard "
             "distillation from the shipped teacher, one change each), trained on 45,000 training images and "
             "scored on the other 5,000 (one standard error ≈ 0.7 points at 50 %, ≈ 1 point for the difference of two "
             "pilots); the test split is not read. Evaluations at the end of each epoch; s / step is per step of "
             "the pilot's own batch size.", "",
             "| pilot | what | extra flags | epochs | held-out fused top-1 (%) | at each evaluation (%) | training minutes "
             "| s / step |", "|---|---|---|---:|---:|---|---:|---:|"]
    for name, r in results.items():
        extra = " ".join(r["flags"][len(PILOTS[name][1]):]) if name in PILOTS else ""
        flags = f"`{extra}`" if extra else "none"
        lines.append(f"| {name} | {r['what']} | {flags} | {r['epochs']:g} | {100 * r['heldout_fused_top1']:.2f} | "
                     f"{' / '.join(f'{100 * point[1]:.1f}' for point in r['curve'])} | "
                     f"{r['train_minutes']:.1f} | {r['seconds_per_step']:.2f} |")
    return "\n".join(lines) + "\n\n" + machines_line({name: r["machine"] for name, r in results.items()})


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pilot", choices=sorted(PILOTS))
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10, help="a local folder in the Hub layout")
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--eval_every", type=int, default=300)
    parser.add_argument("--table", action="store_true", help="only rebuild the section")
    parser.add_argument("--out", default=str(OUT))
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text())["pilots"] if out.exists() else {}
    if args.pilot and not args.table:
        with tempfile.TemporaryDirectory() as scratch:
            results[args.pilot] = run_pilot(args.pilot, Path(args.dataset_name), args.epochs, args.eval_every,
                                            Path(scratch), extra)
    result = {"pilots": results, "markdown": section(results)}
    save_section(result, out)
    return result


if __name__ == "__main__":
    main()
