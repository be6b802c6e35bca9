"""Constants and builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "data" / "cifar10-sample"
EMBEDDED_TEACHER = REPO / "models" / "teacher-cifar10-resnet"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def save_tiny_teacher(path: Path, label_names: list[str], image_size: int = 32, mean=None, std=None, seed: int = 0):
    """A random 2-stage RegNet with its own image processor, saved in HF format."""
    import torch
    from transformers import RegNetConfig, RegNetForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = RegNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        groups_width=8,
        layer_type="x",
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    model = RegNetForImageClassification(config).eval()
    model.save_pretrained(path)
    ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=mean or [0.5, 0.5, 0.5],
        image_std=std or [0.25, 0.25, 0.25],
    ).save_pretrained(path)
    return path


TINY_STUDENT_ARGS = [
    "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2",
    "--intermediate_size", "64", "--image_size", "32", "--patch_size", "8",
]


def with_inputs(data, processor, config):
    """``data`` with its train split as the trainer reads it and its evaluation split preprocessed (a copy)."""
    import dataclasses

    from hf_deit.data.inputs import evaluation_set, train_set

    return dataclasses.replace(data, train=train_set(data, processor, config),
                               eval=evaluation_set(data.eval, data, processor, config))
