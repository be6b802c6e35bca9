"""Make ``accelerate launch --cpu --num_processes N`` start N processes.

Accelerate starts multi-CPU jobs through ``mpirun`` only (``--mpirun_hostfile``). Without one, its
simple launcher runs a *single* Python process, which then trains alone on the whole dataset while
the user believes N ranks share it. The GPU path uses ``torch.distributed.run``; we do the same for
CPU: when our script finds itself started that way, it re-launches itself under
``torch.distributed.run`` with the process counts accelerate was given. Accelerate and the Trainer
then form the gloo process group themselves (``ACCELERATE_USE_CPU`` + ``WORLD_SIZE``): no
``torch.distributed`` call of ours.

A second gap is closed too: ``--multi_gpu`` on a machine without an accelerator starts N processes
that each run alone (accelerate only forms a CPU group when told it is on CPU), so every rank trains
on everything. We tell it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

RELAUNCHED_ENV = "HF_DEIT_RELAUNCHED"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@dataclass(frozen=True)
class CpuLaunch:
    """What ``accelerate launch`` was asked for, as ``torch.distributed.run`` needs it."""

    num_processes: int
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 29500

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.num_processes // self.num_machines)

    def torchrun_command(self, script: str, script_args: Sequence[str]) -> list[str]:
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(self.num_machines), "--node_rank", str(self.machine_rank),
            "--nproc_per_node", str(self.processes_per_machine),
            "--master_addr", self.main_process_ip, "--master_port", str(self.main_process_port),
            script, *script_args,
        ]


def _truthy(value: Optional[str]) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def accelerate_launch_arguments(parent_cmdline: Sequence[str]) -> Optional[list[str]]:
    """The arguments after ``launch`` if ``parent_cmdline`` is an ``accelerate launch`` command."""
    for index, token in enumerate(parent_cmdline):
        name = os.path.basename(token)
        if token == "accelerate.commands.launch":  # python -m accelerate.commands.launch ...
            return list(parent_cmdline[index + 1:])
        if name.startswith("accelerate") and index + 1 < len(parent_cmdline) and parent_cmdline[index + 1] == "launch":
            return list(parent_cmdline[index + 2:])
    return None


def requested_cpu_launch(launch_arguments: Sequence[str]) -> CpuLaunch:
    """Process counts from ``accelerate launch`` flags, falling back to its ``--config_file``."""
    from accelerate.commands.launch import launch_command_parser

    args, _ = launch_command_parser().parse_known_args(list(launch_arguments))
    config = None
    if args.config_file:
        from accelerate.commands.config.config_args import load_config_from_file

        config = load_config_from_file(args.config_file)

    def pick(name: str, default):
        value = getattr(args, name, None)
        if value is None and config is not None:
            value = getattr(config, name, None)
        return default if value is None else value

    return CpuLaunch(
        num_processes=int(pick("num_processes", 1)),
        num_machines=int(pick("num_machines", 1)),
        machine_rank=int(pick("machine_rank", 0)),
        main_process_ip=str(pick("main_process_ip", os.environ.get("MASTER_ADDR", "127.0.0.1"))),
        main_process_port=int(pick("main_process_port", os.environ.get("MASTER_PORT", 29500))),
    )


def _started_by_accelerates_single_process_cpu_launcher() -> bool:
    return (
        _truthy(os.environ.get("ACCELERATE_USE_CPU"))
        and "MASTER_ADDR" in os.environ  # accelerate sets it only when more than one process was asked for
        and not any(name in os.environ for name in _RANK_VARIABLES)
        and not _truthy(os.environ.get(RELAUNCHED_ENV))
    )


def _parent_cmdline() -> list[str]:
    import psutil

    try:
        parent = psutil.Process().parent()
        return parent.cmdline() if parent is not None else []
    except (psutil.Error, OSError):
        return []


def spawn_cpu_processes_if_requested(argv: Optional[Sequence[str]] = None) -> Optional[int]:
    """Re-launch this script as the CPU processes ``accelerate launch`` was asked for.

    Returns the exit code of the re-launched group (the caller exits with it), or ``None`` when this
    process should simply go on: not launched by accelerate on CPU, one process asked for, already a
    rank, or MPI in charge.
    """
    if not _started_by_accelerates_single_process_cpu_launcher():
        return None
    launch_arguments = accelerate_launch_arguments(_parent_cmdline())
    if launch_arguments is None:
        return None
    launch = requested_cpu_launch(launch_arguments)
    if launch.num_processes * launch.num_machines <= 1 and launch.num_processes <= 1:
        return None
    argv = list(sys.argv if argv is None else argv)
    command = launch.torchrun_command(argv[0], argv[1:])
    logger.warning(
        "accelerate launch --cpu starts one process without mpirun; starting %d CPU process(es) on this machine "
        "with torch.distributed.run (gloo).", launch.processes_per_machine,
    )
    env = {**os.environ, RELAUNCHED_ENV: "1"}
    return subprocess.run(command, env=env).returncode


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


def prepare_processes(argv: Optional[Sequence[str]] = None) -> Optional[int]:
    """Call first thing in a training script; exit with the result when it is not ``None``.

    Either re-launches the requested CPU ranks (and returns their exit code) or sets this process up
    so that accelerate forms the right process group.
    """
    use_cpu_group_without_accelerator()
    return spawn_cpu_processes_if_requested(argv)


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
