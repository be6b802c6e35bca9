"""The tail every training run shares: train, save, evaluate on the reported split, write the results.

Students and teachers differ in what they build (model, trainer, metrics); once a ``Trainer``
exists, the rest is the same, and lives here.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional, Sequence

from datasets import Dataset
from transformers import Trainer

from ..config import DataConfig
from ..data.datasets import ImageClassificationData
from ..data.inputs import evaluation_set, train_set
from ..data.transforms import collate_fn
from ..heads import Row, results_table


def trainer_inputs(data: ImageClassificationData, processor: Any, config: DataConfig) -> dict[str, Any]:
    """The data arguments of every hf-deit ``Trainer``: the training set, what periodic evaluations read (the
    selection split, or the first ``eval_samples_during_training`` evaluation images), the collator, the processor."""
    during_training = data.during_training(config.eval_samples_during_training)
    return {"train_dataset": train_set(data, processor, config),
            "eval_dataset": evaluation_set(during_training, data, processor, config),
            "data_collator": collate_fn, "processing_class": processor}


def train_save_evaluate(
    trainer: Trainer, data: ImageClassificationData, reported: Dataset, resume_from_checkpoint: Any = None
) -> dict[str, Any]:
    """Train (resuming if asked), save the model and ``trainer_state.json``, then evaluate ``reported``.

    Checkpoints, if selected, were chosen on ``data.selection``: the reported split is read only here.
    """
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    trainer.save_model()  # weights + config + image processor, stock-loadable
    trainer.save_state()  # trainer_state.json: the full log history (loss parts, eval metrics)
    trainer.eval_dataset = reported
    metrics = trainer.evaluate()
    metrics.update(
        train_runtime_s=round(train_seconds, 1),
        train_loss=train_result.training_loss,
        train_images=len(trainer.train_dataset),
        eval_images=len(reported),
        **({"selection_images": len(data.selection)} if data.selection is not None else {}),
        parameters=sum(p.numel() for p in trainer.accelerator.unwrap_model(trainer.model).parameters()),
    )
    return metrics


def save_results(rows: Sequence[Row], metrics: dict[str, Any], output_dir: str, title: str) -> str:
    """Print the results table and write it (``results.md``) and the metrics (``results.json``) to ``output_dir``."""
    text = f"## {title}\n\n{results_table(rows)}\n"
    print("\n" + text, flush=True)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(output_dir, "results.json"), "w") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)
    return text


def callbacks_or_none(*groups: Optional[Sequence[Any]]) -> Optional[list[Any]]:
    """The Trainer's ``callbacks`` argument from several optional groups (None when all are empty)."""
    callbacks = [callback for group in groups if group for callback in group]
    return callbacks or None
