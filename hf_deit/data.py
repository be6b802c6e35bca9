"""Image-classification data through ``datasets``: any Hub id, local copy or image folder.

The dataset is loaded once, its image/label columns and label names are discovered, and the
pixels are produced lazily by ``with_transform`` (decode + augment happen per batch in the
data-loader, never materialised to disk). Evaluation preprocessing *is* the student's image
processor, so what we evaluate is exactly what ``pipeline("image-classification")`` will see.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from datasets import ClassLabel, Dataset, DatasetDict, Image, load_dataset
from torchvision.transforms import v2

from .augment import build_rand_augment, build_random_erasing
from .config import DataConfig

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "images", "picture", "pixel_values")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "fine_label", "class", "target", "category")
EVAL_SPLIT_CANDIDATES = ("validation", "valid", "val", "test")


@dataclass
class ImageClassificationData:
    """What the rest of the pipeline needs to know about a dataset."""

    train: Dataset
    eval: Dataset
    image_column: str
    label_column: str
    label_names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.label_names)}


def _load_raw(config: DataConfig) -> DatasetDict:
    name = config.dataset_name
    if os.path.isdir(name) or not os.path.exists(name):
        # A folder (Hub layout or class sub-folders: `datasets` infers which) or a Hub id.
        raw = load_dataset(name, config.dataset_config_name, cache_dir=config.cache_dir)
    else:
        raise ValueError(f"dataset_name {name!r} is a file; pass a dataset folder or a Hub dataset id.")
    if not isinstance(raw, DatasetDict):
        raw = DatasetDict({config.train_split: raw})
    return raw


def find_image_column(dataset: Dataset, requested: Optional[str] = None) -> str:
    columns = list(dataset.column_names)
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"image_column {requested!r} is not in the dataset; its columns are {columns}. "
                "Set --image_column to one of them."
            )
        return requested
    by_type = [name for name, feature in dataset.features.items() if isinstance(feature, Image)]
    if by_type:
        return by_type[0]
    for candidate in IMAGE_COLUMN_CANDIDATES:
        if candidate in columns:
            return candidate
    raise ValueError(f"Could not find an image column among {columns}; set --image_column.")


def find_label_column(dataset: Dataset, requested: Optional[str] = None) -> str:
    columns = list(dataset.column_names)
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"label_column {requested!r} is not in the dataset; its columns are {columns}. "
                "Set --label_column to one of them."
            )
        return requested
    by_type = [name for name, feature in dataset.features.items() if isinstance(feature, ClassLabel)]
    if by_type:
        return by_type[0]
    for candidate in LABEL_COLUMN_CANDIDATES:
        if candidate in columns:
            return candidate
    raise ValueError(f"Could not find a label column among {columns}; set --label_column.")


def _label_names(dataset: Dataset, label_column: str) -> tuple[Dataset, list[str]]:
    """Names from the ``ClassLabel``; plain string/int labels are encoded into one."""
    feature = dataset.features[label_column]
    if not isinstance(feature, ClassLabel):
        dataset = dataset.class_encode_column(label_column)
        feature = dataset.features[label_column]
    return dataset, list(feature.names)


def load_image_classification_data(config: DataConfig, seed: int = 42) -> ImageClassificationData:
    """Load train/eval splits, discover columns and label names, apply sample limits."""
    raw = _load_raw(config)
    if config.train_split not in raw:
        raise ValueError(f"train_split {config.train_split!r} not found; the dataset has splits {list(raw)}.")
    train = raw[config.train_split]
    if config.eval_split is not None:
        if config.eval_split not in raw:
            raise ValueError(f"eval_split {config.eval_split!r} not found; the dataset has splits {list(raw)}.")
        eval_ = raw[config.eval_split]
    else:
        found = next((s for s in EVAL_SPLIT_CANDIDATES if s in raw and s != config.train_split), None)
        if found is not None:
            eval_ = raw[found]
            logger.info("Evaluating on split %r.", found)
        else:
            parts = train.train_test_split(test_size=config.train_val_split, seed=seed, stratify_by_column=None)
            train, eval_ = parts["train"], parts["test"]
            logger.info("No evaluation split: holding out %.0f%% of train.", 100 * config.train_val_split)

    image_column = find_image_column(train, config.image_column)
    label_column = find_label_column(train, config.label_column)
    train, label_names = _label_names(train, label_column)
    if not isinstance(eval_.features[label_column], ClassLabel):
        eval_ = eval_.cast_column(label_column, train.features[label_column])
    for split_name, split in (("train", train), ("eval", eval_)):
        if len(split) == 0:
            raise ValueError(f"The {split_name} split of {config.dataset_name!r} is empty.")

    if config.max_train_samples is not None:
        train = train.shuffle(seed=seed).select(range(min(config.max_train_samples, len(train))))
    if config.max_eval_samples is not None:
        eval_ = eval_.select(range(min(config.max_eval_samples, len(eval_))))
    keep = [image_column, label_column]
    train = train.select_columns(keep)
    eval_ = eval_.select_columns(keep)
    return ImageClassificationData(train, eval_, image_column, label_column, label_names)


def processor_size(image_processor: Any) -> tuple[int, int]:
    """(height, width) that an image processor produces (crop size when it centre-crops)."""
    size = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else image_processor.size
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"Unsupported image processor size {size}.")


def build_train_transform(image_processor: Any, config: DataConfig) -> Callable:
    """Per-image train augmentation at the processor's size/mean/std.

    Crop with padding and flip (the CIFAR standard), then the DeiT recipe's RandAugment on the PIL
    image and random erasing on the normalised tensor, each switched on by its config key.
    """
    height, width = processor_size(image_processor)
    mean, std = list(image_processor.image_mean), list(image_processor.image_std)
    steps: list[Any] = [v2.Resize((height, width), antialias=True)]
    if config.random_crop_padding > 0:
        steps.append(v2.RandomCrop((height, width), padding=config.random_crop_padding, padding_mode="reflect"))
    if config.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if config.rand_augment:
        steps.append(build_rand_augment(config.rand_augment, min(height, width), mean))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]
    if config.random_erasing > 0:
        steps.append(build_random_erasing(config.random_erasing))
    return v2.Compose(steps)


def _rgb(images: Sequence[Any]) -> list[Any]:
    return [image.convert("RGB") if image.mode != "RGB" else image for image in images]


def make_train_transform(data: ImageClassificationData, image_processor: Any, config: DataConfig) -> Callable:
    augment = build_train_transform(image_processor, config)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        pixels = torch.stack([augment(image) for image in _rgb(batch[data.image_column])])
        return {"pixel_values": pixels, "labels": torch.as_tensor(batch[data.label_column])}

    return transform


def make_eval_transform(data: ImageClassificationData, image_processor: Any) -> Callable:
    def transform(batch: dict[str, list]) -> dict[str, Any]:
        pixels = image_processor(_rgb(batch[data.image_column]), return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.as_tensor(batch[data.label_column])}

    return transform


def attach_transforms(data: ImageClassificationData, image_processor: Any, config: DataConfig) -> None:
    """Decode and augment lazily, batch by batch, in the data-loader workers."""
    data.train = data.train.with_transform(make_train_transform(data, image_processor, config))
    data.eval = data.eval.with_transform(make_eval_transform(data, image_processor))


def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }
