"""The CLIP text encoder of Stable Diffusion 1.x (Radford et al. 2021): token ids to one vector per token.

A GPT-style transformer: causal self-attention (each token sees only itself and the tokens before it),
QuickGELU MLPs, pre-normalisation and a final layer norm. The UNet attends to its last hidden states.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sdviz.models.attention import Attention
from sdviz.models.layouts import load_from_diffusers, text_names


@dataclass
class TextEncoderConfig:
    """The shape of a CLIP text transformer; the defaults are SD 1.5's (OpenAI CLIP ViT-L/14)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_positions: int = 77
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 2  # 2 is the legacy value: the end token is then found as the largest id

    @classmethod
    def from_diffusers_config(cls, config: Mapping | str | os.PathLike) -> TextEncoderConfig:
        """Build from a transformers `CLIPTextConfig` (the object, a mapping, or the path of its config.json)."""
        if not isinstance(config, Mapping):
            config = config.to_dict() if hasattr(config, "to_dict") else json.loads(Path(config).read_text())
        if config.get("hidden_act", "quick_gelu") != "quick_gelu":
            raise ValueError(f"text encoder hidden_act={config['hidden_act']!r} is not supported; CLIP uses 'quick_gelu'")
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"],
            max_positions=config.get("max_position_embeddings", 77),
            layer_norm_eps=config.get("layer_norm_eps", 1e-5),
            eos_token_id=config.get("eos_token_id", 2),
        )


@dataclass
class TextEncoderOutput:
    """What the text encoder returns."""

    last_hidden_state: torch.Tensor  # (B, T, hidden) after the final layer norm: what the UNet reads
    pooled: torch.Tensor  # (B, hidden) the state at each prompt's end token
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then every layer's output


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Layer(nn.Module):
    """Pre-norm transformer layer: causal self-attention, then the MLP, each residual."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.hidden_size, cfg.num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask=mask, causal=True)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """The CLIP text transformer."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = cfg = config
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, output_hidden_states: bool = False
    ) -> TextEncoderOutput:
        """Encode token ids.

        Args:
            input_ids: (B, T) token ids, T <= max_positions.
            attention_mask: optional (B, T), 1 for tokens to attend to and 0 for padding.
            output_hidden_states: also return the embeddings and every layer's output.

        Returns:
            A `TextEncoderOutput`.
        """
        B, T = input_ids.shape
        if T > self.config.max_positions:
            raise ValueError(f"{T} tokens is more than the {self.config.max_positions} positions; truncate the prompt")
        pos = torch.arange(T, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(pos)  # (B, T, hidden)
        mask = None
        if attention_mask is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, T, T)
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        x = self.final_norm(x)
        if self.config.eos_token_id == 2:
            end = input_ids.argmax(dim=-1)  # the end token has the largest id in CLIP's vocabulary
        else:
            end = (input_ids == self.config.eos_token_id).int().argmax(dim=-1)
        pooled = x[torch.arange(B, device=x.device), end]  # (B, hidden)
        return TextEncoderOutput(x, pooled, tuple(states) if output_hidden_states else None)

    @classmethod
    def from_diffusers(cls, text_encoder) -> TextEncoder:
        """Build from a transformers `CLIPTextModel`."""
        return load_from_diffusers(cls(TextEncoderConfig.from_diffusers_config(text_encoder.config)), text_encoder, text_names)
