"""Upload a student, or the demo Space, with only what belongs online.

Neither ``training_args.bin`` (a pickle that may hold a Hub token) nor checkpoints or optimizer states
are uploaded: :func:`push_folder` sends an allow-list of files. Tokens come from the ``token``
argument, else ``huggingface_hub``'s own lookup (``HF_TOKEN``, then the ``hf auth login`` cache);
this module never prints, logs or writes one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, SpaceCard, SpaceCardData
from huggingface_hub.utils import filter_repo_objects

from .card import write_model_card
from .recipe import RUN_CONFIG_FILE

logger = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parents[1]
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
    "evaluation.json",
    "eval_report.md",
    "trainer_state.json",
    RUN_CONFIG_FILE,
    "*.png",
]
# "*/*" keeps every sub-folder (checkpoint-*/, runs/, .git/) out; the rest is belt and braces.
IGNORE_PATTERNS = ["*/*", "checkpoint-*", "training_args*", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]
SPACE_PATTERNS = ["app.py", "requirements.txt", "examples/*.png"]


def upload_plan(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(path in the repo, size in bytes) of every file :func:`push_folder` would upload."""
    folder = Path(folder).expanduser().resolve()
    files = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    chosen = filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return [(name, (folder / name).stat().st_size) for name in chosen]


def published_card_text(repo_id: str, token: Optional[str] = None) -> Optional[str]:
    """The README.md now on the Hub for ``repo_id`` (its owner may have edited it there); None if there is none
    or the Hub cannot be reached: the folder's own README.md is then the card to update."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, "README.md", token=token)
    except Exception as error:  # no such repo or file yet, private, offline: nothing published to keep
        logger.info("No published card for %s (%s); updating the folder's README.md.", repo_id, type(error).__name__)
        return None
    return Path(path).read_text(encoding="utf-8")


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: Optional[str] = None,
    dry_run: bool = False,
    commit_message: str = "Upload DeiT student (hf-deit)",
) -> list[tuple[str, int]]:
    """Create ``repo_id`` if needed and upload the student's model, processor, card, results and plots.

    Writes the model card first when the folder has none, except in a ``dry_run``, which changes nothing on
    disk and sends nothing. Returns the (path, size) list. Raises if the folder has no weights or no processor.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file() and not dry_run:
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


def package_files() -> list[Path]:
    """The ``hf_deit`` files a Space needs beside ``app.py``: its modules and the card template."""
    return sorted([*PACKAGE.glob("**/*.py"), *PACKAGE.glob("*/templates/*.md")])


SPACE_TEMPLATE = PACKAGE / "publish" / "templates" / "space_card.md"
SPACE_TITLE = "DeiT student (distillation through attention)"
# The Python the Space runs: the one CI tests.
SPACE_PYTHON = "3.11"


def space_card(model_id: str) -> SpaceCard:
    """The Space's README: its metadata (linked to the model, which is fetched at build time) and a visitor's page."""
    import gradio

    data = SpaceCardData(
        title=SPACE_TITLE, sdk="gradio", sdk_version=gradio.__version__, python_version=SPACE_PYTHON,
        app_file="app.py", license="apache-2.0", models=[model_id], tags=["deit", "distillation", "image-classification"],
        emoji="🎓", colorFrom="indigo", colorTo="yellow", pinned=False, preload_from_hub=[model_id],
        short_description="A distilled DeiT's two heads and where its tokens look",
    )
    return SpaceCard.from_template(data, template_path=str(SPACE_TEMPLATE), title=SPACE_TITLE, model_id=model_id)


def space_plan(space_dir: Optional[str | os.PathLike] = None) -> list[tuple[str, int]]:
    """(path in the Space, size) of the demo files and the ``hf_deit`` files it imports (the README is generated)."""
    space_dir = Path(space_dir) if space_dir else PACKAGE.parent / "space"
    if not (space_dir / "app.py").is_file():
        raise FileNotFoundError(f"No demo at {space_dir}: run from a checkout of hf-deit (it has space/app.py).")
    files = sorted(path.relative_to(space_dir).as_posix() for path in space_dir.glob("**/*") if path.is_file())
    chosen = filter_repo_objects(files, allow_patterns=SPACE_PATTERNS)
    plan = [(name, (space_dir / name).stat().st_size) for name in chosen]
    plan += [(f"hf_deit/{path.relative_to(PACKAGE).as_posix()}", path.stat().st_size) for path in package_files()]
    return plan


def _space_operations(space_dir: Path, model_id: str, existing: set[str]) -> list[Any]:
    """Every file of the Space as one commit: added or replaced, and the Space's stale files deleted."""
    operations: list[Any] = [CommitOperationAdd("README.md", str(space_card(model_id)).encode())]
    for name, _ in space_plan(space_dir):
        source = PACKAGE / name[len("hf_deit/"):] if name.startswith("hf_deit/") else space_dir / name
        operations.append(CommitOperationAdd(name, str(source)))
    kept = {operation.path_in_repo for operation in operations} | {".gitattributes"}
    operations += [CommitOperationDelete(name) for name in sorted(existing - kept)]
    return operations


def push_space(
    space_id: str,
    model_id: str,
    private: bool = False,
    token: Optional[str] = None,
    dry_run: bool = False,
    space_dir: Optional[str | os.PathLike] = None,
) -> list[tuple[str, int]]:
    """Create or update a Gradio Space running ``space/app.py`` on ``model_id`` (its MODEL_ID variable).

    One commit holds the app, its README (:func:`space_card`) and the ``hf_deit`` package next to ``app.py``
    (the Space installs only ``space/requirements.txt``), and deletes files a previous push left: the first
    build never starts with half the files.
    """
    space_dir = Path(space_dir) if space_dir else PACKAGE.parent / "space"
    plan = [("README.md", len(str(space_card(model_id)).encode())), *space_plan(space_dir)]
    if dry_run:
        return plan
    api = HfApi(token=token)
    api.create_repo(repo_id=space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.add_space_variable(repo_id=space_id, key="MODEL_ID", value=model_id)
    existing = set(api.list_repo_files(repo_id=space_id, repo_type="space"))
    api.create_commit(repo_id=space_id, repo_type="space", operations=_space_operations(space_dir, model_id, existing),
                      commit_message=f"Demo of {model_id} (hf-deit)")
    logger.info("Updated the Space https://huggingface.co/spaces/%s", space_id)
    return plan
