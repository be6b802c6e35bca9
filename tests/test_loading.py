"""load_student: a trained student back for inference, safely (safetensors only, no remote code)."""

import shutil

import pytest
import torch
from PIL import Image

from hf_deit import load_student
from tiny_student import tiny_student  # noqa: F401  (fixture)


def test_loads_student_and_processor_in_eval_mode(tiny_student):
    from transformers import DeiTForImageClassificationWithTeacher, pipeline

    model, processor = load_student(str(tiny_student), device="cpu")
    assert isinstance(model, DeiTForImageClassificationWithTeacher) and not model.training
    assert next(model.parameters()).device.type == "cpu"
    assert model.config.id2label[0] == "airplane" and processor.size == {"height": 32, "width": 32}

    image = Image.open("space/examples/cat.png").convert("RGB")
    with torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits[0]
    expected = pipeline("image-classification", model=str(tiny_student), device="cpu")(image, top_k=1)[0]["label"]
    assert model.config.id2label[int(logits.argmax())] == expected


def test_eager_attention_returns_weights(tiny_student):
    model, processor = load_student(str(tiny_student), device="cpu", attn_implementation="eager")
    outputs = model(pixel_values=torch.zeros(1, 3, 32, 32), output_attentions=True)
    assert len(outputs.attentions) == model.config.num_hidden_layers
    assert outputs.attentions[0].shape == (1, 2, 18, 18)  # 2 heads, 2 tokens + 4x4 patches


def test_refuses_pickled_weights(tiny_student, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_student, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError, match="Could not load the student"):
        load_student(str(folder), device="cpu")


def test_refuses_a_model_without_distillation_head(tmp_path):
    from transformers import DeiTConfig, DeiTForImageClassification, DeiTImageProcessor

    config = DeiTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        image_size=16, patch_size=8, num_labels=3)
    DeiTForImageClassification(config).save_pretrained(tmp_path)
    DeiTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a DeiT student with a distillation token"):
        load_student(str(tmp_path), device="cpu")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="Could not load the student"):
        load_student(str(tmp_path / "missing"), device="cpu")
