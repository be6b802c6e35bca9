"""Gradio demo of a DeiT student: the class head, the distillation head, their average, and where each token looks.

    MODEL_ID=me/deit-tiny-cifar10 python space/app.py     # a Hub id, or
    MODEL_ID=outputs/quickstart python space/app.py        # a local folder (the default)

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
from hf_deit.publish.viz import attention_overlays  # noqa: E402

DEFAULT_MODEL = "outputs/quickstart"
MAX_PIXELS = int(os.environ.get("MAX_IMAGE_PIXELS", 25_000_000))  # 5000 x 5000; larger uploads are refused
MAX_UPLOAD = os.environ.get("MAX_UPLOAD_SIZE", "20mb")
DISPLAY_SIDE = 1024  # larger images are shrunk (aspect kept) before classification and overlays
TOP_K = 5
# Small images (CIFAR is 32x32) and the attention maps are shown enlarged, with crisp pixels.
CSS = """
#input-image img, #cls-map img, #distill-map img {
    width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
"""
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))


def resolve_model_id(model_id: Optional[str] = None) -> str:
    """``MODEL_ID`` (or the quickstart folder), as a local path when one exists here or in the repo."""
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
                hint = (" Train the quickstart student first (`accelerate launch scripts/distill.py --config "
                        "configs/quickstart.yaml`), or set MODEL_ID to a student folder or Hub id.")
            self.error = f"Could not load the model `{model_id}`.{hint}\n\n{error}"
            print(self.error, file=sys.stderr)

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
    """The three heads' top-5 over the two tokens' attention maps, in ``classify``'s output order."""
    with gr.Row():
        fused = gr.Label(num_top_classes=TOP_K, label=f"prediction: {HEADS_BY_KEY['fused'].label}", elem_id="fused")
        cls_head = gr.Label(num_top_classes=TOP_K, label=HEADS_BY_KEY["cls"].label, elem_id="cls-head")
        distill_head = gr.Label(num_top_classes=TOP_K, label=HEADS_BY_KEY["distill"].label, elem_id="distill-head")
    with gr.Row():
        cls_map = gr.Image(label="class token attention (rollout)", type="filepath", format="png", height=300,
                           elem_id="cls-map")
        distill_map = gr.Image(label="distillation token attention (rollout)", type="filepath", format="png",
                               height=300, elem_id="distill-map")
    return [fused, cls_head, distill_head, cls_map, distill_map]


def build_demo(model_id: Optional[str] = None) -> gr.Blocks:
    """The Blocks app for one student (loaded once, shared by all sessions)."""
    student = Student(resolve_model_id(model_id))

    def classify(image: Any) -> tuple[dict[str, float], dict[str, float], dict[str, float], str, str]:
        """Top-5 of the fused prediction, the class head and the distillation head, and both tokens' attention maps."""
        if student.error:
            raise gr.Error(student.error)
        picture = load_image(image, uploads_in=upload_folder())
        explanation = attention_overlays(student.model, student.processor, picture)
        id2label = student.model.config.id2label
        return (
            _top_k(explanation.logits, id2label),
            _top_k(explanation.cls_logits, id2label),
            _top_k(explanation.distillation_logits, id2label),
            save_overlay(explanation.cls_overlay, "class-token-attention"),
            save_overlay(explanation.distillation_overlay, "distillation-token-attention"),
        )

    def classify_or_clear(image: Any):
        # The image's change event also fires when it is cleared: empty the outputs, no error.
        return classify(image) if image is not None else (None, None, None, None, None)

    with gr.Blocks(title="DeiT student: distillation through attention") as demo:
        gr.Markdown(
            "# DeiT student: distillation through attention\n"
            "A vision transformer with two tokens: the **class token** learns from the labels, the "
            "**distillation token** from a teacher network. Their heads' average is the prediction. "
            "Upload, paste or take a picture, or pick an example."
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    label="image", type="filepath", sources=["upload", "webcam", "clipboard"], height=300,
                    elem_id="input-image",
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                if EXAMPLES:
                    gr.Examples(examples=EXAMPLES, inputs=image, label="CIFAR-10 test images")
            with gr.Column(scale=2):
                outputs = _result_components()
        with gr.Accordion("Model", open=True):
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
