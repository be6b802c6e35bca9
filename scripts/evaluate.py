"""Evaluate a student on a dataset split: accuracy of every head, per-class accuracy, confusion matrix, speed.

    python scripts/evaluate.py --student outputs/quickstart --dataset_name data/cifar10-sample \
        --split test --teacher models/teacher-cifar10-regnet
"""

import os
import sys

# Python puts this script's folder first on the import path, where this file would shadow the
# `evaluate` library that hf_deit.metrics imports: take the folder off before importing hf_deit.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from hf_deit.evaluation import main  # noqa: E402

if __name__ == "__main__":
    main()
