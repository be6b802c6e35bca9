"""Loading datasets through `datasets`: the shipped sample, image folders, columns, splits."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deit.config import DataConfig, ModelConfig
from hf_deit.data.transforms import collate_fn
from hf_deit.data.datasets import load_image_classification_data
from hf_deit.modeling import student_image_processor

from helpers import CIFAR10_NAMES, with_inputs


def test_sample_loads_like_the_hub_dataset(sample_dir):
    from datasets import load_dataset

    raw = load_dataset(str(sample_dir))
    assert set(raw) == {"train", "test"}
    assert raw["train"].column_names == ["img", "label"]
    assert raw["train"].features["label"].names == CIFAR10_NAMES
    assert len(raw["train"]) == 5000 and len(raw["test"]) == 1000
    counts = np.bincount(raw["test"]["label"], minlength=10)
    assert (counts == 100).all()


def test_columns_splits_and_limits(sample_dir):
    data = load_image_classification_data(
        DataConfig(dataset_name=str(sample_dir), max_train_samples=50, max_eval_samples=20)
    )
    assert (data.image_column, data.label_column) == ("img", "label")
    assert data.label_names == CIFAR10_NAMES
    assert len(data.train) == 50 and len(data.eval) == 20  # eval falls back to the `test` split
    assert data.id2label[3] == "cat" and data.label2id["truck"] == 9


def test_wrong_column_name_is_explained(sample_dir):
    with pytest.raises(ValueError, match="image_column 'image' is not in the dataset; its columns are \\['img', 'label'\\]"):
        load_image_classification_data(DataConfig(dataset_name=str(sample_dir), image_column="image"))
    with pytest.raises(ValueError, match="label_column 'labels' is not in the dataset"):
        load_image_classification_data(DataConfig(dataset_name=str(sample_dir), label_column="labels"))


def test_missing_split_is_explained(sample_dir):
    with pytest.raises(ValueError, match="eval_split 'validation' is not a split of this dataset \(it has 'train', 'test'\) — pass --eval_split"):
        load_image_classification_data(DataConfig(dataset_name=str(sample_dir), eval_split="validation"))


def _image_folder(root, classes=("cats", "dogs"), per_class=6, mode="RGB"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_without_eval_split_holds_out_part_of_train(tmp_path):
    root = _image_folder(tmp_path / "pets", mode="L")  # grayscale files are converted to RGB
    data = load_image_classification_data(DataConfig(dataset_name=str(root), train_val_split=0.25))
    assert (data.image_column, data.label_column) == ("image", "label")
    assert data.label_names == ["cats", "dogs"]
    assert len(data.train) == 9 and len(data.eval) == 3
    processor = student_image_processor(ModelConfig(image_size=32, patch_size=4))
    data = with_inputs(data, processor, DataConfig(dataset_name=str(root)))
    batch = collate_fn([data.train[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["labels"].dtype == torch.long


def test_train_transform_augments_and_eval_transform_is_the_processor(sample_dir):
    data = load_image_classification_data(DataConfig(dataset_name=str(sample_dir), max_train_samples=8, max_eval_samples=8))
    raw_eval_image = data.eval[0]["img"]
    processor = student_image_processor(ModelConfig(image_size=32, patch_size=4))
    data = with_inputs(data, processor, DataConfig())
    draws = [data.train[0]["pixel_values"] for _ in range(6)]
    assert draws[0].shape == (3, 32, 32)
    assert any(not torch.equal(draws[0], other) for other in draws[1:])  # random crop/flip at work
    expected = processor(raw_eval_image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(data.eval[0]["pixel_values"], expected)
    assert data.eval[0]["pixel_values"].abs().max() < 5  # normalised, not raw bytes


def test_balanced_train_samples_draw_the_same_count_per_class(sample_dir):
    from collections import Counter

    from hf_deit.config import DataConfig
    from hf_deit.data.datasets import ROW_INDEX_COLUMN, load_image_classification_data

    config = DataConfig(dataset_name=str(sample_dir), max_train_samples=105, balanced_train_samples=True)
    data = load_image_classification_data(config, seed=3)
    counts = Counter(data.train[data.label_column])
    assert sum(counts.values()) == 105 and sorted(counts.values()) == [10] * 5 + [11] * 5
    rows = data.train[ROW_INDEX_COLUMN]
    assert load_image_classification_data(config, seed=3).train[ROW_INDEX_COLUMN] == rows  # seeded
    assert load_image_classification_data(config, seed=4).train[ROW_INDEX_COLUMN] != rows


def test_balanced_draw_refuses_more_than_a_class_holds():
    import numpy as np
    import pytest

    from hf_deit.config import ConfigError
    from hf_deit.data.datasets import balanced_indices

    labels = np.array([0] * 5 + [1] * 50)
    with pytest.raises(ConfigError, match="class 0 has 5 training images, fewer than the 10"):
        balanced_indices(labels, 2, 20, seed=0)
    chosen = balanced_indices(labels, 2, 10, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [5, 5]
