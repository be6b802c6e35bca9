"""What every command shares: user errors as one line and exit code 2, and the start of a training run."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional, Sequence

from ..config import parse_config
from .launch import prepare_processes, use_all_cores_for_a_lone_cpu_process

DEBUG_ENV = "HF_DEIT_DEBUG"
# What a user can cause and fix: bad settings, paths and files, a diverged run. Anything else is a bug of
# ours, and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def run_script(main: Callable[[], Any]) -> None:
    """Run a command's ``main``; a user error prints ``error: <what> — <fix>`` and exits with code 2.

    ``--debug`` (or ``HF_DEIT_DEBUG=1``) keeps the traceback instead.
    """
    debug = "--debug" in sys.argv or os.environ.get(DEBUG_ENV) == "1"
    sys.argv = [argument for argument in sys.argv if argument != "--debug"]
    try:
        main()
    except USER_ERRORS as error:
        if debug:
            raise
        message = str(error).strip() or type(error).__name__
        print(f"error: {message}\n(--debug shows where it came from)", file=sys.stderr)
        raise SystemExit(2) from None


def training_main(run: Callable[..., Any], dataclass_types: Sequence[type], argv: Optional[Sequence[str]]) -> Any:
    """Parse ``--config file.yaml`` + flags into ``dataclass_types`` and call ``run`` with them.

    A script launch (``argv`` None) first checks how it was started (:mod:`hf_deit.cli.launch`); a
    lone CPU process gets every core back from ``accelerate launch``'s one-thread default.
    """
    if argv is None:
        prepare_processes()
    use_all_cores_for_a_lone_cpu_process()
    return run(*parse_config(argv, dataclass_types))
