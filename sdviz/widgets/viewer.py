"""The base of sdviz's viewers: controls above a matplotlib figure shown as PNG in an Image widget.

ipywidgets is optional: importing sdviz does not import it, and this module says how to install it.
No matplotlib backend is involved, so a viewer works the same in JupyterLab and in a plain notebook.
"""

from __future__ import annotations

import base64
import html
import io
import struct
from typing import Any

from matplotlib.figure import Figure

try:
    import ipywidgets as W
except ImportError as e:  # pragma: no cover - exercised only without ipywidgets
    raise ImportError("sdviz.widgets needs ipywidgets: pip install ipywidgets") from e

__all__ = ["DPI", "Viewer", "W", "error_html"]

DPI = 90  # the figure's pixels per inch; the picture is shown at exactly its pixel size


class Viewer:
    """A box of controls above a figure rendered into an Image widget; shows itself in a notebook.

    The picture keeps its natural size (one PNG pixel, one CSS pixel) and only shrinks, never stretches, to
    fit a narrow output. A saved notebook carries the last picture as a plain PNG beside the live widget, so
    a code host that cannot run widgets still shows it.
    """

    def __init__(self, fig: Figure, controls: list[Any]) -> None:
        self.fig = fig
        self.view = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.box = W.VBox([*controls, self.view])

    def redraw(self) -> None:
        """Render the figure into the Image widget, at its natural size."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=DPI)
        png = buf.getvalue()
        width, height = png_size(png)
        if self.view.layout.width != f"{width}px":
            self.view.layout.width = f"{width}px"  # a set width keeps the output area from stretching it
        self.view.value = png
        self.size = (width, height)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = self.box._repr_mimebundle_(**kwargs)
        data["image/png"] = base64.b64encode(self.view.value).decode("ascii")  # for viewers without widgets
        data["text/plain"] = f"<{type(self).__name__}: run the notebook to use the controls>"
        return data


def png_size(png: bytes) -> tuple[int, int]:
    """Return (width, height) of a PNG from its header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def error_html(message: str) -> str:
    """Return an error message as red HTML text."""
    return f'<span style="color:#b00">{html.escape(message)}</span>'
