"""Mute chatty loggers, warnings and the libraries' progress bars for a block, putting them back after."""

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


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hide the progress bars diffusers and transformers draw when loading and saving, restoring them after."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()
