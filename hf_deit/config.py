"""Configuration dataclasses and the YAML + command-line parser.

Every run is described by three dataclasses, parsed together with
``transformers.HfArgumentParser``: :class:`ModelConfig` (student and teacher),
:class:`DataConfig` (dataset and augmentation) and :class:`DistillationConfig`
(``TrainingArguments`` plus the distillation loss). A YAML file gives the base values and
any ``--key value`` on the command line overrides them, so one preset can be reused for
many runs without editing it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .hardware import bf16_is_native
from .losses import DEFAULT_KL_REDUCTION, DEFAULT_ROWS_WITHOUT_TEACHER, validate_distillation_settings

BAD_IMAGE_POLICIES = ("skip", "fail")
PADDING_MODES = ("reflect", "constant")
NONFINITE_LOSS_CHECKS = ("auto", "step", "deferred", "off")

TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
ATTENTION_INITS = ("timm", "mimetic")


class ConfigError(ValueError):
    """A setting the run cannot use. The message says what is wrong, then (after " — ") how to fix it."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what} — {fix}")
TEACHER_DTYPES = ("float32", "bfloat16", "float16", "auto")

@dataclass
class DatasetSource:
    """Where the images and labels come from: what training and evaluation share."""

    dataset_name: str = field(
        default="uoft-cs/cifar10",
        metadata={"help": "Hub dataset id, a local folder in the Hub layout, or an image folder (class sub-folders)."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Dataset configuration name, if any."})
    image_column: Optional[str] = field(default=None, metadata={"help": "Image column. Default: found automatically."})
    label_column: Optional[str] = field(default=None, metadata={"help": "Label column. Default: found automatically."})


@dataclass
class DataConfig(DatasetSource):
    """Which dataset to read and how to augment it."""

    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: Optional[str] = field(
        default=None,
        metadata={"help": "Split used for evaluation. Default: 'validation', else 'test', else a held-out part of train."},
    )
    train_val_split: float = field(
        default=0.1,
        metadata={"help": "Fraction of train held out for evaluation when the dataset has no evaluation split."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use at most this many training images."})
    balanced_train_samples: bool = field(
        default=False,
        metadata={"help": "Draw max_train_samples with the same number of images per class (seeded): the subsets "
                  "of a data-efficiency curve. Off: a seeded random draw."},
    )
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use at most this many evaluation images."})
    eval_samples_during_training: Optional[int] = field(
        default=None,
        metadata={
            "help": "Periodic evaluations (eval_strategy) read only the first N evaluation images, for cheap "
            "learning curves; the final evaluation reads them all. Unset: all, every time. Not with "
            "load_best_model_at_end (which selects on images held out of train)."
        },
    )
    random_crop_padding: int = field(
        default=4, metadata={"help": "Padding (pixels) of the train-time random crop; 0 disables the crop."}
    )
    random_crop_padding_mode: str = field(
        default="reflect",
        metadata={
            "help": "How the crop pads: reflect (mirror the border, airbench) or constant (black, torchvision's "
            "RandomCrop default and the classic CIFAR recipe)."
        },
    )
    horizontal_flip: bool = field(default=True, metadata={"help": "Random horizontal flip at train time."})
    rand_augment: Optional[str] = field(
        default=None, metadata={"help": "timm RandAugment string, e.g. 'rand-m9-mstd0.5-inc1' (DeiT); unset: off."}
    )
    random_erasing: float = field(default=0.0, metadata={"help": "Random-erasing probability (DeiT: 0.25)."})
    device_resident_data: bool = field(
        default=False,
        metadata={
            "help": "Small datasets (CIFAR): decode the train split once into a uint8 tensor on the training device "
            "and crop/flip/normalise whole batches there (no data-loader workers: dataloader_num_workers is "
            "ignored for training). Crop + flip only: not with rand_augment or random_erasing. Evaluation is "
            "unchanged. Students and teachers (scripts/train_teacher.py) alike."
        },
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where `datasets` caches downloads."})
    bad_images: str = field(
        default="skip",
        metadata={
            "help": "An image that cannot be decoded (corrupt, truncated, over Pillow's size limit): skip (drop "
            "it from its batch, with a warning naming the row) or fail (stop, naming the row)."
        },
    )

    def __post_init__(self) -> None:
        if self.bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {self.bad_images!r}.")
        if self.random_crop_padding_mode not in PADDING_MODES:
            raise ValueError(
                f"random_crop_padding_mode must be one of {PADDING_MODES}, got {self.random_crop_padding_mode!r}."
            )
        if not 0.0 < self.train_val_split < 1.0:
            raise ValueError(f"train_val_split must be in (0, 1), got {self.train_val_split}.")
        for name in ("max_train_samples", "max_eval_samples", "eval_samples_during_training"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number of images, got {value}; omit it to use all.")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}.")
        if self.device_resident_data and (self.rand_augment or self.random_erasing > 0):
            raise ValueError(
                "device_resident_data augments on the device with random crop + flip only; it cannot apply "
                f"rand_augment ({self.rand_augment!r}) or random_erasing ({self.random_erasing}), which run per image "
                "in the data-loader. Unset rand_augment and set random_erasing: 0, or set device_resident_data: false."
            )


@dataclass
class ModelConfig:
    """The student to train and the teacher to learn from."""

    student_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Start the student from this checkpoint (folder or Hub id) instead of a random preset."},
    )
    student_preset: str = field(
        default="tiny", metadata={"help": "Width/depth preset of a new student: tiny, small or base (DeiT-Ti/S/B)."}
    )
    image_size: int = field(default=32, metadata={"help": "Student input resolution (square)."})
    patch_size: int = field(default=4, metadata={"help": "Student patch size; image_size must be a multiple of it."})
    hidden_size: Optional[int] = field(default=None, metadata={"help": "Override the preset's embedding width."})
    num_hidden_layers: Optional[int] = field(default=None, metadata={"help": "Override the preset's depth."})
    num_attention_heads: Optional[int] = field(default=None, metadata={"help": "Override the preset's heads."})
    intermediate_size: Optional[int] = field(default=None, metadata={"help": "Override the preset's MLP width."})
    distillation_token: bool = field(
        default=True,
        metadata={"help": "Student with a distillation token (DeiT); false: plain ViT, distilled on the class token."},
    )
    drop_path_rate: float = field(default=0.0, metadata={"help": "Stochastic depth of the student (DeiT: 0.1)."})
    patch_dropout: float = field(
        default=0.0,
        metadata={"help": "Share of patch tokens dropped at random in each training image (timm's PatchDropout): a "
                  "step costs about 1 - patch_dropout of a full one; inference sees every patch."},
    )
    attention_init: str = field(
        default="timm",
        metadata={"help": "Attention weights of a new student: timm (as DeiT) or mimetic (Trockman & Kolter, 2023: "
                  "query-key products near the identity, so attention starts local). Mimetic learned slower in the "
                  "CPU student's short pilots (docs/results/cifar10_cpu.md)."},
    )
    image_mean: Optional[list[float]] = field(
        default=None, metadata={"help": "Student normalisation mean (default: ImageNet's, as in DeiT)."}
    )
    image_std: Optional[list[float]] = field(
        default=None, metadata={"help": "Student normalisation std (default: ImageNet's, as in DeiT)."}
    )
    teacher_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Any AutoModelForImageClassification (folder or Hub id). Required unless distillation_type=none."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code from the Hub (off: only stock transformers classes)."}
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "Student attention kernel: sdpa or eager."})
    teacher_dtype: str = field(
        default="float32",
        metadata={
            "help": "Teacher weights and inputs: float32, bfloat16, float16 (GPU), or auto (bfloat16 where the device "
            "computes it natively: a bf16 GPU, or a CPU with AVX512-BF16/AMX; else float32). Its logits stay float32."
        },
    )
    teacher_channels_last: bool = field(
        default=False, metadata={"help": "Run a convolutional teacher in channels_last memory format."}
    )
    teacher_compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the teacher's forward (the student: TrainingArguments' torch_compile)."},
    )

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attn_implementation!r}."
            )
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {TEACHER_DTYPES}, got {self.teacher_dtype!r}.")
        if self.patch_size <= 0 or self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a positive multiple of patch_size ({self.patch_size})."
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ConfigError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}",
                              "set patch_dropout to the share of patch tokens to drop, e.g. 0.5, or 0 to keep all")
        if self.attention_init not in ATTENTION_INITS:
            raise ConfigError(f"attention_init must be one of {ATTENTION_INITS}, got {self.attention_init!r}",
                              "set attention_init: timm or mimetic")
        if self.attention_init != "timm" and self.student_model_name_or_path is not None:
            raise ConfigError(
                f"attention_init: {self.attention_init} re-initialises a new student, but student_model_name_or_path "
                f"({self.student_model_name_or_path!r}) starts from trained weights",
                "drop attention_init to fine-tune the checkpoint, or drop student_model_name_or_path to start anew")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise ValueError(f"{name} needs 3 values (one per RGB channel), got {value}.")


def check_time_budget(minutes: float, warmup_steps: float) -> None:
    """A time budget must be positive, and its warm-up a share of it: steps have no fixed length in time."""
    if not minutes > 0:
        raise ConfigError(f"max_train_minutes must be positive, got {minutes}",
                          "set it to the minutes of training you want, e.g. 90, or drop it to train for epochs")
    if warmup_steps >= 1:
        raise ConfigError(
            f"warmup_steps: {warmup_steps:g} counts steps, but with max_train_minutes the schedule runs on the "
            "training clock",
            "give the warm-up as a share of the budget, e.g. warmup_steps: 0.05, or drop max_train_minutes")


@dataclass
class ImageTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the defaults every hf-deit run (student or teacher) needs.

    Images arrive through ``with_transform``, so the raw columns must reach the collator
    (``remove_unused_columns=False``); students and CNN teachers use every parameter in every step, so
    DDP's search for unused ones is only an extra autograd pass; ``bf16`` without a bf16 GPU means CPU
    autocast (:func:`bf16_on_cpu_means_use_cpu`). ``auto_bf16`` lets one config (the quickstart's) run
    fast on every machine: bf16 autocast is a speed-up only where the device has bf16 units, and an
    order of magnitude slower where a CPU emulates it.
    """

    auto_bf16: bool = field(
        default=False,
        metadata={
            "help": "Turn bf16 autocast on where the hardware has bf16 units (a bf16 GPU, a CPU with "
            "AVX512-BF16/AMX) and leave fp32 elsewhere, where bf16 is emulated an order of magnitude slower. "
            "bf16: true still forces bf16; auto_bf16: false keeps fp32 everywhere."
        },
    )

    max_train_minutes: Optional[float] = field(
        default=None,
        metadata={
            "help": "Train for this many minutes of training steps (evaluation and checkpointing excluded). The "
            "learning-rate schedule runs on that clock, so it anneals fully when the time is spent, however fast "
            "the machine; num_train_epochs / max_steps still cap the run (set them high to fill the budget). "
            "warmup_steps is then a share of the budget (e.g. 0.05)."
        },
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep raw image columns for the transform."})
    report_to: Optional[str] = field(default="none", metadata={"help": "Experiment trackers (none, tensorboard, ...)."})
    ddp_find_unused_parameters: Optional[bool] = field(
        default=False,
        metadata={
            "help": "DDP's search for parameters without gradient. Every parameter of a DeiT student (both heads "
            "train in every mode) or a CNN teacher is used in every step, so the search only costs an extra "
            "autograd pass per step."
        },
    )

    def __post_init__(self) -> None:
        if self.max_train_minutes is not None:
            check_time_budget(self.max_train_minutes, self.warmup_steps)
        if self.auto_bf16:
            self.bf16 = self.bf16 or bf16_is_native(_training_device_type(self))
        bf16_on_cpu_means_use_cpu(self)
        super().__post_init__()
        if self.dataloader_pin_memory and (self.use_cpu or not _has_accelerator()):
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU torch warns once per loader


@dataclass
class DistillationConfig(ImageTrainingArguments):
    """``TrainingArguments`` plus the DeiT distillation loss.

    Defaults differ from ``TrainingArguments`` where image distillation needs it: images arrive
    through ``with_transform`` so the raw columns must reach the collator
    (``remove_unused_columns=False``), and the student's forward takes no labels, so the Trainer is
    told where they are (``label_names``).
    """

    distillation_type: str = field(
        default="hard", metadata={"help": "none | soft | hard (DeiT paper, section 4)."}
    )
    distillation_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the distillation term; the label term gets 1 - alpha."}
    )
    distillation_tau: float = field(default=1.0, metadata={"help": "Temperature of soft distillation."})
    distillation_kl_reduction: str = field(
        default=DEFAULT_KL_REDUCTION,
        metadata={
            "help": "Soft-distillation KL normalisation: 'batchmean' (the paper: sum over classes, mean over "
            "images) or 'elementwise_mean' (the official code: mean over images and classes)."
        },
    )
    distillation_teacher_fraction: float = field(
        default=1.0,
        metadata={
            "help": "Share of each training batch the teacher labels (its first rows; the sampler shuffles; the "
            "other rows: distillation_rows_without_teacher). 1.0: every image, as in the paper. Below 1 it trades "
            "teacher forwards for epochs where the teacher costs more than the student (a CNN teacher on CPU)."
        },
    )
    distillation_rows_without_teacher: str = field(
        default=DEFAULT_ROWS_WITHOUT_TEACHER,
        metadata={
            "help": "What the distillation token learns from on the rows the teacher skips "
            "(distillation_teacher_fraction < 1): labels (their labels, as with distillation_type none; the term "
            "averages over every row) or skip (nothing; the term averages over the teacher's rows, which learns "
            "slower per epoch)."
        },
    )
    distillation_teacher_cache: bool = field(
        default=False,
        metadata={
            "help": "Run the teacher once per training view instead of once per step: at the start of training "
            "(counted as training time) its logits for every image, as is and mirrored, are computed and each batch "
            "reads its rows from them. Needs device_resident_data with random_crop_padding: 0 (flips only, so two "
            "views per image), no Mixup/CutMix (mixed images have no cached view) and "
            "distillation_teacher_fraction: 1. Distillation then costs what labels alone cost per step."
        },
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup alpha (DeiT: 0.8); 0 disables Mixup."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix alpha (DeiT: 1.0); 0 disables CutMix."})
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability of mixing a batch."})
    mixup_switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix instead of Mixup when both are on."})
    repeated_augmentation: int = field(
        default=1, metadata={"help": "Repeats of each image per epoch on different processes (DeiT: 3); 1: off."}
    )
    ema_decay: Optional[float] = field(
        default=None, metadata={"help": "EMA of the student weights, saved in ema/ (DeiT: 0.99996); unset: off."}
    )
    ema_warmup: bool = field(
        default=False,
        metadata={
            "help": "Ramp the EMA decay as timm's 1 - (1 + step)^(-2/3) up to ema_decay (reaches 0.9996 only after "
            "~117k steps). Off: the constant decay of the official DeiT code."
        },
    )
    base_learning_rate: Optional[float] = field(
        default=None,
        metadata={"help": "If set, learning_rate = base_learning_rate x global batch / 512 (DeiT: 5e-4)."},
    )
    nonfinite_loss_check: str = field(
        default="auto",
        metadata={
            "help": "Stop at a NaN/inf training loss, before the step is applied or saved: step (checked every step), "
            "deferred (flagged on the device, checked at each log and save: no extra GPU sync), off, or auto "
            "(step on CPU or when logging_nan_inf_filter already syncs every step, else deferred)."
        },
    )
    output_dir: Optional[str] = field(default="outputs/deit-student", metadata={"help": "Where to write the run."})
    label_names: Optional[list[str]] = field(default_factory=lambda: ["labels"], metadata={"help": "Label keys."})

    def __post_init__(self) -> None:
        validate_distillation_settings(
            self.distillation_type,
            self.distillation_alpha,
            self.distillation_tau,
            self.distillation_kl_reduction,
            self.distillation_rows_without_teacher,
        )
        if self.nonfinite_loss_check not in NONFINITE_LOSS_CHECKS:
            raise ValueError(
                f"nonfinite_loss_check must be one of {NONFINITE_LOSS_CHECKS}, got {self.nonfinite_loss_check!r}."
            )
        if not 0.0 < self.distillation_teacher_fraction <= 1.0:
            raise ValueError(
                "distillation_teacher_fraction must be in (0, 1] (the share of each batch the teacher labels), got "
                f"{self.distillation_teacher_fraction}; use 1.0 for the paper's recipe."
            )
        if self.repeated_augmentation < 1:
            raise ValueError(f"repeated_augmentation must be >= 1 (1 = off), got {self.repeated_augmentation}.")
        if self.distillation_teacher_cache:
            self._check_teacher_cache()
        super().__post_init__()
        if self.base_learning_rate is not None:
            global_batch = self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps
            self.learning_rate = self.base_learning_rate * global_batch / 512.0

    def _check_teacher_cache(self) -> None:
        if self.distillation_type == "none":
            raise ConfigError("distillation_teacher_cache with distillation_type: none caches targets no loss reads",
                              "drop distillation_teacher_cache, or pick soft or hard")
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            raise ConfigError(
                "distillation_teacher_cache cannot follow Mixup/CutMix (the teacher must see each mixed image, "
                "which no cached view is)", "set mixup_alpha: 0 and cutmix_alpha: 0, or drop distillation_teacher_cache")
        if self.distillation_teacher_fraction < 1.0:
            raise ConfigError(
                "distillation_teacher_cache labels every row at no cost per step, so "
                f"distillation_teacher_fraction={self.distillation_teacher_fraction} would only discard targets",
                "set distillation_teacher_fraction: 1.0")


def check_teacher_cache_data(training_args: "DistillationConfig", data_config: DataConfig) -> None:
    """The teacher cache needs a training set with few views per image, enumerable on the device."""
    if training_args.distillation_teacher_cache and not (
        data_config.device_resident_data and data_config.random_crop_padding == 0
    ):
        raise ConfigError(
            "distillation_teacher_cache needs each training image to have two views (as is, mirrored), got "
            f"device_resident_data: {str(data_config.device_resident_data).lower()}, "
            f"random_crop_padding: {data_config.random_crop_padding}",
            "set device_resident_data: true and random_crop_padding: 0, or drop distillation_teacher_cache")


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def _training_device_type(args: TrainingArguments) -> str:
    """The device a run will train on, before ``TrainingArguments`` has set it up: CUDA unless told otherwise."""
    import torch

    return "cpu" if args.use_cpu or not torch.cuda.is_available() else "cuda"


def bf16_on_cpu_means_use_cpu(args: TrainingArguments) -> None:
    """``bf16: true`` on a machine without a bf16 GPU autocasts on the CPU (``use_cpu``), as the same config
    does on a GPU machine; transformers would otherwise stop with "Your setup doesn't support bf16/gpu"."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    if (args.bf16 or args.bf16_full_eval) and not is_torch_bf16_gpu_available() and not is_torch_xla_available():
        args.use_cpu = True


@dataclass
class TeacherModelConfig:
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Fine-tune this checkpoint (folder or Hub id) instead of a new model."}
    )
    model_type: str = field(default="resnet", metadata={"help": "transformers model type of a new teacher (resnet, regnet, convnext, ...)."})
    model_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "JSON object (or YAML mapping) of config fields for a new teacher."}
    )
    image_size: int = field(
        default=32,
        metadata={
            "help": "Teacher input resolution (square). CNNs whose stem down-samples 4x (ResNet) see CIFAR best "
            "upsampled (64); the distillation wrapper resizes the student's batch to it on the device."
        },
    )
    image_mean: Optional[list[float]] = field(default=None, metadata={"help": "Normalisation mean (default ImageNet)."})
    image_std: Optional[list[float]] = field(default=None, metadata={"help": "Normalisation std (default ImageNet)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the Hub."})
    channels_last: bool = field(
        default=False, metadata={"help": "Train the CNN in channels_last memory format (faster convolutions)."}
    )
    whiten_stem: bool = field(
        default=False,
        metadata={
            "help": "Initialise the first convolution as a frozen patch-whitening layer of the training images "
            "(airbench's whitening: eigenvectors of the patch covariance, +v and -v). The saved model is unchanged "
            "in kind; only a new model_type teacher is whitened."
        },
    )
    whiten_images: int = field(default=500, metadata={"help": "Training images whose patches whiten_stem reads."})

    def __post_init__(self) -> None:
        if self.whiten_stem and self.model_name_or_path:
            raise ConfigError(
                f"whiten_stem would overwrite the trained first convolution of {self.model_name_or_path!r}",
                "set whiten_stem: false to fine-tune a checkpoint, or drop model_name_or_path to train a new teacher",
            )
        if self.whiten_images < 1:
            raise ConfigError(f"whiten_images must be >= 1, got {self.whiten_images}", "set whiten_images: 500")


@dataclass
class TeacherTrainingConfig(ImageTrainingArguments):
    output_dir: Optional[str] = field(default="outputs/teacher", metadata={"help": "Where to write the run."})
    eval_flip_tta: bool = field(
        default=False,
        metadata={
            "help": "Also report flip test-time augmentation (logits of the image and its mirror averaged) as "
            "eval_tta_top1. The saved model and the distillation targets are the plain forward."
        },
    )


@dataclass
class EvaluationArguments(DatasetSource):
    """What to evaluate, on what, and where to write the report (``scripts/evaluate_student.py`` flags)."""

    student: Optional[str] = field(
        default=None, metadata={"help": "Required. Student folder or Hub id (a DeiTForImageClassificationWithTeacher)."}
    )
    split: str = field(default="test", metadata={"help": "Split to evaluate on."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N images only."})
    teacher: Optional[str] = field(default=None, metadata={"help": "Also evaluate this teacher (folder or Hub id)."})
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where to write the report. Default: the student folder (so its model card finds it), "
                          "or outputs/eval/<hub id> for a Hub student."},
    )
    batch_size: int = field(default=256, metadata={"help": "Evaluation batch size."})
    num_workers: int = field(default=0, metadata={"help": "Data-loader worker processes (decoding)."})
    device: Optional[str] = field(default=None, metadata={"help": "cuda, cpu, mps... Default: the fastest present."})
    benchmark: bool = field(default=True, metadata={"help": "Measure throughput (batch 256) and latency (batch 1)."})
    benchmark_seconds: float = field(default=3.0, metadata={"help": "Time budget of each throughput measurement."})

    def __post_init__(self) -> None:
        if not self.student:
            raise ValueError("--student is required: a student folder written by scripts/distill.py or a Hub id.")
        if self.max_eval_samples is not None and self.max_eval_samples <= 0:
            raise ValueError(f"max_eval_samples must be positive, got {self.max_eval_samples}; omit it to use all.")
        if self.output_dir is None:
            if os.path.isdir(self.student):
                self.output_dir = self.student
            else:
                self.output_dir = os.path.join("outputs", "eval", self.student.replace("/", "__"))


@dataclass
class PushArguments:
    """``scripts/push_to_hub.py`` flags. No token flag: use HF_TOKEN or `hf auth login`."""

    folder: str = field(metadata={"help": "Student folder written by scripts/distill.py."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. me/deit-tiny-cifar10."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    dry_run: bool = field(
        default=False, metadata={"help": "Write the card and list what would be uploaded; send nothing."}
    )
    dataset_id: Optional[str] = field(default=None, metadata={"help": "Hub id of the training dataset, for the card."})
    teacher: Optional[str] = field(default=None, metadata={"help": "Teacher (Hub id or name), for the card."})
    base_model: Optional[str] = field(default=None, metadata={"help": "Checkpoint the student was fine-tuned from."})
    license: str = field(default="apache-2.0", metadata={"help": "License in the card's metadata."})
    space_id: Optional[str] = field(
        default=None, metadata={"help": "Also create/update this Gradio Space (space/app.py) showing repo_id."}
    )


@dataclass
class SearchArguments:
    """The hyperparameter search (``scripts/hpo.py``): its space, its budget and where the study lives."""

    search_space: str = field(
        default="configs/hpo/space.yaml",
        metadata={"help": "YAML file of the space: key -> {type: float|int|categorical, low, high, log, choices, "
                  "only_if: {key: value}} (configs/hpo/space.yaml)."},
    )
    n_trials: int = field(default=12, metadata={"help": "Trials in the study, all workers together."})
    timeout_minutes: Optional[float] = field(default=None, metadata={"help": "Stop starting trials after this long."})
    storage: Optional[str] = field(
        default=None,
        metadata={"help": "Study database URL (default: sqlite:///OUTPUT_DIR/study.db). Point many workers at one "
                  "database (e.g. postgresql://...) to share a study."},
    )
    study_name: str = field(default="hf-deit", metadata={"help": "Name of the study inside the database."})
    pruner: str = field(default="median", metadata={"help": "median (optuna's MedianPruner on each evaluation) or none."})
    pruner_startup_trials: int = field(default=3, metadata={"help": "Trials that run to the end before any is pruned."})
    sampler_seed: int = field(default=0, metadata={"help": "Seed of the TPE sampler."})

    def __post_init__(self) -> None:
        if self.pruner not in ("median", "none"):
            raise ConfigError(f"pruner must be 'median' or 'none', got {self.pruner!r}", "set pruner: median or none")
        if self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}", "set n_trials to the study's size")


def _known_fields(dataclass_types: Iterable[type]) -> set[str]:
    return {f.name for dc in dataclass_types for f in dataclasses.fields(dc) if f.init}


def _reject_unknown_keys(keys: Iterable[str], known: set[str], source: str) -> None:
    unknown = sorted(set(keys) - known)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    raise ConfigError(f"Unknown configuration key(s) in {source}: {'; '.join(hints)}",
                      "fix the spelling; `--help` lists every key")


def _underscored(argument: str) -> str:
    """``--distillation-type=x`` -> ``--distillation_type=x``: the dashed spelling argparse documents."""
    if not argument.startswith("--"):
        return argument
    key, sep, value = argument[2:].partition("=")
    return "--" + key.replace("-", "_") + sep + value


def _pop_config_path(argv: list[str]) -> Optional[str]:
    """Remove ``--config PATH`` or ``--config=PATH`` from ``argv`` and return PATH."""
    for index, argument in enumerate(argv):
        if argument.startswith("--config="):
            del argv[index]
            return argument.split("=", 1)[1]
        if argument == "--config":
            if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
                raise ConfigError("--config needs a path", "pass --config path/to/file.yaml (see configs/)")
            path = argv[index + 1]
            del argv[index : index + 2]
            return path
    return None


def yaml_to_argv(values: dict[str, Any]) -> list[str]:
    """Render YAML values as command-line flags so argparse types and converts them exactly
    as it does real flags (YAML reads ``5e-4`` as a string; argparse gives a float)."""
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *[str(v) for v in value]]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {str(path)!r} does not exist",
                          "pass --config with a YAML file, e.g. configs/quickstart.yaml")
    with open(path) as handle:
        try:
            values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML ({error})", "fix the line it names") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {str(path)!r} does not hold a mapping",
                          "write one `key: value` per line at the top level")
    return values


def parse_config(
    argv: Optional[Sequence[str]] = None,
    dataclass_types: Sequence[type] = (ModelConfig, DataConfig, DistillationConfig),
) -> tuple:
    """Parse ``--config file.yaml`` plus overriding flags into the given dataclasses.

    Unknown keys, in the YAML file or on the command line, stop the run with the closest valid
    names: a typo such as ``distilation_type`` must never silently fall back to a default. ``--help``
    prints the project's own keys, grouped; ``--help-all`` argparse's full list.
    """
    argv = [_underscored(argument) for argument in (sys.argv[1:] if argv is None else argv)]
    if "-h" in argv or "--help" in argv:
        print(help_text(dataclass_types))
        raise SystemExit(0)
    if "--help_all" in argv:
        parser = HfArgumentParser(list(dataclass_types))
        for action in parser._actions:  # a bare "%" in a help text (some transformers releases) breaks argparse
            if action.help and "%(" not in action.help:
                action.help = action.help.replace("%", "%%")
        parser.parse_args_into_dataclasses(args=["--help"])
    known = _known_fields(dataclass_types)
    yaml_values: dict[str, Any] = {}
    config_path = _pop_config_path(argv)
    if config_path is not None:
        yaml_values = load_yaml(config_path)
        _reject_unknown_keys(yaml_values, known, f"config file {config_path!r}")
    cli_keys = [arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")]
    _reject_unknown_keys(cli_keys, known, "command-line flags")
    _require_keys(dataclass_types, set(yaml_values) | set(cli_keys))
    parser = HfArgumentParser(list(dataclass_types))
    return parser.parse_args_into_dataclasses(args=yaml_to_argv(yaml_values) + argv)


def given_values(argv: Sequence[str], dataclass_types: Sequence[type]) -> dict[str, Any]:
    """The keys of ``dataclass_types`` a user set, in the ``--config`` file or as flags (flags win), as written:
    what a derived config file (the best trial of a search) starts from."""
    argv = [_underscored(argument) for argument in argv]
    config_path = _pop_config_path(argv)
    values = dict(load_yaml(config_path)) if config_path else {}
    key = None
    for argument in argv:
        if argument.startswith("--"):
            key, sep, value = argument[2:].partition("=")
            values[key] = value if sep else []
            key = None if sep else key
        elif key is not None:
            values[key] = values[key] + [argument] if isinstance(values[key], list) else [values[key], argument]
    values = {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in values.items()}
    known = _known_fields(dataclass_types)
    return {k: v for k, v in values.items() if k in known}


def _require_keys(dataclass_types: Sequence[type], given: set[str]) -> None:
    """Keys without a default must be given (argparse would say so too, but with its usage dump)."""
    for dataclass_type in dataclass_types:
        for field_ in dataclasses.fields(dataclass_type):
            required = field_.default is dataclasses.MISSING and field_.default_factory is dataclasses.MISSING
            if field_.init and required and field_.name not in given:
                raise ConfigError(f"--{field_.name} is required ({field_.metadata.get('help', '').rstrip('.')})",
                                  f"pass --{field_.name} VALUE (`--help` lists every key)")


def _help_groups(dataclass_type: type) -> list[tuple[str, list[dataclasses.Field]]]:
    """The keys a dataclass adds to ``TrainingArguments`` (all of them for the others), in titled groups."""
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)} if issubclass(
        dataclass_type, TrainingArguments) else set()
    own = [f for f in dataclasses.fields(dataclass_type) if f.init and f.name not in inherited]
    if dataclass_type is DistillationConfig:
        loss = [f for f in own if f.name.startswith("distillation_")]
        return [("distillation: the loss of the two tokens", loss),
                ("recipe: the DeiT extras (mixing, EMA, repeated augmentation, ...)", [f for f in own if f not in loss])]
    titles = {ModelConfig: "model: the student to train and the teacher to learn from",
              DataConfig: "data: which dataset to read and how to augment it",
              TeacherModelConfig: "model: the CNN teacher to train",
              TeacherTrainingConfig: "recipe: the teacher's training (SGD, TTA, ...)"}
    first_line = (dataclass_type.__doc__ or dataclass_type.__name__).strip().splitlines()[0].rstrip(".")
    return [(titles.get(dataclass_type, first_line), own)]


