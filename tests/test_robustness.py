"""Bad inputs: corrupt images, odd pixel formats, huge images, empty splits, bad labels, NaN losses.

Each test is a row of docs/results/robustness.md.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image as ImageFeature, Value
from PIL import Image

import hf_deit.data.datasets
import hf_deit.training.trainer
from hf_deit.config import DataConfig, ModelConfig
from hf_deit.data.transforms import collate_fn
from hf_deit.data.datasets import load_image_classification_data
from hf_deit.cli.distill import main
from hf_deit.data.images import BadImageError, decode_image
from hf_deit.modeling import student_image_processor
from hf_deit.training.nonfinite import NonFiniteLossError

from helpers import CIFAR10_NAMES, REPO, with_inputs
from test_end_to_end import tiny_run_args

NAMES = ["cat", "dog"]
FEATURES = Features({"image": ImageFeature(), "label": ClassLabel(names=NAMES)})
PROCESSOR = student_image_processor(ModelConfig(image_size=32, patch_size=4))
MEAN, STD = np.array(PROCESSOR.image_mean), np.array(PROCESSOR.image_std)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def good_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(24, 20, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


def corrupt_images() -> dict[str, bytes]:
    jpeg = encode(Image.fromarray(np.full((64, 64, 3), 90, np.uint8)), "JPEG")
    return {
        "truncated png": good_png(99)[:60],
        "truncated jpeg": jpeg[: len(jpeg) // 2],
        "not an image": b"this is not an image at all",
        "empty bytes": b"",
    }


def write_dataset(root: Path, splits: dict[str, list[tuple[bytes, int]]], features: Features = FEATURES) -> Path:
    """A local dataset in the Hub's parquet layout (data/<split>-00000.parquet)."""
    (root / "data").mkdir(parents=True)
    for split, rows in splits.items():
        table = {"image": [{"bytes": data, "path": None} for data, _ in rows], "label": [label for _, label in rows]}
        Dataset.from_dict(table, features=features).to_parquet(str(root / "data" / f"{split}-00000.parquet"))
    return root


def dataset_with_bad_rows(root: Path, bad_rows: dict[int, bytes], n: int = 12) -> Path:
    train = [(bad_rows.get(i, good_png(i)), i % 2) for i in range(n)]
    test = [(good_png(100 + i), i % 2) for i in range(4)]
    return write_dataset(root, {"train": train, "test": test})


def loaded(root: Path, **config) -> tuple:
    data_config = DataConfig(dataset_name=str(root), random_crop_padding=0, horizontal_flip=False, **config)
    data = load_image_classification_data(data_config)
    return with_inputs(data, PROCESSOR, data_config), data_config


# -- corrupt / truncated image bytes --------------------------------------------------------------


def test_corrupt_images_are_skipped_and_named_by_row(tmp_path, caplog):
    bad = corrupt_images()
    bad_rows = {3: bad["truncated png"], 7: bad["not an image"], 8: bad["truncated jpeg"], 10: bad["empty bytes"]}
    root = dataset_with_bad_rows(tmp_path / "ds", bad_rows)
    data, _ = loaded(root)  # bad_images defaults to skip
    with caplog.at_level(logging.WARNING, logger="hf_deit.data"):
        batch = data.train.__getitems__(list(range(12)))
    assert len(batch) == 8  # the 4 bad rows are dropped, the 8 good ones kept in order
    pixels = collate_fn(batch)["pixel_values"]
    assert pixels.shape == (8, 3, 32, 32) and torch.isfinite(pixels).all()
    warned = "\n".join(record.getMessage() for record in caplog.records)
    for row in (3, 7, 8, 10):
        assert f"train row {row}" in warned
    assert "4 skipped so far" in warned and "bad_images: fail" in warned


def test_corrupt_image_fails_naming_row_and_fix(tmp_path):
    root = dataset_with_bad_rows(tmp_path / "ds", {5: corrupt_images()["truncated jpeg"]})
    data, _ = loaded(root, bad_images="fail")
    assert data.train[4]["pixel_values"].shape == (3, 32, 32)
    with pytest.raises(BadImageError, match=r"train row 5.*bad_images: skip"):
        data.train.__getitems__([4, 5, 6])


def test_corrupt_eval_image_is_left_out_of_the_batch(tmp_path):
    test = [(good_png(0), 0), (corrupt_images()["not an image"], 1), (good_png(2), 0)]
    root = write_dataset(tmp_path / "ds", {"train": [(good_png(i), i % 2) for i in range(4)], "test": test})
    data, _ = loaded(root)
    batch = data.eval[0:3]
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [0, 0]


