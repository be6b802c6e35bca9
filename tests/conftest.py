"""Shared fixtures: the shipped sample, tiny random teachers, offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import CIFAR10_NAMES, SAMPLE_DIR, save_tiny_teacher  # noqa: E402


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assert SAMPLE_DIR.is_dir(), "the shipped sample data/cifar10-sample is missing"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-teacher", CIFAR10_NAMES)


