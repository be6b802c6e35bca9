"""Patch-whitening initialisation of a CNN's first convolution (KellerJordan/cifar10-airbench).

The first convolution of a CNN trained from scratch spends its early steps learning what the data's
patch statistics already say: which directions of a ``k x k x 3`` patch vary. Initialising its filters
with the eigenvectors of the training patches' covariance, scaled by ``1 / sqrt(eigenvalue)``, hands the
next layer decorrelated, unit-variance inputs from step one; each eigenvector comes twice, as ``+v`` and
``-v``, so that a following ReLU keeps both signs. Frozen, the layer stays a fixed whitening transform,
which is what airbench does.

This is an initialisation, not an architecture: the model stays the stock transformers class, and its
saved weights load anywhere. It works for any model whose first ``nn.Conv2d`` reads the image.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def first_convolution(model: nn.Module) -> nn.Conv2d:
    """The model's first ``nn.Conv2d`` in module order: the one that reads the pixels."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d to whiten; set whiten_stem: false.")


def patch_whitening_filters(images: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
                            out_channels: int, eps: float, centre: bool = True) -> torch.Tensor:
    """``(out_channels, C, kh, kw)`` filters: the top ``out_channels // 2`` whitening directions of the
    ``images``' patches (as the convolution strides over them), each as ``+v`` and ``-v``.

    Directions beyond the patch dimension (a wide layer over small patches) are left as zero filters.
    ``centre=False`` takes the patches' second moment instead of their covariance, as airbench does.
    """
    patches = F.unfold(images.float(), kernel_size, stride=stride).transpose(1, 2)
    patches = patches.reshape(-1, patches.shape[-1])
    if centre:
        patches = patches - patches.mean(0)
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    pairs = min(out_channels // 2, eigenvectors.shape[1])
    directions = eigenvectors[:, :pairs].T / torch.sqrt(eigenvalues[:pairs].clamp_min(0) + eps)[:, None]
    filters = torch.zeros(out_channels, patches.shape[-1])
    filters[:pairs], filters[pairs : 2 * pairs] = directions, -directions
    return filters.reshape(out_channels, images.shape[1], *kernel_size)


@torch.no_grad()
def whiten_first_convolution(model: nn.Module, images: torch.Tensor, freeze: bool = True, eps: float = 1e-2) -> None:
    """Initialise the first convolution of ``model`` as a patch-whitening layer of ``images``
    (``(N, 3, H, W)``, preprocessed exactly as the model's inputs), and freeze it unless ``freeze`` is false.

    ``eps`` keeps the near-zero-variance directions (upsampled images have many) from being blown up.
    """
    convolution = first_convolution(model)
    if convolution.groups != 1:
        raise ValueError("whiten_stem needs an ungrouped first convolution; set whiten_stem: false.")
    filters = patch_whitening_filters(
        images, convolution.kernel_size, convolution.stride, convolution.out_channels, eps
    )
    convolution.weight.copy_(filters.to(convolution.weight.dtype))
    if convolution.bias is not None:
        convolution.bias.zero_()
    convolution.weight.requires_grad_(not freeze)
    logger.info(
        "First convolution whitened from %d images (%d filters of %s)%s.",
        len(images), convolution.out_channels, tuple(filters.shape[1:]), ", frozen" if freeze else "",
    )
