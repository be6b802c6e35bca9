"""The Gradio demo (space/app.py), served on localhost and queried like users do: gradio_client and a browser."""

from __future__ import annotations

import contextlib
import sys
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO
from tiny_student import tiny_student  # noqa: F401  (fixture)

EXAMPLES = sorted((REPO / "space" / "examples").glob("*.png"))
CHROMIUM = Path("/usr/bin/chromium")


sys.path.insert(0, str(REPO / "benchmarks"))
from space_screenshots import free_port as _free_port, load_app as _load_app_module  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return _load_app_module()


@contextlib.contextmanager
def _serve(app, model: str):
    demo = app.build_demo(model)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                           quiet=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def server(app, tiny_student):
    with _serve(app, str(tiny_student)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


def _classify(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/classify")


def test_examples_ship_one_png_per_class():
    from helpers import CIFAR10_NAMES

    assert [path.stem for path in EXAMPLES] == sorted(CIFAR10_NAMES)
    assert all(Image.open(path).format == "PNG" for path in EXAMPLES)


def test_predictions_equal_the_stock_pipeline(client, tiny_student):
    from transformers import pipeline

    from hf_deit import load_student

    classifier = pipeline("image-classification", model=str(tiny_student), device="cpu")
    model, processor = load_student(str(tiny_student), device="cpu")
    for path in EXAMPLES:
        image = Image.open(path).convert("RGB")
        fused, cls_head, distill_head, _, _ = _classify(client, path)
        expected = {row["label"]: row["score"] for row in classifier(image, top_k=5)}
        assert fused["label"] == max(expected, key=expected.get), path.name
        shown = {row["label"]: row["confidence"] for row in fused["confidences"]}
        assert shown.keys() == expected.keys()
        assert all(abs(shown[label] - expected[label]) < 1e-4 for label in shown), path.name
        outputs = model(**processor(image, return_tensors="pt"))
        assert cls_head["label"] == model.config.id2label[int(outputs.cls_logits.argmax())]
        assert distill_head["label"] == model.config.id2label[int(outputs.distillation_logits.argmax())]


def test_rgba_upload_matches_the_pipeline_on_to_rgb(client, tiny_student, tmp_path):
    """The Space converts as training does (transparency over white); pipeline() does so when given to_rgb's image."""
    from transformers import pipeline

    from hf_deit.data.images import to_rgb

    image = Image.open(EXAMPLES[6]).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    path = tmp_path / "half-transparent.png"
    image.save(path)
    fused, *_ = _classify(client, path)
    expected = pipeline("image-classification", model=str(tiny_student), device="cpu")(to_rgb(image), top_k=5)
    shown = {row["label"]: row["confidence"] for row in fused["confidences"]}
    assert all(abs(shown[row["label"]] - row["score"]) < 1e-4 for row in expected)


def test_attention_picture_and_its_reading(client, tmp_path):
    path = tmp_path / "wide.png"
    Image.open(EXAMPLES[0]).convert("RGB").resize((70, 45)).save(path)
    *_, attention, reading = _classify(client, path)
    with Image.open(attention) as picture:
        assert picture.mode == "RGB" and picture.width > 400
    assert "How to read it" in reading and "In layer 2, the two tokens" in reading and "per head" in reading


def test_overlays_are_written_once_and_never_rewritten(app, tmp_path):
    """Gradio rewrites a returned PIL image's cache file on every request, so a concurrent download of the
    same overlay could read it truncated. Our overlay files are content-addressed and written once."""
    overlay = Image.open(EXAMPLES[0]).convert("RGB")
    first = Path(app.save_overlay(overlay, "class-token-attention", folder=str(tmp_path)))
    before = first.stat()
    second = Path(app.save_overlay(overlay.copy(), "class-token-attention", folder=str(tmp_path)))
    assert second == first and first.name == "class-token-attention.png"
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    with Image.open(first) as picture:
        assert np.array_equal(np.asarray(picture), np.asarray(overlay))
    other = Path(app.save_overlay(overlay.rotate(90), "class-token-attention", folder=str(tmp_path)))
    assert other != first
    assert not [path for path in tmp_path.rglob(".*")], "a staging file was left behind"


def test_served_overlays_live_in_the_upload_folder(client, app):
    """Served as they are (no copy into Gradio's cache, which would bring back the rewrite race)."""
    *_, attention, _ = _classify(client, EXAMPLES[1])
    overlays = Path(app.upload_folder()) / "hf-deit-overlays"
    served = [path for path in overlays.glob("*/token-attention.png") if path.read_bytes() == Path(attention).read_bytes()]
    assert served, f"token-attention.png was not served from {overlays}"


def test_malloc_arenas_are_capped_unless_the_user_set_them(app, monkeypatch):
    import platform
    import sys

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert app.limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert app.limit_malloc_arenas() is True


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA"])
def test_grayscale_rgba_palette_and_16_bit_uploads_work(client, tmp_path, mode):
    rgb = Image.open(EXAMPLES[3]).convert("RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # 16-bit grayscale PNG
    elif mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(rgb.size))
    else:
        image = rgb.convert(mode)
    path = tmp_path / f"{mode.replace(';', '')}.png"
    image.save(path)
    fused, _, _, attention, _ = _classify(client, path)
    assert fused["label"] in {example.stem for example in EXAMPLES}
    assert Path(attention).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_16_bit_pixels_are_scaled_not_clipped(app):
    grey = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000))
    rgb = np.asarray(app.to_rgb(grey))
    assert rgb.shape == (8, 8, 3) and rgb.min() == 0 and 240 <= rgb.max() <= 255 and len(np.unique(rgb)) > 32


