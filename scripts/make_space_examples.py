"""Cut the demo's example images: the first test image of each class of the shipped CIFAR-10 sample, as PNG.

    python scripts/make_space_examples.py   # writes space/examples/<class>.png
"""

from __future__ import annotations

import argparse
import os

from datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/cifar10-sample")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output_dir", default="space/examples")
    args = parser.parse_args()
    split = load_dataset(args.dataset, split=args.split)
    names = split.features["label"].names
    os.makedirs(args.output_dir, exist_ok=True)
    written: set[int] = set()
    for row in split:
        if row["label"] in written:
            continue
        path = os.path.join(args.output_dir, f"{names[row['label']]}.png")
        row["img"].convert("RGB").save(path)  # lossless from here on: the JPEG-decoded pixels as stored
        written.add(row["label"])
        if len(written) == len(names):
            break
    print(f"Wrote {len(written)} examples to {args.output_dir}")


if __name__ == "__main__":
    main()
