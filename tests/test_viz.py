"""Attention maps (rollout / last layer), overlays and plots."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deit.publish.viz import attention_rollout, overlay_heatmap, plot_confusion_matrix, plot_training_curves, processed_region, token_attention_maps


def _random_attentions(layers=3, heads=2, tokens=2 + 16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, heads, tokens, tokens, generator=generator).softmax(-1) for _ in range(layers)]


def test_rollout_rows_are_distributions_and_identity_for_no_mixing():
    rollout = attention_rollout(_random_attentions())
    assert torch.allclose(rollout.sum(-1), torch.ones(1, 18), atol=1e-5)
    # Tokens that only attend to themselves are their own source: rollout is the identity.
    assert torch.allclose(attention_rollout([torch.eye(5).expand(1, 2, 5, 5)] * 3), torch.eye(5).expand(1, 5, 5))


def test_token_maps_follow_the_attended_patch():
    tokens = 2 + 16
    weights = torch.zeros(1, 1, tokens, tokens)
    weights[0, 0, :, :] = torch.eye(tokens)
    weights[0, 0, 0] = 0
    weights[0, 0, 0, 2 + 5] = 1.0  # class token reads patch (1, 1)
    weights[0, 0, 1] = 0
    weights[0, 0, 1, 2 + 14] = 1.0  # distillation token reads patch (3, 2)
    for method in ("rollout", "last"):
        cls_map, dist_map = token_attention_maps([weights], (4, 4), method)
        assert cls_map.shape == (4, 4) and np.unravel_index(cls_map.argmax(), (4, 4)) == (1, 1)
        assert np.unravel_index(dist_map.argmax(), (4, 4)) == (3, 2)
        assert cls_map.min() == 0.0 and cls_map.max() == 1.0


def test_no_attentions_is_a_clear_error():
    with pytest.raises(ValueError, match="eager"):
        token_attention_maps((), (4, 4))


def test_overlay_has_the_image_size_and_dims_cropped_border():
    image = Image.new("RGB", (50, 30), (200, 200, 200))
    heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    overlay = overlay_heatmap(image, heat)
    assert overlay.size == (50, 30) and overlay.mode == "RGB"
    cropped = np.asarray(overlay_heatmap(image, heat, region=(10, 5, 40, 25)))
    assert cropped[0, 0].tolist() == [80, 80, 80]  # outside the region: the model never saw it


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
