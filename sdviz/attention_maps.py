"""AttentionMaps: per-token cross-attention maps of a run, aggregated over steps and layers, and the options
that chose what to record (pure data)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sdviz.tokens import words_of


@dataclass
class AttentionOptions:
    """What `capture(attention=...)` records.

    Attributes:
        steps: the UNet evaluations [start, end) to record; all when None.
        step_bins: how many step ranges to keep apart (one sum each).
        layers: name prefixes ("down", "up_blocks.1") or downsampling factors (1, 2, 4) of the layers to
            record; all when None.
        per_layer: keep one map per downsampling factor instead of one for all layers.
        heads: "mean", "max" or a head index.
        uncond: also keep the unconditional half of classifier-free guidance.
    """

    steps: tuple[int, int] | None = None
    step_bins: int = 1
    layers: list[str | int] | None = None
    per_layer: bool = False
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
        if self.heads not in ("mean", "max") and not isinstance(self.heads, int):
            raise ValueError(f"heads must be 'mean', 'max' or a head index, got {self.heads!r}")
        if self.layers is not None:
            self.layers = list(self.layers)

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


@dataclass(eq=False)
class AttentionMaps:
    """Cross-attention of every token position, summed while the run went.

    A map is the attention of each latent pixel to a token (softmax over the 77 positions, mean over heads),
    upsampled to the latent grid. Sums are kept per step range (`bins`) and per layer group (`groups`);
    `counts` says how many layer evaluations each sum holds, so maps are means.

    Attributes:
        sums: (n_bins, n_groups, B, 77, h, w) sums of the prompt-conditioned maps.
        counts: (n_bins, n_groups) layer evaluations in each sum.
        bins: the step index range [start, end) of each bin.
        groups: the layer group of each sum: "all", or a downsampling factor (1, 2, 4, ...) as a string.
        tokens: per image of the batch, the token strings (77) of its prompt.
        image_size: (height, width) of the images in pixels.
        uncond_sums: the same for the unconditional half of classifier-free guidance, when asked for.
        options: what was asked to be recorded.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    bins: list[tuple[int, int]]
    groups: list[str]
    tokens: list[list[str]]
    image_size: tuple[int, int]
    uncond_sums: torch.Tensor | None = None
    options: AttentionOptions = field(default_factory=AttentionOptions)

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of the latent grid the maps live on."""
        return int(self.sums.shape[-2]), int(self.sums.shape[-1])

    def words(self, index: int = 0) -> list[tuple[str, list[int]]]:
        """The words of prompt `index` with their token positions (start/end tokens excluded)."""
        return words_of(self.tokens[index])

    def token_maps(
        self,
        *,
        steps: tuple[int, int] | None = None,
        layers: list[str | int] | None = None,
        index: int = 0,
        size: tuple[int, int] | str | None = None,
        uncond: bool = False,
    ) -> torch.Tensor:
        """Return the mean map of all 77 positions.

        Args:
            steps: a step range [start, end); only bins inside it count. None: all.
            layers: layer groups (downsampling factors such as 1, 2, 4) when captured with `per_layer`.
            index: which image of the batch.
            size: None for the latent grid, "image" for the image size, or (height, width).
            uncond: the unconditional half instead (captured with `uncond=True`).

        Returns:
            (77, H, W); at each pixel the values over the 77 positions sum to 1.
        """
        source = self.uncond_sums if uncond else self.sums
        if source is None:
            raise ValueError("the unconditional maps were not captured: capture with attention={'uncond': True}")
        if not 0 <= index < source.shape[2]:
            raise ValueError(f"index {index} is out of range: the batch has {source.shape[2]} image(s)")
        b = self._select_bins(steps)
        g = self._select_groups(layers)
        total = source[b][:, g, index].sum(dim=(0, 1))
        count = self.counts[b][:, g].sum()
        if count == 0:
            raise ValueError("no attention was recorded for these steps and layers")
        maps = total / count
        return self._resize(maps, size)

    def word_map(
        self,
        word: str | int,
        *,
        steps: tuple[int, int] | None = None,
        layers: list[str | int] | None = None,
        index: int = 0,
        size: tuple[int, int] | str | None = None,
        uncond: bool = False,
    ) -> torch.Tensor:
        """Return the heatmap of one word of the prompt (or one token position).

        A word split into several BPE tokens sums them; a word that occurs twice sums both.

        Args:
            word: a word of the prompt (case-insensitive), or a token position 0..76.
            steps, layers, index, size, uncond: as in `token_maps`.

        Returns:
            (H, W), values in [0, 1].
        """
        positions = self.positions(word, index=index)
        return self.token_maps(steps=steps, layers=layers, index=index, size=size, uncond=uncond)[positions].sum(0)

    def positions(self, word: str | int, *, index: int = 0) -> list[int]:
        """Return the token positions of `word` in prompt `index`."""
        if isinstance(word, int):
            n = len(self.tokens[index])
            if not 0 <= word < n:
                raise ValueError(f"token position {word} is out of range 0..{n - 1}")
            return [word]
        words = self.words(index)
        hits = [p for w, ps in words for p in ps if w.lower() == word.strip().lower()]
        if not hits:
            raise ValueError(f"{word!r} is not a word of the prompt; its words are {[w for w, _ in words]}")
        return hits

    def _select_bins(self, steps: tuple[int, int] | None) -> list[int]:
        if steps is None:
            return list(range(len(self.bins)))
        start, end = steps
        chosen = [i for i, (a, b) in enumerate(self.bins) if a >= start and b <= end]
        if not chosen:
            raise ValueError(
                f"no captured step range lies inside {steps}; the ranges are {self.bins}: capture with "
                "attention={'step_bins': N} for finer ranges"
            )
        return chosen

    def _select_groups(self, layers: list[str | int] | None) -> list[int]:
        if layers is None:
            return list(range(len(self.groups)))
        wanted = [str(x) for x in layers]
        missing = [w for w in wanted if w not in self.groups]
        if missing:
            raise ValueError(
                f"layer group(s) {missing} were not captured; the groups are {self.groups}: capture with "
                "attention={'per_layer': True} to keep one map per resolution"
            )
        return [self.groups.index(w) for w in wanted]

    def _resize(self, maps: torch.Tensor, size: tuple[int, int] | str | None) -> torch.Tensor:
        if size is None:
            return maps
        hw = self.image_size if size == "image" else tuple(size)
        return F.interpolate(maps[None], size=hw, mode="bilinear", align_corners=False)[0]

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Split into tensors and JSON metadata for saving."""
        tensors = {"sums": self.sums, "counts": self.counts}
        if self.uncond_sums is not None:
            tensors["uncond_sums"] = self.uncond_sums
        meta = {
            "bins": [list(b) for b in self.bins],
            "groups": self.groups,
            "tokens": self.tokens,
            "image_size": list(self.image_size),
            "options": self.options.to_dict(),
        }
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> AttentionMaps:
        """Rebuild from `to_state`'s output."""
        return cls(
            sums=tensors["sums"],
            counts=tensors["counts"],
            bins=[tuple(b) for b in meta["bins"]],
            groups=list(meta["groups"]),
            tokens=meta["tokens"],
            image_size=tuple(meta["image_size"]),
            uncond_sums=tensors.get("uncond_sums"),
            options=AttentionOptions.parse(meta.get("options") or {}),
        )
