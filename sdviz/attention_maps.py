"""AttentionMaps: per-token cross-attention maps of a run, aggregated over steps and layers (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sdviz.attention_options import DAAM_LAYERS, AttentionOptions
from sdviz.overlap import DEFAULT_THRESHOLD, as_mask, overlap_scores, threshold_map
from sdviz.tokens import find_phrase, words_of
from sdviz.validation import CLIP_TOKENS, MAX_SIDE, UsageError, UsageTypeError, check_int, is_int

_END = "<|endoftext|>"

__all__ = ["DAAM_LAYERS", "AttentionMaps", "AttentionOptions"]
Occurrence = int | str | None


@dataclass(eq=False)
class AttentionMaps:
    """Cross-attention of every token position, summed while the run went.

    A map is the attention of each latent pixel to a token (softmax over the 77 positions, mean over heads),
    upsampled to the latent grid. Sums are kept per step range (`bins`) and per layer group (`groups`);
    `counts` says how many layer evaluations each sum holds, so maps are means. At each pixel the maps of
    the 77 positions sum to 1; a word's map sums its tokens, so it is the share of attention the word got.

    Attributes:
        sums: (n_bins, n_groups, B, 77, h, w) sums of the prompt-conditioned maps.
        counts: (n_bins, n_groups) layer evaluations in each sum.
        bins: the step index range [start, end) of each bin.
        groups: the layer group of each sum: "all", a downsampling factor (1, 2, 4, ...) as a string, or a
            layer's name ("up_blocks.1.attentions.0.transformer_blocks.0.attn2") when captured per layer.
        tokens: per image of the batch, the token strings (77) of its prompt.
        image_size: (height, width) of the images in pixels.
        uncond_sums: the same for the unconditional half of classifier-free guidance, when asked for.
        options: what was asked to be recorded.
        factors: the downsampling factor of each group (None for "all").
        head_sums: per group, (n_bins, B, heads, 77, h, w) sums of each head's maps (captured with heads="all").
    """

    sums: torch.Tensor
    counts: torch.Tensor
    bins: list[tuple[int, int]]
    groups: list[str]
    tokens: list[list[str]]
    image_size: tuple[int, int]
    uncond_sums: torch.Tensor | None = None
    options: AttentionOptions = field(default_factory=AttentionOptions)
    factors: list[int | None] = field(default_factory=list)
    head_sums: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not self.factors:  # traces saved before layer names were groups: the names say the factor
            self.factors = [int(g) if g.isdigit() else None for g in self.groups]

    def __repr__(self) -> str:
        counted: dict[str, int] = {}
        for w, _ in self.words():
            counted[w.lower()] = counted.get(w.lower(), 0) + 1
        words = ", ".join(w if n == 1 else f"{w} x{n}" for w, n in counted.items())
        h, w = self.latent_size
        return (f"AttentionMaps({h}x{w} latent grid, {len(self.bins)} step range(s), groups {self.groups}, "
                f"words: {words})")  # fmt: skip

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of the latent grid the maps live on."""
        return int(self.sums.shape[-2]), int(self.sums.shape[-1])

    def words(self, index: int = 0) -> list[tuple[str, list[int]]]:
        """The words of prompt `index` with their token positions (start/end tokens excluded)."""
        return words_of(self.tokens[index])

    def count(self, word: str, *, index: int = 0) -> int:
        """Return how many times a word or phrase occurs in prompt `index`."""
        return len(find_phrase(self.tokens[index], word))

    def token_maps(
        self,
        *,
        steps: tuple[int, int] | None = None,
        layers: list[str | int] | None = None,
        index: int = 0,
        size: tuple[int, int] | str | None = None,
        uncond: bool = False,
        head: int | None = None,
    ) -> torch.Tensor:
        """Return the mean map of all 77 positions.

        Args:
            steps: a step range [start, end); only bins inside it count. None: all.
            layers: the groups to use: downsampling factors (1, 2, 4), layer names or name prefixes
                ("up_blocks", "down_blocks.1"), as the capture grouped them. None: all.
            index: which image of the batch.
            size: None for the latent grid, "image" for the image size, or (height, width).
            uncond: the unconditional half instead (captured with `uncond=True`).
            head: one attention head's maps (captured with `heads="all"`); None: the mean over heads.

        Returns:
            (77, H, W); at each pixel the values over the 77 positions sum to 1.
        """
        source = self.uncond_sums if uncond else self.sums
        if source is None:
            raise UsageError("the unconditional maps were not captured: capture with attention={'uncond': True}")
        if not 0 <= index < source.shape[2]:
            raise UsageError(f"index {index} is out of range: the batch has {source.shape[2]} image(s)")
        b = self._select_bins(steps)
        g = self._select_groups(layers)
        count = self.counts[b][:, g].sum()
        if count == 0:
            raise UsageError("no attention was recorded for these steps and layers")
        if head is None:
            total = source[b][:, g, index].sum(dim=(0, 1))
        else:
            total = sum(self._head_sums(gi, head, uncond)[b, index].sum(0) for gi in g)
        return self._resize(total / count, size)

    def word_map(
        self,
        word: str | int,
        *,
        occurrence: Occurrence = None,
        steps: tuple[int, int] | None = None,
        layers: list[str | int] | None = None,
        index: int = 0,
        size: tuple[int, int] | str | None = None,
        uncond: bool = False,
        head: int | None = None,
    ) -> torch.Tensor:
        """Return the heatmap of a word or phrase of the prompt (or of one token position).

        A word split into several BPE tokens sums them, and a phrase sums its words. A word that occurs more
        than once needs `occurrence`: one of them (1 for the first), or "all" for their sum.

        Args:
            word: a word or phrase of the prompt ("cat", "red cat"; case-insensitive), or a token position.
            occurrence: which occurrence (from 1), or "all"; needed only when the word occurs more than once.
            steps, layers, index, size, uncond, head: as in `token_maps`.

        Returns:
            (H, W), values in [0, 1].
        """
        positions = self.positions(word, occurrence=occurrence, index=index)
        maps = self.token_maps(steps=steps, layers=layers, index=index, size=size, uncond=uncond, head=head)
        return maps[positions].sum(0)

    def positions(self, word: str | int, *, occurrence: Occurrence = None, index: int = 0) -> list[int]:
        """Return the token positions of `word` (a word, a phrase or a position) in prompt `index`."""
        if not 0 <= check_int("index", index) < len(self.tokens):
            raise UsageError(f"index {index} is out of range: the batch has {len(self.tokens)} prompt(s)")
        if isinstance(word, bool) or not isinstance(word, str | int):
            raise UsageTypeError(f"word must be a word or phrase of the prompt, or a token position; got {word!r}")
        if isinstance(word, int):
            n = len(self.tokens[index])
            if not 0 <= word < n:
                raise UsageError(f"token position {word} is out of range 0..{n - 1}")
            if occurrence is not None:
                raise UsageError("occurrence applies to words; a token position is one position already")
            return [word]
        found = find_phrase(self.tokens[index], word)
        if not found:
            tokens = self.tokens[index]
            cut = len(tokens) == CLIP_TOKENS and tokens[-1] == _END and tokens[-2] != _END  # no padding: it was full
            why = f" (the prompt filled CLIP's {len(tokens)} tokens: words after that were cut off)" if cut else ""
            words = [w for w, _ in self.words(index)]
            raise UsageError(f"{word!r} is not a word of the prompt{why}; its words are {_few(words)}")
        n = len(found)
        if occurrence == "all":
            return [p for ps in found for p in ps]
        if occurrence is None and n == 1:
            return found[0]
        if occurrence is None or not isinstance(occurrence, int) or not 1 <= occurrence <= n:
            given = "" if occurrence is None else f", got occurrence={occurrence!r}"
            raise UsageError(
                f"{word!r} occurs {n} time{'s' * (n > 1)} in the prompt (token positions {_few(found)}): pass "
                f"occurrence=1..{n} for one of them, or occurrence='all' for their sum{given}"
            )
        return found[occurrence - 1]

    def word_mask(self, word: str | int, threshold: float = DEFAULT_THRESHOLD, **kwargs: Any) -> torch.Tensor:
        """Return where a word's map, scaled to [0, 1], exceeds `threshold` (DAAM's 0.4 by default).

        Args:
            word: as in `word_map`.
            threshold: in [0, 1).
            **kwargs: `word_map`'s options (occurrence, steps, layers, index, size, uncond, head).

        Returns:
            A bool (H, W) mask.
        """
        return threshold_map(self.word_map(word, **kwargs), threshold)

    def overlap(self, word: str | int, mask: Any, threshold: float = DEFAULT_THRESHOLD, **kwargs: Any) -> dict[str, float]:
        """Score a word's thresholded map against a given mask, at the mask's size.

        Args:
            word: as in `word_map`.
            mask: the region (PIL image, array or tensor, 2-D; see `sdviz.overlap.as_mask`), e.g. `trace.mask`.
            threshold: as in `word_mask`.
            **kwargs: `word_map`'s options except `size`.

        Returns:
            {"iou", "ioa" (intersection over the word's area), "coverage" (over the mask's area)}.
        """
        target = as_mask(mask)
        return overlap_scores(self.word_mask(word, threshold, size=tuple(target.shape), **kwargs), target)

    def _head_sums(self, group: int, head: int, uncond: bool) -> torch.Tensor:
        if uncond or self.head_sums is None:
            raise UsageError("per-head maps were not captured (they are of the prompt half only): capture "
                             "with attention={'heads': 'all'}")  # fmt: skip
        sums = self.head_sums[group]
        if not 0 <= head < sums.shape[2]:
            raise UsageError(f"head {head} is out of range: group {self.groups[group]!r} has {sums.shape[2]} heads")
        return sums[:, :, head]

    def _select_bins(self, steps: tuple[int, int] | None) -> list[int]:
        if steps is None:
            return list(range(len(self.bins)))
        if not (isinstance(steps, tuple | list) and len(steps) == 2 and all(map(is_int, steps))):
            raise UsageTypeError(f"steps must be a (start, end) pair of ints, got {steps!r}")
        start, end = steps
        chosen = [i for i, (a, b) in enumerate(self.bins) if a >= start and b <= end]
        if not chosen:
            raise UsageError(
                f"no captured step range lies inside {steps}; the ranges are {self.bins}: capture with "
                "attention={'step_bins': N} for finer ranges"
            )
        return chosen

    def _select_groups(self, layers: list[str | int] | None) -> list[int]:
        if layers is None:
            return list(range(len(self.groups)))
        if isinstance(layers, str):
            raise UsageTypeError(f"layers must be a list of name prefixes and factors, got the string {layers!r}: "
                                 f"pass [{layers!r}]")  # fmt: skip
        chosen, missing = [], []
        for x in layers:
            hits = [i for i, (g, f) in enumerate(zip(self.groups, self.factors, strict=True)) if _matches(g, f, x)]
            chosen += [i for i in hits if i not in chosen]
            missing += [] if hits else [str(x)]
        if missing:
            raise UsageError(
                f"layer group(s) {missing} were not captured; the groups are {self.groups}: capture with "
                "attention={'per_layer': 'resolution'} for one map per resolution, 'layer' for one per layer"
            )
        return chosen

    def _resize(self, maps: torch.Tensor, size: tuple[int, int] | str | None) -> torch.Tensor:
        if size is None:
            return maps
        if size == "image":
            hw = self.image_size
        elif isinstance(size, tuple | list) and len(size) == 2:
            hw = tuple(check_int("size", v, low=1, high=MAX_SIDE) for v in size)
        else:
            raise UsageError(f"size must be None (the latent grid), 'image' or (height, width), got {size!r}")
        return F.interpolate(maps[None], size=hw, mode="bilinear", align_corners=False)[0]

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Split into tensors and JSON metadata for saving."""
        tensors = {"sums": self.sums, "counts": self.counts}
        if self.uncond_sums is not None:
            tensors["uncond_sums"] = self.uncond_sums
        for i, t in enumerate(self.head_sums or []):
            tensors[f"head_sums.{i}"] = t
        meta = {
            "bins": [list(b) for b in self.bins],
            "groups": self.groups,
            "tokens": self.tokens,
            "image_size": list(self.image_size),
            "options": self.options.to_dict(),
            "factors": self.factors,
            "head_groups": len(self.head_sums) if self.head_sums is not None else None,
        }
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> AttentionMaps:
        """Rebuild from `to_state`'s output (also what sdviz wrote before per-layer names and heads)."""
        n_heads = meta.get("head_groups")
        return cls(
            sums=tensors["sums"],
            counts=tensors["counts"],
            bins=[tuple(b) for b in meta["bins"]],
            groups=list(meta["groups"]),
            tokens=meta["tokens"],
            image_size=tuple(meta["image_size"]),
            uncond_sums=tensors.get("uncond_sums"),
            options=AttentionOptions.parse(meta.get("options") or {}),
            factors=list(meta.get("factors") or []),
            head_sums=[tensors[f"head_sums.{i}"] for i in range(n_heads)] if n_heads is not None else None,
        )


def _matches(group: str, factor: int | None, wanted: str | int) -> bool:
    """Whether a layer group is one that `wanted` (a factor, a layer name or a name prefix) asks for."""
    if isinstance(wanted, int) or str(wanted).isdigit():
        return factor is not None and factor == int(wanted)
    return group == wanted or (group != "all" and group.startswith(wanted))


def _few(items: list, n: int = 8) -> str:
    """Return a list for a message, its first `n` entries only when longer."""
    return str(items) if len(items) <= n else f"{str(items[:n])[:-1]}, ... ({len(items)} in all)]"
