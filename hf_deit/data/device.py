"""Device-resident training data for small datasets (CIFAR): decode once, augment whole batches on the device.

The trick behind the CIFAR-10 speed records (KellerJordan/cifar10-airbench): the whole training split
is decoded once into one ``uint8`` tensor ``(N, 3, H, W)`` on the training device (CIFAR-10: 150 MB),
and each step gathers its batch by index and augments it there, in one vectorised pass: random crop
with reflect (or constant) padding, horizontal flip and the image processor's normalisation, fused into a single
gather on ``uint8`` plus one multiply-add. No per-image Python, no decoding, no worker processes,
no host-to-device copy of pixels.

The same as the data-loader path (``hf_deit.data.transforms.build_train_transform``): the crop draws top/left
offsets uniformly in ``[0, 2 * padding]`` of the reflect-padded image (torchvision's
``RandomCrop(padding=p, padding_mode="reflect")``), the flip has probability 1/2, and an
un-augmented image is exactly the processor's evaluation tensor (rescale 1/255, normalise).
Images whose size differs from the processor's are resized once at decode time, as the train
transform's first step does. RandAugment (PIL operations) and random erasing are not available on
this path: :class:`hf_deit.config.DataConfig` rejects them with ``device_resident_data: true``.
Mixup/CutMix run on the device inside the loss as always, and repeated augmentation is the sampler's.

Sharding, order and seeds reuse the Trainer's machinery: the dataset is a map-style dataset whose
``__getitems__`` hands the sampler's keys straight to :meth:`DeviceResidentImages.collate`, and
:func:`device_dataloader` wraps it in a plain ``DataLoader`` (no workers) prepared by Accelerate.
So the sampler is the run's usual one (seeded random order or repeated augmentation, wrapped in
:class:`hf_deit.data.samplers.KeyedSampler`), each rank receives its disjoint share of the epoch's
batches from Accelerate's ``BatchSamplerShard``, ``set_epoch`` and resume (``skip_first_batches``)
work unchanged, and a batch's crops/flips are drawn from a CPU generator seeded by the key of its
first image, a function of (seed, epoch, position): the same on any device, any world size, after
a resume.

Flips only (``random_crop_padding: 0``): each image then has just two views (as is, mirrored), so anything
computed per view can be computed once for the whole split (:meth:`DeviceResidentImages.view_pixels`) and
handed out with each batch (:meth:`DeviceResidentImages.attach_view_targets`): the distillation trainer
caches its teacher's logits so (``distillation_teacher_cache``).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ..config import DataConfig
from ..modeling import processor_size
from .datasets import ImageClassificationData
from .samplers import sample_key
from .transforms import TRAIN_INTERPOLATION, decode_rows, undecoded

logger = logging.getLogger(__name__)

DECODE_CHUNK = 1000
LARGE_RESIDENT_BYTES = 4 * 1024**3


def _reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Indices into ``[0, size)`` of positions in a reflect-padded axis (torch's / torchvision's "reflect":
    the edge pixel is not repeated, -1 -> 1, size -> size - 2)."""
    positions = positions.abs()
    return torch.where(positions > size - 1, 2 * (size - 1) - positions, positions)


