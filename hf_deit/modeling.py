"""Students and every other checkpoint we load: build, load safely, and the facts of image processors.

Students are plain transformers models: everything we save loads with stock
``DeiTForImageClassificationWithTeacher.from_pretrained`` and ``pipeline("image-classification")``.
Every checkpoint (student, teacher, a model to fine-tune) is read from safetensors only, because
unpickling a ``pytorch_model.bin`` can run code, and remote code runs only when asked for, with a
warning.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

import torch

import timm
from timm.layers import DropPath, PatchDropout, resample_abs_pos_embed
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    DeiTImageProcessor,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from .config import ModelConfig

logger = logging.getLogger(__name__)

def processor_size(image_processor: Any) -> tuple[int, int]:
    """(height, width) that an image processor produces (crop size when it centre-crops)."""
    size = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else image_processor.size
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"Unsupported image processor size {size}.")



def warn_if_remote_code(trust_remote_code: bool, source: str) -> None:
    """One loud line whenever a model may run code shipped with its checkpoint."""
    if trust_remote_code:
        logger.warning(
            "trust_remote_code=True: loading %s may execute Python code shipped with it. Only do this for "
            "repositories you trust (pin a revision); leave it off for stock transformers models.",
            source,
        )


def safe_from_pretrained(
    model_class: Any, path: str, trust_remote_code: bool, fix: str, what: str = "", **kwargs: Any
) -> Any:
    """``model_class.from_pretrained(path)`` from safetensors only, remote code only when asked (with a warning).

    ``what`` names the checkpoint's role in the error ("the teacher"); ``fix`` finishes the message with
    what the caller's user should pass instead.
    """
    warn_if_remote_code(trust_remote_code, path)
    try:
        return model_class.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as error:
        raise OSError(
            f"Could not load {what + ' ' if what else ''}{path!r}: {error}\n{fix} (saved as safetensors: pickled pytorch_model.bin files are "
            "refused, unpickling can run code)."
        ) from error


def load_for_labels(model_class: Any, path: str, id2label: dict[int, str], trust_remote_code: bool, fix: str) -> Any:
    """A checkpoint re-headed for a dataset's labels (students and teachers to fine-tune alike)."""
    return safe_from_pretrained(
        model_class,
        path,
        trust_remote_code,
        fix,
        num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()},
        label2id={v: int(k) for k, v in id2label.items()},
        ignore_mismatched_sizes=True,
    )


