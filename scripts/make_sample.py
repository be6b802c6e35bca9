"""Cut the class-balanced CIFAR-10 sample that ships with the repo.

The quickstart and the tests read this sample, so nothing in the product needs the full dataset
or the network. The images keep their original encoded bytes (no re-encoding) and the folder has
the Hub layout (README YAML + parquet per split), so ``load_dataset(path)`` reads it exactly like
``uoft-cs/cifar10``.

    python scripts/make_sample.py --source ../shared/data/cifar10 --out data/cifar10-sample
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

from datasets import load_dataset

README = """---
pretty_name: CIFAR-10 sample (hf-deit)
source_datasets:
- uoft-cs/cifar10
task_categories:
- image-classification
configs:
- config_name: plain_text
  default: true
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
dataset_info:
  config_name: plain_text
  features:
  - name: img
    dtype: image
  - name: label
    dtype:
      class_label:
        names:
{names}
---

# CIFAR-10 sample

A class-balanced sample of CIFAR-10 (Krizhevsky, 2009): {train_per_class} train and
{test_per_class} test images per class, cut by `scripts/make_sample.py` from a copy of
`uoft-cs/cifar10` whose images are stored as JPEG (quality 75). Same schema as the Hub
dataset (`img`, `label`), loadable with `datasets.load_dataset("data/cifar10-sample")`.
Used by the quickstart and the tests; accuracies on it are not comparable with published
CIFAR-10 numbers.
"""


def balanced_indices(labels: list[int], per_class: int) -> list[int]:
    """First ``per_class`` rows of each class, in dataset order (the source is pre-shuffled)."""
    taken: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if len(taken[label]) < per_class:
            taken[label].append(index)
    short = {label: len(rows) for label, rows in taken.items() if len(rows) < per_class}
    if short:
        raise ValueError(f"Classes with fewer than {per_class} images: {short}")
    return sorted(index for rows in taken.values() for index in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/cifar10")
    parser.add_argument("--out", default="data/cifar10-sample")
    parser.add_argument("--train_per_class", type=int, default=500)
    parser.add_argument("--test_per_class", type=int, default=100)
    args = parser.parse_args()

    source = load_dataset(args.source)
    os.makedirs(os.path.join(args.out, "plain_text"), exist_ok=True)
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        dataset = source[split]
        subset = dataset.select(balanced_indices(dataset["label"], per_class))
        subset.to_parquet(os.path.join(args.out, "plain_text", f"{split}-00000-of-00001.parquet"))
        print(f"{split}: {len(subset)} images")
    names = source["train"].features["label"].names
    name_lines = "\n".join(f"          '{i}': {name}" for i, name in enumerate(names))
    with open(os.path.join(args.out, "README.md"), "w") as handle:
        handle.write(
            README.format(names=name_lines, train_per_class=args.train_per_class, test_per_class=args.test_per_class)
        )


if __name__ == "__main__":
    main()
