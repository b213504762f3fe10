"""The cross-attention processor that sums per-token maps while a run goes, and its installer."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from sdviz.attention_maps import DAAM_LAYERS, AttentionMaps, AttentionOptions
from sdviz.validation import UsageError


def attention_probs(attn: Any, hidden_states: torch.Tensor, context: torch.Tensor, heads: str | int) -> torch.Tensor:
    """Compute softmax(QK^T / sqrt(d)) of a diffusers `Attention` layer: (B, N, T) reduced over heads, or
    (B, heads, N, T) for heads="all"."""
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    q = attn.to_q(hidden_states)
    k = attn.to_k(context)
    b, n, _ = q.shape
    h = attn.heads
    q = q.view(b, n, h, -1).transpose(1, 2)  # (B, heads, N, d)
    k = k.view(b, k.shape[1], h, -1).transpose(1, 2)  # (B, heads, T, d)
    probs = (q @ k.transpose(-1, -2) * attn.scale).softmax(dim=-1)  # (B, heads, N, T)
    if heads == "mean":
        return probs.mean(dim=1)
    if heads == "max":
        return probs.amax(dim=1)
    if heads == "all":
        return probs
    return probs[:, heads]


class MapRecorder:
    """Processor for one cross-attention layer: runs the original processor, adds its maps to the sums."""

    def __init__(self, original: Any, capture: AttentionCapture, factor: int, layer: str = "") -> None:
        self.original = original
        self.capture = capture
        self.factor = factor
        self.layer = layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if encoder_hidden_states is not None and self.capture.recording:
            with torch.no_grad():
                x = hidden_states
                if x.ndim == 4:  # (B, C, H, W) -> (B, HW, C)
                    x = x.flatten(2).transpose(1, 2)
                self.capture.add(attention_probs(attn, x, encoder_hidden_states, self.capture.options.heads),
                                 self.factor, self.layer)
        return out


class AttentionCapture:
    """Install `MapRecorder` on the UNet's cross-attention layers (attn2) and build AttentionMaps.

    Memory stays constant over the run: one sum per step range and layer group.

    Args:
        unet: the pipeline's UNet (a diffusers `UNet2DConditionModel`).
        options: True, a dict of `AttentionOptions` fields, or an `AttentionOptions`.
        guidance: returns whether the running pipeline uses classifier-free guidance.
        num_evals: given the first timestep the UNet sees, returns how many evaluations the run will make.
    """

    def __init__(self, unet: Any, options: bool | dict | AttentionOptions, guidance: Any, num_evals: Any) -> None:
        self.unet = unet
        self.options = AttentionOptions.parse(options)
        self.guidance = guidance
        self.num_evals = num_evals
        self._saved: dict[str, Any] | None = None
        self._handle: Any = None
        self.eval_index = -1
        self.latent_hw = (0, 0)
        self.bins: list[tuple[int, int]] = []
        self.sums: dict[tuple[int, str], torch.Tensor] = {}
        self.uncond: dict[tuple[int, str], torch.Tensor] = {}
        self.counts: dict[tuple[int, str], int] = {}
        self.heads: dict[tuple[int, str], torch.Tensor] = {}  # heads="all": (B, heads, T, h, w) sums
        self.factors: dict[str, int | None] = {}  # group -> its downsampling factor, in the order first seen
        self.recording = False
        self._bin = 0

    def install(self) -> None:
        """Swap in the recorders (cross-attention layers only) and count UNet evaluations."""
        if not hasattr(self.unet, "set_attn_processor"):
            raise ValueError(
                f"attention capture needs a diffusers UNet with attention processors; this pipeline's UNet is a "
                f"{type(self.unet).__name__}: capture the reference pipeline's attention instead"
            )
        saved = dict(self.unet.attn_processors)
        procs, heads = {}, {}
        modules = dict(self.unet.named_modules())
        for name, proc in saved.items():
            layer = name.removesuffix(".processor")
            factor = layer_factor(layer, self.unet.config)
            keep = layer.endswith("attn2") and _wanted(layer, factor, self.options.layers)
            procs[name] = MapRecorder(proc, self, factor, layer) if keep else proc
            if keep:
                group = {"all": "all", "resolution": str(factor), "layer": layer}[self.options.grouping]
                heads.setdefault(group, set()).add(int(getattr(modules.get(layer), "heads", 0)))
        _check_layers(self.options.layers, [n.removesuffix(".processor") for n in saved], self.unet.config)
        _check_heads(self.options, heads)
        self._saved = saved
        self.unet.set_attn_processor(procs)
        self._handle = self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True)

    def remove(self) -> None:
        """Put the original processors back."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._saved is not None:
            self.unet.set_attn_processor(self._saved)
            self._saved = None

    def _on_unet(self, module, args, kwargs) -> None:
        sample = kwargs.get("sample", args[0] if args else None)
        self.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))
        self.eval_index += 1
        if self.eval_index == 0:
            t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            n = self.num_evals(t)
            self.bins = _bins(self.options.steps, n, self.options.step_bins)
            if not self.bins:  # generate() refuses this before the run; a capture() block learns it here
                raise UsageError(f"attention steps {self.options.steps} start after the run's last UNet "
                                 f"evaluation: this run makes {n}")  # fmt: skip
        self._bin = next((i for i, (a, b) in enumerate(self.bins) if a <= self.eval_index < b), -1)
        self.recording = self._bin >= 0

    def add(self, probs: torch.Tensor, factor: int, layer: str = "") -> None:
        """Add one layer's (B, N, T) maps, or (B, heads, N, T) ones, to the sums of the current step range
        and layer group."""
        per_head = probs if probs.ndim == 4 else None
        if per_head is not None:
            probs = per_head.mean(dim=1)
        grouping = self.options.grouping
        group = {"all": "all", "resolution": str(factor), "layer": layer}[grouping]
        self.factors.setdefault(group, None if grouping == "all" else factor)
        key = (self._bin, group)
        maps = self._on_grid(probs, factor)
        uncond, cond = maps.chunk(2) if self._halves(maps) else (None, maps)
        _accumulate(self.sums, key, cond)
        if self.options.uncond and uncond is not None:
            _accumulate(self.uncond, key, uncond)
        if per_head is not None:
            b, n_heads, n, t = per_head.shape
            heads = self._on_grid(per_head.reshape(b * n_heads, n, t), factor)
            heads = heads.reshape(b, n_heads, *heads.shape[1:])
            heads = heads.chunk(2)[1] if self._halves(maps) else heads
            _accumulate(self.heads, key, heads)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _halves(self, maps: torch.Tensor) -> bool:
        return bool(self.guidance()) and maps.shape[0] % 2 == 0

    def _on_grid(self, probs: torch.Tensor, factor: int) -> torch.Tensor:
        """Turn (B, N, T) maps of a layer into (B, T, h, w) maps on the latent grid."""
        h, w = self.latent_hw
        hl, wl = math.ceil(h / factor), math.ceil(w / factor)
        if hl * wl != probs.shape[1]:
            raise ValueError(f"cannot place {probs.shape[1]} attention pixels on a {hl}x{wl} grid")
        maps = probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], hl, wl)  # (B, T, hl, wl)
        if (hl, wl) != (h, w):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)  # (B, T, h, w)
        return maps

    def result(self, tokens: list[list[str]], image_size: tuple[int, int]) -> AttentionMaps | None:
        """Return the recorded maps, or None when nothing was recorded.

        Args:
            tokens: the 77 token strings of each image's prompt.
            image_size: (height, width) of the images.
        """
        if not self.counts:
            return None
        groups = list(self.factors)
        if self.options.grouping == "resolution":
            groups.sort(key=int)
        first = next(iter(self.sums.values()))
        shape = (len(self.bins), len(groups), *first.shape)
        sums = torch.zeros(shape)
        uncond = torch.zeros(shape) if self.uncond else None
        counts = torch.zeros(len(self.bins), len(groups))
        heads = None
        if self.heads:
            n_heads = {g: t.shape[1] for (_, g), t in self.heads.items()}
            heads = [torch.zeros(len(self.bins), first.shape[0], n_heads[g], *first.shape[1:]) for g in groups]
        for (b, g), n in self.counts.items():
            gi = groups.index(g)
            sums[b, gi] = self.sums[(b, g)].cpu()
            counts[b, gi] = n
            if uncond is not None and (b, g) in self.uncond:
                uncond[b, gi] = self.uncond[(b, g)].cpu()
            if heads is not None:
                heads[gi][b] = self.heads[(b, g)].cpu()
        return AttentionMaps(
            sums=sums, counts=counts, bins=self.bins, groups=groups, tokens=tokens, image_size=image_size,
            uncond_sums=uncond, options=self.options, factors=[self.factors[g] for g in groups], head_sums=heads,
        )


