"""Top-k accuracy through ``evaluate``: raw logits (the old interface) against top-k indices (hf_deit.metrics).

An ``evaluate.Metric`` stores what it is given in Arrow before computing. Fed full logit matrices, that
round trip dominates; fed each row's top-5 class indices, it is a small fraction. Both are timed on the
same random logits, with the same answer checked, for CIFAR-10 (10 classes) and ImageNet (1,000) sizes.

    python benchmarks/metrics_speed.py        # writes docs/results/metrics_speed.json (+ .md)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import datasets
import evaluate
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import RESULTS, describe_machine, machine  # noqa: E402

from hf_deit.metrics import TopKAccuracy, top_k_indices  # noqa: E402

SHAPES = ((1000, 10), (10000, 10), (5000, 1000))


class LogitsTopKAccuracy(evaluate.Metric):
    """The previous interface, kept here as the baseline: one float row of scores per example."""

    def _info(self):
        return evaluate.MetricInfo(description="", citation="", features=datasets.Features(
            {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, top_k=(1, 5)):
        scores, labels = np.asarray(predictions, dtype=np.float32), np.asarray(references)
        return {f"top{k}": float((np.argpartition(-scores, k - 1, axis=-1)[:, :k] == labels[:, None]).any(-1).mean())
                for k in top_k if k <= scores.shape[-1]}


def seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for images, classes in SHAPES:
        logits = rng.standard_normal((images, classes), dtype=np.float32)
        labels = rng.integers(0, classes, images)
        old, new = LogitsTopKAccuracy(), TopKAccuracy()
        assert old.compute(predictions=logits, references=labels) == new.compute(
            predictions=top_k_indices(logits), references=labels)
        rows.append({"images": images, "classes": classes,
                     "logits_s": seconds(lambda: old.compute(predictions=logits, references=labels)),
                     "indices_s": seconds(lambda: new.compute(predictions=top_k_indices(logits), references=labels))})
    lines = ["| images x classes | logits through evaluate (s) | top-k indices through evaluate (s) | speed-up |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['images']:,} x {r['classes']:,} | {r['logits_s']:.3f} | {r['indices_s']:.3f} | "
              f"**{r['logits_s'] / r['indices_s']:.1f}x** |" for r in rows]
    environment = machine()
    lines += ["", f"Median of 3 per cell, one head; the same accuracies both ways (asserted). {describe_machine(environment)}.",
              "Reproduce: `python benchmarks/metrics_speed.py`."]
    result = {"rows": rows, "machine": environment, "markdown": "\n".join(lines)}
    (RESULTS / "metrics_speed.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "metrics_speed.md").write_text("# Top-k metrics: logits vs indices\n\n" + result["markdown"] + "\n")
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
