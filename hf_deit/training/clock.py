"""The training clock, and training for a wall-clock budget (``max_train_minutes``).

:class:`TrainingClock` counts the seconds spent in training steps (evaluation and checkpointing excluded), logs
them as ``train_wall_s`` and keeps them in the checkpoint's trainer state, so a resumed run goes on counting.

A schedule sized in steps has to guess the step time up front, and a shared machine's pace drifts from any
probe of it by tenths: the run then stops short of its budget or overruns it. With ``max_train_minutes`` the
schedule runs on this clock instead (:func:`schedule_on_clock`): its progress is the larger of the budget spent
and the steps done of ``max_steps``, so it anneals fully exactly when the first of the two runs out, and
training stops there. Any of the Trainer's ``LambdaLR`` schedules (cosine, linear, ...) keeps its shape.

Several processes must agree on both (a rank that stops alone hangs the others at the next all-reduce, and
ranks stepping at different learning rates drift apart): with a budget, the main process's reading is
broadcast at the end of every step, one scalar per step, and the schedule and the stop read only that.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from accelerate.utils import broadcast
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..config import ConfigError


class TrainingClock(TrainerCallback, ExportableState):
    """Seconds of training steps so far (``spent_s``), saved with each checkpoint; with ``budget_s``, a limit."""

    def __init__(self, budget_s: Optional[float] = None) -> None:
        self.budget_s = budget_s
        self.spent_s = 0.0
        self._last: Optional[float] = None  # when the clock last read, None while it is stopped

    def state(self) -> dict:
        return {"args": {"budget_s": self.budget_s}, "attributes": {"spent_s": self.spent_s}}

    def seconds(self) -> float:
        """Training seconds up to now, the step in flight included."""
        return self.spent_s + (time.perf_counter() - self._last if self._last is not None else 0.0)

    def progress(self) -> float:
        """The share of the budget spent at the end of the last step (0 without a budget): the same on every
        process."""
        return min(1.0, self.spent_s / self.budget_s) if self.budget_s else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        name = type(self).__name__
        saved = state.stateful_callbacks.get(name) if state.stateful_callbacks is not None else None
        # Resumed (the state came from a checkpoint): go on from its reading. A fresh train() starts at zero,
        # also when one Trainer trains again (a hyperparameter search's trials).
        self.spent_s = saved["attributes"]["spent_s"] if state.global_step > 0 and isinstance(saved, dict) else 0.0
        if state.stateful_callbacks is not None and saved is None:  # a checkpoint from before the clock
            state.stateful_callbacks[name] = self.state()
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.spent_s = self.seconds()
        self._last = time.perf_counter()
        if self.budget_s is None:
            return
        if args.world_size > 1:  # the main process's reading, on every process
            self.spent_s = broadcast(torch.tensor([self.spent_s], dtype=torch.float64, device=args.device)).item()
        if self.spent_s >= self.budget_s:
            control.should_training_stop = True

    def _pause(self, *args, **kwargs):  # an evaluation or a checkpoint just ran: not training time
        self._last = time.perf_counter()

    on_evaluate = on_save = _pause

    def on_train_end(self, args, state, control, **kwargs):
        self._last = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        value = round(self.spent_s, 3)
        if logs is not None:
            logs["train_wall_s"] = value
        if state.log_history:  # the Trainer appended a copy of ``logs`` before calling us
            state.log_history[-1]["train_wall_s"] = value


def schedule_on_clock(scheduler: LambdaLR, clock: TrainingClock, num_training_steps: int) -> None:
    """Make ``scheduler`` follow ``clock``: each of its factors is read at the step that matches the share of
    the budget spent, or at the actual step if that is further on."""
    if not isinstance(scheduler, LambdaLR):
        raise ConfigError(
            f"max_train_minutes needs a step-shaped schedule (cosine, linear, ...), got {type(scheduler).__name__}",
            "pick another lr_scheduler_type, or drop max_train_minutes")

    def on_clock(shape: Callable[[int], float]) -> Callable[[int], float]:
        def factor(step: int) -> float:  # a closure: LambdaLR's state_dict skips plain functions
            progress = max(step / num_training_steps, clock.progress())
            return shape(min(num_training_steps, round(progress * num_training_steps)))
        return factor

    scheduler.lr_lambdas = [on_clock(shape) for shape in scheduler.lr_lambdas]
