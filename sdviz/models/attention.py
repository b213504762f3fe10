"""Multi-head attention, the one implementation the UNet, the VAE and the text encoder share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Scaled dot-product attention (Vaswani et al. 2017) over sequences of tokens.

    Self-attention when no context is given; cross-attention when the keys and values come from `context`
    (in the UNet: the text encoder's hidden states).
    """

    def __init__(self, dim: int, heads: int, *, context_dim: int | None = None, qkv_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        B, N, C = x.shape
        context = x if context is None else context
        M = context.shape[1]
        q = self.to_q(x).view(B, N, self.heads, -1).transpose(1, 2)  # (B, heads, N, C/heads)
        k = self.to_k(context).view(B, M, self.heads, -1).transpose(1, 2)  # (B, heads, M, C/heads)
        v = self.to_v(context).view(B, M, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.to_out(out.transpose(1, 2).reshape(B, N, C))  # (B, N, C)
