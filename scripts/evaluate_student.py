"""Evaluate a student on a dataset split: accuracy of every head, per-class accuracy, confusion matrix, speed.

    python scripts/evaluate_student.py --student outputs/quickstart --dataset_name data/cifar10-sample \
        --split test --teacher models/teacher-cifar10-resnet

(Named evaluate_student.py, not evaluate.py: Python puts this folder first on the import path of
every script in it, where a file named evaluate.py would shadow the `evaluate` library.)
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.evaluate import main

if __name__ == "__main__":
    run_script(main)
