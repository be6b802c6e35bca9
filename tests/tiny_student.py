"""A tiny distilled student, trained once per test session, shared by the publish/demo tests.

Import the fixture into a test module with ``from tiny_student import tiny_student  # noqa: F401``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY_STUDENT_ARGS


@pytest.fixture(scope="session")
def tiny_student(sample_dir, tiny_teacher, tmp_path_factory) -> Path:
    """A folder as scripts/distill.py leaves it (weights, processor, results, training_args.bin)."""
    from hf_deit.cli.distill import main

    output_dir = tmp_path_factory.mktemp("tiny-student") / "student"
    main([
        "--config", "configs/quickstart.yaml",
        "--dataset_name", str(sample_dir),
        "--teacher_model_name_or_path", str(tiny_teacher),
        "--max_train_samples", "64", "--max_eval_samples", "32",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--logging_steps", "2", "--output_dir", str(output_dir), "--disable_tqdm", "true",
        *TINY_STUDENT_ARGS,
    ])
    return output_dir
