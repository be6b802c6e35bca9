"""Image-classification data through ``datasets``: any Hub id, local copy or image folder.

The dataset is loaded once, its image/label columns and label names are discovered, and the
pixels are produced lazily (decode + augment happen per batch in the data-loader, never
materialised to disk). Evaluation preprocessing *is* the student's image processor, so what we
evaluate is what ``pipeline("image-classification")`` will see.

Bad inputs (``docs/results/robustness.md``): labels outside the label set and empty splits stop the
run at load time, naming rows and values (one pass over the label column only, read from Arrow:
milliseconds for 50k rows). Images are decoded by :func:`hf_deit.images.decode_image` inside the batch transform,
where they would be decoded anyway, so detecting a corrupt one costs nothing extra up front (a
pre-scan would decode the whole dataset once more: minutes on CIFAR, hours on ImageNet); with
``bad_images: skip`` the row is dropped from its batch with a warning naming it, with ``fail`` the
run stops naming it. Every split carries a ``__row_index__`` column (the row's index in the split as
loaded) so that those messages point at a row the user can look up.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Image, load_dataset
from torchvision.transforms import v2

from .augment import build_rand_augment, build_random_erasing
from .config import DataConfig
from .determinism import preserved_cpu_rng, sample_key, seed_all_cpu
from .images import BadImageError, decode_image, describe_source

logger = logging.getLogger(__name__)

ROW_INDEX_COLUMN = "__row_index__"
# The official DeiT recipe resamples bicubic everywhere; so do the student processor and pipeline().
TRAIN_INTERPOLATION = v2.InterpolationMode.BICUBIC
_WARN_FIRST_SKIPS = 10

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
    # Held out of train for checkpoint selection (``load_best_model_at_end``), never the reported split.
    selection: Optional[Dataset] = None

    def during_training(self, samples: Optional[int] = None) -> Dataset:
        """What periodic evaluations read: the selection split if checkpoints are selected, else the first
        ``samples`` evaluation images (all when ``None``)."""
        if self.selection is not None:
            return self.selection
        if samples is None or samples >= len(self.eval):
            return self.eval
        return self.eval.select(range(samples))

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
        try:
            raw = load_dataset(name, config.dataset_config_name, cache_dir=config.cache_dir)
        except ValueError as error:
            if "corresponds to no data" not in str(error):
                raise
            raise ValueError(
                f"A split of {name!r} is empty, so `datasets` cannot load it ({error}). Remove or fill the empty "
                "split's data files, or point dataset_name at a dataset whose splits all hold images."
            ) from error
    else:
        raise ValueError(f"dataset_name {name!r} is a file; pass a dataset folder or a Hub dataset id.")
    if not isinstance(raw, DatasetDict):
        raw = DatasetDict({config.train_split: raw})
    return raw


def find_image_column(dataset: Dataset, requested: Optional[str] = None) -> str:
    columns = [name for name in dataset.column_names if name != ROW_INDEX_COLUMN]
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
    columns = [name for name in dataset.column_names if name != ROW_INDEX_COLUMN]
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


def _require_rows(split: Dataset, split_name: str, config: DataConfig) -> None:
    if len(split) == 0:
        raise ValueError(
            f"The {split_name} split of {config.dataset_name!r} is empty (0 rows). Check dataset_name, "
            f"dataset_config_name and the split names (train_split / eval_split), or the data files behind it."
        )


def _with_row_index(split: Dataset) -> Dataset:
    """Number the rows as loaded (before any shuffle/select) so errors can name them; a cheap
    in-memory column joined to the memory-mapped table, no data rewritten."""
    if ROW_INDEX_COLUMN in split.column_names:
        return split
    return split.add_column(ROW_INDEX_COLUMN, np.arange(len(split), dtype=np.int64))


def _column(split: Dataset, name: str) -> np.ndarray:
    """One column as a NumPy array straight from Arrow (the "numpy" format converts row by row:
    0.8 s for 5,000 labels against 1 ms)."""
    return np.asarray(split.with_format("arrow")[name].to_numpy())


def check_labels(split: Dataset, label_column: str, label_names: Sequence[str], split_name: str) -> None:
    """Every label must index the label set: stop naming the first offending rows and values.

    Out-of-range labels would crash cross-entropy on some device mid-run (or, on some backends,
    read garbage); -1 is how many datasets mark unlabelled rows (e.g. a test split).
    """
    def row_index(positions: np.ndarray) -> np.ndarray:
        if ROW_INDEX_COLUMN in split.column_names:
            return _column(split, ROW_INDEX_COLUMN)[positions]
        return positions

    column = split.with_format("arrow")[label_column]
    if column.null_count:
        missing = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(
            f"{missing.size} row(s) of the {split_name} split have no label (first: rows "
            f"{', '.join(str(int(r)) for r in row_index(missing[:5]))}). Fill or filter them out of the dataset."
        )
    labels = np.asarray(column.to_numpy())
    if labels.dtype.kind not in "iu":
        return
    bad = np.flatnonzero((labels < 0) | (labels >= len(label_names)))
    if bad.size == 0:
        return
    rows = row_index(bad[:5])
    shown = ", ".join(f"row {int(row)}: {int(labels[i])}" for row, i in zip(rows, bad[:5]))
    hint = (
        " Negative labels usually mark unlabelled rows (a test split without labels): evaluate on another split "
        "(eval_split) or filter those rows out."
        if (labels[bad] < 0).any()
        else " Fix the labels or the ClassLabel names in the dataset's features."
    )
    raise ValueError(
        f"{bad.size} label(s) of the {split_name} split are outside the {len(label_names)} classes "
        f"{list(label_names)} (valid: 0..{len(label_names) - 1}); first: {shown}.{hint}"
    )


def load_image_classification_data(
    config: DataConfig, seed: int = 42, hold_out_for_selection: bool = False
) -> ImageClassificationData:
    """Load train/eval splits, discover columns and label names, check labels, apply sample limits.

    ``hold_out_for_selection`` (a run that picks its best checkpoint) also holds ``train_val_split``
    of train out as ``selection``: checkpoints are chosen there and the evaluation split (CIFAR-10's
    test split) is only reported, so the reported accuracy is not selected on itself.
    """
    raw = _load_raw(config)
    if config.train_split not in raw:
        raise ValueError(f"train_split {config.train_split!r} not found; the dataset has splits {list(raw)}.")
    train = _with_row_index(raw[config.train_split])
    _require_rows(train, "train", config)
    eval_name = config.eval_split
    if config.eval_split is not None:
        if config.eval_split not in raw:
            raise ValueError(f"eval_split {config.eval_split!r} not found; the dataset has splits {list(raw)}.")
        eval_ = _with_row_index(raw[config.eval_split])
    else:
        found = next((s for s in EVAL_SPLIT_CANDIDATES if s in raw and s != config.train_split), None)
        if found is not None:
            eval_ = _with_row_index(raw[found])
            eval_name = found
            logger.info("Evaluating on split %r.", found)
        else:
            eval_name = f"{config.train_split} (held-out part)"
            if round(len(train) * config.train_val_split) < 1 or round(len(train) * (1 - config.train_val_split)) < 1:
                raise ValueError(
                    f"The train split of {config.dataset_name!r} has only {len(train)} image(s): too few to hold out "
                    f"train_val_split={config.train_val_split} for evaluation. Add images, set eval_split, or change "
                    "train_val_split."
                )
            parts = train.train_test_split(test_size=config.train_val_split, seed=seed, stratify_by_column=None)
            train, eval_ = parts["train"], parts["test"]
            logger.info("No evaluation split: holding out %.0f%% of train.", 100 * config.train_val_split)
    _require_rows(eval_, f"evaluation ({eval_name})", config)

    image_column = find_image_column(train, config.image_column)
    label_column = find_label_column(train, config.label_column)
    train, label_names = _label_names(train, label_column)
    if not isinstance(eval_.features[label_column], ClassLabel):
        eval_ = eval_.cast_column(label_column, train.features[label_column])
    check_labels(train, label_column, label_names, "train")
    check_labels(eval_, label_column, label_names, str(eval_name))

    if config.max_train_samples is not None:
        train = train.shuffle(seed=seed).select(range(min(config.max_train_samples, len(train))))
    if config.max_eval_samples is not None:
        eval_ = eval_.select(range(min(config.max_eval_samples, len(eval_))))
    keep = [image_column, label_column, ROW_INDEX_COLUMN]
    selection = None
    if hold_out_for_selection:
        if round(len(train) * config.train_val_split) < 1 or round(len(train) * (1 - config.train_val_split)) < 1:
            raise ValueError(
                f"load_best_model_at_end selects checkpoints on train_val_split={config.train_val_split} of the "
                f"{len(train)} training images, which leaves no image on one side. Add images, change "
                "train_val_split, or set load_best_model_at_end: false to report the last epoch."
            )
        parts = train.train_test_split(test_size=config.train_val_split, seed=seed)
        train, selection = parts["train"], parts["test"].select_columns(keep)
        logger.info("Selecting checkpoints on %d images held out of train; reporting %s.", len(selection), eval_name)
    train = train.select_columns(keep)
    eval_ = eval_.select_columns(keep)
    return ImageClassificationData(train, eval_, image_column, label_column, label_names, selection)


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

    Indexed by plain rows, or by the :class:`hf_deit.determinism.SampleKey` s of a ``KeyedSampler``
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


def make_eval_transform(
    data: ImageClassificationData, image_processor: Any, config: Optional[DataConfig] = None
) -> Callable:
    """Batch transform for evaluation: robust decoding + the student's image processor.

    Accepts decoded images (a ``datasets`` split as loaded) as well as raw bytes/paths
    (``Image(decode=False)``, as :func:`attach_transforms` sets up). A skipped image leaves the
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


def attach_transforms(data: ImageClassificationData, image_processor: Any, config: DataConfig) -> None:
    """Decode and augment lazily, batch by batch, in the data-loader workers.

    ``data.train`` becomes a :class:`TrainImages` (seeded per-image augmentation), ``data.eval`` a
    ``datasets`` split with the evaluation transform; both decode with :func:`decode_rows`.
    """
    augment = build_train_transform(image_processor, config)
    data.train = TrainImages(
        undecoded(data.train, data.image_column), data.image_column, data.label_column, augment, config.bad_images
    )
    data.eval = undecoded(data.eval, data.image_column).with_transform(
        make_eval_transform(data, image_processor, config)
    )
    if data.selection is not None:
        data.selection = undecoded(data.selection, data.image_column).with_transform(
            make_eval_transform(data, image_processor, config)
        )


def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }
