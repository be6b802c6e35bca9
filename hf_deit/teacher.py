"""The teacher: any frozen ``AutoModelForImageClassification``, seen through the student's batch.

:class:`TeacherWrapper` takes the student's already-normalised ``pixel_values`` and, on the
device, converts them into the teacher's own input space (undo the student normalisation,
resize, apply the teacher's), so images are decoded once. It then returns the teacher's
logits re-ordered into the student's label order: label spaces are matched by *names*.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel

from .modeling import processor_size, safe_from_pretrained

logger = logging.getLogger(__name__)


def _normalise_name(name: str) -> str:
    return str(name).strip().lower().replace("_", " ")


def label_permutation(teacher_id2label: dict[int, str], student_label_names: Sequence[str]) -> list[int]:
    """Index into the teacher's logits for each student class, matched by (case-insensitive) name.

    Raises a ``ValueError`` naming both label sets when they differ: comparing indices of two
    unrelated label spaces would train the student on noise without any visible error.
    """
    teacher_names = [teacher_id2label[i] for i in sorted(int(k) for k in teacher_id2label)]
    teacher_index = {_normalise_name(name): index for index, name in enumerate(teacher_names)}
    student_keys = [_normalise_name(name) for name in student_label_names]
    if len(teacher_names) != len(student_label_names) or set(teacher_index) != set(student_keys):
        missing = sorted(set(student_keys) - set(teacher_index))
        extra = sorted(set(teacher_index) - set(student_keys))
        raise ValueError(
            "The teacher's labels do not match the dataset's labels, so its predictions cannot be used as "
            f"targets.\n  dataset ({len(student_label_names)}): {list(student_label_names)}\n"
            f"  teacher ({len(teacher_names)}): {teacher_names}\n"
            f"  missing from the teacher: {missing}; only in the teacher: {extra}.\n"
            "Use a teacher trained on the same classes (scripts/train_teacher.py fine-tunes one)."
        )
    return [teacher_index[key] for key in student_keys]


def teacher_input_affine(
    student_mean: Sequence[float],
    student_std: Sequence[float],
    teacher_mean: Sequence[float],
    teacher_std: Sequence[float],
    teacher_rescale_factor: Optional[float] = 1 / 255,
    teacher_normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` with ``x_teacher = x_student * scale + shift``.

    The student's batch is ``(pixels / 255 - mean) / std``. The teacher's processor maps pixels
    (0..255) to its input by ``* rescale_factor`` when ``do_rescale`` (``teacher_rescale_factor``;
    ``None``: no rescale) and then ``(x - mean) / std`` when ``do_normalize``. Both steps are affine,
    so the whole conversion folds into one multiply-add.
    """
    pixels_scale = torch.tensor(student_std, dtype=torch.float64) * 255  # pixels = x * this + pixels_shift
    pixels_shift = torch.tensor(student_mean, dtype=torch.float64) * 255
    rescale = 1.0 if teacher_rescale_factor is None else float(teacher_rescale_factor)
    scale, shift = pixels_scale * rescale, pixels_shift * rescale
    if teacher_normalize:
        mean = torch.tensor(teacher_mean, dtype=torch.float64)
        std = torch.tensor(teacher_std, dtype=torch.float64)
        scale, shift = scale / std, (shift - mean) / std
    return scale.float(), shift.float()


def teacher_processor_flags(processor: Any) -> dict[str, Any]:
    """The preprocessing flags of a teacher's image processor that :class:`TeacherWrapper` honours.

    Rescale and normalise are affine and folded into the conversion. Flags it cannot reproduce on an
    already-decoded batch stop the run rather than feed the teacher inputs it never saw.
    """
    if getattr(processor, "do_resize", True) is False:
        raise ValueError(
            "The teacher's image processor has do_resize: false, so its input size depends on each image; the "
            "teacher sees the student's batch resized to one size. Save the teacher with a processor that resizes "
            "to its training resolution (do_resize: true and size)."
        )
    do_rescale = getattr(processor, "do_rescale", True)
    return {
        "teacher_rescale_factor": float(getattr(processor, "rescale_factor", 1 / 255)) if do_rescale else None,
        "teacher_normalize": bool(getattr(processor, "do_normalize", True)),
    }


