"""Publish a student: a model card with Hub-parseable results, and an upload of only what belongs online.

The card is built from JSON files only (``config.json``, ``all_results.json`` / ``results.json``,
``eval_results.json`` from :mod:`hf_deit.evaluation`, ``trainer_state.json`` and, when the run
wrote it, ``distillation_config.json``). ``training_args.bin`` is never read: unpickling it can run
code, and it may hold a Hub token. Nor is it uploaded, nor are checkpoints or optimizer states:
:func:`push_folder` uploads an allow-list of files.

Tokens come from the ``token`` argument, else ``huggingface_hub``'s own lookup (``HF_TOKEN``, then
the ``hf auth login`` / ``huggingface-cli login`` cache); this module never prints, logs or
writes one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import filter_repo_objects

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "distillation_config.json"
CURVES_FILE = "training_curves.png"

# What a published student consists of. Patterns match paths relative to the folder, so the
# top-level names below never match files inside checkpoint-*/ sub-folders.
ALLOW_PATTERNS = [
    "README.md",
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "all_results.json",
    "results.json",
    "results.md",
    "eval_results.json",
    "eval_report.md",
    "trainer_state.json",
    RUN_CONFIG_FILE,
    "*.png",
]
# "*/*" keeps every sub-folder (checkpoint-*/, runs/, .git/) out; the rest is belt and braces.
IGNORE_PATTERNS = ["*/*", "checkpoint-*", "training_args*", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]

# Recipe keys saved by save_run_config (an allow-list: hub_token and the like never reach disk).
# Keys a config lacks are skipped, so the list may name options of any hf_deit version.
RUN_CONFIG_KEYS = {
    "model": ("student_model_name_or_path", "student_preset", "image_size", "patch_size", "distillation_token",
              "drop_path_rate", "teacher_model_name_or_path"),
    "data": ("dataset_name", "dataset_config_name", "train_split", "eval_split", "max_train_samples",
             "max_eval_samples", "random_crop_padding", "horizontal_flip", "rand_augment", "random_erasing"),
    "training": ("distillation_type", "distillation_alpha", "distillation_tau", "distillation_kl_reduction",
                 "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "learning_rate", "base_learning_rate", "weight_decay", "warmup_steps", "warmup_ratio",
                 "lr_scheduler_type", "max_grad_norm", "mixup_alpha", "cutmix_alpha", "repeated_augmentation",
                 "ema_decay", "seed", "bf16", "fp16"),
}
HEADS = (("average (cls + distill)", "fused"), ("class head", "cls"), ("distillation head", "distill"),
         ("teacher", "teacher"))
# metric_name of each head's top-1 in the card's model-index (read back by reported_accuracy).
MODEL_INDEX_NAMES = {"fused": "Top-1 accuracy (fused)", "cls": "Top-1 accuracy (class head)",
                     "distill": "Top-1 accuracy (distillation head)"}


def save_run_config(output_dir: str, model_config: Any, data_config: Any, training_args: Any) -> str:
    """Write the run's recipe (an allow-list of keys) as JSON next to the checkpoint, for the card."""
    recipe: dict[str, Any] = {}
    for group, source in (("model", model_config), ("data", data_config), ("training", training_args)):
        recipe[group] = {key: _jsonable(getattr(source, key)) for key in RUN_CONFIG_KEYS[group]
                         if hasattr(source, key)}
    recipe["training"]["world_size"] = int(getattr(training_args, "world_size", 1) or 1)
    dataset = recipe["data"].get("dataset_name")
    if dataset:
        recipe["data"]["dataset_facts"] = describe_dataset(dataset)
    recipe["model"]["local_paths"] = [name for name in (getattr(model_config, "teacher_model_name_or_path", None),
                                                        getattr(model_config, "student_model_name_or_path", None))
                                      if name and is_local(name)]
    path = os.path.join(output_dir, RUN_CONFIG_FILE)
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(recipe, handle, indent=2)
    return path


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return str(getattr(value, "value", value))  # enums (lr_scheduler_type) and the like


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        return {}
    with open(path) as handle:
        return json.load(handle)


