"""docs/results/throughput.md: one page assembled from the speed benchmarks' JSON files.

Each benchmark writes its own ``docs/results/<name>.json`` with a ``markdown`` section; this page
strings the sections together in the issue's order, so re-running one benchmark refreshes its part
without touching the others' numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
SECTIONS = (
    ("throughput", "python benchmarks/throughput.py"),
    ("input_pipeline", "python benchmarks/input_pipeline.py"),
    ("precision", "python benchmarks/precision.py"),
    ("scaling", "python benchmarks/scaling.py"),
)
HEADER = """# Speed and scale (issue 5)

Every number below was measured by the script named in its section, on the machine it names; nothing is
typed in by hand. The distributed-correctness checks (2 CPU ranks, gloo) are tests, not timings:
`pytest tests/test_distributed.py` (run by CI).
"""


def write_throughput_page(results: Path = RESULTS) -> Path:
    parts = [HEADER]
    for name, command in SECTIONS:
        path = results / f"{name}.json"
        section = json.loads(path.read_text()).get("markdown") if path.exists() else None
        parts.append(section if section else f"## {name}\n\nNot measured yet: run `{command}`.")
    page = results / "throughput.md"
    page.write_text("\n\n".join(part.strip() for part in parts) + "\n")
    return page


if __name__ == "__main__":
    print(write_throughput_page())
