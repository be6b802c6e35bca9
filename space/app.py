"""Gradio demo of a DeiT student: the class head, the distillation head, their average, and where each token looks
(the last layer's attention, head by head, for the class token, the distillation token and their difference).

    MODEL_ID=me/deit-tiny-cifar10 python space/app.py     # a Hub id, or
    MODEL_ID=outputs/quickstart python space/app.py        # a local folder
    python space/app.py                                    # the shipped student, models/deit-cifar10-student

``classify`` is the one public endpoint (``gradio_client``: ``api_name="/classify"``). Uploads are
decoded here, not by Gradio, so that anything that is not a usable image (not an image at all,
too many pixels, a decompression bomb, a damaged file) gets a clear message, and grayscale,
palette, RGBA and 16-bit images are converted to RGB the way a person would expect
(transparency over white, 16-bit scaled rather than clipped).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: run offline

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

HERE = Path(__file__).resolve().parent
try:
    import hf_deit  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .` (a Space has hf_deit/ beside app.py)
    sys.path.insert(0, str(HERE.parent))

from hf_deit.publish.card import reported_accuracy  # noqa: E402
from hf_deit.data.images import BadImageError, decode_image, to_rgb  # noqa: E402,F401  (as in training)
from hf_deit.heads import HEADS_BY_KEY, STUDENT_HEADS  # noqa: E402
from hf_deit.modeling import load_student  # noqa: E402
from hf_deit.publish.viz import explain_prediction  # noqa: E402

DEFAULT_MODEL = "models/deit-cifar10-student"  # shipped in the repository (docs/results/cifar10_cpu.md)
MAX_PIXELS = int(os.environ.get("MAX_IMAGE_PIXELS", 25_000_000))  # 5000 x 5000; larger uploads are refused
MAX_UPLOAD = os.environ.get("MAX_UPLOAD_SIZE", "20mb")
DISPLAY_SIDE = 1024  # larger images are shrunk (aspect kept) before classification and overlays
TOP_K = 5
# Small images (CIFAR is 32x32) are shown enlarged with crisp pixels. On a phone the input shrinks so that
# the prediction is on the first screen; the examples come after the results.
CSS = """
#input-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#attention img { object-fit: contain; }
@media (max-width: 640px) {
    #input-image { height: 170px !important; }
    #intro p { font-size: 0.9em; margin: 0; }
}
"""
HOW_TO_READ = (
    "**How to read it:** each square is the image's patch grid. Top rows: the share of each token's attention "
    "that goes to each patch, per head of the last layer (brighter = more). Bottom row: distillation token minus "
    "class token (red: the distillation token looks there more, blue: the class token does)."
)
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))


def resolve_model_id(model_id: Optional[str] = None) -> str:
    """``MODEL_ID`` (or the shipped student), as a local path when one exists here or in the repo."""
    model_id = model_id or os.environ.get("MODEL_ID") or DEFAULT_MODEL
    for candidate in (Path(model_id).expanduser(), HERE.parent / model_id):
        if candidate.is_dir():
            return str(candidate)
    return model_id


class Student:
    """The loaded model, or the reason it could not be loaded (the page then says so)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.error: Optional[str] = None
        self.model: Any = None
        self.processor: Any = None
        try:
            # Eager attention: the only implementation that returns attention weights (same logits).
            self.model, self.processor = load_student(model_id, attn_implementation="eager")
        except (OSError, ValueError) as error:
            hint = ""
            if model_id == DEFAULT_MODEL or model_id.endswith(DEFAULT_MODEL):
                hint = (" The shipped student is missing from this checkout: set MODEL_ID to a student folder or "
                        "Hub id, or train one (`python scripts/distill.py --config configs/quickstart.yaml`"
                        ", then MODEL_ID=outputs/quickstart).")
            self.error = f"Could not load the model `{model_id}`.{hint}\n\n{error}"
            print(self.error, file=sys.stderr)

    def card_link(self) -> Optional[str]:
        """The model card: its Hub page, or the README.md of a local folder."""
        if os.path.isdir(self.model_id):
            card = Path(self.model_id) / "README.md"
            return f"`{card}`" if card.is_file() else None
        return f"[model card](https://huggingface.co/{self.model_id})"

    def banner_markdown(self) -> str:
        """One line: the student's accuracy beside its teacher's and chance, and where to read more."""
        if self.error:
            return ""
        reported = reported_accuracy(self.model_id)
        metrics = reported.get("metrics", {})
        parts = []
        if metrics.get("fused_top1") is not None:
            where = reported.get("dataset_name") or reported.get("dataset") or "its test set"
            split = f" {reported['split']} split" if reported.get("split") else ""
            count = f", {reported['num_images']:,} images" if reported.get("num_images") else ""
            parts.append(f"**This student: {100 * metrics['fused_top1']:.1f} %** top-1 on {where}{split}{count}")
        if metrics.get("teacher_top1") is not None:
            parts.append(f"its teacher: {100 * metrics['teacher_top1']:.1f} %")
        parts.append(f"chance: {100 / self.model.config.num_labels:.0f} %")
        link = self.card_link()
        return " · ".join(parts) + (f" · {link}" if link else "")

    def info_markdown(self) -> str:
        if self.error:
            return f"### Model not loaded\n\n{self.error}"
        config = self.model.config
        parameters = sum(p.numel() for p in self.model.parameters())
        side, patch = config.image_size, config.patch_size
        classes = ", ".join(config.id2label[i] for i in range(min(config.num_labels, 12)))
        lines = [
            f"### `{self.model_id}`",
            "",
            "| property | value |",
            "|---|---|",
            f"| parameters | {parameters / 1e6:.2f} M |",
            f"| input | {side}x{side} pixels, {patch}x{patch} patches |",
            f"| encoder | {config.num_hidden_layers} layers, width {config.hidden_size}, "
            f"{config.num_attention_heads} heads |",
            f"| classes | {config.num_labels}: {classes}{', ...' if config.num_labels > 12 else ''} |",
        ]
        reported = reported_accuracy(self.model_id)
        for head in STUDENT_HEADS:
            value = reported.get("metrics", {}).get(f"{head.key}_top1")
            if value is not None:
                lines.append(f"| top-1, {head.label} | {100 * value:.2f}% |")
        if reported.get("dataset"):
            where = f"`{reported['dataset']}`" + (f" ({reported['split']})" if reported.get("split") else "")
            count = f", {reported['num_images']} images" if reported.get("num_images") else ""
            lines.append(f"| evaluated on | {where}{count} |")
        return "\n".join(lines)


