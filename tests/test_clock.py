"""The training clock and ``max_train_minutes``: the schedule follows the clock, the run stops on it, a resumed run
goes on from the checkpoint's reading, and a budget that cannot work is refused with the fix."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import get_scheduler

from hf_deit.cli.distill import main
from hf_deit.config import ConfigError, parse_config
from hf_deit.training.clock import TrainingClock, schedule_on_clock

from test_end_to_end import tiny_run_args


def cosine(steps: int = 100, warmup: int = 10):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=steps)


def test_schedule_reads_the_step_that_matches_the_budget_spent():
    reference = cosine().lr_lambdas[0]
    scheduler, clock = cosine(), TrainingClock(budget_s=200.0)
    schedule_on_clock(scheduler, clock, num_training_steps=100)
    factor = scheduler.lr_lambdas[0]
    assert factor(0) == reference(0) == 0.0  # warm-up starts from zero
    clock.spent_s = 20.0  # a tenth of the budget: the warm-up is over
    assert factor(3) == pytest.approx(reference(10)) == pytest.approx(1.0)
    clock.spent_s = 100.0
    assert factor(3) == pytest.approx(reference(50)) and 0.4 < factor(3) < 0.6
    assert factor(80) == pytest.approx(reference(80))  # steps ahead of the clock: the steps lead (max_steps caps)
    clock.spent_s = 250.0  # overrun: the schedule stays at its end
    assert factor(3) == pytest.approx(reference(100)) == pytest.approx(0.0)


def test_clock_stops_at_the_budget_and_starts_from_zero_unless_resumed():
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    args = SimpleNamespace(world_size=1, device=torch.device("cpu"))
    clock, state, control = TrainingClock(budget_s=1e-3), TrainerState(stateful_callbacks=[]), TrainerControl()
    clock.on_train_begin(None, state, control)
    assert state.stateful_callbacks["TrainingClock"]["attributes"]["spent_s"] == 0.0  # recorded for the checkpoint
    while clock.seconds() < 1e-3:  # the step in flight counts ...
        pass
    assert clock.progress() == 0.0  # ... from the end of the step on, when every process agrees on it
    clock.on_step_end(args, state, control)
    assert control.should_training_stop and clock.spent_s >= 1e-3 and clock.progress() == 1.0

    clock.on_train_begin(None, TrainerState(stateful_callbacks=[clock]), TrainerControl())
    assert clock.spent_s == 0.0  # the same Trainer training again (a search's next trial): a fresh budget
    resumed = TrainerState(global_step=7, stateful_callbacks={"TrainingClock": {"args": {}, "attributes": {"spent_s": 42.0}}})
    clock.on_train_begin(None, resumed, TrainerControl())
    assert clock.spent_s == 42.0


@pytest.mark.parametrize("flags, message", [
    (["--max_train_minutes", "0"], "max_train_minutes must be positive"),
    (["--max_train_minutes", "5", "--warmup_steps", "100"], "give the warm-up as a share of the budget"),
])
def test_a_budget_that_cannot_work_is_refused_with_the_fix(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(["--config", "configs/quickstart.yaml", "--output_dir", "unused", *flags])


def test_a_run_trains_for_its_minutes_and_ends_with_the_schedule(sample_dir, tmp_path):
    output_dir = tmp_path / "student"
    budget_s = 1.5
    main(tiny_run_args(sample_dir, output_dir, "--distillation_type", "none", "--num_train_epochs", "1000",
                       "--max_train_minutes", str(budget_s / 60), "--warmup_steps", "0.1", "--logging_steps", "1"))
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert 1 <= state["global_step"] < state["max_steps"] == 4000  # the clock ended it, not the epochs
    steps = [entry for entry in state["log_history"] if "learning_rate" in entry]
    spent = max(entry["train_wall_s"] for entry in state["log_history"] if "train_wall_s" in entry)
    assert budget_s <= spent < budget_s + 1.0
    peak = max(entry["learning_rate"] for entry in steps)
    assert steps[-1]["learning_rate"] < 0.1 * peak  # annealed by the clock, though 0.1 % of max_steps ran
