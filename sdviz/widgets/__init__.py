"""ipywidgets viewers: a step scrubber and an attention explorer over a Trace, and a scheduler explorer.

Each viewer draws once into a matplotlib figure, then updates its images in place (`set_data`) and shows the
figure as PNG in an Image widget. The scheduler explorer loads the registry (and diffusers) on first use.
"""

import importlib

from sdviz.widgets.trace_viewers import AttentionExplorer, StepScrubber
from sdviz.widgets.viewer import Viewer

_LAZY = {"SchedulerExplorer": "sdviz.widgets.scheduler_explorer", "parse_settings": "sdviz.widgets.scheduler_explorer"}

__all__ = ["AttentionExplorer", "SchedulerExplorer", "StepScrubber", "Viewer", "parse_settings"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sdviz.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
