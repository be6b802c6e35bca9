"""Per-image decoding and augmentation, and the evaluation transform: what the data-loader runs.

Evaluation preprocessing *is* the student's image processor, so what we evaluate is what
``pipeline("image-classification")`` will see. Images are decoded here by
:func:`hf_deit.data.images.decode_image`, inside the batch transform where they would be decoded
anyway, so detecting a corrupt one costs nothing up front (a pre-scan would decode the whole
dataset once more); with ``bad_images: skip`` the row is dropped from its batch with a warning
naming it, with ``fail`` the run stops naming it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Optional, Sequence

import torch
from datasets import Dataset, Image
from torchvision.transforms import v2

from ..config import DataConfig
from ..modeling import processor_size
from .augment import build_rand_augment, build_random_erasing
from .datasets import ROW_INDEX_COLUMN
from .images import BadImageError, decode_image, describe_source
from .samplers import preserved_cpu_rng, sample_key, seed_all_cpu

logger = logging.getLogger(__name__)

# The official DeiT recipe resamples bicubic everywhere; so do the student processor and pipeline().
TRAIN_INTERPOLATION = v2.InterpolationMode.BICUBIC
_WARN_FIRST_SKIPS = 10


def build_train_transform(image_processor: Any, config: DataConfig) -> Callable:
    """Per-image train augmentation at the processor's size/mean/std.

    Crop with padding and flip (the CIFAR standard), then the DeiT recipe's RandAugment on the PIL
    image and random erasing on the normalised tensor, each switched on by its config key. Every
    resampling step is bicubic, as the student's image processor (hence evaluation and
    ``pipeline()``) and the official recipe are.
    """
    height, width = processor_size(image_processor)
    mean, std = list(image_processor.image_mean), list(image_processor.image_std)
    steps: list[Any] = [v2.Resize((height, width), interpolation=TRAIN_INTERPOLATION, antialias=True)]
    if config.random_crop_padding > 0:
        steps.append(
            v2.RandomCrop(
                (height, width), padding=config.random_crop_padding, padding_mode=config.random_crop_padding_mode
            )
        )
    if config.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if config.rand_augment:
        steps.append(build_rand_augment(config.rand_augment, min(height, width), mean))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]
    if config.random_erasing > 0:
        steps.append(build_random_erasing(config.random_erasing))
    return v2.Compose(steps)


class _SkipReport:
    """Per-process count of skipped images: the first few are named, then every 100th is summarised."""

    def __init__(self) -> None:
        self.count = 0
        self.rows: list[str] = []

    def add(self, where: str, error: Exception) -> None:
        self.count += 1
        if len(self.rows) < 5:
            self.rows.append(where)
        if self.count <= _WARN_FIRST_SKIPS or self.count % 100 == 0:
            logger.warning(
                "Skipped an image that cannot be decoded: %s (%s). %d skipped so far in this process (first: %s). "
                "Set bad_images: fail to stop on them instead.",
                where,
                error,
                self.count,
                "; ".join(self.rows),
            )


SKIPPED_IMAGES = _SkipReport()


def decode_rows(
    batch: dict[str, list], image_column: str, label_column: str, split_name: str, bad_images: str = "skip"
) -> tuple[list[Any], list[Any], list[int]]:
    """RGB images, labels and batch positions of the rows whose image decodes.

    ``bad_images="fail"`` raises a :class:`BadImageError` naming the row; ``"skip"`` leaves it out.
    A batch in which no image decodes is an error either way: it would be empty.
    """
    values, labels = batch[image_column], batch[label_column]
    rows = batch.get(ROW_INDEX_COLUMN) or [None] * len(values)
    images, kept_labels, kept = [], [], []
    failures = []
    for position, (value, label, row) in enumerate(zip(values, labels, rows)):
        try:
            images.append(decode_image(value))
        except BadImageError as error:
            source = describe_source(value)
            where = f"{split_name} row {row}" + (f" ({source})" if source else "")
            if bad_images == "fail":
                raise BadImageError(
                    f"Cannot decode the image of {where}: {error}. Repair or remove that row, or set "
                    "bad_images: skip to leave undecodable images out (resume with --resume_from_checkpoint true)."
                ) from error
            SKIPPED_IMAGES.add(where, error)
            failures.append(where)
            continue
        kept_labels.append(label)
        kept.append(position)
    if not images:
        raise BadImageError(
            f"None of the {len(values)} image(s) of a {split_name} batch can be decoded ({'; '.join(failures[:5])}): "
            "the dataset looks broken or is not an image dataset. Check dataset_name and image_column."
        )
    return images, kept_labels, kept


class TrainImages(torch.utils.data.Dataset):
    """The training split, decoded and augmented per image.

    Indexed by plain rows, or by the :class:`hf_deit.data.samplers.SampleKey` s of a ``KeyedSampler``
    (or ``(row, seed)`` tuples): each keyed image is augmented under its own seed, so its
    crop/flip/RandAugment/erasing depend only on (seed, epoch, position), not on what was drawn
    before (exact resume, any worker count). Unkeyed rows draw from the global RNG as before.
    ``__getitems__`` fetches and decodes a whole batch at once, as ``datasets`` does.
    """

    accepts_sample_keys = True

    def __init__(self, dataset: Dataset, image_column: str, label_column: str, augment: Callable, bad_images: str):
        self.dataset = dataset
        self.image_column = image_column
        self.label_column = label_column
        self.augment = augment
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def column_names(self) -> list[str]:
        return self.dataset.column_names

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
        rows, seeds = zip(*(sample_key(key) for key in keys))
        batch = self.dataset[list(rows)]
        images, labels, kept = decode_rows(batch, self.image_column, self.label_column, "train", self.bad_images)
        in_worker = torch.utils.data.get_worker_info() is not None
        keyed = seeds[0] is not None
        with preserved_cpu_rng() if keyed and not in_worker else contextlib.nullcontext():
            examples = []
            for image, label, position in zip(images, labels, kept):
                if keyed:
                    seed_all_cpu(seeds[position])
                examples.append({"pixel_values": self.augment(image), "labels": torch.as_tensor(label)})
        return examples


def make_eval_transform(data: Any, image_processor: Any, config: Optional[DataConfig] = None) -> Callable:
    """Batch transform for evaluation: robust decoding + the student's image processor.

    ``data`` names the columns (an :class:`~hf_deit.data.datasets.ImageClassificationData` or a
    :class:`~hf_deit.data.datasets.LabelledSplit`). Accepts decoded images (a ``datasets`` split as
    loaded) as well as raw bytes/paths (``Image(decode=False)``, as
    :func:`hf_deit.data.inputs.evaluation_set` sets up). A skipped image leaves the
    batch shorter, so accuracy is computed over the images that exist.
    """
    bad_images = config.bad_images if config is not None else DataConfig.bad_images

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images, labels, _ = decode_rows(batch, data.image_column, data.label_column, "evaluation", bad_images)
        pixels = image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.as_tensor(labels)}

    return transform


def undecoded(split: Dataset, image_column: str) -> Dataset:
    """The same split with its image column left as bytes/paths (a metadata-only cast)."""
    feature = split.features.get(image_column)
    if isinstance(feature, Image) and feature.decode:
        return split.cast_column(image_column, Image(decode=False))
    return split


def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }
