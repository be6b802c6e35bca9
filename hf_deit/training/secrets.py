"""Keep secrets out of what a run writes.

The Hub token: ``Trainer`` pickles the whole ``TrainingArguments`` into ``training_args.bin`` in
every checkpoint and in the final folder, and ``push_to_hub`` uploads that file; with
``--hub_token`` the token sits in the pickle, in clear. :func:`protect_hub_token` wraps it in
:class:`RedactedToken`, a ``str`` that works as the token everywhere it is *used* (HTTP headers,
``huggingface_hub`` calls) but pickles as ``None`` and prints as ``'<HUB_TOKEN>'``, so no
checkpoint, log line or upload carries it. (``TrainingArguments.to_dict`` and ``__repr__`` already
mask ``*_token`` fields; the pickle was the gap.)
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def _redacted() -> None:
    """What a pickled :class:`RedactedToken` loads back as."""
    return None


class RedactedToken(str):
    """A secret string that never serialises: pickles as ``None``, reprs as ``'<HUB_TOKEN>'``."""

    def __reduce__(self):  # pickle, torch.save
        return (_redacted, ())

    def __reduce_ex__(self, protocol: Any):
        return (_redacted, ())

    def __copy__(self) -> "RedactedToken":  # copy/deepcopy keep the token usable
        return self

    def __deepcopy__(self, memo: dict) -> "RedactedToken":
        return self

    def __repr__(self) -> str:
        return "'<HUB_TOKEN>'"


def protect_hub_token(args: Any) -> None:
    """Wrap ``args.hub_token`` (if any) so that it cannot end up in a pickle or a log line."""
    token = getattr(args, "hub_token", None)
    if token and not isinstance(token, RedactedToken):
        args.hub_token = RedactedToken(token)
