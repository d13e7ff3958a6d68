"""One-hot blocks (synthkit.nn.blocks): per-block reductions, draws and their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthkit.errors import ConfigError
from synthkit.nn.blocks import OneHotBlocks


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference(logits: torch.Tensor, widths: list[int], op: str) -> torch.Tensor:
    """The same reduction block by block with torch's own ops."""
    parts, start = [], 0
    for width in widths:
        block = logits[:, start : start + width]
        parts.append(block.logsumexp(1, keepdim=True) if op == "lse" else block.softmax(1))
        start += width
    return torch.cat(parts, dim=1)


def test_one_hot_blocks_operations():
    blocks = OneHotBlocks([2, 1, 3])
    assert (blocks.n_blocks, blocks.n_slots) == (3, 6)
    logits = torch.randn(4, 6, generator=_gen(0))
    assert torch.allclose(blocks.block_sum(blocks.log_softmax(logits).exp()), torch.ones(4, 3), atol=1e-6)
    assert torch.allclose(blocks.block_max(logits)[:, 2], logits[:, 3:].amax(1))
    tie = torch.tensor([[1.0, 1.0, 0.0, 5.0, 5.0, 2.0]])
    assert blocks.argmax_one_hot(tie).tolist() == [[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]]
    idx = torch.tensor([[1, 0, 2], [0, 0, 1]])
    assert torch.equal(blocks.one_hot_to_index(blocks.index_to_one_hot(idx)), idx)
    probs = torch.tensor([[0.7, 0.3, 1.0, 0.1, 0.2, 0.7]]).expand(60_000, -1)
    drawn = blocks.sample(probs * 3.0, torch.rand((60_000, 3), generator=_gen(3)))
    assert np.allclose(drawn.mean(0).numpy(), probs[0].numpy(), atol=0.01)
    never = torch.tensor([[0.0, 1.0, 1.0, 0.0, 2.0, 0.0]])
    assert blocks.sample(never, torch.zeros(1, 3)).tolist() == [[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]
    assert blocks.sample(never, torch.full((1, 3), 0.9999)).tolist() == never.clamp_max(1).tolist()
    with pytest.raises(ConfigError):
        OneHotBlocks([2, 0])


def test_one_hot_blocks_wide_block_without_padding():
    blocks = OneHotBlocks([1000, 2])
    logits = torch.randn(3, 1002, generator=_gen(0))
    ref = torch.cat([torch.log_softmax(logits[:, :1000], 1), torch.log_softmax(logits[:, 1000:], 1)], 1)
    assert torch.allclose(blocks.log_softmax(logits), ref, atol=1e-5)
    assert torch.allclose(blocks.softmax(logits), ref.exp(), atol=1e-6)
    assert torch.allclose(blocks.logsumexp(logits)[:, 0], torch.logsumexp(logits[:, :1000], 1))




# mixed widths out of order: several power-of-two groups, a 1-slot block, a wide block
WIDTHS = [3, 1, 7, 2, 16, 5, 2, 40, 9]


def test_block_reductions_match_torch_per_block():
    blocks = OneHotBlocks(WIDTHS)
    logits = torch.randn(6, sum(WIDTHS), generator=_gen(1)) * 5
    torch.testing.assert_close(blocks.logsumexp(logits), _reference(logits, WIDTHS, "lse"))
    torch.testing.assert_close(blocks.softmax(logits), _reference(logits, WIDTHS, "softmax"))
    maxima = torch.stack([b.amax(1) for b in logits.split(WIDTHS, dim=1)], dim=1)
    assert torch.equal(blocks.block_max(logits), maxima)


@pytest.mark.parametrize("rows", [0, 1, 500])
def test_block_sum_matches_per_block_sums(rows):
    """The CPU's transposed product gives each block's sum, as the direct product would."""
    blocks = OneHotBlocks(WIDTHS)
    values = torch.rand(rows, sum(WIDTHS), generator=_gen(4))
    expected = torch.stack([b.sum(1) for b in values.split(WIDTHS, dim=1)], dim=1)
    got = blocks.block_sum(values)
    assert got.shape == (rows, len(WIDTHS))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, values @ blocks.membership)
    half = blocks.block_sum(values.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, atol=0.1, rtol=0.02)


def test_hand_written_gradients_match_autograd():
    blocks = OneHotBlocks(WIDTHS)
    blocks.membership = blocks.membership.double()
    logits = (torch.randn(4, sum(WIDTHS), generator=_gen(2), dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(blocks.logsumexp, (logits,))
    assert torch.autograd.gradcheck(blocks.softmax, (logits,))
    weights = torch.randn(4, sum(WIDTHS), generator=_gen(3), dtype=torch.float64)
    for ours, op in ((blocks.logsumexp, "lse"), (blocks.softmax, "softmax")):
        mine = torch.autograd.grad((ours(logits) * (weights if op == "softmax" else 1.0)).sum(), logits)[0]
        ref_out = _reference(logits, WIDTHS, op)
        ref = torch.autograd.grad((ref_out * (weights if op == "softmax" else 1.0)).sum(), logits)[0]
        torch.testing.assert_close(mine, ref)


def test_blocks_far_apart_stay_finite():
    """Each block is shifted by its own maximum: a block 1,000 below another is still exact."""
    blocks = OneHotBlocks([2, 3])
    logits = torch.tensor([[0.0, 1.0, -1000.0, -999.0, -1001.0]], requires_grad=True)
    lse = blocks.logsumexp(logits)
    torch.testing.assert_close(lse[0, 1], torch.logsumexp(logits[0, 2:], 0))
    lse.sum().backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(logits.grad.sum(), torch.tensor(2.0))  # each block's softmax sums to 1


def test_cpu_shift_is_the_row_maximum_when_blocks_are_close_else_each_blocks_own():
    """On a CPU one row-wide maximum shifts every block while that keeps each block's sum
    large (blocks within ~40 of each other); rows with a block far below fall back to per-block
    maxima. Both give torch's per-block results."""
    blocks = OneHotBlocks(WIDTHS)
    close = torch.randn(5, sum(WIDTHS), generator=_gen(4)) * 8
    e, sums, shift = blocks._exp_sums(close)
    assert torch.equal(shift, close.amax(1, keepdim=True).expand(-1, len(WIDTHS)))
    torch.testing.assert_close(torch.log(sums) + shift, _reference(close, WIDTHS, "lse"))
    far = close.clone()
    far[2, : WIDTHS[0]] -= 500.0  # one block of one row far below the rest
    e, sums, shift = blocks._exp_sums(far)
    assert torch.equal(shift, blocks.block_max(far))
    torch.testing.assert_close(torch.log(sums) + shift, _reference(far, WIDTHS, "lse"))
    torch.testing.assert_close(blocks.softmax(far), _reference(far, WIDTHS, "softmax"))
