"""hf-deit: data-efficient image transformers trained by distillation through attention."""

__version__ = "0.1.0"
from .modeling import load_student  # noqa: F401  (the one-line way back from a saved student)
