"""hf-deit: data-efficient image transformers trained by distillation through attention."""

__version__ = "0.1.0"