def test_transparency_is_composited_over_white(app):
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(app.to_rgb(clear)).min() == 255


def test_garbage_upload_is_a_clear_error(client, tmp_path):
    from gradio_client.exceptions import AppError

    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(AppError, match="Could not read notes.png as an image"):
        _classify(client, path)


def test_truncated_upload_is_a_clear_error(client, tmp_path):
    from gradio_client.exceptions import AppError

    path = tmp_path / "cut.png"
    path.write_bytes(EXAMPLES[0].read_bytes()[:200])
    with pytest.raises(AppError, match="Could not decode cut.png"):
        _classify(client, path)


def test_huge_images_are_refused_before_decoding(app, tmp_path, monkeypatch):
    import gradio as gr

    path = tmp_path / "big.png"
    Image.new("L", (200, 100)).save(path)
    monkeypatch.setattr(app, "MAX_PIXELS", 10_000)
    with pytest.raises(gr.Error, match="200x100 pixels, more than this demo accepts"):
        app.load_image({"path": str(path), "orig_name": "big.png"})
    monkeypatch.setattr(app, "MAX_PIXELS", 5_000_000)
    large = tmp_path / "large.png"
    Image.new("RGB", (3000, 1500)).save(large)
    assert app.load_image(str(large)).size == (app.DISPLAY_SIDE, app.DISPLAY_SIDE // 2)


def test_decompression_bomb_is_refused_without_decoding(app, tmp_path):
    import struct
    import zlib

    import gradio as gr

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A 30000x30000 grayscale PNG header: 900 megapixels declared, next to no data.
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0))
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(gr.Error, match="too many pixels"):
        app.load_image({"path": str(path), "orig_name": "bomb.png"})


def test_missing_model_says_how_to_get_one(app, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "DEFAULT_MODEL", str(tmp_path / "models" / "deit-cifar10-student"))
    student = app.Student(app.resolve_model_id(None))
    assert "Could not load the model" in student.error and "configs/quickstart.yaml" in student.error
    assert student.info_markdown().startswith("### Model not loaded")


def test_model_info_reports_shape_and_accuracy(app, tiny_student):
    import json

    results = json.loads((tiny_student / "all_results.json").read_text())
    info = app.Student(str(tiny_student)).info_markdown()
    assert "32x32 pixels, 8x8 patches" in info and "2 layers, width 32, 2 heads" in info
    assert f"{100 * results['eval_fused_top1']:.2f}%" in info


