"""Mimetic attention init: local attention at step 0, a stock model afterwards, refused where it cannot apply."""

import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_deit.config import ConfigError, ModelConfig
from hf_deit.modeling import MIMETIC_VALUE_OUTPUT, build_student

from helpers import CIFAR10_NAMES

ID2LABEL = dict(enumerate(CIFAR10_NAMES))


def student(attention_init: str, distillation_token: bool = True):
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                         image_size=32, patch_size=4, attention_init=attention_init,
                         distillation_token=distillation_token, attn_implementation="eager")
    return build_student(config, ID2LABEL)[0].eval()


def self_attention_weight(model) -> float:
    """Mean attention a token pays to itself in the first layer (uniform over 66 tokens would be 1/66)."""
    torch.manual_seed(1)
    with torch.no_grad():
        attentions = model(pixel_values=torch.randn(4, 3, 32, 32), output_attentions=True).attentions[0]
    return attentions.diagonal(dim1=-2, dim2=-1).mean().item()


def test_mimetic_init_makes_tokens_attend_to_themselves_at_step_zero():
    tokens = 66  # 64 patches + class + distillation
    assert self_attention_weight(student("timm")) < 2 / tokens  # near uniform
    assert self_attention_weight(student("mimetic")) > 5 / tokens


def test_value_output_path_starts_near_minus_identity():
    attention = student("mimetic").base_model.layers[0].attention
    product = attention.v_proj.weight.T @ attention.o_proj.weight.T  # x -> x W_v^T W_o^T
    alpha, beta = MIMETIC_VALUE_OUTPUT
    assert product.diagonal().mean().item() == pytest.approx(beta, abs=0.1)
    off_diagonal = product - torch.diag(product.diagonal())
    assert off_diagonal.std().item() == pytest.approx(alpha / 64**0.5, rel=0.2)


def test_each_head_query_key_product_has_a_positive_diagonal():
    attention = student("mimetic").base_model.layers[1].attention
    head_dim = 32
    for head in range(2):
        rows = slice(head * head_dim, (head + 1) * head_dim)
        product = attention.q_proj.weight[rows].T @ attention.k_proj.weight[rows]
        assert product.diagonal().mean().item() > 0.2


def test_plain_vit_student_takes_the_mimetic_init_too():
    assert self_attention_weight(student("mimetic", distillation_token=False)) > 5 / 65


def test_mimetic_student_saves_and_loads_as_a_stock_model(tmp_path):
    model = student("mimetic")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=pixels).logits, loaded(pixel_values=pixels).logits, atol=1e-5)


def test_attention_init_is_validated_with_the_fix():
    with pytest.raises(ConfigError, match="timm or mimetic"):
        ModelConfig(attention_init="xavier")
    with pytest.raises(ConfigError, match="drop student_model_name_or_path"):
        ModelConfig(attention_init="mimetic", student_model_name_or_path="models/deit-cifar10-student")
