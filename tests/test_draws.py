"""synthkit.nn.draws: 16-bit inverse transform draws of normal and Gumbel values, and fair coins
from the bits of 64-bit draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from synthkit.nn.draws import _uniform_indices, coin_draws, gumbel_draws, normal_draws


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_indices_are_uniform_over_all_16_bits():
    idx = _uniform_indices(400_003, _gen(), torch.device("cpu"))
    assert idx.shape == (400_003,) and idx.dtype == torch.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < 65536
    # every bit of every 16-bit lane is a fair coin (a biased top bit would shift the mean)
    lanes = idx[:400_000].view(-1, 4).long()
    for bit in (0, 8, 15):
        freq = ((lanes >> bit) & 1).double().mean(0)
        assert torch.all((freq - 0.5).abs() < 0.006), (bit, freq)
    counts = torch.bincount(idx.long() >> 8, minlength=256).numpy()
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_normal_draws_follow_the_standard_normal(dtype):
    x = normal_draws((2000, 128), _gen(), "cpu", dtype)
    assert x.shape == (2000, 128) and x.dtype == dtype
    v = x.double().flatten()
    assert abs(float(v.mean())) < 0.01 and abs(float(v.var()) - 1.0) < 0.01
    assert stats.kstest(v[:100_000].numpy(), "norm").pvalue > 1e-3
    assert 4.2 < float(v.abs().max()) < 4.4  # truncated at the outermost quantile, 4.33
    # columns are independent: no correlation between neighbouring codes
    assert abs(float(np.corrcoef(v.view(2000, 128)[:, 0], v.view(2000, 128)[:, 1])[0, 1])) < 0.08


@pytest.mark.parametrize("rows", [50, 4096])  # 4,096 x 128 values: words from a seeded SFC64
def test_draws_are_reproducible_from_the_generator_seed(rows):
    assert torch.equal(normal_draws((rows, 128), _gen(3), "cpu"), normal_draws((rows, 128), _gen(3), "cpu"))
    assert not torch.equal(normal_draws((rows, 128), _gen(3), "cpu"),
                           normal_draws((rows, 128), _gen(4), "cpu"))
    gen = _gen(6)
    assert not torch.equal(normal_draws((rows, 128), gen, "cpu"), normal_draws((rows, 128), gen, "cpu"))
    assert torch.equal(normal_draws((50, 7), _gen(3), "cpu"), normal_draws((50, 7), _gen(3), "cpu"))
    assert not torch.equal(normal_draws((50, 7), _gen(3), "cpu"), normal_draws((50, 7), _gen(4), "cpu"))
    gen = _gen(5)
    first, second = gumbel_draws((9, 11), gen, "cpu"), gumbel_draws((9, 11), gen, "cpu")
    assert not torch.equal(first, second)  # the generator advances


def test_gumbel_draws_have_gumbel_moments():
    g = gumbel_draws((500_000,), _gen(1), "cpu").double()
    assert abs(float(g.mean()) - 0.5772157) < 0.01
    assert abs(float(g.var()) - math.pi**2 / 6) < 0.02
    assert float(g.min()) > -2.5 and float(g.max()) < 11.9


def test_gumbel_max_with_the_draws_samples_the_softmax():
    logits = torch.tensor([2.0, 0.5, 0.0, -1.0, -4.0])
    n = 200_000
    noisy = logits[None, :] + gumbel_draws((n, 5), _gen(2), "cpu")
    counts = torch.bincount(noisy.argmax(1), minlength=5).numpy()
    expected = torch.softmax(logits, 0).double().numpy() * n
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_coin_draws_are_fair_independent_coins(dtype):
    """Each value is one bit of a 64-bit draw: 0 or ``high`` with equal odds, every bit position
    as fair as any other, neighbours uncorrelated; a shape whose size is not a multiple of 64
    uses a prefix of the bits."""
    x = coin_draws((1003, 257), _gen(), "cpu", dtype, high=2.0)
    assert x.shape == (1003, 257) and x.dtype == dtype
    assert set(torch.unique(x).tolist()) == {0.0, 2.0}
    flat = (x.flatten()[: 257_664] > 0).double()
    assert abs(float(flat.mean()) - 0.5) < 0.005
    by_bit = flat.view(-1, 64).mean(0)  # position within each 64-bit word
    assert torch.all((by_bit - 0.5).abs() < 0.04), by_bit  # 5 sd of 4,026 coins
    assert abs(float(np.corrcoef(flat[:-1].numpy(), flat[1:].numpy())[0, 1])) < 0.01
    gen = _gen(7)
    first, second = coin_draws((5, 9), gen, "cpu"), coin_draws((5, 9), gen, "cpu")
    assert torch.equal(first, coin_draws((5, 9), _gen(7), "cpu")) and not torch.equal(first, second)
    assert coin_draws((0, 4), _gen(), "cpu").shape == (0, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_are_exact_randn_and_gumbel():
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = normal_draws((1000, 64), gen, "cuda", torch.bfloat16)
    assert x.device.type == "cuda" and x.dtype == torch.bfloat16
    g = gumbel_draws((100_000,), gen, "cuda").double()
    assert abs(float(g.mean()) - 0.5772157) < 0.02