def _padded(positions: torch.Tensor, size: int, padding_mode: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Source indices of positions in a padded axis, and (``constant``) which of them lie inside the image."""
    if padding_mode == "reflect":
        return _reflect(positions, size), None
    return positions.clamp(0, size - 1), (positions >= 0) & (positions < size)


def crop_flip_normalise(
    images: torch.Tensor,
    index: torch.Tensor,
    tops: torch.Tensor,
    lefts: torch.Tensor,
    flips: torch.Tensor,
    padding: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    padding_mode: str = "reflect",
) -> torch.Tensor:
    """A batch of ``images[index]``, each cropped at its own (top, left) of its padded copy,
    flipped where ``flips``, as ``float32`` ``x * scale + shift`` (``scale``/``shift``: ``(1, 3, 1, 1)``).

    One advanced-indexing gather on the ``uint8`` source: no padded copy, no loop over images.
    ``tops``/``lefts`` are offsets in ``[0, 2 * padding]`` of the padded image (``padding``: an
    un-cropped image); all index tensors live on ``images.device``. ``padding_mode`` is torchvision's
    ``reflect`` or ``constant`` (black pixels, zeros before normalisation).
    """
    _, channels, height, width = images.shape
    device = images.device
    rows, rows_inside = _padded(tops[:, None] - padding + torch.arange(height, device=device), height, padding_mode)
    columns = lefts[:, None] - padding + torch.arange(width, device=device)  # (B, W)
    columns, columns_inside = _padded(torch.where(flips[:, None], columns.flip(1), columns), width, padding_mode)
    pixels = images[
        index[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        columns[:, None, None, :],
    ]
    if rows_inside is not None:
        pixels = pixels * (rows_inside[:, None, :, None] & columns_inside[:, None, None, :])
    return torch.addcmul(shift, pixels.to(torch.float32), scale)


class DeviceResidentImages(torch.utils.data.Dataset):
    """A decoded training split (``uint8`` ``(N, 3, H, W)`` + labels) that makes augmented batches on its device.

    ``__getitems__`` returns the sampler keys unchanged; :meth:`collate` turns a batch of keys into
    ``{"pixel_values": float32 (B, 3, H, W), "labels": int64 (B,)}`` on the device. Keys are rows or
    :class:`hf_deit.data.samplers.SampleKey` s (``accepts_sample_keys``): with seeded keys a batch's
    augmentation depends only on the seed of its first key; plain rows draw from torch's global CPU RNG.
    """

    accepts_sample_keys = True

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        random_crop_padding: int = 4,
        horizontal_flip: bool = True,
        padding_mode: str = "reflect",
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}.")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images.")
        height, width = images.shape[-2:]
        if not 0 <= random_crop_padding < min(height, width):
            raise ValueError(
                f"random_crop_padding={random_crop_padding} must be smaller than the image side ({height}x{width}) "
                "for reflect padding; lower it or set device_resident_data: false."
            )
        self.images = images
        self.labels = labels.to(torch.long)
        self.padding = int(random_crop_padding)
        self.padding_mode = padding_mode
        self.horizontal_flip = bool(horizontal_flip)
        mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift
        self.scale = (1.0 / (255.0 * std)).to(images.device)
        self.shift = (-mean / std).to(images.device)
        self.view_targets: Optional[torch.Tensor] = None
        self.view_target_name = "teacher_logits"

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size() + self.labels.numel() * 8

    def to(self, device: Any) -> "DeviceResidentImages":
        """Move to ``device`` (in place; a no-op when already there) and return self."""
        device = torch.device(device)
        if self.images.device != device:
            self.images, self.labels = self.images.to(device), self.labels.to(device)
            self.scale, self.shift = self.scale.to(device), self.shift.to(device)
        if self.view_targets is not None:
            self.view_targets = self.view_targets.to(device)
        return self

    @property
    def views_per_image(self) -> Optional[int]:
        """How many distinct training views each image has: 2 with flips only, 1 with neither crop nor flip,
        ``None`` with crops (too many to enumerate)."""
        if self.padding > 0:
            return None
        return 2 if self.horizontal_flip else 1

    def view_pixels(self, views: torch.Tensor) -> torch.Tensor:
        """The training batch of the given views (``row * views_per_image + flipped``), as :meth:`collate`
        makes it: exactly what the model sees when the sampler draws that row with that flip."""
        per_image = self.views_per_image
        if per_image is None:
            raise ValueError(
                f"With random_crop_padding={self.padding} each image has too many crops to enumerate its views; "
                "set random_crop_padding: 0 (flips only)."
            )
        views = views.to(self.device)
        rows, flips = views // per_image, (views % per_image).bool()
        offsets = torch.zeros_like(rows)
        return crop_flip_normalise(
            self.images, rows, offsets, offsets, flips, 0, self.scale, self.shift, self.padding_mode
        )

    def attach_view_targets(self, targets: Optional[torch.Tensor], name: str = "teacher_logits") -> None:
        """Hand ``targets[view]`` (one row per view, :meth:`view_pixels`' order) out with each batch under
        ``name``; ``None`` detaches them."""
        if targets is not None and targets.shape[0] != len(self) * (self.views_per_image or 0):
            raise ValueError(
                f"{targets.shape[0]} view targets for {len(self)} images of {self.views_per_image} views each."
            )
        self.view_targets = None if targets is None else targets.to(self.device)
        self.view_target_name = name

    def __getitems__(self, keys: Sequence[Any]) -> list[Any]:
        return list(keys)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        batch = self.collate([key])
        return {name: value[0] for name, value in batch.items()}

    def draw(self, batch_size: int, seed: Optional[int]) -> torch.Tensor:
        """``(3, B)`` int64 on the CPU: crop tops, crop lefts, flips (0/1); from ``seed`` or the global RNG."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        offsets = torch.randint(0, 2 * self.padding + 1, (2, batch_size), generator=generator)
        flips = (
            torch.rand(batch_size, generator=generator) < 0.5
            if self.horizontal_flip
            else torch.zeros(batch_size, dtype=torch.bool)
        )
        return torch.cat([offsets, flips[None].long()])

    def collate(self, keys: Sequence[Any]) -> dict[str, torch.Tensor]:
        rows, seeds = zip(*(sample_key(key) for key in keys))
        # Rows and random draws travel to the device in one small copy.
        drawn = torch.cat([torch.tensor(rows, dtype=torch.long)[None], self.draw(len(rows), seeds[0])])
        index, tops, lefts, flips = drawn.to(self.device, non_blocking=True)
        pixels = crop_flip_normalise(
            self.images, index, tops, lefts, flips.bool(), self.padding, self.scale, self.shift, self.padding_mode
        )
        batch = {"pixel_values": pixels, "labels": self.labels[index]}
        if self.view_targets is not None:
            per_image = self.views_per_image  # flips are all 0 without horizontal_flip
            batch[self.view_target_name] = self.view_targets[index * per_image + flips]
        return batch


def _to_uint8_chw(image: Any, resize: v2.Resize) -> torch.Tensor:
    if image.size != (resize.size[1], resize.size[0]):  # PIL size is (width, height)
        image = resize(image)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def device_resident_train(
    data: ImageClassificationData, image_processor: Any, config: DataConfig
) -> DeviceResidentImages:
    """``data.train`` decoded once (on the CPU, at the processor's size) into :class:`DeviceResidentImages`.

    Undecodable rows follow ``config.bad_images`` (skipped with a warning naming them, or the run stops);
    the crop and flip are ``config``'s. The trainer moves the result to its device (:func:`device_dataloader`).
    """
    height, width = processor_size(image_processor)
    resize = v2.Resize((height, width), interpolation=TRAIN_INTERPOLATION, antialias=True)  # as the train transform
    split = undecoded(data.train, data.image_column)
    images, labels = [], []
    for start in range(0, len(split), DECODE_CHUNK):
        batch = split[start : start + DECODE_CHUNK]
        decoded, kept_labels, _ = decode_rows(batch, data.image_column, data.label_column, "train", config.bad_images)
        images += [_to_uint8_chw(image, resize) for image in decoded]
        labels += kept_labels
    dataset = DeviceResidentImages(
        torch.stack(images),
        torch.as_tensor(labels, dtype=torch.long),
        image_processor.image_mean,
        image_processor.image_std,
        random_crop_padding=config.random_crop_padding,
        horizontal_flip=config.horizontal_flip,
        padding_mode=config.random_crop_padding_mode,
    )
    logger.info(
        "Device-resident training data: %d images of %dx%d, %.1f MB.", len(dataset), height, width, dataset.nbytes / 1e6
    )
    if dataset.nbytes > LARGE_RESIDENT_BYTES:
        logger.warning(
            "device_resident_data holds %.1f GB of images on every training device (each rank keeps a full copy); "
            "it is meant for small datasets such as CIFAR. Set device_resident_data: false if memory runs short.",
            dataset.nbytes / 1e9,
        )
    return dataset


def device_dataloader(
    dataset: DeviceResidentImages,
    batch_size: int,
    sampler: Optional[torch.utils.data.Sampler],
    accelerator: Any,
    drop_last: bool = False,
) -> DataLoader:
    """The training loader of a device-resident dataset: a worker-less ``DataLoader`` whose collate makes
    the batch on ``accelerator.device``, prepared by Accelerate (per-rank sharding, ``set_epoch``, resume)."""
    dataset.to(accelerator.device)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=dataset.collate, drop_last=drop_last,
        num_workers=0, pin_memory=False,
    )
    return accelerator.prepare(loader)