def upload_folder() -> str:
    """Where Gradio keeps uploads and the example files it serves (``GRADIO_TEMP_DIR``, else <tmp>/gradio)."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def save_overlay(image: Image.Image, name: str, folder: Optional[str] = None) -> str:
    """The overlay as a PNG in Gradio's upload folder, written once per content and never rewritten.

    Why not return the PIL image: Gradio caches a returned image under a hash of its bytes but rewrites
    that file on every request (``processing_utils.save_pil_to_cache``), so two requests with the same
    overlay (two visitors clicking the same example) race, and a download can find the file truncated
    (``docs/results/space_load_test.md``). A path inside the upload folder is served as is; here it is
    staged under a temporary name and renamed into place, so it is either absent or whole.
    """
    data = io.BytesIO()
    image.save(data, format="PNG")
    payload = data.getvalue()
    folder_path = Path(folder or upload_folder()) / "hf-deit-overlays" / hashlib.sha256(payload).hexdigest()
    target = folder_path / f"{name}.png"
    if not target.is_file():
        folder_path.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=folder_path, prefix=f".{name}.", suffix=".png")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(payload)
            os.replace(staging, target)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
    return str(target)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (unless ``MALLOC_ARENA_MAX`` is set); True if the cap was set.

    Why: Gradio serves requests from a pool of threads, and glibc gives threads that allocate at the same
    time separate heaps ("arenas", up to 8 per core) that it rarely hands back, so under load the server's
    memory rises steadily though nothing leaks; with 2 arenas it levels off, at no measurable cost in
    throughput (``docs/results/space_load_test.md``).
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): nothing to tune
        return False
    m_arena_max = -8  # from glibc's <malloc.h>
    return bool(libc.mallopt(m_arena_max, arenas))


def _is_inside(path: str, folder: str) -> bool:
    try:
        real, root = os.path.realpath(path), os.path.realpath(folder)
        return os.path.commonpath([real, root]) == root
    except ValueError:  # an embedded NUL byte, or paths on different drives
        return False


def _uploaded_path(value: Any, uploads_in: Optional[str]) -> tuple[str, str]:
    """(path, name to show) of an upload, refusing anything that is not a file Gradio received."""
    path = value.get("path") if isinstance(value, dict) else str(value)
    name = (value.get("orig_name") if isinstance(value, dict) else None) or os.path.basename(str(path))
    if not path or not isinstance(path, str):
        raise gr.Error("The upload did not arrive as a file; try again.")
    if uploads_in is not None and not _is_inside(path, uploads_in):
        raise gr.Error(
            f"{name} was not uploaded to this demo: send the image file itself (gradio_client: "
            "handle_file(path)), not a path on the server."
        )
    if not os.path.isfile(path):
        raise gr.Error("The upload did not arrive as a file; try again.")
    return path, name


def _refuse_unreadable_or_huge(path: str, name: str) -> None:
    """Read only the header: not an image, a decompression bomb or more than MAX_PIXELS stop here, undecoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise gr.Error(f"{name} declares too many pixels to decode safely; please upload a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise gr.Error(
            f"Could not read {name} as an image. Please upload a PNG, JPEG, WebP, GIF, BMP or TIFF picture."
        ) from None
    if width * height > MAX_PIXELS:
        raise gr.Error(
            f"{name} is {width}x{height} pixels, more than this demo accepts ({MAX_PIXELS / 1e6:.0f} megapixels). "
            "Please upload a smaller image."
        )