def layer_factor(layer: str, config: Any) -> int:
    """Return the downsampling factor of the latent grid a UNet attention layer works on."""
    n = len(config.block_out_channels)
    parts = layer.split(".")
    if parts[0] == "down_blocks":
        return 2 ** int(parts[1])
    if parts[0] == "up_blocks":
        return 2 ** (n - 1 - int(parts[1]))
    return 2 ** (n - 1)  # mid_block


def _check_heads(options: AttentionOptions, heads: dict[str, set[int]]) -> None:
    """Refuse, before the run, a head index no layer has or per-head maps over layers of unequal head counts."""
    if isinstance(options.heads, int) and heads and options.heads >= min(min(h) for h in heads.values()):
        raise UsageError(f"head {options.heads} is out of range: the fewest heads of a recorded layer is "
                         f"{min(min(h) for h in heads.values())}")  # fmt: skip
    mixed = {g: sorted(h) for g, h in heads.items() if len(h) > 1}
    if options.heads == "all" and mixed:
        g, h = next(iter(mixed.items()))
        raise UsageError(f"heads='all' keeps each head apart, but group {g!r} holds layers with {h} heads: capture "
                         "with per_layer='resolution' or per_layer='layer'")  # fmt: skip


def _check_layers(layers: list[str | int] | None, names: list[str], config: Any) -> None:
    """Refuse, before the run, a `layers` entry that matches no cross-attention layer (nothing would be recorded).

    DAAM's layers ("daam": down and up blocks) need one of the two only: a UNet may have cross-attention in its
    up blocks alone.
    """
    cross = [n for n in names if n.endswith("attn2")]
    missing = [x for x in layers or [] if not any(_wanted(n, layer_factor(n, config), [x]) for n in cross)]
    if layers == list(DAAM_LAYERS) and len(missing) < len(layers):
        missing = []
    if missing:
        prefixes = sorted({".".join(n.split(".")[:2]) for n in cross} | {n.split(".")[0] for n in cross})
        factors = sorted({layer_factor(n, config) for n in cross})
        raise UsageError(f"attention layers {missing} match no cross-attention layer of this UNet; use name "
                         f"prefixes such as {prefixes} or downsampling factors {factors}")  # fmt: skip


def _wanted(layer: str, factor: int, layers: list[str | int] | None) -> bool:
    if layers is None:
        return True
    return any(layer.startswith(x) if isinstance(x, str) else factor == x for x in layers)


def _bins(steps: tuple[int, int] | None, n_evals: int, n_bins: int) -> list[tuple[int, int]]:
    """Split the recorded evaluations [start, end) into n_bins contiguous ranges."""
    start, end = steps if steps is not None else (0, n_evals)
    end = min(end, n_evals)
    if start >= end:
        return []
    n_bins = min(n_bins, end - start)
    edges = [start + round(i * (end - start) / n_bins) for i in range(n_bins + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n_bins)]


def _accumulate(store: dict, key: tuple[int, str], maps: torch.Tensor) -> None:
    maps = maps.detach().float()  # stays on the device: no sync per layer
    if key in store:
        store[key] += maps
    else:
        store[key] = maps.clone()
