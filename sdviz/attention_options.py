"""AttentionOptions: what `capture(attention=...)` records (pure data)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sdviz.suggest import did_you_mean
from sdviz.validation import UsageError, UsageTypeError, check_bool, check_int, is_int

# DAAM's layers (Tang et al. 2023): the cross-attention of the down and up blocks, not the mid block
DAAM_LAYERS = ("down_blocks", "up_blocks")
GROUPINGS = ("resolution", "layer")


def check_layers(layers: Any) -> list[str | int]:
    """Return `layers` as a list of non-empty name prefixes and downsampling factors (powers of 2)."""
    if not isinstance(layers, list | tuple):
        raise UsageTypeError(f"layers must be a list of name prefixes and factors, or 'daam', got {layers!r}")
    for x in layers:
        if isinstance(x, str) and x:
            continue
        if not (is_int(x) and x >= 1 and x & (x - 1) == 0):
            raise UsageError(f"layers entries must be name prefixes such as 'up_blocks' or downsampling factors "
                             f"(1, 2, 4, ...), got {x!r}")  # fmt: skip
    return [x if isinstance(x, str) else int(x) for x in layers]


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
            if not (isinstance(self.steps, tuple | list) and len(self.steps) == 2 and all(map(is_int, self.steps))):
                raise UsageTypeError(f"attention steps must be a (start, end) pair of ints, got {self.steps!r}")
            start, end = (int(v) for v in self.steps)
            if not 0 <= start < end:
                raise UsageError(f"attention steps must be (start, end) with 0 <= start < end, got {self.steps}")
            self.steps = (start, end)
        self.step_bins = check_int("step_bins", self.step_bins, low=1)
        if self.heads not in ("mean", "max", "all") and not (is_int(self.heads) and self.heads >= 0):
            raise UsageError(f"heads must be 'mean', 'max', 'all' or a head index >= 0, got {self.heads!r}")
        if not (self.per_layer is False or self.per_layer is True or self.per_layer in GROUPINGS):
            raise UsageError(f"per_layer must be False, True, 'resolution' or 'layer', got {self.per_layer!r}")
        self.uncond = check_bool("uncond", self.uncond)
        if self.layers == "daam":
            self.layers = list(DAAM_LAYERS)
        elif isinstance(self.layers, str):
            raise UsageError(f"layers must be a list of name prefixes and factors, or 'daam', got the string "
                             f"{self.layers!r}: pass [{self.layers!r}]")  # fmt: skip
        elif self.layers is not None:
            self.layers = check_layers(self.layers)

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
            raise UsageTypeError(f"attention must be True, False or a dict with keys {names}, got {options!r}")
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise UsageError(f"unknown attention option(s) {unknown}{did_you_mean(str(unknown[0]), names)}; valid: {names}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as plain JSON values."""
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps) if self.steps is not None else None
        return d
