"""Per-head attention maps of the two tokens, their picture and finding, and the plots."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deit.publish.viz import (
    TokenAttention, plot_confusion_matrix, plot_token_attention, plot_training_curves, processed_region, token_head_maps,
)


def test_head_maps_follow_the_attended_patch_of_each_token_and_head():
    tokens = 2 + 16
    weights = torch.zeros(1, 2, tokens, tokens)
    weights[0, 0, 0, 2 + 5] = 1.0  # head 1: the class token reads patch (1, 1)
    weights[0, 0, 1, 2 + 14] = 1.0  # head 1: the distillation token reads patch (3, 2)
    weights[0, 1, 0, 2 + 0] = weights[0, 1, 1, 2 + 0] = 1.0  # head 2: both read patch (0, 0)
    first_layer = torch.zeros_like(weights)
    attention = token_head_maps([first_layer, weights], (4, 4))
    assert attention.layer == 2 and attention.cls.shape == (2, 4, 4)
    assert np.unravel_index(attention.cls[0].argmax(), (4, 4)) == (1, 1)
    assert np.unravel_index(attention.distillation[0].argmax(), (4, 4)) == (3, 2)
    assert attention.head_correlations[1] == pytest.approx(1.0) and attention.head_correlations[0] < 0.5
    assert token_head_maps([first_layer, weights], (4, 4), layer=0).layer == 1


def test_the_finding_says_whether_the_tokens_attend_alike():
    maps = np.random.default_rng(0).random((3, 4, 4))
    alike = TokenAttention(cls=maps, distillation=maps + 0.01, layer=5).finding()
    assert alike.startswith("In layer 5, the two tokens attend alike") and "per head 1.00, 1.00, 1.00" in alike
    apart = TokenAttention(cls=maps, distillation=maps.max() - maps, layer=5).finding()
    assert "look at different parts" in apart and "-1.00" in apart


def test_attention_picture_has_a_row_per_token_and_their_difference():
    maps = np.random.default_rng(0).random((3, 8, 8)) / 64
    picture = plot_token_attention(TokenAttention(cls=maps, distillation=maps[::-1].copy(), layer=5),
                                   Image.new("RGB", (32, 32), (255, 0, 0)))
    assert picture.mode == "RGB" and picture.width > picture.height > 300
    pixels = np.asarray(picture).reshape(-1, 3)
    assert ((pixels[:, 0] > 200) & (pixels[:, 1] < 60)).any()  # red: the input and the difference's scale


def test_no_attentions_is_a_clear_error():
    with pytest.raises(ValueError, match="eager"):
        token_head_maps((), (4, 4))


def test_processed_region_of_resize_then_centre_crop():
    class Stretch:  # ImageNet DeiT: resize to 256x256, crop 224
        do_center_crop, do_resize = True, True
        size, crop_size = {"height": 256, "width": 256}, {"height": 224, "width": 224}

    class Shortest:
        do_center_crop, do_resize = True, True
        size, crop_size = {"shortest_edge": 256}, {"height": 224, "width": 224}

    class Plain:
        do_center_crop = False

    assert processed_region((512, 256), Plain()) == (0, 0, 512, 256)
    assert processed_region((512, 256), Stretch()) == (32, 16, 480, 240)
    assert processed_region((512, 256), Shortest()) == (144, 16, 368, 240)


def test_plots_are_written(tmp_path):
    matrix = np.array([[5, 1], [0, 4]])
    assert Image.open(plot_confusion_matrix(matrix, ["a", "b"], str(tmp_path / "cm.png"))).size[0] > 100
    history = [{"step": 1, "loss": 2.0, "loss_cls": 2.1}, {"step": 2, "loss": 1.5, "loss_cls": 1.6}]
    assert (tmp_path / "c.png").name in plot_training_curves(history, str(tmp_path / "c.png"))
    assert plot_training_curves([{"step": 1, "eval_loss": 1.0}], str(tmp_path / "none.png")) is None
