"""Results tables: printed at the end of a run and written next to the checkpoint."""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def results_table(rows: Sequence[tuple[str, Optional[float], Optional[float]]]) -> str:
    """Markdown table of (head, top-1, top-5) rows, accuracies in percent."""
    lines = ["| head | top-1 (%) | top-5 (%) |", "|---|---:|---:|"]
    lines += [f"| {name} | {_pct(top1)} | {_pct(top5)} |" for name, top1, top5 in rows]
    return "\n".join(lines)


def print_and_save_results(
    rows: Sequence[tuple[str, Optional[float], Optional[float]]],
    metrics: dict[str, Any],
    output_dir: str,
    title: str,
) -> str:
    table = results_table(rows)
    text = f"## {title}\n\n{table}\n"
    print("\n" + text, flush=True)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(output_dir, "results.json"), "w") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)
    return table
