"""What a trainer or an evaluation reads, built from the loaded data: one function per product, none mutates.

:func:`train_set` gives the training images (decoded and augmented per image in the data-loader, or
decoded once into device-resident memory); :func:`evaluation_set` gives any split seen through an
image processor, as ``pipeline()`` would see it.
"""

from __future__ import annotations

from typing import Any, Optional

from datasets import Dataset

from ..config import DataConfig
from .datasets import ImageClassificationData, LabelledSplit
from .device import DeviceResidentImages, device_resident_train
from .transforms import TrainImages, build_train_transform, make_eval_transform, undecoded


def train_set(
    data: ImageClassificationData, image_processor: Any, config: DataConfig
) -> TrainImages | DeviceResidentImages:
    """``data.train`` at the processor's size and normalisation, augmented as ``config`` says."""
    if config.device_resident_data:
        return device_resident_train(data, image_processor, config)
    return TrainImages(
        undecoded(data.train, data.image_column),
        data.image_column,
        data.label_column,
        build_train_transform(image_processor, config),
        config.bad_images,
    )


def evaluation_set(
    split: Optional[Dataset], data: ImageClassificationData | LabelledSplit, image_processor: Any,
    config: Optional[DataConfig] = None,
) -> Optional[Dataset]:
    """``split`` (a split of ``data``: eval, selection, part of either) decoded robustly and preprocessed by
    ``image_processor``, lazily per batch; None stays None."""
    if split is None:
        return None
    return undecoded(split, data.image_column).with_transform(make_eval_transform(data, image_processor, config))