# Widths and depths of the DeiT paper's Table 1 (Ti / S / B); the image and patch size are free.
STUDENT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768},
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def student_config(model_config: ModelConfig, id2label: dict[int, str]) -> DeiTConfig | ViTConfig:
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
    config_class = DeiTConfig if model_config.distillation_token else ViTConfig
    return config_class(
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


def init_like_timm(model: PreTrainedModel) -> None:
    """Re-initialise a new student exactly as timm's ``VisionTransformerDistilled`` starts.

    transformers' DeiT init differs in ways that cost a CIFAR student trained from scratch about three
    points of top-1 (``docs/results/cifar10_cpu.md``, parity section):

    - patch projection: transformers draws N(0, 0.02); timm keeps PyTorch's ``Conv2d`` default
      (Kaiming-uniform, std ~0.083 for 4x4x3 patches), so patch embeddings start at the scale of the
      position embeddings instead of far below them;
    - class, distillation token and position embeddings: transformers zeros them; timm draws the
      class token from N(0, 1e-6), the distillation token and position embeddings from
      ``trunc_normal_(std=0.02)`` cut at +-2 *absolute* (so, in effect, untruncated);
    - linear layers: ``trunc_normal_(std=0.02)``, zero bias; LayerNorm ones/zeros (as transformers).
    """
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        embeddings.patch_embeddings.projection.reset_parameters()
        torch.nn.init.normal_(embeddings.cls_token, std=1e-6)
        for name in ("distillation_token", "position_embeddings"):
            parameter = getattr(embeddings, name, None)
            if parameter is not None:
                torch.nn.init.trunc_normal_(parameter, std=0.02)


def new_image_classifier(model_type: str, overrides: dict[str, Any], id2label: dict[int, str]) -> PreTrainedModel:
    """A new, randomly initialised ``AutoModelForImageClassification`` of ``model_type`` with its config
    fields ``overrides`` (for ``timm_wrapper``: ``architecture`` and ``model_args``, any timm model).

    transformers' timm wrapper re-initialises every layer of the timm network it builds with its own rule
    (convolutions and linears from N(0, ``initializer_range``), every norm scale to one), which undoes
    timm's init: Kaiming convolutions and, in residual blocks, a zero scale on the last norm so that each
    block starts as the identity. A new timm network therefore gets timm's own weights back, so that it
    trains as ``timm.create_model`` would.
    """
    label2id = {name: index for index, name in id2label.items()}
    config = AutoConfig.for_model(model_type, num_labels=len(id2label), id2label=id2label, label2id=label2id,
                                  **overrides)
    model = AutoModelForImageClassification.from_config(config)
    if config.model_type == "timm_wrapper":
        fresh = timm.create_model(config.architecture, pretrained=False, num_classes=config.num_labels,
                                  **(config.model_args or {}))
        model.timm_model.load_state_dict(fresh.state_dict())
    return model


MIMETIC_QUERY_KEY = (0.7, 0.7)
"""(alpha, beta) of W_q^T W_k ~ alpha Z + beta I per head (Trockman & Kolter, 2023, their ViT setting)."""
MIMETIC_VALUE_OUTPUT = (0.4, -0.4)
"""(alpha, beta) of W_v^T W_o^T ~ alpha Z + beta I over all heads: near minus the identity."""


def _factor_near_identity(dim: int, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` with ``left @ right == alpha Z + beta I`` (Z ~ N(0, 1/dim)), split evenly by an SVD so the
    leading columns of ``left`` / rows of ``right`` give the best low-rank approximation of that product."""
    target = alpha * torch.randn(dim, dim) / dim**0.5 + beta * torch.eye(dim)
    u, s, vh = torch.linalg.svd(target)
    root = s.sqrt()
    return u * root, root[:, None] * vh


def init_attention_mimetic(model: PreTrainedModel) -> None:
    """Mimetic initialisation of every self-attention layer (Trockman & Kolter, "Mimetic Initialization of
    Self-Attention Layers", ICML 2023).

    Attention maps of trained ViTs are mostly local: each token's query matches its own key best (so,
    through the position embeddings, its neighbours), and the value-output path acts like minus the
    identity. The paper reports that starting there helps ViTs trained from scratch on small datasets;
    the CPU student's pilots measure it (``docs/results/cifar10_cpu.md``). Here each head's ``W_q^T W_k``
    starts as a rank-``head_dim`` approximation of ``0.7 Z + 0.7 I``, and ``W_v^T W_o^T`` as
    ``0.4 Z - 0.4 I``. Only weights change, so the student still saves and loads as a stock transformers model.
    """
    heads = model.config.num_attention_heads
    with torch.no_grad():
        for layer in _encoder_layers(model):
            attention = layer.attention
            dim = attention.q_proj.in_features
            head_dim = dim // heads
            for head in range(heads):
                left, right = _factor_near_identity(dim, *MIMETIC_QUERY_KEY)
                rows = slice(head * head_dim, (head + 1) * head_dim)
                attention.q_proj.weight[rows] = left[:, :head_dim].T
                attention.k_proj.weight[rows] = right[:head_dim]
            left, right = _factor_near_identity(dim, *MIMETIC_VALUE_OUTPUT)
            attention.v_proj.weight.copy_(left.T)
            attention.o_proj.weight.copy_(right.T)


def student_class(model_config: ModelConfig) -> type[PreTrainedModel]:
    """With the distillation token: DeiT. Without: a plain ViT (transformers' DeiT backbone always
    carries a distillation token, even under ``DeiTForImageClassification``; the paper's "usual
    distillation" rows have none)."""
    return DeiTForImageClassificationWithTeacher if model_config.distillation_token else ViTForImageClassification


def _encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    base = model.base_model
    return base.layers if hasattr(base, "layers") else base.encoder.layer


def apply_drop_path(model: PreTrainedModel, drop_path_rate: float) -> None:
    """Stochastic depth with timm's linear rule (0 at the first block, ``rate`` at the last).

    Each ``DeiTLayer`` passes both residual branches through its parameter-free ``dropout`` module
    right before the residual sum, so chaining a ``DropPath`` there drops whole branches per sample
    (exactly timm's ``x + drop_path(attn(norm(x)))``) and leaves the state dict, hence stock
    loading of what we save, untouched. ``DropPath`` is the identity in eval mode.
    """
    if drop_path_rate <= 0:
        return
    layers = _encoder_layers(model)
    for index, layer in enumerate(layers):
        rate = drop_path_rate * index / max(len(layers) - 1, 1)
        if rate > 0:
            layer.dropout = torch.nn.Sequential(layer.dropout, DropPath(rate))


def apply_patch_dropout(model: PreTrainedModel, patch_dropout: float) -> None:
    """Train on a random ``1 - patch_dropout`` share of each image's patch tokens (timm's ``PatchDropout``;
    Liu et al., 2022), keeping the class and distillation tokens.

    Attention and MLP cost grow with the token count, so a step costs about ``1 - patch_dropout`` of a full one
    and the saved student still sees every patch at inference. The drop is chained after the embeddings'
    parameter-free ``dropout``, the point where timm's ViT applies it (position embeddings already added), so the
    state dict, hence stock loading, is untouched; ``PatchDropout`` is the identity in eval mode.
    """
    if patch_dropout <= 0:
        return
    embeddings = model.base_model.embeddings
    prefix = 2 if getattr(embeddings, "distillation_token", None) is not None else 1
    embeddings.dropout = torch.nn.Sequential(embeddings.dropout, PatchDropout(patch_dropout, num_prefix_tokens=prefix))


def resize_position_embeddings(model: PreTrainedModel, image_size: int) -> None:
    """Resample a pretrained student's position embeddings to a new resolution (bicubic, as timm).

    The config's ``image_size`` is updated with them, so the fine-tuned model saves and reloads in
    stock transformers at its new size without ``interpolate_pos_encoding``.
    """
    embeddings = model.base_model.embeddings
    patch = model.config.patch_size
    old_grid = model.config.image_size // patch
    new_grid = image_size // patch
    if new_grid == old_grid:
        return
    prefix = 2 if getattr(embeddings, "distillation_token", None) is not None else 1
    with torch.no_grad():
        resized = resample_abs_pos_embed(
            embeddings.position_embeddings.data, [new_grid, new_grid], [old_grid, old_grid], num_prefix_tokens=prefix
        )
    embeddings.position_embeddings = torch.nn.Parameter(resized)
    model.config.image_size = image_size
    embeddings.image_size = (image_size, image_size)
    patch_embeddings = embeddings.patch_embeddings
    patch_embeddings.image_size = (image_size, image_size)
    patch_embeddings.num_patches = new_grid * new_grid


def build_student(
    model_config: ModelConfig, id2label: dict[int, str]
) -> tuple[PreTrainedModel, DeiTImageProcessor]:
    """A new student from a preset, or a checkpoint re-headed for this dataset's labels and resized
    to ``image_size``; drop-path and patch dropout applied to either."""
    model_class = student_class(model_config)
    if model_config.student_model_name_or_path is None:
        config = student_config(model_config, id2label)
        model = model_class(config)
        init_like_timm(model)
        if model_config.attention_init == "mimetic":
            init_attention_mimetic(model)
        apply_drop_path(model, model_config.drop_path_rate)
        apply_patch_dropout(model, model_config.patch_dropout)
        model.set_attn_implementation(model_config.attn_implementation)
        return model, student_image_processor(model_config)

    path = model_config.student_model_name_or_path
    model = load_for_labels(
        model_class,
        path,
        id2label,
        model_config.trust_remote_code,
        fix="Pass --student_model_name_or_path with a folder or Hub id of a DeiT/ViT student checkpoint, or leave "
        "it unset to start from a random preset",
    )
    if model_config.image_size % model.config.patch_size:
        raise ValueError(
            f"image_size {model_config.image_size} is not a multiple of the checkpoint's patch size "
            f"{model.config.patch_size}."
        )
    resize_position_embeddings(model, model_config.image_size)
    apply_drop_path(model, model_config.drop_path_rate)
    apply_patch_dropout(model, model_config.patch_dropout)
    model.set_attn_implementation(model_config.attn_implementation)
    processor = student_image_processor(model_config)
    try:  # keep the checkpoint's normalisation unless the config sets one
        pretrained = DeiTImageProcessor.from_pretrained(path)
        if model_config.image_mean is None and model_config.image_std is None:
            processor.image_mean, processor.image_std = list(pretrained.image_mean), list(pretrained.image_std)
    except OSError:
        pass
    return model, processor


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
    kwargs: dict[str, Any] = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    fix = ("Pass a folder written by scripts/distill.py (config.json, model.safetensors, preprocessor_config.json) "
           "or a Hub id of such a model; without internet, only local folders and cached Hub models load")
    model = safe_from_pretrained(AutoModelForImageClassification, id_or_path, False, fix, "the student", **kwargs)
    try:
        processor = AutoImageProcessor.from_pretrained(id_or_path, trust_remote_code=False)
    except OSError as error:
        raise OSError(f"Could not load the image processor of {id_or_path!r}: {error}\n{fix}.") from error
    if require_distillation_token and not isinstance(model, DeiTForImageClassificationWithTeacher):
        raise ValueError(
            f"{id_or_path!r} is a {type(model).__name__}, not a DeiT student with a distillation token "
            "(DeiTForImageClassificationWithTeacher): it has no class/distillation heads to report."
        )
    model.to(torch.device(device) if device is not None else default_device()).eval()
    return model, processor
