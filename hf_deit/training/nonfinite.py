"""Stop training at the first NaN/inf loss, before that step's weights are applied or saved.

The Trainer's own answer to a non-finite loss (``logging_nan_inf_filter``) is to hide it from the
logged average and keep going: the optimizer then writes NaNs into every weight, and the next
checkpoint saves them over nothing better. :class:`NonFiniteLossGuard` raises instead, naming the
global step and the loss parts, while the last checkpoint is still good.

Cost. Reading a device tensor on the host (``bool(t)``, ``.item()``) waits for the GPU, so a
check that raises must sync. Two modes, and ``auto`` picks between them:

* ``step`` reads the flag after the backward is queued, the same place where the Trainer's
  ``logging_nan_inf_filter`` (on by default) already syncs every micro-step: the GPU has nothing
  left to do, so the second read costs microseconds, and on CPU there is nothing to wait for. The
  step is stopped before ``optimizer.step()``: live weights stay finite.
* ``deferred`` never syncs per step: the first bad step and its loss parts are recorded on the
  device with ``torch.where`` and read at each log, each checkpoint save and the end of training,
  all of which sync anyway. The error names the same step; the in-memory weights may have gone
  bad since, but no save happens before the check, so no checkpoint holds them.

``auto`` is ``step`` on CPU or when ``logging_nan_inf_filter`` is on (the sync is paid anyway),
``deferred`` otherwise. With several processes the flag is all-reduced so that every process
raises at the same step instead of leaving the others blocked in a collective.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

PART_NAMES = ("loss", "loss_cls", "loss_distill")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before the bad step is applied or saved."""


def resolve_mode(mode: str, device: torch.device, logging_nan_inf_filter: bool) -> str:
    if mode != "auto":
        return mode
    return "step" if device.type == "cpu" or logging_nan_inf_filter else "deferred"


class NonFiniteLossGuard:
    def __init__(self, mode: str, accelerator: Any, describe_checkpoint: Callable[[], str]) -> None:
        self.mode = mode
        self.accelerator = accelerator
        self.describe_checkpoint = describe_checkpoint
        self._first_step: Optional[torch.Tensor] = None  # deferred: first bad step, -1 if none
        self._first_values: Optional[torch.Tensor] = None

    def observe(self, step: int, loss: torch.Tensor, parts: Optional[torch.Tensor]) -> None:
        """``loss``: this micro-step's loss; ``parts``: (loss, loss_cls, loss_distill) for the message."""
        if self.mode == "off":
            return
        bad = ~torch.isfinite(loss.detach()).all()
        if self.mode == "step":
            if self.accelerator.num_processes > 1:
                bad = self.accelerator.reduce(bad.to(torch.int32), reduction="sum") > 0
            if bool(bad):
                values = parts if parts is not None else loss.detach().reshape(1)
                raise NonFiniteLossError(self.message(step, values.tolist()))
            return
        values = (parts if parts is not None else loss.detach().reshape(1)).float()
        if self._first_step is None:
            self._first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_values = torch.zeros_like(values)
        newly_bad = bad & (self._first_step < 0)
        self._first_step = torch.where(newly_bad, torch.full_like(self._first_step, step), self._first_step)
        self._first_values = torch.where(newly_bad, values, self._first_values)

    def check(self) -> None:
        """Deferred mode: raise if a bad step was recorded. Call only where the host syncs anyway."""
        if self.mode != "deferred" or self._first_step is None:
            return
        record = torch.cat([self._first_step.reshape(1).float(), self._first_values.reshape(-1)])
        if self.accelerator.num_processes > 1:
            records = self.accelerator.gather(record.reshape(1, -1))
            flagged = records[records[:, 0] >= 0]
            record = flagged[flagged[:, 0].argmin()] if len(flagged) else records[0]
        step, *values = record.tolist()
        if step >= 0:
            raise NonFiniteLossError(self.message(int(step), values))

    def message(self, step: int, values: list[float]) -> str:
        shown = ", ".join(f"{name}={value:.4g}" for name, value in zip(PART_NAMES, values))
        culprit = next((name for name, value in zip(PART_NAMES[1:], values[1:]) if not math.isfinite(value)), None)
        return (
            f"Non-finite training loss at global step {step} ({shown}"
            + (f"; {culprit} is the non-finite part" if culprit else "")
            + "). Training stopped before this step was saved; "
            + self.describe_checkpoint()
            + " Usual causes: a learning rate too high (lower learning_rate, raise warmup_steps, keep max_grad_norm), "
            "fp16 overflow (use bf16), or inf/NaN in the inputs. Fix the cause and resume with "
            "--resume_from_checkpoint true, or set nonfinite_loss_check: off to train through it as the stock "
            "Trainer does."
        )
