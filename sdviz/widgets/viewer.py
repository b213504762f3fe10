"""The base of sdviz's viewers: controls above a matplotlib figure shown as PNG in an Image widget.

ipywidgets is optional: importing sdviz does not import it, and this module says how to install it.
No matplotlib backend is involved, so a viewer works the same in JupyterLab and in a plain notebook.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

try:
    import ipywidgets as W
    from IPython.display import display
except ImportError as e:  # pragma: no cover - exercised only without ipywidgets
    raise ImportError("sdviz.widgets needs ipywidgets: pip install ipywidgets") from e

__all__ = ["Viewer", "W"]


class Viewer:
    """A box of controls above a figure rendered into an Image widget; shows itself in a notebook."""

    def __init__(self, fig: Figure, controls: list[Any]) -> None:
        self.fig = fig
        self.view = W.Image(format="png")
        self.box = W.VBox([*controls, self.view])

    def redraw(self) -> None:
        """Render the figure into the Image widget."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=90)
        self.view.value = buf.getvalue()

    def _ipython_display_(self) -> None:
        display(self.box)
