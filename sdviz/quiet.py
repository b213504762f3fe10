"""Mute chatty loggers (and, if asked, warnings) for a block, putting their levels back after."""

from __future__ import annotations

import contextlib
import logging
import warnings as _warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(*loggers: str, warnings: bool = False) -> Iterator[None]:
    """Raise the named loggers to ERROR inside the block; with `warnings`, ignore Python warnings too.

    Args:
        *loggers: logger names, e.g. "diffusers" or "diffusers.models.modeling_utils".
        warnings: also silence `warnings.warn` (torchsde warns on every Brownian-tree query).
    """
    logs = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        with _warnings.catch_warnings():
            if warnings:
                _warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)
