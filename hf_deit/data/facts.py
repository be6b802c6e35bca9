"""What a model card must say about a dataset, read while its copy is at hand.

A relative local path such as ``data/cifar10-sample`` means nothing once the card is written from
another directory or published, so the facts are gathered when the run loads the data and saved with
its recipe: whether the dataset is local, its name, the Hub dataset a local copy stands for (the
``source_datasets`` of its dataset card), and how its images are stored. The storage is read from the
images themselves: a lossy JPEG copy scores differently from the lossless original, and the card
says so with the JPEG quality estimated from the quantisation tables.
"""

from __future__ import annotations

import io
import os
from typing import Any, Optional

from datasets import Dataset
from PIL import Image

from .transforms import undecoded

# The IJG standard luminance quantisation table (JPEG Annex K), which libjpeg scales by the quality.
_IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)


def is_local(name: Optional[str]) -> bool:
    """A path on this machine (which the Hub cannot resolve), not a Hub id."""
    return bool(name) and (os.path.exists(name) or name.startswith((".", "/", "~")))


def jpeg_quality(table: Any) -> int:
    """The libjpeg quality (1-100) whose scaled standard luminance table is closest to ``table``."""
    observed = sum(table)

    def scaled_sum(quality: int) -> int:
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        return sum(min(max((value * scale + 50) // 100, 1), 255) for value in _IJG_LUMINANCE)

    return min(range(1, 101), key=lambda quality: abs(scaled_sum(quality) - observed))


def image_storage(value: Any) -> dict[str, Any]:
    """``{"format": "JPEG", "jpeg_quality": 75}`` (quality for JPEG only) of one undecoded image value."""
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            facts: dict[str, Any] = {"format": image.format}
            tables = getattr(image, "quantization", None)
            if image.format == "JPEG" and tables:
                facts["jpeg_quality"] = jpeg_quality(tables[0])
            return facts
    except (OSError, ValueError, TypeError):
        return {"format": None}


def _dataset_card(name: str) -> dict[str, Any]:
    """The front matter of a local dataset's README (a ``DatasetCard``); {} without one."""
    readme = os.path.join(name, "README.md")
    if not os.path.isfile(readme):
        return {}
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard.load(readme).data.to_dict()
    except (ValueError, OSError):
        return {}


def describe_dataset(name: str, split: Optional[Dataset] = None, image_column: Optional[str] = None) -> dict[str, Any]:
    """The facts above for ``name``; the storage needs a loaded ``split`` (its first image is read)."""
    local = is_local(name)
    card = _dataset_card(name) if local else {}
    sources = card.get("source_datasets") or []
    facts: dict[str, Any] = {
        "is_local": local,
        "pretty_name": card.get("pretty_name") or (os.path.basename(name.rstrip("/")) if local else name),
        "hub_id": None if local and not sources else (sources[0] if local else name),
    }
    if split is not None and image_column is not None and len(split):
        facts["image_storage"] = image_storage(undecoded(split, image_column)[0][image_column])
    return facts
