"""What CLIP sees of a prompt: the padded token table and the distinct tokens with their ids."""

from __future__ import annotations

from collections import Counter
from typing import Any

from matplotlib.table import Table

from sdviz.plot.common import get_ax
from sdviz.tokens import TokenInfo
from sdviz.trace import Trace

PAD_COLOUR = "#eeeeee"
CUT_COLOUR = "#f4c7c3"
HEAD_COLOUR = "#d9e2f3"


def _tokens_of(data: TokenInfo | Trace) -> TokenInfo:
    tokens = data.tokens if isinstance(data, Trace) else data
    if not isinstance(tokens, TokenInfo):
        raise TypeError(f"expected a Trace with tokens or a TokenInfo, got {type(data).__name__}")
    return tokens


def token_rows(tokens: TokenInfo, padding: int = 2) -> tuple[list[list[str]], list[str]]:
    """Return the table's rows (position, id, mask, token) and the kind of each row: "token", "pad", "more", "cut"."""
    rows, kinds = [], []
    n = tokens.length
    shown = min(len(tokens.input_ids), n + padding)
    for pos in range(shown):
        rows.append([str(pos), str(tokens.input_ids[pos]), str(tokens.attention_mask[pos]), tokens.tokens[pos]])
        kinds.append("token" if pos < n else "pad")
    hidden = len(tokens.input_ids) - shown
    if hidden > 0:
        rows.append(["…", "", "0", f"{hidden} more padding"])
        kinds.append("more")
    for i, tok in zip(tokens.truncated_ids, tokens.truncated, strict=True):
        rows.append(["cut", str(i), "–", tok])
        kinds.append("cut")
    return rows, kinds


def plot_tokens(data: TokenInfo | Trace, *, ax: Any = None, padding: int = 2, **kwargs: Any) -> Table:
    """Draw the token table: position, padded id, attention mask and token string of every position.

    Padding rows are grey (the first `padding` shown, the rest counted in one row); tokens cut off because
    the prompt was longer than the 77 positions are appended in red, marked "cut".

    Args:
        data: a `Trace` or its `TokenInfo`.
        ax: the axes to draw into; a new figure when None.
        padding: how many padding positions to show.
        **kwargs: passed to `ax.table`.

    Returns:
        The `matplotlib.table.Table`.
    """
    tokens = _tokens_of(data)
    ax = get_ax(ax)
    rows, kinds = token_rows(tokens, padding)
    kwargs.setdefault("loc", "upper center")
    kwargs.setdefault("cellLoc", "left")
    table = ax.table(cellText=rows, colLabels=["pos", "id", "mask", "token"], **kwargs)
    colours = {"pad": PAD_COLOUR, "more": PAD_COLOUR, "cut": CUT_COLOUR}
    for r, kind in enumerate(kinds, start=1):
        for c in range(4):
            if kind in colours:
                table[r, c].set_facecolor(colours[kind])
    for c in range(4):
        table[0, c].set_facecolor(HEAD_COLOUR)
    table.auto_set_column_width(range(4))
    ax.set_axis_off()
    title = f"{tokens.length} of {len(tokens.input_ids)} positions used"
    if tokens.truncated:
        title += f", {len(tokens.truncated)} token(s) cut"
    ax.set_title(title)
    return table


def plot_unique_tokens(data: TokenInfo | Trace, *, ax: Any = None, **kwargs: Any) -> Table:
    """Draw the distinct tokens of the prompt (start and end tokens included) with their ids and counts.

    Args:
        data: a `Trace` or its `TokenInfo`.
        ax: the axes to draw into; a new figure when None.
        **kwargs: passed to `ax.table`.

    Returns:
        The `matplotlib.table.Table`.
    """
    tokens = _tokens_of(data)
    ax = get_ax(ax)
    counts = Counter(tokens.input_ids[: tokens.length])
    rows = [[tok, str(i), str(counts[i])] for tok, i in tokens.unique]
    kwargs.setdefault("loc", "upper center")
    kwargs.setdefault("cellLoc", "left")
    table = ax.table(cellText=rows, colLabels=["token", "id", "count"], **kwargs)
    for c in range(3):
        table[0, c].set_facecolor(HEAD_COLOUR)
    table.auto_set_column_width(range(3))
    ax.set_axis_off()
    ax.set_title(f"{len(rows)} distinct tokens")
    return table