def load_image(value: Any, uploads_in: Optional[str] = None) -> Image.Image:
    """An upload (Gradio file payload, path or PIL image) as a checked RGB image at most DISPLAY_SIDE wide/high.

    ``uploads_in``: only files inside this folder are opened (the endpoint passes Gradio's upload folder).
    Gradio checks file payloads that carry ``meta: {"_type": "gradio.FileData"}``, but with
    ``preprocess=False`` a bare ``{"path": "/any/file"}`` reaches this function unchecked: without this
    guard an API call could have any image on the server classified and sent back as an overlay.
    Decoding, orientation and colour conversion are training's own (:func:`hf_deit.data.images.decode_image`).
    """
    if value is None:
        raise gr.Error("Upload, paste or take a picture first.")
    name = "The image"
    if not isinstance(value, Image.Image):
        path, name = _uploaded_path(value, uploads_in)
        _refuse_unreadable_or_huge(path, name)
        value = {"path": path, "bytes": None}
    elif value.width * value.height > MAX_PIXELS:
        raise gr.Error(f"The image has more than {MAX_PIXELS / 1e6:.0f} megapixels; please use a smaller one.")
    try:
        image = decode_image(value)
    except BadImageError as error:
        raise gr.Error(f"Could not decode {name}: the file looks damaged ({error}).") from None
    if image.width == 0 or image.height == 0:
        raise gr.Error("The image is empty (0 pixels wide or high).")
    if max(image.size) > DISPLAY_SIDE:
        image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.LANCZOS)
    return image


def _top_k(logits: torch.Tensor, id2label: dict[int, str]) -> dict[str, float]:
    probabilities = logits.softmax(-1)
    values, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
    return {id2label[int(i)]: float(v) for v, i in zip(values, indices, strict=True)}


