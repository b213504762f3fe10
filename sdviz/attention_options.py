"""AttentionOptions: what `capture(attention=...)` records (pure data)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# DAAM's layers (Tang et al. 2023): the cross-attention of the down and up blocks, not the mid block
DAAM_LAYERS = ("down_blocks", "up_blocks")
GROUPINGS = ("resolution", "layer")


@dataclass
class AttentionOptions:
    """What `capture(attention=...)` records.

    Attributes:
        steps: the UNet evaluations [start, end) to record; all when None.
        step_bins: how many step ranges to keep apart (one sum each).
        layers: name prefixes ("down", "up_blocks.1") or downsampling factors (1, 2, 4) of the layers to
            record; all when None; "daam" for DAAM's layers (down and up blocks, no mid block).
        per_layer: False for one map of all layers; True or "resolution" for one per downsampling factor;
            "layer" for one per cross-attention layer (named as in `unet.attn_processors`).
        heads: "mean", "max" or a head index, the reduction over heads; "all" keeps every head's map too
            (`token_maps(head=...)`), beside the mean.
        uncond: also keep the unconditional half of classifier-free guidance.
    """

    steps: tuple[int, int] | None = None
    step_bins: int = 1
    layers: list[str | int] | str | None = None
    per_layer: bool | str = False
    heads: str | int = "mean"
    uncond: bool = False

    def __post_init__(self) -> None:
        if self.steps is not None:
            start, end = self.steps
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
                raise ValueError(f"attention steps must be (start, end) with 0 <= start < end, got {self.steps}")
            self.steps = (start, end)
        if not isinstance(self.step_bins, int) or self.step_bins < 1:
            raise ValueError(f"step_bins must be a positive int, got {self.step_bins!r}")
        if self.heads not in ("mean", "max", "all") and not (isinstance(self.heads, int) and self.heads >= 0):
            raise ValueError(f"heads must be 'mean', 'max', 'all' or a head index, got {self.heads!r}")
        if self.per_layer not in (False, True, *GROUPINGS):
            raise ValueError(f"per_layer must be False, True, 'resolution' or 'layer', got {self.per_layer!r}")
        if self.layers == "daam":
            self.layers = list(DAAM_LAYERS)
        elif isinstance(self.layers, str):
            raise ValueError(f"layers must be a list of name prefixes and factors, or 'daam', got {self.layers!r}")
        elif self.layers is not None:
            self.layers = list(self.layers)

    @property
    def grouping(self) -> str:
        """How layers are grouped: "all", "resolution" or "layer"."""
        if self.per_layer is True:
            return "resolution"
        return self.per_layer or "all"

    @classmethod
    def parse(cls, options: bool | dict | AttentionOptions) -> AttentionOptions:
        """Return the options that `True`, a dict of fields, or an `AttentionOptions` stands for."""
        if isinstance(options, cls):
            return options
        if options is True:
            return cls()
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(options, dict):
            raise TypeError(f"attention must be True, False or a dict with keys {names}, got {options!r}")
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown attention option(s) {unknown}; valid: {names}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as plain JSON values."""
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps) if self.steps is not None else None
        return d