def is_local(name: Optional[str]) -> bool:
    """A path on this machine (which the Hub cannot resolve), not a Hub id."""
    return bool(name) and (os.path.exists(name) or name.startswith((".", "/", "~")))


def _local_dataset_readme(dataset: Optional[str]) -> str:
    if not dataset or not os.path.isdir(dataset):
        return ""
    readme = Path(dataset) / "README.md"
    return readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""


def describe_dataset(dataset: str) -> dict[str, Any]:
    """What the card needs to know about a dataset, read while its local copy is at hand.

    Saved with the run's recipe (and the evaluation), because a relative local path such as
    ``data/cifar10-sample`` means nothing once the card is written from another directory.
    """
    readme = _local_dataset_readme(dataset)
    match = re.search(r"^pretty_name:\s*(.+)$", readme, flags=re.MULTILINE)
    local = is_local(dataset)
    return {
        "is_local": local,
        "pretty_name": match.group(1).strip().strip("'\"") if match else (
            os.path.basename(dataset.rstrip("/")) if local else dataset),
        "lossy_jpeg": "jpeg" in readme.lower(),
        "jpeg_quality_75": bool(re.search(r"quality\W*75|q75", readme.lower())),
    }


def _count_parameters(folder: Path) -> Optional[int]:
    """Parameter count from the safetensors headers (no weights loaded, nothing unpickled)."""
    from safetensors import safe_open

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


@dataclass
class StudentSummary:
    """Everything the card says about a student folder, gathered from its JSON files."""

    config: dict[str, Any]
    metrics: dict[str, float]  # cls_top1, fused_top5, teacher_top1, ... in [0, 1]
    split: Optional[str]
    num_images: Optional[int]
    train_dataset: Optional[str]
    eval_dataset: Optional[str]
    teacher: Optional[str]
    base_model: Optional[str]
    recipe: dict[str, Any] = field(default_factory=dict)
    dataset_facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name, saved at run time
    local_paths: set[str] = field(default_factory=set)  # teacher / base model names that were local folders
    trainer_state: dict[str, Any] = field(default_factory=dict)
    all_results: dict[str, Any] = field(default_factory=dict)
    parameters: Optional[int] = None

    def facts(self, dataset: Optional[str]) -> dict[str, Any]:
        """Facts saved when the dataset was at hand, else read now."""
        if not dataset:
            return {"is_local": False, "pretty_name": "", "lossy_jpeg": False}
        return self.dataset_facts.get(dataset) or describe_dataset(dataset)

    def is_local(self, name: str) -> bool:
        return name in self.local_paths or is_local(name)


def summarise_folder(folder: str | os.PathLike) -> StudentSummary:
    """Read a student folder's config, results and recipe (JSON only)."""
    folder = Path(folder)
    config = _read_json(folder, "config.json")
    if not config:
        raise FileNotFoundError(f"{folder} has no config.json: is it a student folder written by scripts/distill.py?")
    recipe = _read_json(folder, RUN_CONFIG_FILE)
    local_paths = set(recipe.get("model", {}).get("local_paths", []))
    facts = {}
    if recipe.get("data", {}).get("dataset_facts"):
        facts[recipe["data"]["dataset_name"]] = recipe["data"]["dataset_facts"]
    all_results = _read_json(folder, "all_results.json") or _read_json(folder, "results.json")
    evaluation = _read_json(folder, "eval_results.json")
    if evaluation.get("metrics"):  # a full evaluation (scripts/evaluate_student.py) beats the end-of-training one
        metrics = {k: float(v) for k, v in evaluation["metrics"].items() if k.endswith(("_top1", "_top5"))}
        split, num_images = evaluation.get("split"), evaluation.get("num_images")
        eval_dataset, teacher = evaluation.get("dataset"), evaluation.get("teacher")
        if evaluation.get("teacher_is_local"):
            local_paths.add(teacher)
    else:
        metrics = {k[len("eval_"):]: float(v) for k, v in all_results.items()
                   if k.startswith("eval_") and k.endswith(("_top1", "_top5"))}
        split, num_images = recipe.get("data", {}).get("eval_split"), all_results.get("eval_images")
        eval_dataset, teacher = recipe.get("data", {}).get("dataset_name"), None
    teacher = recipe.get("model", {}).get("teacher_model_name_or_path") or teacher
    return StudentSummary(
        config=config,
        metrics=metrics,
        split=split,
        num_images=num_images,
        train_dataset=recipe.get("data", {}).get("dataset_name"),
        eval_dataset=eval_dataset,
        teacher=teacher or None,
        base_model=recipe.get("model", {}).get("student_model_name_or_path"),
        recipe=recipe,
        dataset_facts={**({evaluation["dataset"]: evaluation["dataset_facts"]}
                          if evaluation.get("dataset_facts") else {}), **facts},
        local_paths=local_paths,
        trainer_state=_read_json(folder, "trainer_state.json"),
        all_results=all_results,
        parameters=_count_parameters(folder) or all_results.get("student_parameters"),
    )


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _architecture(config: dict[str, Any]) -> str:
    return (config.get("architectures") or ["DeiTForImageClassificationWithTeacher"])[0]


