"""What each speed choice of the teacher recipe buys: training images/s of ``configs/teacher_cifar10_resnet.yaml``
through ``scripts/train_teacher.py``'s own path, one switch changed at a time.

  shipped           device-resident data, bf16 autocast, channels_last (the committed config)
  fp32              bf16: false
  contiguous        channels_last: false
  data-loader       device_resident_data: false (PIL crop/flip per image, 0 or 1 workers)
  compile           torch_compile: true (warm-up steps absorb the compilation)

Each variant trains ``--warmup + --steps`` steps on ``--train_images`` images (batch 512) in this process,
one after another, in ``--rounds`` rotated rounds; the table gives the median images/s over rounds and the
ratio to the shipped config within each round (robust to drifts of a shared machine).

    python benchmarks/teacher_speed.py --dataset_name ../shared/data/cifar10        # ~12 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, REPO, RESULTS, StepTimer, rotated_rounds, variant_speed_section  # noqa: E402

from hf_deit.config import DataConfig, parse_config  # noqa: E402
from hf_deit.config import TeacherModelConfig, TeacherTrainingConfig  # noqa: E402
from hf_deit.training.teacher_training import run_teacher_training  # noqa: E402

VARIANTS = {
    "shipped": ("shipped: device-resident, bf16, channels_last", ()),
    "fp32": ("fp32 (bf16: false)", ("--bf16", "false")),
    "contiguous": ("NCHW (channels_last: false)", ("--channels_last", "false")),
    "data_loader_0": ("data-loader, 0 workers", ("--device_resident_data", "false", "--dataloader_num_workers", "0")),
    "data_loader_1": ("data-loader, 1 worker", ("--device_resident_data", "false", "--dataloader_num_workers", "1")),
    "compile": ("torch.compile", ("--torch_compile", "true")),
}


def run_variant(name: str, args, scratch: str) -> float:
    timer = StepTimer(args.warmup)
    argv = ["--config", str(REPO / "configs" / "teacher_cifar10_resnet.yaml"), "--dataset_name", args.dataset_name,
            "--max_train_samples", str(args.train_images), "--max_eval_samples", "8",
            "--max_steps", str(args.warmup + args.steps), "--output_dir", f"{scratch}/{name}",
            "--save_strategy", "no", "--eval_flip_tta", "false", "--logging_steps", "1000", "--disable_tqdm", "true",
            *VARIANTS[name][1]]
    configs = parse_config(argv, (TeacherModelConfig, DataConfig, TeacherTrainingConfig))
    run_teacher_training(*configs, callbacks=[timer])
    return configs[2].per_device_train_batch_size / timer.median_seconds_per_step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--train_images", type=int, default=6144)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(RESULTS / "teacher_speed.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        rounds = rotated_rounds(args.variants, lambda name: run_variant(name, args, scratch), args.rounds)
    setup = (f"{args.rounds} rotated rounds of {args.warmup} warm-up + {args.steps} timed steps at batch 512 on "
             f"{args.train_images:,} images")
    result = variant_speed_section(args.variants, {key: label for key, (label, _) in VARIANTS.items()}, rounds, setup,
                                   "python benchmarks/teacher_speed.py --dataset_name ../shared/data/cifar10")
    save_section(result, Path(args.out))


if __name__ == "__main__":
    main()
