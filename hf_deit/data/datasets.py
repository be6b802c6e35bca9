"""Image-classification data through ``datasets``: any Hub id, local copy or image folder.

The dataset is loaded once, its image/label columns and label names are discovered, and its
labels are checked; the pixels stay undecoded until :mod:`hf_deit.data.transforms` needs them.

Bad inputs (``docs/results/robustness.md``): labels outside the label set and empty splits stop the
run at load time, naming rows and values (one pass over the label column only, read from Arrow:
milliseconds for 50k rows). Every split carries a ``__row_index__`` column (the row's index in the
split as loaded) so that messages about a bad image or label point at a row the user can look up.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Image, load_dataset

from ..config import ConfigError, DataConfig

logger = logging.getLogger(__name__)

ROW_INDEX_COLUMN = "__row_index__"
# Per role: the datasets feature type that marks the column, then the usual names.
COLUMN_CANDIDATES = {
    "image": (Image, ("image", "img", "images", "picture", "pixel_values")),
    "label": (ClassLabel, ("label", "labels", "fine_label", "class", "target", "category")),
}
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
    eval_split_name: Optional[str] = None
    """Which split ``eval`` is (named, found, or "train (held-out part)"): what a model card reports on."""

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


def _looks_like_a_missing_path(name: str) -> bool:
    """Not a folder here, and not shaped like a Hub id (``name`` or ``namespace/name``) either: a relative or
    absolute path, or one whose first part is a folder here (``data/cifar10-typo``)."""
    if os.path.exists(name):
        return False
    parts = name.replace("\\", "/").strip("/").split("/")
    return name.startswith((".", "/", "~")) or len(parts) > 2 or os.path.isdir(parts[0])


def _not_found(name: str, reason: str) -> ConfigError:
    return ConfigError(
        f"dataset_name {name!r} is neither a folder on this machine nor a dataset the Hub could give ({reason})",
        "pass an existing folder (Hub layout, or one sub-folder of images per class) or a Hub dataset id such as "
        "uoft-cs/cifar10 (without internet: a local copy)",
    )


def _load_raw(config: DataConfig) -> DatasetDict:
    """A folder (Hub layout or class sub-folders: `datasets` infers which) or a Hub id, as a ``DatasetDict``."""
    name = config.dataset_name
    if os.path.isfile(name):
        raise ConfigError(f"dataset_name {name!r} is a file", "pass a dataset folder or a Hub dataset id")
    if _looks_like_a_missing_path(name):
        raise _not_found(name, "no such folder, and not a Hub id")
    try:
        raw = load_dataset(name, config.dataset_config_name, cache_dir=config.cache_dir)
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            raise
        raise ValueError(
            f"A split of {name!r} is empty, so `datasets` cannot load it ({error}). Remove or fill the empty "
            "split's data files, or point dataset_name at a dataset whose splits all hold images."
        ) from error
    except (ConnectionError, FileNotFoundError) as error:
        if os.path.isdir(name):
            raise
        raise _not_found(name, f"{type(error).__name__}: {error}") from error
    if not isinstance(raw, DatasetDict):
        raw = DatasetDict({config.train_split: raw})
    return raw


def find_column(dataset: Dataset, role: str, requested: Optional[str] = None) -> str:
    """The ``role`` ("image" or "label") column: ``requested`` if given, else the first column of the role's
    feature type, else the first usual name present."""
    columns = [name for name in dataset.column_names if name != ROW_INDEX_COLUMN]
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"{role}_column {requested!r} is not in the dataset; its columns are {columns}. "
                f"Set --{role}_column to one of them."
            )
        return requested
    feature_type, names = COLUMN_CANDIDATES[role]
    by_type = [name for name, feature in dataset.features.items() if isinstance(feature, feature_type)]
    found = by_type + [name for name in names if name in columns]
    if not found:
        raise ValueError(f"Could not find {'an' if role == 'image' else 'a'} {role} column among {columns}; "
                         f"set --{role}_column.")
    return found[0]


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
    a thousandfold slower)."""
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


def _split(raw: DatasetDict, name: str, role: str) -> Dataset:
    if name not in raw:
        raise ConfigError(f"{role} {name!r} is not a split of this dataset (it has {', '.join(map(repr, raw))})",
                          f"pass --{role} with one of them")
    return _with_row_index(raw[name])


def _too_small_to_hold_out(size: int, fraction: float) -> bool:
    return round(size * fraction) < 1 or round(size * (1 - fraction)) < 1


