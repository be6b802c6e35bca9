"""docs/results/throughput.md: one page assembled from the speed benchmarks' JSON files.

Each benchmark writes its own ``docs/results/<name>.json`` with a ``markdown`` section; this page
strings the sections together in the issue's order, so re-running one benchmark refreshes its part
without touching the others' numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
SECTIONS = (  # (JSON name, the command that writes it, the section's title if its Markdown has none)
    ("throughput", "python benchmarks/throughput.py", "Trainer vs a hand-written loop"),
    ("input_pipeline", "python benchmarks/input_pipeline.py", "Input pipeline vs training step"),
    ("precision", "python benchmarks/precision.py", "Precision and kernels"),
    ("scaling", "python benchmarks/scaling.py", "How cost grows"),
)
HEADER = """# Speed and scale (issue 5)

Every number below was measured by the script named in its section, on the machine it names; nothing is
typed in by hand. The distributed-correctness checks (2 CPU ranks, gloo) are tests, not timings:
`pytest tests/test_distributed.py` (run by CI).
"""


def write_throughput_page(results: Path = RESULTS) -> Path:
    parts = [HEADER]
    for name, command, title in SECTIONS:
        path = results / f"{name}.json"
        section = (json.loads(path.read_text()).get("markdown") or "").strip() if path.exists() else ""
        if not section:
            section = f"Not measured yet: run `{command}`."
        if not section.startswith("#"):
            section = f"## {title}\n\n{section}"
        parts.append(section)
    notes = results / "throughput_notes.md"  # the hand-written reading of the measured tables
    if notes.exists():
        parts.append(notes.read_text())
    page = results / "throughput.md"
    page.write_text("\n\n".join(part.strip() for part in parts) + "\n")
    return page


def save_section(result: dict, out: Path) -> None:
    """Print a benchmark's Markdown section, write ``OUT.json``, and refresh the page when OUT is in docs/results."""
    print("\n" + result["markdown"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if out.resolve().parent == RESULTS.resolve():
        write_throughput_page()


if __name__ == "__main__":
    print(write_throughput_page())