def _two_heads(config: dict[str, Any]) -> bool:
    """A DeiT student (class + distillation heads), not a plain-ViT ablation."""
    return _architecture(config) == "DeiTForImageClassificationWithTeacher"


def _recipe_lines(summary: StudentSummary) -> list[str]:
    config, recipe, results = summary.config, summary.recipe, summary.all_results
    training, data = recipe.get("training", {}), recipe.get("data", {})
    state = summary.trainer_state
    tokens = "a class token and a distillation token" if _two_heads(config) else "a class token (no distillation token)"
    side, patch = config.get("image_size"), config.get("patch_size")
    lines = [
        f"- **Student**: `{_architecture(config)}`, {config.get('num_hidden_layers')} layers, "
        f"width {config.get('hidden_size')}, {config.get('num_attention_heads')} heads, "
        f"MLP {config.get('intermediate_size')}, {side}x{side} inputs in {patch}x{patch} patches, {tokens}"
        + (f", {summary.parameters / 1e6:.2f} M parameters" if summary.parameters else "") + ".",
    ]
    if summary.base_model:
        lines.append(f"- **Initialised from**: `{summary.base_model}`.")
    kind = training.get("distillation_type") or results.get("distillation_type")
    if kind:
        detail = ""
        if "distillation_alpha" in training:
            detail = f" (alpha {training['distillation_alpha']}"
            if kind == "soft":
                detail += f", tau {training.get('distillation_tau')}, KL {training.get('distillation_kl_reduction')}"
            detail += ")"
        teacher = f" from the teacher `{summary.teacher}`" if summary.teacher else ""
        lines.append(f"- **Distillation**: {kind}{detail}{teacher}, as in DeiT (Touvron et al., 2021).")
    train_images = results.get("train_images")
    if summary.train_dataset or train_images:
        source = f"`{summary.train_dataset}`" + (f" (split `{data['train_split']}`)" if data.get("train_split") else "")
        lines.append("- **Data**: " + ", ".join(part for part in (
            source if summary.train_dataset else None,
            f"{train_images} training images" if train_images else None,
            "random crops (padding {}) and horizontal flips".format(data["random_crop_padding"])
            if data.get("random_crop_padding") and data.get("horizontal_flip") else None,
        ) if part) + ".")
    model = recipe.get("model", {})
    extras = [f"RandAugment `{data['rand_augment']}`" if data.get("rand_augment") else None,
              f"random erasing {data['random_erasing']}" if data.get("random_erasing") else None,
              f"Mixup {training['mixup_alpha']}" if training.get("mixup_alpha") else None,
              f"CutMix {training['cutmix_alpha']}" if training.get("cutmix_alpha") else None,
              f"repeated augmentation x{training['repeated_augmentation']}"
              if (training.get("repeated_augmentation") or 0) > 1 else None,
              f"drop path {model['drop_path_rate']}" if model.get("drop_path_rate") else None,
              f"EMA of the weights (decay {training['ema_decay']}, saved apart, not this checkpoint)"
              if training.get("ema_decay") else None]
    extras = [extra for extra in extras if extra]
    if extras:
        lines.append("- **Regularisation**: " + ", ".join(extras) + ".")
    epochs = training.get("num_train_epochs", state.get("num_train_epochs"))
    batch = training.get("per_device_train_batch_size", state.get("train_batch_size"))
    world = training.get("world_size", 1)
    devices = f" x {world} devices" if world > 1 else ""
    rates = [entry["learning_rate"] for entry in state.get("log_history", []) if "learning_rate" in entry]
    peak_lr = training.get("learning_rate", max(rates) if rates else None)
    parts = [f"{epochs:g} epoch{'' if epochs == 1 else 's'}" if epochs is not None else None,
             f"{state['global_step']} steps" if state.get("global_step") else None,
             f"batch {batch} per device" + devices if batch is not None else None,
             f"peak learning rate {peak_lr:g}" if peak_lr is not None else None,
             f"{training['lr_scheduler_type']} schedule" if training.get("lr_scheduler_type") else None,
             f"weight decay {training['weight_decay']}" if "weight_decay" in training else None,
             f"{results['train_runtime_s']:.0f} s of training" if results.get("train_runtime_s") else None]
    parts = [part for part in parts if part]
    if parts:
        lines.append("- **Training**: " + ", ".join(parts) + ".")
    return lines