def _train_and_eval(raw: DatasetDict, config: DataConfig, seed: int) -> tuple[Dataset, Dataset, str]:
    """The train split and the evaluation split (named, found, or held out of train), and its name."""
    train = _split(raw, config.train_split, "train_split")
    _require_rows(train, "train", config)
    if config.eval_split is not None:
        return train, _split(raw, config.eval_split, "eval_split"), config.eval_split
    found = next((s for s in EVAL_SPLIT_CANDIDATES if s in raw and s != config.train_split), None)
    if found is not None:
        logger.info("Evaluating on split %r.", found)
        return train, _with_row_index(raw[found]), found
    if _too_small_to_hold_out(len(train), config.train_val_split):
        raise ValueError(
            f"The train split of {config.dataset_name!r} has only {len(train)} image(s): too few to hold out "
            f"train_val_split={config.train_val_split} for evaluation. Add images, set eval_split, or change "
            "train_val_split."
        )
    parts = train.train_test_split(test_size=config.train_val_split, seed=seed, stratify_by_column=None)
    logger.info("No evaluation split: holding out %.0f%% of train.", 100 * config.train_val_split)
    return parts["train"], parts["test"], f"{config.train_split} (held-out part)"


def _hold_out_selection(train: Dataset, config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    if _too_small_to_hold_out(len(train), config.train_val_split):
        raise ValueError(
            f"load_best_model_at_end selects checkpoints on train_val_split={config.train_val_split} of the "
            f"{len(train)} training images, which leaves no image on one side. Add images, change "
            "train_val_split, or set load_best_model_at_end: false to report the last epoch."
        )
    parts = train.train_test_split(test_size=config.train_val_split, seed=seed)
    return parts["train"], parts["test"]


def balanced_indices(labels: np.ndarray, num_classes: int, count: int, seed: int) -> np.ndarray:
    """``count`` indices with ``count // num_classes`` per class (the remainder to randomly chosen classes)."""
    rng = np.random.default_rng(seed)
    per_class = np.full(num_classes, count // num_classes)
    per_class[rng.permutation(num_classes)[: count % num_classes]] += 1
    chosen = []
    for label, wanted in enumerate(per_class):
        members = np.flatnonzero(labels == label)
        if len(members) < wanted:
            raise ConfigError(f"class {label} has {len(members)} training images, fewer than the {wanted} that "
                              f"max_train_samples={count} draws per class", "lower max_train_samples")
        chosen.append(rng.permutation(members)[:wanted])
    return np.sort(np.concatenate(chosen))


def _subset(train: Dataset, label_column: str, num_classes: int, config: DataConfig, seed: int) -> Dataset:
    count = min(config.max_train_samples, len(train))
    if config.balanced_train_samples:
        return train.select(balanced_indices(np.asarray(train[label_column]), num_classes, count, seed))
    return train.shuffle(seed=seed).select(range(count))


def load_image_classification_data(
    config: DataConfig, seed: int = 42, hold_out_for_selection: bool = False
) -> ImageClassificationData:
    """Load train/eval splits, discover columns and label names, check labels, apply sample limits.

    ``hold_out_for_selection`` (a run that picks its best checkpoint) also holds ``train_val_split``
    of train out as ``selection``: checkpoints are chosen there and the evaluation split (CIFAR-10's
    test split) is only reported, so the reported accuracy is not selected on itself.
    """
    train, eval_, eval_name = _train_and_eval(_load_raw(config), config, seed)
    _require_rows(eval_, f"evaluation ({eval_name})", config)
    image_column = find_column(train, "image", config.image_column)
    label_column = find_column(train, "label", config.label_column)
    train, label_names = _label_names(train, label_column)
    if not isinstance(eval_.features[label_column], ClassLabel):
        eval_ = eval_.cast_column(label_column, train.features[label_column])
    check_labels(train, label_column, label_names, "train")
    check_labels(eval_, label_column, label_names, str(eval_name))
    if config.max_train_samples is not None:
        train = _subset(train, label_column, len(label_names), config, seed)
    if config.max_eval_samples is not None:
        eval_ = eval_.select(range(min(config.max_eval_samples, len(eval_))))
    keep = [image_column, label_column, ROW_INDEX_COLUMN]
    selection = None
    if hold_out_for_selection:
        train, selection = _hold_out_selection(train, config, seed)
        selection = selection.select_columns(keep)
        logger.info("Selecting checkpoints on %d images held out of train; reporting %s.", len(selection), eval_name)
    return ImageClassificationData(
        train.select_columns(keep), eval_.select_columns(keep), image_column, label_column, label_names, selection,
        str(eval_name),
    )


@dataclass
class LabelledSplit:
    """One split on its own (what an evaluation reads), its columns found and its labels checked."""

    dataset: Dataset
    image_column: str
    label_column: str
    label_names: list[str]


def load_split(config: DataConfig, split: str) -> LabelledSplit:
    """The split ``split`` of ``config.dataset_name`` (at most ``max_eval_samples`` images), checked as in training."""
    dataset = _split(_load_raw(config), split, "split")
    _require_rows(dataset, split, config)
    image_column = find_column(dataset, "image", config.image_column)
    label_column = find_column(dataset, "label", config.label_column)
    dataset, label_names = _label_names(dataset, label_column)
    check_labels(dataset, label_column, label_names, split)
    if config.max_eval_samples is not None:
        dataset = dataset.select(range(min(config.max_eval_samples, len(dataset))))
    dataset = dataset.select_columns([image_column, label_column, ROW_INDEX_COLUMN])
    return LabelledSplit(dataset, image_column, label_column, label_names)
