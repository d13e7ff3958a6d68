"""ARGNNet: an any-order autoregressive transformer over a row's column tokens.

A row is a sequence of tokens, one (or two) per column, each from its own vocabulary (see
:mod:`synthkit.prepare.tokens`). The net reads the tokens in an *order* (a permutation of the
token positions, possibly a different one per row) and predicts each token from those before it:

* the input at step ``i`` is the embedding of the token read at step ``i - 1`` (a begin token at
  step 0; an ordered token, a quantile bin, also adds features of its position in [0, 1], so
  neighbouring bins start out alike), plus an embedding of *which* position that token was, plus an embedding of which
  position is to be predicted now. So the net always knows what it has seen and what it is
  asked for, and one set of weights serves every order: the column order for plain sampling,
  any fixed columns first for conditions and seed data;
* pre-norm transformer blocks with causal self-attention (built from ``nn.Linear``; no
  ``nn.MultiheadAttention``, no BatchNorm, so Opacus can compute per-sample gradients);
* one linear softmax head per token position.

``nll`` gives each row's negative log-likelihood (a per-sample loss). ``generate`` samples token
by token with a key/value cache (one forward pass's work per row), temperature and top-p.
Dropout draws from an explicit ``torch.Generator`` so checkpointed runs resume exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from synthkit.nn.transformer import KVCache, TransformerBlock, seeded_dropout


class ARGNNet(nn.Module):
    """Any-order autoregressive transformer over token positions with per-position vocabularies."""

    def __init__(
        self,
        vocab_sizes: Sequence[int],
        *,
        dim: int = 64,
        layers: int = 2,
        heads: int = 4,
        feedforward_dim: int = 128,
        dropout: float = 0.1,
        ordinal: Sequence[Sequence[float] | None] | None = None,
    ) -> None:
        super().__init__()
        if not vocab_sizes or min(vocab_sizes) < 1:
            raise ValueError(f"every token position needs a vocabulary, got {list(vocab_sizes)}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim, self.heads, self.dropout = dim, heads, dropout
        n = len(self.vocab_sizes)
        offsets = torch.tensor([0, *self.vocab_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.begin = sum(self.vocab_sizes)  # index of the begin token in ``tokens``
        self.tokens = nn.Embedding(self.begin + 1, dim)
        # ordered tokens (quantile bins) also enter through features of their position in [0, 1]
        self.register_buffer("features", _ordinal_features(self.vocab_sizes, ordinal), persistent=False)
        self.ordinal = nn.Linear(self.features.shape[1], dim, bias=False)
        self.read = nn.Embedding(n, dim)  # which position the input token was
        self.target = nn.Embedding(n, dim)  # which position is predicted at this step
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, feedforward_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.heads_out = nn.ModuleList(nn.Linear(dim, v) for v in self.vocab_sizes)
        for emb in (self.tokens, self.read, self.target):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def n_positions(self) -> int:
        return len(self.vocab_sizes)

    # --- training ----------------------------------------------------------------------------
    def _embed(self, index: torch.Tensor) -> torch.Tensor:
        """Embedding of token indices (offset into the joint vocabulary), ordinal part included."""
        return self.tokens(index) + self.ordinal(self.features[index])

    def _inputs(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Step inputs (rows, steps, dim) for reading ``tokens`` in ``order`` (rows, steps)."""
        rows = tokens.shape[0]
        seen = tokens.gather(1, order)[:, :-1]
        previous = self._embed(seen + self.offsets[order[:, :-1]]) + self.read(order[:, :-1])
        begin = self.tokens(torch.full((rows, 1), self.begin, dtype=torch.long, device=tokens.device))
        return torch.cat([begin, previous], dim=1) + self.target(order)

    def logits(
        self,
        tokens: torch.Tensor,
        order: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Per position, the logits (rows, vocab) of its token given the tokens read before it
        in ``order`` ((rows, positions); None reads positions in their own order)."""
        rows, n = tokens.shape
        if order is None:
            order = torch.arange(n, device=tokens.device).expand(rows, n)
        x = seeded_dropout(self._inputs(tokens, order), self.dropout, generator, self.training)
        for block in self.blocks:
            x = block(x, generator)
        hidden = self.norm(x)
        # back from reading order to position order: step i predicted position order[:, i]
        where = torch.argsort(order, dim=1)
        hidden = hidden.gather(1, where.unsqueeze(-1).expand(-1, -1, self.dim))
        # unbind: one gradient buffer for all heads (indexing would allocate one per head)
        return [head(h) for head, h in zip(self.heads_out, hidden.unbind(1), strict=True)]

    def nll(
        self,
        tokens: torch.Tensor,
        order: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Negative log-likelihood of each row (rows,): the sum of its tokens' cross-entropies.

        Every row's loss depends on that row only (per-sample gradients are well defined).
        """
        total = tokens.new_zeros(tokens.shape[0], dtype=torch.float32)
        for p, logits in enumerate(self.logits(tokens, order, generator=generator)):
            total = total + F.cross_entropy(logits.float(), tokens[:, p], reduction="none")
        return total

    # --- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        fixed: torch.Tensor,
        order: Sequence[int],
        n_fixed: int,
        *,
        generator: torch.Generator,
        temperature: float = 1.0,
        top_p: float = 1.0,
        sub_limits: Mapping[int, tuple[int, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Complete ``fixed`` (rows, positions): the first ``n_fixed`` positions of ``order`` are
        given, the rest are drawn one by one in ``order``. ``sub_limits`` maps a position to
        (the position it depends on, how many of its tokens each value there allows)."""
        self.eval()
        tokens = fixed.clone()
        rows, n = tokens.shape
        device = tokens.device
        if n_fixed >= n:
            return tokens
        order_t = torch.as_tensor(list(order), dtype=torch.long, device=device)
        head_dim = self.dim // self.heads
        caches = [
            KVCache(
                torch.empty(rows, self.heads, n, head_dim, device=device),
                torch.empty(rows, self.heads, n, head_dim, device=device),
            )
            for _ in self.blocks
        ]
        # read the given positions in one pass; the last step predicts the first free position
        prefix = order_t[: n_fixed + 1].expand(rows, -1)
        x = self._inputs(tokens.clamp(min=0), prefix)
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block(x, cache=cache)
        hidden = self.norm(x[:, -1])
        for step in range(n_fixed, n):
            p = int(order_t[step])
            logits = self.heads_out[p](hidden).float()
            if sub_limits and p in sub_limits:
                parent, limits = sub_limits[p]
                allowed = torch.arange(logits.shape[1], device=device) < limits[tokens[:, parent]].unsqueeze(1)
                logits = logits.masked_fill(~allowed, -math.inf)
            tokens[:, p] = _draw(logits, generator, temperature, top_p)
            if step + 1 == n:
                break
            nxt = order_t[step + 1]
            x = (
                self._embed(tokens[:, p] + self.offsets[p])
                + self.read.weight[p]
                + self.target.weight[nxt]
            ).unsqueeze(1)
            for block, cache in zip(self.blocks, caches, strict=True):
                x = block(x, cache=cache)
            hidden = self.norm(x[:, -1])
        return tokens


#: Frequencies of the sine and cosine features of an ordered token's position.
_FREQUENCIES = (1.0, 2.0, 4.0, 8.0)


def _ordinal_features(
    vocab_sizes: Sequence[int], ordinal: Sequence[Sequence[float] | None] | None
) -> torch.Tensor:
    """(joint vocabulary + begin, features): for a token with a position q in [0, 1] (a quantile
    bin), q - 1/2 and sines and cosines of q; zeros for unordered tokens (categories, nulls)."""
    total = sum(vocab_sizes) + 1
    out = torch.zeros(total, 1 + 2 * len(_FREQUENCIES))
    if ordinal is None:
        return out
    start = 0
    for size, positions in zip(vocab_sizes, ordinal, strict=True):
        if positions is not None:
            q = torch.as_tensor(list(positions), dtype=torch.float32)
            known = torch.isfinite(q)
            angle = math.pi * torch.nan_to_num(q).unsqueeze(1) * torch.tensor(_FREQUENCIES)
            feats = torch.cat([torch.nan_to_num(q).unsqueeze(1) - 0.5, angle.sin(), angle.cos()], dim=1)
            out[start : start + size] = feats * known.unsqueeze(1)
        start += size
    return out


def _draw(
    logits: torch.Tensor, generator: torch.Generator, temperature: float, top_p: float
) -> torch.Tensor:
    """One token per row from softmax(logits / temperature), restricted to the top-p mass."""
    if logits.shape[1] == 1:
        return torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    probs = torch.softmax(logits / max(temperature, 1e-6), dim=1)
    if top_p < 1.0:
        sorted_p, index = probs.sort(dim=1, descending=True)
        drop = sorted_p.cumsum(1) - sorted_p > top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(1, index, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
