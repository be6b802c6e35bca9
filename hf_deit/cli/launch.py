"""Start CPU ranks the way torch does, and refuse the launch that silently starts one.

``torchrun --nproc_per_node N scripts/distill.py ...`` is the way to train on N CPU processes (gloo):
every rank gets ``WORLD_SIZE`` / ``LOCAL_RANK``, and on a machine without an accelerator
:func:`use_cpu_group_without_accelerator` tells Accelerate to form a CPU group (it would otherwise
leave each rank training alone on everything). GPUs need nothing from us: ``accelerate launch`` and
``torchrun`` both work.

``accelerate launch --cpu --num_processes N`` starts N processes only through ``mpirun``; without a
hostfile it runs a *single* process, which would then train alone on the whole dataset while the user
believes N ranks share it. The environment it sets shows that more than one process was asked for
(``MASTER_ADDR``) but not how many, so such a launch stops with the ``torchrun`` command to use.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class SingleProcessCpuLaunch(SystemExit):
    """``accelerate launch --cpu`` asked for several processes but started one."""


def _truthy(value: Optional[str]) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def started_as_one_of_many_cpu_processes() -> bool:
    """Accelerate's simple CPU launcher, asked for more than one process (it sets ``MASTER_ADDR`` only then),
    started this process without any rank variable: nobody else will join it."""
    return (
        _truthy(os.environ.get("ACCELERATE_USE_CPU"))
        and "MASTER_ADDR" in os.environ
        and not any(name in os.environ for name in _RANK_VARIABLES)
    )


def torchrun_command(argv: Sequence[str], processes: str = "N") -> str:
    return shlex.join(["torchrun", "--nproc_per_node", processes, *argv])


def refuse_single_process_cpu_launch(argv: Optional[Sequence[str]] = None) -> None:
    """Stop, with the ``torchrun`` command to use, when :func:`started_as_one_of_many_cpu_processes`."""
    if not started_as_one_of_many_cpu_processes():
        return
    command = torchrun_command(list(sys.argv if argv is None else argv))
    raise SingleProcessCpuLaunch(
        "error: accelerate launch --cpu started one process, not the several asked for (on CPU it starts them only "
        f"through mpirun). Start CPU ranks with torchrun instead:\n    {command}\n(N: the number of processes; "
        "add --nnodes, --node_rank and --master_addr for several machines.) If you meant a single process, drop "
        "--num_processes or unset MASTER_ADDR."
    )


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def use_cpu_group_without_accelerator() -> None:
    """Several ranks on a machine without GPU: make accelerate form a CPU (gloo) group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and "LOCAL_RANK" in os.environ and not _truthy(os.environ.get("ACCELERATE_USE_CPU")):
        if not _has_accelerator():
            os.environ["ACCELERATE_USE_CPU"] = "true"
            if os.environ.get("LOCAL_RANK") == "0":
                logger.warning("%d processes and no GPU: training on CPU with the gloo backend.", world_size)


def prepare_processes(argv: Optional[Sequence[str]] = None) -> None:
    """Call first thing in a training script: stops a launch that would train alone, or sets this process up
    so that accelerate forms the right process group."""
    refuse_single_process_cpu_launch(argv)
    use_cpu_group_without_accelerator()


def use_all_cores_for_a_lone_cpu_process() -> None:
    """Undo ``accelerate launch``'s silent ``OMP_NUM_THREADS=1`` for a single CPU process.

    Without a config file (or ``--cpu``) accelerate pins every process to one thread, which halves the
    quickstart's speed on a 2-core machine. Only a launch by accelerate, on one process, without a GPU,
    at exactly one thread is changed; set ``HF_DEIT_KEEP_THREADS=1`` to keep accelerate's setting.
    """
    import torch

    launched_by_accelerate = any(key.startswith("ACCELERATE_") for key in os.environ)
    if (
        launched_by_accelerate
        and os.environ.get("HF_DEIT_KEEP_THREADS") != "1"
        and os.environ.get("OMP_NUM_THREADS") == "1"
        and int(os.environ.get("WORLD_SIZE", "1")) == 1
        and not torch.cuda.is_available()
        and torch.get_num_threads() == 1
    ):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if cores > 1:
            torch.set_num_threads(cores)
            logger.warning("One CPU process launched with OMP_NUM_THREADS=1: using all %d cores.", cores)
