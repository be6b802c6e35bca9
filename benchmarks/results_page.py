"""Result pages assembled from the benchmarks' JSON files: docs/results/throughput.md and cifar10_cpu.md.

Each benchmark writes its own ``docs/results/<name>.json`` with a ``markdown`` section; a page strings
its sections together in the issue's order, so re-running one benchmark refreshes its part without
touching the others' numbers. A page's hand-written reading of the tables lives in ``<page>_notes.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"

THROUGHPUT_HEADER = """# Speed and scale (issue 5)

Every number below was measured by the script named in its section, on the machine it names; nothing is
typed in by hand. The distributed-correctness checks (2 CPU ranks, gloo) are tests, not timings:
`pytest tests/test_distributed.py` (run by CI).
"""

CIFAR10_CPU_HEADER = """# CIFAR-10 on 2 CPU cores: the teacher, the students, the recipe fixes

Accuracies are top-1 on the full 10,000-image CIFAR-10 test split of the local JPEG-q75 copy
(`../shared/data/cifar10`, the Hub's `uoft-cs/cifar10` re-encoded): expect them a little below what the
same models score on the lossless originals. Nothing on this page was selected on the test split.
Every section names the command that wrote it.
"""

# page -> (header, ((JSON name, the command that writes it, the section's title if its Markdown has none), ...))
PAGES = {
    "throughput": (THROUGHPUT_HEADER, (
        ("throughput", "python benchmarks/throughput.py", "Trainer vs a hand-written loop"),
        ("input_pipeline", "python benchmarks/input_pipeline.py", "Input pipeline vs training step"),
        ("precision", "python benchmarks/precision.py", "Precision and kernels"),
        ("scaling", "python benchmarks/scaling.py", "How cost grows"),
    )),
    "cifar10_cpu": (CIFAR10_CPU_HEADER, (
        ("teacher", "python benchmarks/teacher_result.py", "The teacher"),
        ("teacher_pilots", "python benchmarks/teacher_pilots.py --table", "Teacher pilots"),
        ("teacher_speed", "python benchmarks/teacher_speed.py", "What each speed choice of the teacher buys"),
        ("airbench_reference", "python benchmarks/airbench_reference.py",
         "Reference: airbench94's own network on this CPU"),
        ("parity", "python benchmarks/parity.py", "Accuracy parity with an independent loop"),
        ("student_pilots", "python benchmarks/student_pilots.py --table", "Student pilots"),
        ("students_w128_patch_drop", "python benchmarks/cifar10_students.py --table "
         "--config configs/cifar10_cpu_student_w128_patch_drop.yaml --runs_dir runs/students_w128_patch_drop "
         "--out docs/results/students_w128_patch_drop.json",
         "The students of `cifar10_cpu_student_w128_patch_drop.yaml` (patch dropout): hard vs soft vs none"),
        ("teacher_agreement", "python benchmarks/teacher_agreement.py --dataset_name ../shared/data/cifar10",
         "How often hard distillation's targets differ from the labels"),
        ("students_w128", "python benchmarks/cifar10_students.py --table --config configs/cifar10_cpu_student_w128.yaml "
         "--runs_dir runs/students_w128 --out docs/results/students_w128.json",
         "The students of `cifar10_cpu_student_w128.yaml`: hard vs soft vs none"),
        ("students", "python benchmarks/cifar10_students.py --table", "The students: hard vs soft vs none"),
        ("student_speed_w128_patch_drop", "python benchmarks/student_speed.py "
         "--config configs/cifar10_cpu_student_w128_patch_drop.yaml "
         "--variants shipped compile teacher_compile compile_both no_teacher no_teacher_compile "
         "--out docs/results/student_speed_w128_patch_drop.json",
         "What each speed choice of the 128 x 6 student with patch dropout buys"),
        ("student_speed_w128_patch_drop_quarter", "python benchmarks/student_speed.py "
         "--config configs/cifar10_cpu_student_w128_patch_drop.yaml "
         "--variants shipped teacher_quarter teacher_quarter_compile no_teacher "
         "--out docs/results/student_speed_w128_patch_drop_quarter.json",
         "What the teacher on a quarter of each batch buys in speed"),
        ("student_speed_w128", "python benchmarks/student_speed.py --config configs/cifar10_cpu_student_w128.yaml "
         "--variants shipped bf16 sdpa compile no_teacher teacher_fp32 teacher_compile "
         "--out docs/results/student_speed_w128.json",
         "What each speed choice of the 128 x 6 student buys"),
        ("student_speed", "python benchmarks/student_speed.py", "What each speed choice of the student buys"),
        ("shipped_student", "python benchmarks/ship_student.py", "The shipped student"),
    )),
}


def write_page(page: str, results: Path = RESULTS) -> Path:
    header, sections = PAGES[page]
    parts = [header]
    for name, command, title in sections:
        path = results / f"{name}.json"
        section = (json.loads(path.read_text()).get("markdown") or "").strip() if path.exists() else ""
        if not section:
            section = f"Not measured yet: run `{command}`."
        if not section.startswith("#"):
            section = f"## {title}\n\n{section}"
        parts.append(section)
    notes = results / f"{page}_notes.md"  # the hand-written reading of the measured tables
    if notes.exists():
        parts.append(notes.read_text())
    out = results / f"{page}.md"
    out.write_text("\n\n".join(part.strip() for part in parts) + "\n")
    return out


def write_throughput_page(results: Path = RESULTS) -> Path:
    return write_page("throughput", results)


def save_section(result: dict, out: Path) -> None:
    """Print a benchmark's Markdown section, write ``OUT.json``, and refresh the pages that list it when OUT is
    in docs/results."""
    print("\n" + result["markdown"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if out.resolve().parent == RESULTS.resolve():
        for page, (_, sections) in PAGES.items():
            if any(name == out.stem for name, _, _ in sections):
                write_page(page)


if __name__ == "__main__":
    for page in PAGES:
        print(write_page(page))