def _default(field_: dataclasses.Field) -> Any:
    if field_.default is not dataclasses.MISSING:
        return field_.default
    if field_.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field_.default_factory()  # type: ignore[misc]
    return "required"


def help_text(dataclass_types: Sequence[type], width: int = 100) -> str:
    """``--help``: the project's keys first, grouped, each with its default; then where the rest are documented."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "distill.py"
    lines = [f"usage: {prog} --config FILE.yaml [--key value ...]   (--some-key and --some_key are the same)", ""]
    for dataclass_type in dataclass_types:
        for title, fields in _help_groups(dataclass_type):
            lines.append(f"{title}:")
            for field_ in fields:
                text = f"{field_.metadata.get('help', '')} [default: {_default(field_)}]"
                lines += textwrap.wrap(text, width, initial_indent=f"  --{field_.name:34s} ",
                                       subsequent_indent=" " * 39)
            lines.append("")
    if any(issubclass(dataclass_type, TrainingArguments) for dataclass_type in dataclass_types):
        lines += ["Every transformers TrainingArguments key works too (learning_rate, num_train_epochs, bf16, ...):",
                  f"  {TRAINING_ARGUMENTS_DOCS}", "  --help-all lists them all here."]
    return "\n".join(lines)


def config_keys_markdown() -> str:
    """The README's table of configuration keys, generated from the dataclasses so it cannot drift."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    own_training_keys = {f.name for f in dataclasses.fields(DistillationConfig)} - {
        f.name for f in dataclasses.fields(TrainingArguments)
    }
    groups = [
        (ModelConfig, None),
        (DataConfig, None),
        (DistillationConfig, own_training_keys),
    ]
    for dataclass_type, only in groups:
        for f in dataclasses.fields(dataclass_type):
            if not f.init or (only is not None and f.name not in only):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f.metadata.get("help", "").replace("|", "\\|")
            rows.append(f"| `{f.name}` | `{default}` | {help_text} |")
    return "\n".join(rows)