def test_banner_sets_accuracy_beside_teacher_and_chance(app, tiny_student):
    import json

    results = json.loads((tiny_student / "all_results.json").read_text())
    banner = app.Student(str(tiny_student)).banner_markdown()
    assert f"**This student: {100 * results['eval_fused_top1']:.1f} %**" in banner
    assert "chance: 10 %" in banner
    if "eval_teacher_top1" in results:
        assert f"its teacher: {100 * results['eval_teacher_top1']:.1f} %" in banner


def test_banner_links_a_hub_model_card(app, tiny_student, monkeypatch):
    student = app.Student(str(tiny_student))
    student.model_id = "me/deit-tiny"
    monkeypatch.setattr(app, "reported_accuracy", lambda model_id: {})
    assert student.banner_markdown() == "chance: 10 % · [model card](https://huggingface.co/me/deit-tiny)"


def test_examples_are_labelled_with_their_true_class(app, tiny_student):
    demo = app.build_demo(str(tiny_student))
    datasets = [block for block in demo.blocks.values() if type(block).__name__ == "Dataset"]
    assert [dataset.sample_labels for dataset in datasets] == [[path.stem for path in EXAMPLES]]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install -y chromium chromium-driver)")
def test_browser_upload_shows_a_prediction(app, server, tiny_student, tmp_path):
    """Upload in Chromium, as a visitor would (benchmarks/space_screenshots.py shoots docs/space.png this way)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    from transformers import pipeline

    example = REPO / "space" / "examples" / "cat.png"
    expected = pipeline("image-classification", model=str(tiny_student), device="cpu")(
        Image.open(example).convert("RGB"), top_k=1)[0]["label"]
    screenshot = tmp_path / "space.png"
    _upload_in_browser(sync_api, server, example, expected, screenshot)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _upload_in_browser(sync_api, server: str, example: Path, expected: str, screenshot: Path) -> None:
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as playwright:
        # Playwright gives every launch a fresh, temporary profile (it refuses --user-data-dir).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Offline: anything not served by the app (web fonts, CDNs) is refused at once.
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else route.abort())
            page.goto(server)
            page.set_input_files("#input-image input[type=file]", str(example))
            fused = page.locator("#fused [data-testid=label-output-value]")
            fused.wait_for(timeout=60_000)
            assert fused.inner_text().strip() == expected
            page.locator("#attention img").wait_for(timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_phone_shows_the_prediction_on_the_first_screen(server, tmp_path):
    """390 x 844 CSS pixels (a phone): after an upload, the fused prediction is inside the first screen."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else route.abort())
            page.goto(server)
            page.set_input_files("#input-image input[type=file]", str(EXAMPLES[3]))
            page.locator("#fused [data-testid=label-output-value]").wait_for(timeout=60_000)
            box = page.locator("#fused [data-testid=label-output-value]").bounding_box()
        finally:
            browser.close()
    assert box["y"] + box["height"] <= 844, box


def test_space_card_links_the_model_and_speaks_to_visitors():
    import gradio
    from huggingface_hub import SpaceCard

    from hf_deit.publish.push import space_card

    card = SpaceCard(str(space_card("me/deit-tiny")))
    header = card.data.to_dict()
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and header["sdk_version"] == gradio.__version__
    assert header["models"] == ["me/deit-tiny"] and header["preload_from_hub"] == ["me/deit-tiny"]
    assert header["python_version"] and header["title"] and header["emoji"] and len(header["short_description"]) <= 60
    assert "https://huggingface.co/me/deit-tiny" in card.text
    assert "pip install" not in card.text and "scripts/" not in card.text  # a visitor's page, not developer notes


def test_space_requirements_share_the_packages_floors():
    import re
    import tomllib

    def floors(lines):
        pairs = (re.match(r"^([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip()) for line in lines)
        return {match.group(1).lower(): match.group(2) for match in pairs if match}

    package = floors(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    space = floors((REPO / "space" / "requirements.txt").read_text().splitlines())
    assert {"torch", "transformers", "timm", "huggingface-hub"} <= set(space)
    assert {name: floor for name, floor in space.items() if name in package} == {
        name: package[name] for name in space if name in package}
    assert "download.pytorch.org/whl/cpu" in (REPO / "space" / "requirements.txt").read_text()  # CPU wheels
