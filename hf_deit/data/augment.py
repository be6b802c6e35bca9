"""The DeiT recipe's data augmentation, from timm: RandAugment, random erasing, Mixup/CutMix.

Per-image augmentations (RandAugment on PIL images, random erasing on normalised tensors) run in
the data-loader; Mixup/CutMix mixes whole batches on the device inside the Trainer's loss, where
the official training loop applies it too (the teacher sees the same mixed images).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from PIL import Image
from timm.data import Mixup
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing


def build_rand_augment(config_str: str, image_size: int, mean: Sequence[float]) -> Callable:
    """timm's RandAugment from its config string (the DeiT default is ``rand-m9-mstd0.5-inc1``).

    ``translate_const``, the fill colour and the resampling follow timm's ``transforms_imagenet_train``
    under the DeiT recipe: 45% of the image side, the dataset mean, bicubic (left unset, timm picks
    bilinear or bicubic at random for every operation).
    """
    hparams = {
        "translate_const": int(image_size * 0.45),
        "img_mean": tuple(round(255 * m) for m in mean),
        "interpolation": Image.BICUBIC,
    }
    try:
        return rand_augment_transform(config_str, hparams)
    except (AssertionError, KeyError, ValueError) as error:
        raise ValueError(
            f"Invalid rand_augment {config_str!r} ({error}); use timm's format, e.g. 'rand-m9-mstd0.5-inc1'."
        ) from error


def build_random_erasing(probability: float) -> RandomErasing:
    """Random erasing as in DeiT: pixel mode (per-pixel normal noise), one box, on normalised tensors."""
    return RandomErasing(probability=probability, mode="pixel", max_count=1, device="cpu")


def build_mixup(
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float,
    switch_prob: float,
    label_smoothing: float,
    num_classes: int,
) -> Optional[Mixup]:
    """timm's batch Mixup/CutMix producing smoothed soft targets, or ``None`` when both are off."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=prob,
        switch_prob=switch_prob,
        mode="batch",
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )


def apply_mixup(mixup: Any, pixel_values, labels):
    """Mix a batch on its device. timm needs an even batch size: an odd (last) batch drops one image."""
    if pixel_values.shape[0] % 2:
        pixel_values, labels = pixel_values[:-1], labels[:-1]
    return mixup(pixel_values, labels)