def _result_components() -> list[Any]:
    """The three heads' top-5, the attention picture and its reading, in ``classify``'s output order."""
    with gr.Row():
        fused = gr.Label(num_top_classes=TOP_K, label=f"prediction: {HEADS_BY_KEY['fused'].label}", elem_id="fused")
        cls_head = gr.Label(num_top_classes=TOP_K, label=HEADS_BY_KEY["cls"].label, elem_id="cls-head")
        distill_head = gr.Label(num_top_classes=TOP_K, label=HEADS_BY_KEY["distill"].label, elem_id="distill-head")
    attention = gr.Image(label="where each token looks", type="filepath", format="png", elem_id="attention",
                         show_label=True, buttons=["download", "fullscreen"])
    reading = gr.Markdown(HOW_TO_READ, elem_id="attention-reading")
    return [fused, cls_head, distill_head, attention, reading]


def _example_block(image: Any) -> None:
    """The CIFAR-10 examples, labelled with their true class so that a visitor can tell right from wrong."""
    if EXAMPLES:
        gr.Examples(examples=EXAMPLES, inputs=image, example_labels=[Path(path).stem for path in EXAMPLES],
                    label="CIFAR-10 test images (labelled with their true class)")


def build_demo(model_id: Optional[str] = None) -> gr.Blocks:
    """The Blocks app for one student (loaded once, shared by all sessions)."""
    student = Student(resolve_model_id(model_id))

    def classify(image: Any) -> tuple[dict[str, float], dict[str, float], dict[str, float], str, str]:
        """Top-5 of the fused prediction, the class head and the distillation head; where the two tokens look."""
        if student.error:
            raise gr.Error(student.error)
        picture = load_image(image, uploads_in=upload_folder())
        explanation = explain_prediction(student.model, student.processor, picture)
        id2label = student.model.config.id2label
        return (
            _top_k(explanation.logits, id2label),
            _top_k(explanation.cls_logits, id2label),
            _top_k(explanation.distillation_logits, id2label),
            save_overlay(explanation.figure, "token-attention"),
            f"{HOW_TO_READ}\n\n{explanation.attention.finding()}",
        )

    def classify_or_clear(image: Any):
        # The image's change event also fires when it is cleared: empty the outputs, no error.
        return classify(image) if image is not None else (None, None, None, None, HOW_TO_READ)

    with gr.Blocks(title="DeiT student: distillation through attention") as demo:
        gr.Markdown(
            "# DeiT student: distillation through attention\n"
            "A vision transformer with two tokens: the **class token** learns from the labels, the "
            "**distillation token** from a teacher network; the prediction averages their heads. "
            "Upload, paste or take a picture, or pick an example below.", elem_id="intro",
        )
        gr.Markdown(student.banner_markdown(), elem_id="banner")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                image = gr.Image(
                    label="image", type="filepath", sources=["upload", "webcam", "clipboard"], height=260,
                    elem_id="input-image",
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
            with gr.Column(scale=2):
                outputs = _result_components()
        _example_block(image)
        with gr.Accordion("Model", open=False):
            gr.Markdown(student.info_markdown(), elem_id="model-info")
        # preprocess=False: the function gets the uploaded file itself and decodes it with the checks above.
        # One concurrency group: the queue's limit counts the button and the image's change events together.
        button.click(classify, inputs=image, outputs=outputs, api_name="classify", preprocess=False,
                     concurrency_id="model")
        image.change(classify_or_clear, inputs=image, outputs=outputs, api_visibility="private", preprocess=False,
                     concurrency_id="model")
    demo.queue(default_concurrency_limit=2, max_size=32)
    return demo


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Launch with the demo's limits (upload size) and style; keyword arguments go to ``Blocks.launch``.

    ``show_error``: requests that Gradio itself refuses before ``classify`` runs (no input, a value that
    is not a file, a path that was not uploaded) get Gradio's message instead of ``{"error": null}``.
    Only exception messages are sent, never tracebacks; ``classify``'s own errors are ``gr.Error`` anyway.
    """
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    kwargs.setdefault("show_error", True)
    kwargs.setdefault("css", CSS)
    return demo.launch(**kwargs)


if __name__ == "__main__":
    limit_malloc_arenas()  # before Gradio starts its worker threads
    launch(build_demo())
