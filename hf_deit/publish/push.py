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
from typing import Optional

from huggingface_hub import HfApi
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
    "eval_results.json",
    "eval_report.md",
    "trainer_state.json",
    RUN_CONFIG_FILE,
    "*.png",
]
# "*/*" keeps every sub-folder (checkpoint-*/, runs/, .git/) out; the rest is belt and braces.
IGNORE_PATTERNS = ["*/*", "checkpoint-*", "training_args*", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]
SPACE_PATTERNS = ["app.py", "requirements.txt", "README.md", "examples/*.png"]


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


def package_files() -> list[Path]:
    """The ``hf_deit`` files a Space needs beside ``app.py``: its modules and the card template."""
    return sorted([*PACKAGE.glob("**/*.py"), *PACKAGE.glob("*/templates/*.md")])


def space_plan(space_dir: Optional[str | os.PathLike] = None) -> list[tuple[str, int]]:
    """(path in the Space, size) of the demo files and the ``hf_deit`` modules it imports."""
    space_dir = Path(space_dir) if space_dir else PACKAGE.parent / "space"
    if not (space_dir / "app.py").is_file():
        raise FileNotFoundError(f"No demo at {space_dir}: run from a checkout of hf-deit (it has space/app.py).")
    files = sorted(path.relative_to(space_dir).as_posix() for path in space_dir.glob("**/*") if path.is_file())
    chosen = filter_repo_objects(files, allow_patterns=SPACE_PATTERNS)
    plan = [(name, (space_dir / name).stat().st_size) for name in chosen]
    plan += [(f"hf_deit/{path.relative_to(PACKAGE).as_posix()}", path.stat().st_size) for path in package_files()]
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
    space_dir = Path(space_dir) if space_dir else PACKAGE.parent / "space"
    plan = space_plan(space_dir)
    if dry_run:
        return plan
    api = HfApi(token=token)
    api.create_repo(repo_id=space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.add_space_variable(repo_id=space_id, key="MODEL_ID", value=model_id)
    api.upload_folder(repo_id=space_id, repo_type="space", folder_path=str(space_dir),
                      allow_patterns=list(SPACE_PATTERNS), commit_message="Demo app (hf-deit)")
    api.upload_folder(repo_id=space_id, repo_type="space", folder_path=str(PACKAGE), path_in_repo="hf_deit",
                      allow_patterns=["*.py", "*/*.py", "*/templates/*.md"], commit_message="hf_deit package (hf-deit)")
    logger.info("Updated the Space https://huggingface.co/spaces/%s", space_id)
    return plan
