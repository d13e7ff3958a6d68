"""One-hot blocks side by side in one matrix: per-block softmax, sums and draws, vectorised.

Encoded rows hold many one-hot blocks (a categorical column each): a categorical diffusion runs
over all of them at once, TVAE's loss and CTGAN's activation reduce within each. Here the
operations take a fixed handful of tensor operations however many blocks there are: per-block
sums are one product with the ``(slots, blocks)`` membership matrix, a per-block value is
spread back over its slots with one gather, and per-block maxima (only ever a detached shift
for stability) are one gather into a layout padded per power-of-two width (a block padded by
repeating its last slot) and one reduction per width. ``logsumexp`` and ``softmax`` have
hand-written gradients: a couple of elementwise ops instead of a recorded graph of a dozen,
which matters when they run in every training step. Memory stays within twice rows × slots
however wide the widest block is (a column of 1,000 categories does not pad every other block
to 1,000 slots). Draws go run by run, a run being consecutive blocks of one width viewed
without a copy as ``(rows, blocks, width)``; laying blocks out sorted by width keeps runs few.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

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
        self._membership_t = self.membership.t().contiguous()
        runs: list[_Run] = []
        for j, width in enumerate(widths):
            if runs and runs[-1].width == width:
                last = runs[-1]
                runs[-1] = _Run(last.start, last.count + 1, width, last.first_block)
            else:
                runs.append(_Run(int(starts[j]), 1, width, j))
        self.runs = runs
        # block maxima: blocks grouped by width rounded up to a power of two, each group read
        # as (rows, blocks, padded width), a block padded by repeating its last slot
        groups: dict[int, list[int]] = {}
        for j, width in enumerate(widths):
            groups.setdefault(1 << (width - 1).bit_length(), []).append(j)
        groups = _merge_narrow(groups, widths)
        if len(groups) == 1:  # blocks in their own order: no reordering afterwards
            groups = {padded: sorted(members) for padded, members in groups.items()}
        index: list[int] = []
        order: list[int] = []
        self._max_groups: list[tuple[int, int, int]] = []  # (offset, blocks, padded width)
        for padded in sorted(groups):
            self._max_groups.append((len(index), len(groups[padded]), padded))
            for j in groups[padded]:
                start = int(starts[j])
                index.extend(start + min(i, widths[j] - 1) for i in range(padded))
                order.append(j)
        self._max_index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        self._max_order = torch.as_tensor(
            np.argsort(np.asarray(order, dtype=np.int64), kind="stable"), dtype=torch.long, device=self.device
        )

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
        """Sum of each block's slots: ``(rows, slots) -> (rows, blocks)``.

        On a CPU computed as ``(membershipᵀ valuesᵀ)ᵀ`` (a column-major result): MKL's product
        with the few blocks as its inner width takes 3-4x longer at a training batch's size
        (wage's 500 x 57 slots into 11 blocks: ~50 against ~14 us on one thread)."""
        if values.device.type == "cpu":
            return (self._membership_t.to(values.dtype) @ values.t()).t()
        return values @ self.membership.to(values.dtype)

    def expand(self, per_block: torch.Tensor) -> torch.Tensor:
        """A per-block value repeated over its slots: ``(rows, blocks) -> (rows, slots)``."""
        return per_block.index_select(1, self.block_of)

    def block_max(self, values: torch.Tensor) -> torch.Tensor:
        """Largest slot value of each block: ``(rows, slots) -> (rows, blocks)`` (no gradient)."""
        with torch.no_grad():
            rows = values.shape[0]
            padded = values.index_select(1, self._max_index)
            parts = [padded[:, o : o + k * w].reshape(rows, k, w).amax(dim=2)
                     for o, k, w in self._max_groups]
            if len(parts) <= 1:  # one group holds every block, in order
                return parts[0] if parts else values.new_empty((rows, 0))
            return torch.cat(parts, dim=1).index_select(1, self._max_order)

    def logsumexp(self, logits: torch.Tensor) -> torch.Tensor:
        """Stable log-sum-exp of each block: ``(rows, slots) -> (rows, blocks)``."""
        return _BlockLogSumExp.apply(logits, self)

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities within each block (each block's ``exp`` sums to 1)."""
        return logits - self.expand(self.logsumexp(logits))

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities within each block (each block sums to 1)."""
        return _BlockSoftmax.apply(logits, self)

    def _exp_sums(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """exp of every slot less a shift, the blocks' sums of those, and the shifts
        ``(rows, blocks)``: ``log(sums) + shift`` is each block's log-sum-exp, ``exp / sums``
        its softmax.

        The shift is each block's maximum (sums at least 1), or on a CPU each row's maximum over
        all slots where that keeps every block's sum at least :data:`_ROW_SHIFT_MIN_SUM` (one
        contiguous reduction instead of a gather and a reduction per width group, about 0.3 ms of
        TVAE's 4 ms step on wage; a block's own maximum is then within ~40 of the shift, so what
        the floor below drops is under 1e-12 of its sum). Shifted logits are floored at
        :data:`EXP_FLOOR`: below about -88 fp32's exp underflows and PyTorch's CPU kernel falls
        off its fast path (a hundred times slower per call, which a confident model hits every
        step); what the floor changes is below 1e-34 of a sum of at least 1."""
        if logits.device.type == "cpu" and logits.shape[0] and self.n_blocks:
            # (on a GPU the check's host sync costs more than the gather it saves)
            row = logits.amax(dim=1, keepdim=True)
            e = torch.exp((logits - row).clamp_min_(EXP_FLOOR))
            sums = self.block_sum(e)
            if bool(sums.amin() >= _ROW_SHIFT_MIN_SUM):
                return e, sums, row.expand(-1, self.n_blocks)
        shift = self.block_max(logits)
        e = torch.exp((logits - self.expand(shift)).clamp_min_(EXP_FLOOR))
        return e, self.block_sum(e), shift

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


def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """Standard Gumbel noise, ``-log(-log(u))`` of uniforms clamped away from 0 and 1: added to
    logits, a block's argmax becomes a draw from its softmax (the Gumbel-max trick)."""
    u = torch.rand(shape, generator=generator, device=device)
    return u.clamp_(1e-10, 1.0 - 1e-7).log_().neg_().log_().neg_()


#: Floor of shifted logits before ``exp`` (see ``OneHotBlocks._exp_sums``): exp(-80) ≈ 1.8e-35.
EXP_FLOOR = -80.0

#: Smallest block sum (exp(-40)) at which a row-wide shift stands for the per-block maxima.
_ROW_SHIFT_MIN_SUM = float(np.exp(-40.0))

#: Narrow width groups merge into wider ones while the padded slots stay within this many times
#: the real ones, or this many slots: fewer reductions per call, bounded memory.
_MERGE_FACTOR, _MERGE_SLACK = 4, 512


def _merge_narrow(groups: dict[int, list[int]], widths: list[int]) -> dict[int, list[int]]:
    """Width groups (padded width -> blocks) merged upward, narrowest first, while padding
    stays within :data:`_MERGE_FACTOR` times the real slots or :data:`_MERGE_SLACK` slots."""
    merged: dict[int, list[int]] = {}
    current: list[int] = []
    current_width = 0
    for padded in sorted(groups):
        candidate = current + groups[padded]
        slots = sum(widths[j] for j in candidate)
        if len(candidate) * padded <= max(_MERGE_FACTOR * slots, _MERGE_SLACK):
            current, current_width = candidate, padded
            continue
        if current:
            merged[current_width] = current
        current, current_width = list(groups[padded]), padded
    if current:
        merged[current_width] = current
    return merged


class _BlockLogSumExp(torch.autograd.Function):
    """``OneHotBlocks.logsumexp``; its gradient is each block's softmax."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, blocks: OneHotBlocks) -> torch.Tensor:
        e, sums, shift = blocks._exp_sums(logits)
        ctx.blocks = blocks
        ctx.save_for_backward(e, sums)
        return torch.log(sums) + shift

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        e, sums = ctx.saved_tensors
        return e * ctx.blocks.expand(grad / sums), None


class _BlockSoftmax(torch.autograd.Function):
    """``OneHotBlocks.softmax``; gradient ``p * (g - block_sum(g * p))``."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, blocks: OneHotBlocks) -> torch.Tensor:
        e, sums, _ = blocks._exp_sums(logits)
        p = e / blocks.expand(sums)
        ctx.blocks = blocks
        ctx.save_for_backward(p)
        return p

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (p,) = ctx.saved_tensors
        blocks: OneHotBlocks = ctx.blocks
        return p * (grad - blocks.expand(blocks.block_sum(grad * p))), None
