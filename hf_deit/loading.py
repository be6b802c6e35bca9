"""Load a trained student for inference: the model and its image processor, nothing else.

Students are stock ``DeiTForImageClassificationWithTeacher`` checkpoints, so this is a thin,
safe wrapper around ``from_pretrained``: weights from safetensors only (a pickled
``pytorch_model.bin`` can run arbitrary code when unpickled) and never remote code. By default it
refuses checkpoints without a distillation head (rather than use a model that lacks what the caller
wants to show); ``require_distillation_token=False`` accepts the plain-ViT students of ablations.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTForImageClassificationWithTeacher,
    PreTrainedModel,
)


def default_device() -> torch.device:
    """CUDA, then Apple MPS, then CPU: the fastest device present."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_student(
    id_or_path: str,
    device: Optional[Union[str, torch.device]] = None,
    attn_implementation: Optional[str] = None,
    require_distillation_token: bool = True,
) -> tuple[PreTrainedModel, Any]:
    """``(model, image_processor)`` of a student folder or Hub id, in eval mode on ``device``.

    ``attn_implementation="eager"`` is needed to read attention maps (``output_attentions=True``):
    the default SDPA kernel does not materialise them and transformers returns none.
    """
    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": False}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageClassification.from_pretrained(id_or_path, **kwargs)
        processor = AutoImageProcessor.from_pretrained(id_or_path, trust_remote_code=False)
    except OSError as error:
        raise OSError(
            f"Could not load the student {id_or_path!r}: {error}\n"
            "Pass a folder written by scripts/distill.py (config.json, model.safetensors, preprocessor_config.json) "
            "or a Hub id of such a model; without internet, only local folders and cached Hub models load."
        ) from error
    if require_distillation_token and not isinstance(model, DeiTForImageClassificationWithTeacher):
        raise ValueError(
            f"{id_or_path!r} is a {type(model).__name__}, not a DeiT student with a distillation token "
            "(DeiTForImageClassificationWithTeacher): it has no class/distillation heads to report."
        )
    model.to(torch.device(device) if device is not None else default_device()).eval()
    return model, processor
