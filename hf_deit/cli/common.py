"""What every training command does before its run: start the processes it was asked for, then parse."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..config import parse_config
from .launch import prepare_processes, use_all_cores_for_a_lone_cpu_process


def training_main(run: Callable[..., Any], dataclass_types: Sequence[type], argv: Optional[Sequence[str]]) -> Any:
    """Parse ``--config file.yaml`` + flags into ``dataclass_types`` and call ``run`` with them.

    A script launch (``argv`` None) first checks how it was started (:mod:`hf_deit.cli.launch`); a
    lone CPU process gets every core back from ``accelerate launch``'s one-thread default.
    """
    if argv is None:
        prepare_processes()
    use_all_cores_for_a_lone_cpu_process()
    return run(*parse_config(argv, dataclass_types))