class TeacherWrapper(nn.Module):
    """Frozen teacher in eval mode that maps student batches to aligned teacher logits."""

    def __init__(
        self,
        teacher: PreTrainedModel,
        student_label_names: Sequence[str],
        student_mean: Sequence[float],
        student_std: Sequence[float],
        teacher_size: tuple[int, int],
        teacher_mean: Sequence[float],
        teacher_std: Sequence[float],
        channels_last: bool = False,
        compile: bool = False,
        teacher_rescale_factor: Optional[float] = 1 / 255,
        teacher_normalize: bool = True,
    ) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.teacher.to(memory_format=torch.channels_last)
        # Compiled as a function, not a module attribute: the wrapper's modules (and what accelerate moves
        # and prepares) stay the teacher's own.
        self._run_teacher = torch.compile(self.teacher.forward) if compile else self.teacher.forward
        permutation = label_permutation(teacher.config.id2label, student_label_names)
        self.identity_order = permutation == list(range(len(permutation)))
        self.register_buffer("permutation", torch.tensor(permutation, dtype=torch.long), persistent=False)
        self.teacher_size = tuple(teacher_size)
        scale, shift = teacher_input_affine(
            student_mean, student_std, teacher_mean, teacher_std, teacher_rescale_factor, teacher_normalize
        )
        identity = torch.allclose(scale, torch.ones_like(scale), atol=1e-6)
        self.same_normalisation = identity and torch.allclose(shift, torch.zeros_like(shift), atol=1e-6)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "TeacherWrapper":
        # The teacher stays in eval mode (batch-norm statistics, dropout) whatever the caller does.
        return super().train(False)

    def to_teacher_space(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not self.same_normalisation:
            pixel_values = pixel_values * self.scale + self.shift
        if tuple(pixel_values.shape[-2:]) != self.teacher_size:
            pixel_values = F.interpolate(
                pixel_values, size=self.teacher_size, mode="bicubic", align_corners=False, antialias=True
            )
        return pixel_values

    @property
    def dtype(self) -> torch.dtype:
        return self.teacher.dtype

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = self.to_teacher_space(pixel_values.float()).to(self.dtype)
        if self.memory_format is torch.channels_last and pixel_values.dim() == 4:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        logits = self._run_teacher(pixel_values=pixel_values).logits
        if not self.identity_order:
            logits = logits.index_select(-1, self.permutation)
        return logits.float()


def load_teacher(
    name_or_path: str,
    student_label_names: Sequence[str],
    student_image_processor: Any,
    trust_remote_code: bool = False,
    torch_dtype: Optional[torch.dtype | str] = None,
    channels_last: bool = False,
    compile: bool = False,
) -> TeacherWrapper:
    """Load a teacher checkpoint (safetensors only) and its image processor, wrapped and frozen.

    ``torch_dtype`` (e.g. ``"bfloat16"``) halves the teacher's memory and, on hardware with bf16 units,
    its forward time; the logits it returns are float32 either way, so the loss is computed as before.
    """
    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype)
    teacher = safe_from_pretrained(
        AutoModelForImageClassification,
        name_or_path,
        trust_remote_code,
        "Pass --teacher_model_name_or_path with a local folder or a Hub id of an image-classification model, or "
        "set --distillation_type none to train without a teacher",
        "the teacher",
        dtype=torch_dtype,
    )
    try:
        teacher_processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError:
        logger.warning("Teacher %s has no image processor: assuming the student's preprocessing.", name_or_path)
        teacher_processor = student_image_processor
    return TeacherWrapper(
        teacher,
        student_label_names,
        student_mean=student_image_processor.image_mean,
        student_std=student_image_processor.image_std,
        teacher_size=processor_size(teacher_processor),
        teacher_mean=teacher_processor.image_mean,
        teacher_std=teacher_processor.image_std,
        channels_last=channels_last,
        compile=compile,
        **teacher_processor_flags(teacher_processor),
    )
