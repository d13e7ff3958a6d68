"""The causal transformer block shared by tabular/argn and text/gpt.

Pre-norm blocks of multi-head self-attention (two Linear layers, so Opacus' per-sample gradients
apply) and a GELU feed-forward, with a key/value cache for token-by-token sampling and dropout
whose mask comes from a ``torch.Generator`` (reproducible across resumed runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def seeded_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None,
                   training: bool) -> torch.Tensor:
    """Inverted dropout drawing its mask from ``generator`` (reproducible across resumes)."""
    if not training or p <= 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)


@dataclass
class KVCache:
    """Keys and values of one block for the positions read so far: (rows, heads, length, head dim)."""

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0


class SelfAttention(nn.Module):
    """Causal multi-head self-attention from two linear layers."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        rows, steps, dim = x.shape
        q, k, v = self.qkv(x).view(rows, steps, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            start = cache.length
            cache.keys[:, :, start : start + steps] = k.to(cache.keys.dtype)
            cache.values[:, :, start : start + steps] = v.to(cache.values.dtype)
            cache.length = start + steps
            if start > 0:  # new positions attend to every position read so far
                k = cache.keys[:, :, : cache.length].to(q.dtype)
                v = cache.values[:, :, : cache.length].to(q.dtype)
                y = F.scaled_dot_product_attention(q, k, v, is_causal=steps > 1)
                return self.out(y.transpose(1, 2).reshape(rows, steps, dim))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(rows, steps, dim))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention and a GELU feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, feedforward_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, feedforward_dim)
        self.ff2 = nn.Linear(feedforward_dim, dim)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        x = x + seeded_dropout(self.attention(self.norm1(x), cache), self.dropout, generator, self.training)
        h = self.ff2(F.gelu(self.ff1(self.norm2(x))))
        return x + seeded_dropout(h, self.dropout, generator, self.training)