def _results_table(summary: StudentSummary) -> str:
    rows = ["| head | top-1 (%) | top-5 (%) |", "|---|---:|---:|"]
    for name, head in HEADS:
        if f"{head}_top1" in summary.metrics:
            top1, top5 = summary.metrics.get(f"{head}_top1"), summary.metrics.get(f"{head}_top5")
            rows.append(f"| {name} | {_pct(top1)} | {_pct(top5)} |")
    return "\n".join(rows)


def _limitations(summary: StudentSummary) -> list[str]:
    labels = [summary.config.get("id2label", {})[key] for key in sorted(summary.config.get("id2label", {}), key=int)]
    side = summary.config.get("image_size")
    lines = [
        f"- It only knows {len(labels)} classes ({', '.join(labels[:12])}{', ...' if len(labels) > 12 else ''}) and "
        "always answers one of them, even for images of something else.",
        f"- Every image is resized to {side}x{side} pixels; small, low-resolution photos of a single centred object "
        "(as in the training data) work best.",
    ]
    same = summary.train_dataset == summary.eval_dataset
    roles = (("trained and evaluated", summary.train_dataset),) if same else (
        ("trained", summary.train_dataset), ("evaluated", summary.eval_dataset))
    for role, dataset in roles:
        facts = summary.facts(dataset)
        if facts.get("lossy_jpeg"):
            quality = " (quality 75)" if facts.get("jpeg_quality_75") else ""
            lines.append(
                f"- It was {role} on a local copy (`{dataset}`) whose images are stored as lossy JPEG{quality}. "
                "When that copy is CIFAR-10, accuracy is **not comparable** with results published on the "
                "original, lossless CIFAR-10."
            )
    head = "fused" if "fused_top1" in summary.metrics else "cls"
    top1, n = summary.metrics.get(f"{head}_top1"), summary.num_images
    if top1 is not None and n:
        half_width = 1.96 * math.sqrt(max(top1 * (1 - top1), 1e-12) / n)
        lines.append(f"- Accuracies come from {n} images: the {head} top-1 has a 95% interval of about "
                     f"+/- {100 * half_width:.1f} points.")
    lines.append("- A research artefact: not evaluated for fairness, robustness or any safety-critical use.")
    return lines


