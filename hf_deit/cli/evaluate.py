"""``scripts/evaluate_student.py``: evaluate a student on a dataset split and write its report."""

from __future__ import annotations

from typing import Any, Optional

from ..config import EvaluationArguments, parse_config
from ..publish.evaluation import CONFUSION_FILE, REPORT_FILE, RESULTS_FILE, evaluate_student, render_report


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    (args,) = parse_config(argv, (EvaluationArguments,))
    results = evaluate_student(args)
    print(render_report(results))
    print(f"Wrote {RESULTS_FILE}, {REPORT_FILE} and {CONFUSION_FILE} to {args.output_dir}", flush=True)
    return results