def test_a_batch_of_only_corrupt_images_is_an_error(tmp_path):
    bad = corrupt_images()["not an image"]
    root = dataset_with_bad_rows(tmp_path / "ds", {0: bad, 1: bad})
    data, _ = loaded(root)
    with pytest.raises(BadImageError, match="None of the 2 image"):
        data.train.__getitems__([0, 1])


def test_training_run_skips_corrupt_images(tmp_path, tiny_teacher, caplog):
    bad = corrupt_images()
    rows = [(bad["truncated png"] if i in (2, 9) else good_png(i), i % 10) for i in range(32)]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=CIFAR10_NAMES)})
    root = write_dataset(tmp_path / "ds", {"train": rows, "test": [(good_png(50 + i), i) for i in range(10)]}, features)
    with caplog.at_level(logging.WARNING, logger="hf_deit.data"):
        metrics = main(tiny_run_args(root, tmp_path / "out", "--max_train_samples", "32", "--max_eval_samples", "10",
                                     "--teacher_model_name_or_path", str(tiny_teacher),
                                     "--device_resident_data", "false"))  # the data-loader's per-batch skipping
    assert metrics["train_images"] == 32 and 0.0 <= metrics["eval_fused_top1"] <= 1.0
    warned = "\n".join(record.getMessage() for record in caplog.records)
    assert "train row 2" in warned and "train row 9" in warned


# -- pixel formats --------------------------------------------------------------------------------


def _palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    if transparent:
        image.info["transparency"] = 1
    return image


def _mode_cases() -> dict[str, tuple[Image.Image, str, tuple[int, int, int]]]:
    """mode -> (image, file format, expected RGB of every pixel)."""
    sixteen = Image.fromarray(np.full((16, 16), 32896, np.uint16))  # 32896 / 257 = 128
    return {
        "L": (Image.new("L", (16, 16), 100), "PNG", (100, 100, 100)),
        "RGBA opaque": (Image.new("RGBA", (16, 16), (200, 10, 20, 255)), "PNG", (200, 10, 20)),
        "RGBA transparent": (Image.new("RGBA", (16, 16), (0, 0, 0, 0)), "PNG", (255, 255, 255)),
        "CMYK": (Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "TIFF", (0, 255, 255)),
        "P": (_palette(False), "PNG", (10, 20, 30)),
        "P transparent": (_palette(True), "PNG", (255, 255, 255)),
        "LA": (Image.new("LA", (16, 16), (50, 255)), "PNG", (50, 50, 50)),
        "LA transparent": (Image.new("LA", (16, 16), (50, 0)), "PNG", (255, 255, 255)),
        "I;16": (sixteen, "PNG", (128, 128, 128)),
        "I 16-bit range": (Image.fromarray(np.full((16, 16), 65535, np.int32)), "TIFF", (255, 255, 255)),
        "I 8-bit range": (Image.fromarray(np.full((16, 16), 200, np.int32)), "TIFF", (200, 200, 200)),
        "F": (Image.fromarray(np.full((16, 16), 0.5, np.float32)), "TIFF", (128, 128, 128)),
    }


@pytest.mark.parametrize("case", list(_mode_cases()))
def test_every_pixel_format_becomes_the_right_rgb(case, tmp_path):
    image, fmt, expected = _mode_cases()[case]
    data = encode(image, fmt)
    assert Image.open(io.BytesIO(data)).mode == image.mode  # the file really holds that mode
    decoded = decode_image({"bytes": data, "path": None})
    assert decoded.mode == "RGB"
    assert (np.asarray(decoded) == np.array(expected, np.uint8)).all()

    # The train and the eval transforms (crop/flip off) see exactly that colour, normalised.
    root = write_dataset(tmp_path / "ds", {"train": [(data, 0), (data, 1)], "test": [(data, 0)]})
    loaded_data, _ = loaded(root)
    want = torch.tensor((np.array(expected) / 255.0 - MEAN) / STD, dtype=torch.float32).view(3, 1, 1)
    for pixels in (loaded_data.train[0]["pixel_values"], loaded_data.eval[0:1]["pixel_values"][0]):
        torch.testing.assert_close(pixels, want.expand(3, 32, 32), atol=0.02, rtol=0)


def test_16_bit_gradient_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(16, 64)
    decoded = np.asarray(decode_image({"bytes": encode(Image.fromarray(ramp)), "path": None}))[..., 0]
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.abs(decoded.astype(int) - expected).max() <= 1
    assert len(np.unique(decoded)) > 200  # Pillow's convert("RGB") would clip all but the darkest to 255


# -- huge images ----------------------------------------------------------------------------------

HUGE_SIDE = 10_000