def build_model_card(
    folder: str | os.PathLike,
    repo_id: Optional[str] = None,
    dataset_id: Optional[str] = None,
    teacher: Optional[str] = None,
    base_model: Optional[str] = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """A ``ModelCard`` for a student folder: Hub metadata + model-index, recipe, results, usage, limitations.

    ``dataset_id`` / ``teacher`` / ``base_model`` override what the folder's files say; local paths
    are kept out of the metadata (the Hub cannot resolve them) but named in the text.
    """
    folder = Path(folder)
    summary = summarise_folder(folder)
    summary.teacher = teacher or summary.teacher
    summary.base_model = base_model or summary.base_model
    model_name = (repo_id or folder.resolve().name).split("/")[-1]
    hub_ids = [name for name in (summary.train_dataset, summary.eval_dataset)
               if name and not summary.facts(name)["is_local"]]
    dataset_hub_id = dataset_id or (hub_ids[0] if hub_ids else None)
    # End-of-training results come from the training dataset's evaluation split.
    evaluated_on = summary.eval_dataset or summary.train_dataset or dataset_id

    eval_results = []
    if evaluated_on:
        for head, metric_name in MODEL_INDEX_NAMES.items():
            if f"{head}_top1" in summary.metrics:
                eval_results.append(EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=os.path.basename(evaluated_on.rstrip("/")) if summary.facts(evaluated_on)["is_local"]
                    else evaluated_on,
                    dataset_name=summary.facts(evaluated_on)["pretty_name"],
                    dataset_split=summary.split,
                    metric_type="accuracy",
                    metric_name=metric_name,
                    metric_value=round(summary.metrics[f"{head}_top1"], 4),
                ))
    extra: dict[str, Any] = {}
    if summary.teacher and not summary.is_local(summary.teacher):
        extra["teacher"] = summary.teacher  # no standard key; recorded for readers and search
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=["deit", "distillation", "image-classification", "vision"],
        datasets=[dataset_hub_id] if dataset_hub_id else None,
        base_model=summary.base_model if summary.base_model and not summary.is_local(summary.base_model) else None,
        metrics=["accuracy"],
        model_name=model_name,
        eval_results=eval_results or None,
        **extra,
    )
    reference = repo_id or str(folder)
    split = f" split `{summary.split}`" if summary.split else ""
    images = f", {summary.num_images} images" if summary.num_images else ""
    two_heads = _two_heads(summary.config)
    architecture = _architecture(summary.config)
    plots = [f"![{alt}]({name})" for name, alt in (("confusion_matrix.png", "confusion matrix"),
                                                   (CURVES_FILE, "training loss")) if (folder / name).is_file()]
    body = "\n".join([
        f"# {model_name}",
        "",
        "A data-efficient image transformer (DeiT) student trained by **distillation through attention** "
        "([Touvron et al., 2021](https://arxiv.org/abs/2012.12877)) with hf-deit: "
        f"a stock `{architecture}`, so "
        "`transformers` loads it with no extra code.",
        "",
        "## Training recipe",
        "",
        *_recipe_lines(summary),
        "",
        "## Results",
        "",
        (f"On `{evaluated_on}`{split}{images}:" if evaluated_on else f"On the evaluation set{images}:"),
        "",
        _results_table(summary) if summary.metrics else "No evaluation results were found in the folder.",
        "",
        *(["The class head reads the class token, the distillation head the distillation token; the model's "
           "`logits` (what pipelines use) are their average.", ""] if two_heads else []),
        *([*plots, ""] if plots else []),
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("image-classification", model="{reference}")',
        'classifier("my_image.png")  # [{"label": ..., "score": ...}, ...]',
        "```",
        "",
        *(_heads_snippet(reference) if two_heads else []),
        "## Limitations",
        "",
        *_limitations(summary),
        "",
    ])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _heads_snippet(reference: str) -> list[str]:
    return [
        "Each head on its own:",
        "",
        "```python",
        "import torch",
        "from PIL import Image",
        "from transformers import AutoImageProcessor, AutoModelForImageClassification",
        "",
        f'processor = AutoImageProcessor.from_pretrained("{reference}")',
        f'model = AutoModelForImageClassification.from_pretrained("{reference}").eval()',
        'inputs = processor(Image.open("my_image.png").convert("RGB"), return_tensors="pt")',
        "with torch.no_grad():",
        "    outputs = model(**inputs)",
        "print(outputs.cls_logits, outputs.distillation_logits, outputs.logits)",
        "```",
        "",
    ]


