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


@pytest.fixture(scope="session", autouse=True)
def gradio_folder(tmp_path_factory) -> Path:
    """A fresh Gradio upload/cache folder per test session (not the machine-wide <tmp>/gradio), so that a
    test that looks for what the Space wrote finds this run's files, not an earlier run's."""
    folder = tmp_path_factory.mktemp("gradio")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assert SAMPLE_DIR.is_dir(), "the shipped sample data/cifar10-sample is missing"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-teacher", CIFAR10_NAMES)


