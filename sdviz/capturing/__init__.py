"""The capture side: `capture()` hooks into a pipeline run, `generate()` runs one; both give a Trace."""

from sdviz.capturing.hooks import capture
from sdviz.capturing.run import generate
from sdviz.schedules import predict_x0

__all__ = ["capture", "generate", "predict_x0"]