@pytest.fixture(scope="module")
def huge_images(tmp_path_factory) -> dict[str, bytes]:
    """10,000 x 10,000 solid-colour images: a few KB as PNG, ~2 MB as JPEG, 100-300 MB decoded."""
    root = tmp_path_factory.mktemp("huge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        grey = Image.new("L", (HUGE_SIDE, HUGE_SIDE), 77)
        png = encode(grey)
        rgb = Image.new("RGB", (HUGE_SIDE, HUGE_SIDE), (30, 160, 220))
        jpeg = encode(rgb, "JPEG", quality=95)
    del grey, rgb
    (root / "huge.jpg").write_bytes(jpeg)
    return {"png": png, "jpeg": jpeg, "jpeg_path": str(root / "huge.jpg")}


def test_10000px_image_trains_and_evaluates(huge_images, tmp_path):
    rows = [(huge_images["png"], 0), (huge_images["jpeg"], 1)]
    root = write_dataset(tmp_path / "ds", {"train": rows, "test": rows})
    data, _ = loaded(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # silenced: large images are legitimate
        train = collate_fn(data.train.__getitems__([0, 1]))["pixel_values"]
        evaluated = data.eval[0:2]["pixel_values"]
    for pixels in (train, evaluated):
        assert pixels.shape == (2, 3, 32, 32)
        for index, colour in ((0, (77, 77, 77)), (1, (30, 160, 220))):
            want = torch.tensor((np.array(colour) / 255.0 - MEAN) / STD, dtype=torch.float32).view(3, 1, 1)
            torch.testing.assert_close(pixels[index], want.expand(3, 32, 32), atol=0.05, rtol=0)


def test_10000px_jpeg_is_decoded_at_reduced_scale_in_bounded_memory(huge_images):
    """Full decoding would allocate 300 MB; DCT-scaled decoding stays far below that."""
    code = (  # hf_deit.images alone (numpy + Pillow): importing the package would load torch first
        "import importlib.util, resource, sys\n"
        "spec = importlib.util.spec_from_file_location('images', sys.argv[2])\n"
        "images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)\n"
        "decode_image = images.decode_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = decode_image(sys.argv[1])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(image.size[0], image.size[1], (after - before) // 1024)\n"
    )
    images_py = str(REPO / "hf_deit" / "data" / "images.py")
    out = subprocess.run([sys.executable, "-c", code, huge_images["jpeg_path"], images_py], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout.split()
    width, height, grown_mb = map(int, out)
    assert 1024 <= min(width, height) < 2048  # 1/8 scale: 1250 x 1250
    assert grown_mb < 100, f"decoding grew the process by {grown_mb} MB"


def test_image_over_pillows_bomb_limit_is_a_bad_image(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # errors above 2x = 2000 pixels
    data = encode(Image.new("RGB", (100, 100), "red"))
    with pytest.raises(BadImageError, match="MAX_IMAGE_PIXELS"):
        decode_image({"bytes": data, "path": None})


# -- empty splits ---------------------------------------------------------------------------------


def test_empty_split_file_is_a_clear_error(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": [(good_png(0), 0), (good_png(1), 1)], "test": []})
    with pytest.raises(ValueError, match="A split of .* is empty"):
        load_image_classification_data(DataConfig(dataset_name=str(root)))


@pytest.mark.parametrize("empty", ["train", "test"])
def test_empty_split_in_memory_is_a_clear_error(empty, monkeypatch):
    one_row = {"image": [{"bytes": good_png(0), "path": None}], "label": [0]}
    splits = {name: Dataset.from_dict({"image": [], "label": []} if name == empty else one_row, features=FEATURES)
              for name in ("train", "test")}
    monkeypatch.setattr(hf_deit.data.datasets, "_load_raw", lambda config: DatasetDict(splits))
    expected = "train split" if empty == "train" else r"evaluation \(test\) split"
    with pytest.raises(ValueError, match=f"The {expected} of 'mem' is empty"):
        load_image_classification_data(DataConfig(dataset_name="mem"))


def test_too_small_train_split_to_hold_out_is_a_clear_error(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": [(good_png(0), 0)]})
    with pytest.raises(ValueError, match="only 1 image.*too few to hold out"):
        load_image_classification_data(DataConfig(dataset_name=str(root)))


# -- labels outside the label set -----------------------------------------------------------------


def _raw_labels_dataset(root: Path, train_labels: list[int], test_labels: list[int]) -> Path:
    """Bypasses ClassLabel's own check (a plain int column cast to ClassLabel) as a broken dataset would."""
    (root / "data").mkdir(parents=True)
    plain = Features({"image": ImageFeature(), "label": Value("int64")})
    for split, labels in (("train", train_labels), ("test", test_labels)):
        images = [{"bytes": good_png(i), "path": None} for i in range(len(labels))]
        dataset = Dataset.from_dict({"image": images, "label": labels}, features=plain)
        dataset.cast_column("label", ClassLabel(names=NAMES)).to_parquet(str(root / "data" / f"{split}-00000.parquet"))
    return root


def test_label_at_or_above_num_classes_names_row_and_value(tmp_path):
    root = _raw_labels_dataset(tmp_path / "ds", [0, 1, 0, 7, 1, 2], [0, 1])
    message = r"2 label\(s\) of the train split are outside the 2 classes.*row 3: 7, row 5: 2"
    with pytest.raises(ValueError, match=message):
        load_image_classification_data(DataConfig(dataset_name=str(root)))


def test_negative_label_names_row_and_suggests_another_split(tmp_path):
    root = _raw_labels_dataset(tmp_path / "ds", [0, 1, 0, 1], [0, -1, -1])
    with pytest.raises(ValueError, match=r"of the test split .*row 1: -1, row 2: -1.*unlabelled.*eval_split"):
        load_image_classification_data(DataConfig(dataset_name=str(root)))


def test_missing_label_names_the_rows(tmp_path):
    root = _raw_labels_dataset(tmp_path / "ds", [0, 1, None, 1], [0, 1])
    with pytest.raises(ValueError, match=r"1 row\(s\) of the train split have no label \(first: rows 2\)"):
        load_image_classification_data(DataConfig(dataset_name=str(root)))


# -- the new keys' own bad values -----------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--bad_images", "ignore"], r"bad_images must be one of \('skip', 'fail'\)"),
    (["--nonfinite_loss_check", "sometimes"], r"nonfinite_loss_check must be one of \('auto', 'step', 'deferred'"),
])
def test_new_keys_reject_bad_values(flags, message):
    from hf_deit.config import parse_config

    with pytest.raises(ValueError, match=message):
        parse_config(flags)


# -- non-finite loss ------------------------------------------------------------------------------


def _nan_from_call(monkeypatch, bad_call: int) -> None:
    """Make the loss function return NaN (in the class-head term) from its `bad_call`-th training call on."""
    original = hf_deit.training.trainer.deit_distillation_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = original(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] >= bad_call:
                parts.base_loss = parts.base_loss * float("nan")
                parts.loss = parts.loss + parts.base_loss
        return parts

    monkeypatch.setattr(hf_deit.training.trainer, "deit_distillation_loss", poisoned)


@pytest.mark.parametrize("mode", ["step", "deferred"])
def test_nonfinite_loss_stops_before_saving_and_keeps_the_last_checkpoint(mode, monkeypatch, sample_dir,
                                                                             tiny_teacher, tmp_path):
    from transformers import DeiTForImageClassificationWithTeacher
    from transformers.trainer_utils import get_last_checkpoint

    _nan_from_call(monkeypatch, bad_call=3)  # 64 images / batch 16 = 4 steps; step 3 is bad
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:  # deferred: noticed at step 4's log/save, before writing
        main(tiny_run_args(sample_dir, out, "--teacher_model_name_or_path", str(tiny_teacher),
                           "--save_strategy", "steps", "--save_steps", "2", "--nonfinite_loss_check", mode))
    message = str(error.value)
    assert "global step 3" in message and "loss_cls=nan" in message and "loss_cls is the non-finite part" in message
    assert f"{out / 'checkpoint-2'}, is intact" in message
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # no checkpoint-4
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-2")
    assert not (out / "model.safetensors").exists()  # the final save never happened
    model = DeiTForImageClassificationWithTeacher.from_pretrained(out / "checkpoint-2")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_evaluation_script_skips_a_corrupt_image_naming_its_row(tmp_path, tiny_teacher, caplog):
    """scripts/evaluate_student.py decodes like training: the bad row is named and left out, not a crash
    inside `datasets` without a row number."""
    from hf_deit.cli.evaluate import main as evaluate_main
    from hf_deit.modeling import build_student

    test = [(good_png(i), i % 10) for i in range(6)]
    test[3] = (corrupt_images()["truncated jpeg"], 3)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=CIFAR10_NAMES)})
    root = write_dataset(tmp_path / "ds", {"train": test, "test": test}, features)
    student, processor = build_student(ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=64, patch_size=8),
                                       dict(enumerate(CIFAR10_NAMES)))
    student.save_pretrained(tmp_path / "student")
    processor.save_pretrained(tmp_path / "student")
    with caplog.at_level(logging.WARNING, logger="hf_deit.data"):
        results = evaluate_main(["--student", str(tmp_path / "student"), "--dataset_name", str(root), "--split", "test",
                                 "--output_dir", str(tmp_path / "eval"), "--benchmark_seconds", "0.1"])
    assert results["num_images"] == 5
    assert "evaluation row 3" in "\n".join(record.getMessage() for record in caplog.records)
