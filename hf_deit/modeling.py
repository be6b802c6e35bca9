"""Build the student (a stock ``DeiTForImageClassificationWithTeacher``) and its image processor.

Students are plain transformers models: everything we save loads with stock
``DeiTForImageClassificationWithTeacher.from_pretrained`` and ``pipeline("image-classification")``.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher, DeiTImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from .config import ModelConfig

logger = logging.getLogger(__name__)

# Widths and depths of the DeiT paper's Table 1 (Ti / S / B); the image and patch size are free.
STUDENT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768},
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def student_config(model_config: ModelConfig, id2label: dict[int, str]) -> DeiTConfig:
    if model_config.student_preset not in STUDENT_PRESETS:
        raise ValueError(
            f"Unknown student_preset {model_config.student_preset!r}; choose one of {sorted(STUDENT_PRESETS)} "
            "(and override hidden_size / num_hidden_layers / num_attention_heads / intermediate_size if needed)."
        )
    shape = dict(STUDENT_PRESETS[model_config.student_preset])
    for key in shape:
        override = getattr(model_config, key)
        if override is not None:
            shape[key] = override
    if shape["hidden_size"] % shape["num_attention_heads"]:
        raise ValueError(
            f"hidden_size ({shape['hidden_size']}) must be divisible by num_attention_heads "
            f"({shape['num_attention_heads']})."
        )
    return DeiTConfig(
        layer_norm_eps=1e-6,  # timm / official DeiT; transformers' 1e-12 amplifies gradients of near-constant tokens
        image_size=model_config.image_size,
        patch_size=model_config.patch_size,
        encoder_stride=model_config.patch_size,
        num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()},
        label2id={v: int(k) for k, v in id2label.items()},
        **shape,
    )


def student_image_processor(model_config: ModelConfig) -> DeiTImageProcessor:
    """Resize straight to the training resolution, normalise with the training statistics."""
    side = model_config.image_size
    return DeiTImageProcessor(
        do_resize=True,
        size={"height": side, "width": side},
        do_center_crop=False,
        crop_size={"height": side, "width": side},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(model_config.image_mean or IMAGENET_DEFAULT_MEAN),
        image_std=list(model_config.image_std or IMAGENET_DEFAULT_STD),
    )


def init_tokens_like_deit(model: torch.nn.Module, std: float = 0.02) -> None:
    """Truncated-normal class/distillation tokens and position embeddings, as timm's DeiT.

    transformers initialises them to zeros: every image then starts with identical class and
    distillation tokens (their heads cannot differ at step 0) and the first LayerNorm sees
    constant vectors, whose gradients explode (grad-norm ~5e4 at init on CIFAR students).
    """
    embeddings = model.deit.embeddings
    with torch.no_grad():
        for name in ("cls_token", "distillation_token", "position_embeddings"):
            parameter = getattr(embeddings, name, None)
            if parameter is not None:
                torch.nn.init.trunc_normal_(parameter, std=std, a=-2 * std, b=2 * std)


def build_student(
    model_config: ModelConfig, id2label: dict[int, str]
) -> tuple[DeiTForImageClassificationWithTeacher, DeiTImageProcessor]:
    """A new student from a preset, or a checkpoint re-headed for this dataset's labels."""
    if model_config.student_model_name_or_path is None:
        config = student_config(model_config, id2label)
        model = DeiTForImageClassificationWithTeacher(config)
        init_tokens_like_deit(model)
        return model, student_image_processor(model_config)

    path = model_config.student_model_name_or_path
    label2id = {v: int(k) for k, v in id2label.items()}
    model = DeiTForImageClassificationWithTeacher.from_pretrained(
        path,
        num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()},
        label2id=label2id,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=model_config.trust_remote_code,
    )
    processor: Optional[DeiTImageProcessor]
    try:
        processor = DeiTImageProcessor.from_pretrained(path)
    except OSError:
        processor = None
    if processor is None or model_config.image_size != model.config.image_size:
        processor = student_image_processor(model_config)
    return model, processor
