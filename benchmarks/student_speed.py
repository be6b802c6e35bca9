"""What each speed choice of the CPU student buys: training images/s of a student config (``--config``,
by default ``configs/cifar10_cpu_student.yaml``; hard distillation, the teacher's forward included) through
``scripts/distill.py``'s own path, one switch changed at a time.

  shipped        the config as committed (cifar10_cpu_student.yaml: eager attention, bf16 autocast,
                 device-resident data, 192 wide x 5 layers)
  sdpa           attn_implementation: sdpa
  fp32           bf16: false (the student only: teacher_dtype auto keeps the teacher in bf16 where native)
  bf16           bf16: true, for a config that trains in fp32
  data_loader    device_resident_data: false (PIL crop/flip per image, no worker)
  compile        torch_compile: true (warm-up steps absorb the compilation)
  narrow_deep    128 wide x 6 layers, 4 heads (the quickstart's shape)
  no_teacher     distillation_type: none (what the teacher's forward costs)
  teacher_fp32   teacher_dtype: float32 (the teacher's forward without bf16)
  teacher_compile  teacher_compile: true (torch.compile the teacher's forward)
  compile_both   torch_compile and teacher_compile both true
  no_teacher_compile  distillation_type: none with torch_compile: true (what compiling buys labels alone)
  teacher_quarter  distillation_teacher_fraction: 0.25 with distillation_rows_without_teacher: labels
  teacher_quarter_compile  the same with torch_compile and teacher_compile

Each variant trains ``--warmup + --steps`` steps at batch 256 on ``--train_images`` images in this process,
in ``--rounds`` rotated rounds; the table gives the median images/s and the median ratio to the shipped
config within a round (robust to drifts of a shared machine).

    python benchmarks/student_speed.py --dataset_name ../shared/data/cifar10        # ~10 min on 2 CPU cores
    python benchmarks/student_speed.py --dataset_name ../shared/data/cifar10 \
        --config configs/cifar10_cpu_student_w128.yaml --out docs/results/student_speed_w128.json \
        --variants shipped bf16 sdpa compile no_teacher teacher_fp32 teacher_compile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, StepTimer, rotated_rounds, variant_speed_section  # noqa: E402

from hf_deit.config import parse_config  # noqa: E402
from hf_deit.training.distill import run_distillation  # noqa: E402

CONFIG = REPO / "configs" / "cifar10_cpu_student.yaml"
TEACHER_QUARTER = ("--distillation_teacher_fraction", "0.25", "--distillation_rows_without_teacher", "labels")
VARIANTS = {
    "shipped": ("shipped: eager, bf16, device-resident, 192 x 5", ()),
    "sdpa": ("SDPA attention", ("--attn_implementation", "sdpa")),
    "fp32": ("fp32 (bf16: false)", ("--bf16", "false")),
    "bf16": ("bf16 autocast (bf16: true)", ("--bf16", "true")),
    "data_loader": ("data-loader, 0 workers", ("--device_resident_data", "false", "--dataloader_num_workers", "0")),
    "compile": ("torch.compile", ("--torch_compile", "true")),
    "narrow_deep": ("128 wide x 6 layers, 4 heads", ("--hidden_size", "128", "--num_hidden_layers", "6",
                                                     "--num_attention_heads", "4", "--intermediate_size", "512")),
    "no_teacher": ("no teacher (distillation_type: none)", ("--distillation_type", "none")),
    "teacher_fp32": ("teacher in fp32 (teacher_dtype: float32)", ("--teacher_dtype", "float32")),
    "teacher_compile": ("compiled teacher (teacher_compile: true)", ("--teacher_compile", "true")),
    "compile_both": ("compiled student and teacher", ("--torch_compile", "true", "--teacher_compile", "true")),
    "no_teacher_compile": ("no teacher, compiled student", ("--distillation_type", "none", "--torch_compile", "true")),
    "teacher_quarter": ("teacher on a quarter of each batch, labels on the rest", TEACHER_QUARTER),
    "teacher_quarter_compile": ("the same, student and teacher compiled",
                                (*TEACHER_QUARTER, "--torch_compile", "true", "--teacher_compile", "true")),
}


def run_variant(name: str, args, scratch: str) -> float:
    timer = StepTimer(args.warmup)
    argv = ["--config", args.config, "--dataset_name", args.dataset_name,
            "--max_train_samples", str(args.train_images), "--max_eval_samples", "8",
            "--max_steps", str(args.warmup + args.steps), "--output_dir", f"{scratch}/{name}",
            "--save_strategy", "no", "--logging_steps", "1000", "--disable_tqdm", "true", *VARIANTS[name][1]]
    configs = parse_config(argv)
    run_distillation(*configs, callbacks=[timer])
    return configs[2].per_device_train_batch_size / timer.median_seconds_per_step


def is_default_config(args) -> bool:
    return Path(args.config).resolve() == CONFIG.resolve()


def reproduce(args) -> str:
    """The command that re-times this table: the defaults' flags left out."""
    command = f"python benchmarks/student_speed.py --dataset_name {args.dataset_name}"
    if not is_default_config(args):
        command += f" --config {args.config} --variants {' '.join(args.variants)} --out {args.out}"
    return command


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--config", default=str(CONFIG), help="the student recipe whose speed choices are timed")
    parser.add_argument("--train_images", type=int, default=5120)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=[name for name in VARIANTS if name != "bf16"],
                        choices=list(VARIANTS))
    parser.add_argument("--out", default=str(RESULTS / "student_speed.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        rounds = rotated_rounds(args.variants, lambda name: run_variant(name, args, scratch), args.rounds)
    setup = (f"{args.rounds} rotated rounds of {args.warmup} warm-up + {args.steps} timed steps at batch 256 on "
             f"{args.train_images:,} images, hard distillation")
    labels = {key: label for key, (label, _) in VARIANTS.items()}
    if not is_default_config(args):
        labels["shipped"] = f"{Path(args.config).name} as committed"
    result = variant_speed_section(args.variants, labels, rounds, setup, reproduce(args))
    save_section(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
