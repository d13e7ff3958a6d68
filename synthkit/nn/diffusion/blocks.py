"""One-hot blocks side by side in one matrix: per-block softmax, sums and draws, vectorised.

A categorical diffusion runs over every discrete column at once, each column a block of slots
(its categories) in one ``(rows, slots)`` matrix. The operations that gradients flow through
take a fixed handful of tensor operations however many blocks there are: per-block sums are
one product with the ``(slots, blocks)`` membership matrix, and a per-block value is spread
back over its slots with one gather; per-block maxima (only ever a detached shift for
stability) and draws go run by run, a run being consecutive blocks of one width viewed without a
copy as ``(rows, blocks, width)``. Memory stays rows × slots however wide the widest block is
(a column of 1,000 categories does not pad every other block to 1,000 slots); laying blocks out
sorted by width keeps the runs few.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from synthkit.errors import ConfigError


@dataclass(frozen=True)
class _Run:
    """Consecutive blocks of one width: slots ``start .. start + count * width``."""

    start: int
    count: int
    width: int
    first_block: int

    def view(self, values: torch.Tensor) -> torch.Tensor:
        """``(rows, count, width)`` view of the run's slots."""
        end = self.start + self.count * self.width
        return values[:, self.start:end].reshape(values.shape[0], self.count, self.width)

    @property
    def blocks(self) -> slice:
        return slice(self.first_block, self.first_block + self.count)


class OneHotBlocks:
    """The layout of one-hot blocks of the given widths, laid side by side from slot 0."""

    def __init__(self, widths: Sequence[int], device: torch.device | str = "cpu") -> None:
        widths = [int(w) for w in widths]
        if any(w < 1 for w in widths):
            raise ConfigError(f"Every one-hot block needs at least one slot, got widths {widths}.")
        self.widths = widths
        self.device = torch.device(device)
        sizes = torch.as_tensor(widths, dtype=torch.long)
        starts = torch.cumsum(sizes, 0) - sizes
        block_of = torch.repeat_interleave(torch.arange(len(widths)), sizes)
        self.block_of = block_of.to(self.device)
        self.starts = starts.to(self.device)
        #: Number of categories of each slot's block (K in the multinomial formulas).
        self.slot_width = sizes[block_of].to(self.device, torch.float32)
        #: Number of categories of each block.
        self.block_width = sizes.to(self.device, torch.float32)
        #: ``(slots, blocks)``: 1 where the slot belongs to the block.
        self.membership = torch.zeros((int(sizes.sum()), len(widths)), device=self.device)
        self.membership[torch.arange(int(sizes.sum())), block_of] = 1.0
        runs: list[_Run] = []
        for j, width in enumerate(widths):
            if runs and runs[-1].width == width:
                last = runs[-1]
                runs[-1] = _Run(last.start, last.count + 1, width, last.first_block)
            else:
                runs.append(_Run(int(starts[j]), 1, width, j))
        self.runs = runs

    @property
    def n_blocks(self) -> int:
        return len(self.widths)

    @property
    def n_slots(self) -> int:
        return int(sum(self.widths))

    def to(self, device: torch.device | str) -> OneHotBlocks:
        """The same layout with its index tensors on ``device``."""
        return self if torch.device(device) == self.device else OneHotBlocks(self.widths, device)

    # --- per-block reductions ---------------------------------------------------------------
    def block_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of each block's slots: ``(rows, slots) -> (rows, blocks)``."""
        return values @ self.membership.to(values.dtype)

    def expand(self, per_block: torch.Tensor) -> torch.Tensor:
        """A per-block value repeated over its slots: ``(rows, blocks) -> (rows, slots)``."""
        return per_block[:, self.block_of]

    def block_max(self, values: torch.Tensor) -> torch.Tensor:
        """Largest slot value of each block: ``(rows, slots) -> (rows, blocks)``."""
        out = values.new_empty((values.shape[0], self.n_blocks))
        for run in self.runs:
            out[:, run.blocks] = run.view(values).amax(dim=2)
        return out

    def logsumexp(self, logits: torch.Tensor) -> torch.Tensor:
        """Stable log-sum-exp of each block: ``(rows, slots) -> (rows, blocks)``."""
        with torch.no_grad():  # any shift is exact; the block maxima keep exp() in range
            shift = self.block_max(logits)
        return shift + torch.log(self.block_sum(torch.exp(logits - self.expand(shift))))

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities within each block (each block's ``exp`` sums to 1)."""
        return logits - self.expand(self.logsumexp(logits))

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities within each block (each block sums to 1)."""
        with torch.no_grad():
            shift = self.block_max(logits)
        e = torch.exp(logits - self.expand(shift))
        return e / self.expand(self.block_sum(e))

    # --- draws ------------------------------------------------------------------------------
    def _per_block_index(
        self, values: torch.Tensor, pick: Callable[[torch.Tensor, slice], torch.Tensor]
    ) -> torch.Tensor:
        """One slot index per block, ``pick(run_view, run_blocks)`` run by run: ``(rows, blocks)``."""
        index = torch.empty((values.shape[0], self.n_blocks), dtype=torch.long, device=values.device)
        for run in self.runs:
            index[:, run.blocks] = pick(run.view(values), run.blocks)
        return index

    def argmax_one_hot(self, scores: torch.Tensor) -> torch.Tensor:
        """One-hot of each block's highest slot (the first one on a tie)."""
        index = self._per_block_index(scores, lambda v, _: v.argmax(dim=2))
        return self.index_to_one_hot(index, dtype=scores.dtype)

    def sample(self, weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """One-hot draw per block in proportion to non-negative ``weights`` (need not sum to 1).

        ``uniform`` holds the randomness, one uniform in [0, 1) per row and block (inverse CDF
        within the block, a binary search), so callers decide where noise comes from and the
        same noise gives the same draw.
        """
        if not self.runs:
            return weights

        def pick(v: torch.Tensor, blocks: slice) -> torch.Tensor:
            cumulative = v.cumsum(dim=2)
            threshold = uniform[:, blocks].unsqueeze(2) * cumulative[:, :, -1:]
            found = torch.searchsorted(cumulative, threshold.contiguous(), right=True)
            return found.squeeze(2).clamp_max(v.shape[2] - 1)

        return self.index_to_one_hot(self._per_block_index(weights, pick), dtype=weights.dtype)

    def index_to_one_hot(
        self, index: torch.Tensor, *, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``(rows, blocks)`` category indices to the ``(rows, slots)`` one-hot matrix."""
        out = torch.zeros((index.shape[0], self.n_slots), dtype=dtype, device=index.device)
        return out.scatter_(1, index.long() + self.starts.to(index.device), 1.0)

    def one_hot_to_index(self, one_hot: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`index_to_one_hot`: each block's hot slot, ``(rows, blocks)``."""
        return self._per_block_index(one_hot, lambda v, _: v.argmax(dim=2))