def write_model_card(folder: str | os.PathLike, **card_kwargs: Any) -> Path:
    """Write ``README.md`` (and ``training_curves.png`` when the log allows) into the folder."""
    folder = Path(folder)
    state = _read_json(folder, "trainer_state.json")
    if state.get("log_history"):
        from .viz import plot_training_curves

        plot_training_curves(state["log_history"], str(folder / CURVES_FILE), title="training loss")
    card = build_model_card(folder, **card_kwargs)
    path = folder / "README.md"
    card.save(path)
    return path


def upload_plan(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(path in the repo, size in bytes) of every file :func:`push_folder` would upload."""
    folder = Path(folder).expanduser().resolve()
    files = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    chosen = filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return [(name, (folder / name).stat().st_size) for name in chosen]


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: Optional[str] = None,
    dry_run: bool = False,
    commit_message: str = "Upload DeiT student (hf-deit)",
) -> list[tuple[str, int]]:
    """Create ``repo_id`` if needed and upload the student's model, processor, card, results and plots.

    Writes the model card first when the folder has none. Returns the uploaded (path, size) list;
    with ``dry_run`` nothing is sent. Raises if the folder has no weights or no processor.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file():
        write_model_card(folder, repo_id=repo_id)
    plan = upload_plan(folder)
    names = {name for name, _ in plan}
    missing = [name for name in ("config.json", "preprocessor_config.json") if name not in names]
    if not any(name.endswith(".safetensors") for name in names):
        missing.append("model.safetensors")
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: save the student with scripts/distill.py first.")
    if dry_run:
        return plan
    api = HfApi(token=token)  # token None: HF_TOKEN, then the login cache (huggingface_hub's lookup)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=list(ALLOW_PATTERNS),
        ignore_patterns=list(IGNORE_PATTERNS),
        commit_message=commit_message,
    )
    logger.info("Uploaded %d files to https://huggingface.co/%s", len(plan), repo_id)
    return plan


SPACE_PATTERNS = ["app.py", "requirements.txt", "README.md", "examples/*.png"]


def space_plan(space_dir: Optional[str | os.PathLike] = None) -> list[tuple[str, int]]:
    """(path in the Space, size) of the demo files and the ``hf_deit`` modules it imports."""
    space_dir = Path(space_dir) if space_dir else Path(__file__).resolve().parents[1] / "space"
    if not (space_dir / "app.py").is_file():
        raise FileNotFoundError(f"No demo at {space_dir}: run from a checkout of hf-deit (it has space/app.py).")
    files = sorted(path.relative_to(space_dir).as_posix() for path in space_dir.glob("**/*") if path.is_file())
    chosen = filter_repo_objects(files, allow_patterns=SPACE_PATTERNS)
    plan = [(name, (space_dir / name).stat().st_size) for name in chosen]
    package = Path(__file__).resolve().parent
    plan += [(f"hf_deit/{path.name}", path.stat().st_size) for path in sorted(package.glob("*.py"))]
    return plan


