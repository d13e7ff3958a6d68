"""The denoising network: an MLP over noisy rows plus a timestep embedding (TabDDPM's MLPDiffusion).

It predicts, from ``x_t`` and ``t`` (and optionally a conditioning vector), what the schedules
need: the Gaussian noise of the real-valued features and the logits of the clean categories.
Built from ``nn.Linear``, ``nn.ReLU``/``nn.SiLU``, ``nn.Dropout`` and ``nn.LayerNorm`` only, with no batch
statistics, so every row's loss and gradient stand alone (what Opacus' per-sample gradients need).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from synthkit.errors import ConfigError

#: Hidden-layer activations: ReLU (TabDDPM's, and cheapest on a CPU) or SiLU.
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: ``(rows,) -> (rows, dim)``."""
    if dim < 2:
        raise ConfigError(f"The timestep embedding needs at least 2 dimensions, got {dim}.")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float().view(-1, 1) * freqs.view(1, -1)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class DenoiserNet(nn.Module):
    """``(x_t, t[, cond]) -> prediction`` of the row's width: an MLP with a timestep embedding.

    The row (and conditioning vector, when ``cond_dim > 0``) is projected to
    ``time_embedding_dim`` and added to the embedded timestep (sinusoidal, then two linear layers
    with SiLU); hidden layers are Linear, (LayerNorm,) ReLU or SiLU, Dropout; a last linear layer
    gives ``out_dim`` outputs (the input width by default).
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dims: Sequence[int] = (512, 512, 512, 512),
        *,
        time_embedding_dim: int = 128,
        cond_dim: int = 0,
        out_dim: int | None = None,
        dropout: float = 0.0,
        layer_norm: bool = False,
        activation: Literal["relu", "silu"] = "relu",
    ) -> None:
        super().__init__()
        if data_dim < 1 or cond_dim < 0 or any(int(h) < 1 for h in hidden_dims):
            raise ConfigError(
                f"DenoiserNet needs data_dim >= 1, cond_dim >= 0 and positive hidden sizes, got "
                f"{data_dim}, {cond_dim}, {tuple(hidden_dims)}."
            )
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"activation must be 'relu' or 'silu', got {activation!r}.")
        self.data_dim = int(data_dim)
        self.cond_dim = int(cond_dim)
        self.time_embedding_dim = int(time_embedding_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(self.time_embedding_dim, self.time_embedding_dim),
            nn.SiLU(),
            nn.Linear(self.time_embedding_dim, self.time_embedding_dim),
        )
        self.proj = nn.Linear(self.data_dim + self.cond_dim, self.time_embedding_dim)
        layers: list[nn.Module] = []
        width = self.time_embedding_dim
        for size in hidden_dims:
            layers.append(nn.Linear(width, int(size)))
            if layer_norm:
                layers.append(nn.LayerNorm(int(size)))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, int(out_dim) if out_dim is not None else self.data_dim)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``t`` has one timestep per row, or one for all rows (shape ``(1,)``: embedded once)."""
        if self.cond_dim:
            if cond is None:
                cond = x.new_zeros((x.shape[0], self.cond_dim))
            x = torch.cat([x, cond], dim=1)
        h = self.proj(x) + self.time_mlp(timestep_embedding(t, self.time_embedding_dim))
        return self.out(self.hidden(h))
