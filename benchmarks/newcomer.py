"""A newcomer's first commands and what each prints: ``docs/results/newcomer.md``.

    python benchmarks/newcomer.py                 # ~3 min on 2 CPU cores (one 20-step quickstart run)

Runs each command from the repository root, as a user would, and records its output and exit code:
``--help``, typos, a missing path, an unknown split, a missing flag, a short quickstart (to show its log
is free of CPU noise), a push dry run with checksums before and after, and a re-push that keeps a hand
edit of the model card. The Hub cannot be reached from this machine: the two real pushes run
``scripts/push_to_hub.py``'s ``main`` with ``huggingface_hub.HfApi`` replaced by a recorder, and say so.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import REPO, RESULTS  # noqa: E402

OUT = RESULTS / "newcomer.md"
MAX_LINES = 40
# Stands in for the Hub in the two pushes: records the calls, sends nothing.
RECORDING_PUSH = """
import sys
import hf_deit.publish.push as push
from hf_deit.cli.push import main

class RecordingHfApi:
    def __init__(self, token=None):
        pass
    def create_repo(self, **kwargs):
        print(f"[recorder] create_repo({kwargs['repo_id']!r})")
    def upload_folder(self, **kwargs):
        print(f"[recorder] upload_folder({kwargs['folder_path']!r} -> {kwargs['repo_id']!r})")

push.HfApi = RecordingHfApi
main(sys.argv[1:])
"""
HAND_EDIT = "\n## Notes from the author\n\nTrained on my laptop over lunch; see the limitations above.\n"


def run(command: list[str]) -> tuple[str, int]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "PYTHONPATH": str(REPO)}
    environment.pop("HF_DEIT_DEBUG", None)
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=900)
    return (result.stdout + result.stderr).rstrip(), result.returncode


def shown(output: str, max_lines: int = MAX_LINES) -> str:
    lines = output.splitlines()
    if len(lines) > max_lines:
        lines = lines[: max_lines - 6] + [f"... ({len(lines) - max_lines + 1} lines left out) ..."] + lines[-5:]
    return "\n".join(lines)


def checksums(folder: Path) -> str:
    return "\n".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}  {p.relative_to(folder).as_posix()}"
                     for p in sorted(folder.rglob("*")) if p.is_file())


class Transcript:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def command(self, title: str, argv: list[str], note: str = "", shown_as: str = "",
                max_lines: int = MAX_LINES) -> str:
        output, code = run(argv)
        display = shown_as or shlex.join(["python", *argv[1:]])
        self.parts += [f"## {title}", "", note, "", "```console", f"$ {display}", shown(output, max_lines),
                       f"[exit code {code}]", "```", ""]
        return output

    def text(self, markdown: str) -> None:
        self.parts += [textwrap.dedent(markdown).strip(), ""]


def main() -> Path:
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="newcomer-"))
    student = work / "quickstart"
    transcript = Transcript()
    transcript.text(f"""
        # A newcomer's first commands

        Each block is a command run from the repository root and everything it printed (long outputs cut in the
        middle), by `python benchmarks/newcomer.py`. Student folder: a 20-step run of the quickstart config,
        written to a temporary folder (`{work.name}/quickstart` below).
    """)
    transcript.command("`--help`: the project's keys first, grouped", [python, "scripts/distill.py", "--help"],
                       "TrainingArguments' own keys are linked, not listed; `--help-all` prints argparse's list.",
                       max_lines=80)
    quickstart = transcript.command(
        "The quickstart's log, shortened to 20 steps", [python, "scripts/distill.py", "--config",
                                                         "configs/quickstart.yaml", "--max_steps", "20",
                                                         "--output_dir", str(student)],
        "No `pin_memory` warning and no accelerate notice on CPU; the warnings that matter stay.")
    noise = {phrase: quickstart.count(phrase) for phrase in ("pin_memory", "were not passed", "Traceback")}
    transcript.text("Counts in that log: " + ", ".join(f"`{k}` {v}" for k, v in noise.items()) + ".")
    transcript.command("A typo in a flag", [python, "scripts/distill.py", "--config", "configs/quickstart.yaml",
                                            "--distilation-type", "hard"])
    transcript.command("A typo in evaluate_student.py", [python, "scripts/evaluate_student.py", "--student",
                                                         str(student), "--splt", "test"])
    transcript.command("A dataset path that does not exist", [python, "scripts/distill.py", "--config",
                                                              "configs/quickstart.yaml", "--dataset_name",
                                                              "data/does-not-exist"])
    transcript.command("A split the dataset does not have", [python, "scripts/evaluate_student.py", "--student",
                                                             str(student), "--split", "validation"])
    transcript.command("A required flag left out", [python, "scripts/push_to_hub.py", "--repo_id", "me/deit-tiny"])
    transcript.command("The same error with its traceback", [python, "scripts/push_to_hub.py", "--repo_id",
                                                             "me/deit-tiny", "--debug"], max_lines=14)
    _dry_run(transcript, python, student)
    _re_push(transcript, python, student)
    _minimum_versions(transcript)
    OUT.write_text("\n".join(transcript.parts).rstrip() + "\n")
    print(OUT.read_text())
    return OUT


def _dry_run(transcript: Transcript, python: str, student: Path) -> None:
    before = checksums(student)
    transcript.command("A dry run changes nothing on disk", [python, "scripts/push_to_hub.py", "--folder",
                                                             str(student), "--repo_id", "me/deit-tiny", "--dry_run"])
    after = checksums(student)
    transcript.parts += ["sha256 of every file in the folder, before and after:", "", "```text", before, "```", "",
                         f"After: {'identical' if after == before else 'CHANGED'} ({len(before.splitlines())} files).",
                         ""]


def _re_push(transcript: Transcript, python: str, student: Path) -> None:
    argv = [python, "-c", RECORDING_PUSH, "--folder", str(student), "--repo_id", "me/deit-tiny"]
    shown_as = f"python scripts/push_to_hub.py --folder {student} --repo_id me/deit-tiny"
    transcript.command("First push (HfApi replaced by a recorder: no Hub here)", argv, shown_as=shown_as)
    card = student / "README.md"
    card.write_text(card.read_text() + HAND_EDIT)
    transcript.text(f"The author appends a section to `README.md` by hand:\n\n```markdown{HAND_EDIT}```")
    transcript.command("Re-push: the generated sections are rewritten, the hand edit is kept", argv,
                       shown_as=shown_as)
    text = card.read_text()
    transcript.text(f"After the re-push, the card {'still has' if HAND_EDIT.strip() in text else 'LOST'} the "
                    f"author's section; it has {text.count('<!-- hf-deit:begin')} generated sections between "
                    "`<!-- hf-deit:begin NAME -->` / `<!-- hf-deit:end NAME -->` markers.")


def _minimum_versions(transcript: Transcript) -> None:
    sys.path.insert(0, str(REPO / ".ci"))
    import minimum_versions

    pins = minimum_versions.floors(REPO / "pyproject.toml")
    transcript.text("## The declared minimum versions\n\n"
                    "CI installs every floor of `pyproject.toml` at once (`.ci/minimum_versions.py` writes the "
                    "constraints file) over its environment and runs a fast subset of the tests (`.ci/run`): "
                    + ", ".join(f"`{name}=={version}`" for name, version in sorted(pins.items())) + ". "
                    "torch and torchvision keep the build CI installs: PyPI has only multi-GB CUDA builds of the "
                    "old releases for Linux, so their floors (`torch>=2.4`, `torchvision>=0.19`) are not tried.")


if __name__ == "__main__":
    main()