def push_space(
    space_id: str,
    model_id: str,
    private: bool = False,
    token: Optional[str] = None,
    dry_run: bool = False,
    space_dir: Optional[str | os.PathLike] = None,
) -> list[tuple[str, int]]:
    """Create or update a Gradio Space running ``space/app.py`` on ``model_id`` (its MODEL_ID variable).

    The ``hf_deit`` package is uploaded next to ``app.py`` (the Space installs only
    ``space/requirements.txt``; app.py imports ``hf_deit`` from its own folder).
    """
    space_dir = Path(space_dir) if space_dir else Path(__file__).resolve().parents[1] / "space"
    plan = space_plan(space_dir)
    if dry_run:
        return plan
    api = HfApi(token=token)
    api.create_repo(repo_id=space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.add_space_variable(repo_id=space_id, key="MODEL_ID", value=model_id)
    api.upload_folder(repo_id=space_id, repo_type="space", folder_path=str(space_dir),
                      allow_patterns=list(SPACE_PATTERNS), commit_message="Demo app (hf-deit)")
    api.upload_folder(repo_id=space_id, repo_type="space", folder_path=str(Path(__file__).resolve().parent),
                      path_in_repo="hf_deit", allow_patterns=["*.py"], commit_message="hf_deit package (hf-deit)")
    logger.info("Updated the Space https://huggingface.co/spaces/%s", space_id)
    return plan


def reported_accuracy(id_or_path: str) -> dict[str, Any]:
    """Accuracies a student reports about itself (folder files, else its card's model-index); {} if none.

    For the demo's model-info panel: never raises, and only reads the Hub when ``id_or_path`` is a
    Hub id (offline, only what is cached).
    """
    try:
        if os.path.isdir(id_or_path):
            summary = summarise_folder(id_or_path)
            if summary.metrics:
                return {"metrics": summary.metrics, "dataset": summary.eval_dataset, "split": summary.split,
                        "num_images": summary.num_images}
            card_path = Path(id_or_path) / "README.md"
            if not card_path.is_file():
                return {}
            card = ModelCard.load(card_path)
        else:
            card = ModelCard.load(id_or_path)
        metrics: dict[str, Any] = {}
        dataset = split = None
        for result in card.data.eval_results or []:
            for head, metric_name in MODEL_INDEX_NAMES.items():
                if result.metric_type == "accuracy" and result.metric_name == metric_name:
                    metrics[f"{head}_top1"] = float(result.metric_value)
                    dataset, split = result.dataset_name, result.dataset_split
        return {"metrics": metrics, "dataset": dataset, "split": split, "num_images": None} if metrics else {}
    except Exception as error:  # a demo must start without a card
        logger.info("No reported accuracy for %s: %s", id_or_path, error)
        return {}


@dataclass
class PushArguments:
    """``scripts/push_to_hub.py`` flags. No token flag: use HF_TOKEN or `hf auth login`."""

    folder: str = field(metadata={"help": "Student folder written by scripts/distill.py."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. me/deit-tiny-cifar10."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    dry_run: bool = field(
        default=False, metadata={"help": "Write the card and list what would be uploaded; send nothing."}
    )
    dataset_id: Optional[str] = field(default=None, metadata={"help": "Hub id of the training dataset, for the card."})
    teacher: Optional[str] = field(default=None, metadata={"help": "Teacher (Hub id or name), for the card."})
    base_model: Optional[str] = field(default=None, metadata={"help": "Checkpoint the student was fine-tuned from."})
    license: str = field(default="apache-2.0", metadata={"help": "License in the card's metadata."})
    space_id: Optional[str] = field(
        default=None, metadata={"help": "Also create/update this Gradio Space (space/app.py) showing repo_id."}
    )


def main(argv: Optional[Sequence[str]] = None) -> list[tuple[str, int]]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    card = write_model_card(args.folder, repo_id=args.repo_id, dataset_id=args.dataset_id, teacher=args.teacher,
                            base_model=args.base_model, license=args.license)
    print(f"Wrote the model card {card}")
    plan = push_folder(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    verb = "Would upload" if args.dry_run else "Uploaded"
    print(f"{verb} {len(plan)} files to {args.repo_id} ({'private' if args.private else 'public'}):")
    for name, size in plan:
        print(f"  {name:32s} {size:>12,d} bytes")
    if not args.dry_run:
        print(f"https://huggingface.co/{args.repo_id}")
    if args.space_id:
        space = push_space(args.space_id, args.repo_id, private=args.private, dry_run=args.dry_run)
        print(f"{verb} {len(space)} files to the Space {args.space_id} (MODEL_ID={args.repo_id}):")
        for name, size in space:
            print(f"  {name:32s} {size:>12,d} bytes")
    return plan
