"""Sampling in blocks (synthkit.nn.chunks): bounded, in order, the same rows for a seed on any
number of threads, errors and early stops handled, torch's thread count restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import synthkit as sk
from synthkit.nn.chunks import (
    DECODE_ROWS,
    block_generator,
    decode_rows,
    sample_chunk_rows,
    sample_chunks,
    sampling_threads,
)

CPU = torch.device("cpu")


@pytest.fixture
def torch_threads():
    """Set torch's thread count inside a test; the count before is restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _random_rows(calls: list[int] | None = None):
    def generate(k: int, gen: torch.Generator) -> torch.Tensor:
        if calls is not None:
            calls.append(k)
        return torch.rand(k, 3, generator=gen)

    return generate


@pytest.mark.parametrize("threads", [1, 3])
def test_blocks_are_bounded_column_major_and_in_order(threads):
    calls: list[int] = []
    n = 2 * DECODE_ROWS + 1000
    blocks = list(sample_chunks(n, CPU, _random_rows(calls), seed=7, threads=threads))
    assert [b.shape for b in blocks] == [(DECODE_ROWS, 3), (DECODE_ROWS, 3), (1000, 3)]
    assert all(b.flags.f_contiguous and b.dtype == np.float32 for b in blocks)
    assert max(calls) <= sample_chunk_rows(CPU) and sum(calls) == n
    # block i holds the draws of block i's own generator, pass after pass
    for i, block in enumerate(blocks):
        gen = block_generator(7, i, CPU)
        expected = torch.cat([torch.rand(k, 3, generator=gen)
                              for k in _passes(block.shape[0])]).numpy()
        assert np.array_equal(block, expected)
    assert list(sample_chunks(0, CPU, _random_rows(), seed=7, threads=threads)) == []


def _passes(rows: int) -> list[int]:
    step = sample_chunk_rows(CPU)
    return [min(step, rows - done) for done in range(0, rows, step)]


def test_the_rows_of_a_seed_do_not_depend_on_the_threads():
    n = 5 * DECODE_ROWS + 17
    one = np.concatenate(list(sample_chunks(n, CPU, _random_rows(), seed=3, threads=1)))
    for threads in (2, 4):
        many = np.concatenate(list(sample_chunks(n, CPU, _random_rows(), seed=3, threads=threads)))
        assert np.array_equal(one, many)
    other = np.concatenate(list(sample_chunks(n, CPU, _random_rows(), seed=4, threads=2)))
    assert not np.array_equal(one, other)
    # blocks of one call draw independent streams
    first, second = (block_generator(3, i, CPU) for i in (0, 1))
    assert not torch.equal(torch.rand(8, generator=first), torch.rand(8, generator=second))


def test_finish_runs_in_place_on_the_block_and_widens_bf16():
    """``finish`` sees each pass's rows as fp32 (a bf16 pass widened by the copy into the block)
    with the block's generator, and its in-place work is what decoding gets."""
    passes: list[torch.Tensor] = []
    seen: list[tuple[torch.dtype, int]] = []

    def generate(k: int, gen: torch.Generator) -> torch.Tensor:
        out = torch.randn(k, 5, generator=gen).to(torch.bfloat16)
        passes.append(out.float())
        return out

    def finish(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seen.append((rows.dtype, rows.shape[0]))
        rows[:, 1].tanh_()
        rows[:, 3].add_(torch.rand(rows.shape[0], generator=gen))
        return rows

    n = sample_chunk_rows(CPU) + 300
    (block,) = list(sample_chunks(n, CPU, generate, finish, seed=0, threads=1))
    gen = block_generator(0, 0, CPU)
    expected = []
    for k in _passes(n):
        rows = torch.randn(k, 5, generator=gen).to(torch.bfloat16).float()
        rows[:, 1].tanh_()
        rows[:, 3].add_(torch.rand(k, generator=gen))
        expected.append(rows)
    assert seen == [(torch.float32, sample_chunk_rows(CPU)), (torch.float32, 300)]
    assert block.flags.f_contiguous and block.dtype == np.float32
    assert np.array_equal(block, torch.cat(expected).numpy())


def test_workers_run_on_one_core_each_and_the_thread_count_comes_back(torch_threads):
    torch_threads(2)
    assert sampling_threads(CPU) == 2
    inside: list[int] = []

    def generate(k: int, gen: torch.Generator) -> torch.Tensor:
        inside.append(torch.get_num_threads())
        return torch.rand(k, 2, generator=gen)

    blocks = list(sample_chunks(3 * DECODE_ROWS, CPU, generate, seed=1))
    assert len(blocks) == 3 and set(inside) == {1}
    assert torch.get_num_threads() == 2


def test_an_error_in_a_worker_reaches_the_caller_and_an_early_stop_ends_cleanly(torch_threads):
    torch_threads(2)
    calls: list[int] = []

    def failing(k: int, gen: torch.Generator) -> torch.Tensor:
        calls.append(k)
        if len(calls) > 5:
            raise ValueError("broken pass")
        return torch.rand(k, 2, generator=gen)

    with pytest.raises(ValueError, match="broken pass"):
        list(sample_chunks(20 * DECODE_ROWS, CPU, failing, seed=1))
    assert torch.get_num_threads() == 2
    calls.clear()
    stream = sample_chunks(50 * DECODE_ROWS, CPU, _random_rows(calls), seed=1)
    assert next(stream).shape == (DECODE_ROWS, 3)
    stream.close()  # the blocks not started are dropped: memory and work stay bounded
    passes_per_block = len(_passes(DECODE_ROWS))
    assert len(calls) <= 4 * passes_per_block
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("family", ["tvae", "ctgan"])
def test_a_seeded_sample_is_the_same_on_one_thread_or_two(wage_small, torch_threads, family):
    fast = {"epochs": 2, "batch_size": 100, "progress": False, "seed": 0}
    if family == "ctgan":
        fast |= {"pac": 10, "embedding_dim": 32, "generator_dim": (64,), "discriminator_dim": (64,)}
    torch_threads(1)
    gen = sk.create(f"tabular/{family}", **fast).fit(wage_small)
    one = gen.sample(3 * DECODE_ROWS + 5, seed=11)
    torch_threads(2)
    two = gen.sample(3 * DECODE_ROWS + 5, seed=11)
    assert one.equals(two)
    assert not one.equals(gen.sample(3 * DECODE_ROWS + 5, seed=12))


@pytest.mark.parametrize("width", [None, 3])
def test_wide_blocks_are_made_fewer_at_a_time(monkeypatch, width):
    """Blocks made while one is decoded stay within chunks.AHEAD_BYTES; a block over it is made
    only after the one before was handed over: wide tables keep their memory bound on
    machines with many threads, whether or not the caller names the width."""
    import time

    import synthkit.nn.chunks as chunks

    rows = decode_rows(width, sample_chunk_rows(CPU))  # a block's
    block_bytes = rows * 3 * 4
    for budget, most in ((block_bytes, 2), (block_bytes - 1, 1)):
        monkeypatch.setattr(chunks, "AHEAD_BYTES", budget)
        calls: list[int] = []
        stream = sample_chunks(10 * rows, CPU, _random_rows(calls), seed=0, threads=4,
                               width=width)
        next(stream)
        time.sleep(0.2)  # the workers would have started more by now
        assert sum(calls) <= most * rows
        assert len(list(stream)) == 9 and sum(calls) == 10 * rows


def test_blocks_are_sized_for_a_known_width():
    """About DECODE_BYTES a block for a known width, within [DECODE_ROWS, MAX_DECODE_ROWS] and
    in whole passes; DECODE_ROWS for an unknown one; a GPU's pass when that is larger."""
    from synthkit.nn.chunks import DECODE_BYTES, MAX_DECODE_ROWS

    step = sample_chunk_rows(CPU)
    assert decode_rows(None, step) == DECODE_ROWS
    assert decode_rows(3, step) == MAX_DECODE_ROWS  # narrow: the most rows
    assert decode_rows(10_000, step) == DECODE_ROWS  # wide: the fewest
    rows = decode_rows(101, step)  # diamonds' TVAE encoding
    assert rows % step == 0 and rows * 101 * 4 <= DECODE_BYTES < (rows + step) * 101 * 4
    assert decode_rows(101, 65_536) == 65_536
    blocks = list(sample_chunks(MAX_DECODE_ROWS + 5, CPU, _random_rows([]), seed=2, width=3))
    assert [b.shape for b in blocks] == [(MAX_DECODE_ROWS, 3), (5, 3)]


def test_a_known_width_starts_every_worker_at_once(monkeypatch):
    """Told the width, the workers start on the first blocks together (not on the first one
    alone, which a caller that does not know the width waits for); with blocks of the same
    size, the rows are the same."""
    import threading
    import time

    import synthkit.nn.chunks as chunks

    monkeypatch.setattr(chunks, "MAX_DECODE_ROWS", DECODE_ROWS)  # the same blocks either way

    lock, active = threading.Lock(), [0]
    entered: list[int] = []  # blocks being made as each pass starts

    def generate(k: int, gen: torch.Generator) -> torch.Tensor:
        with lock:
            active[0] += 1
            entered.append(active[0])
        time.sleep(0.05)  # a block takes 0.2 s: the other worker starts well within it
        with lock:
            active[0] -= 1
        return torch.rand(k, 3, generator=gen)

    n, passes = 3 * DECODE_ROWS, DECODE_ROWS // sample_chunk_rows(CPU)  # passes of a block
    known = list(sample_chunks(n, CPU, generate, seed=4, threads=3, width=3))
    assert max(entered[:passes]) >= 2  # another block was made alongside the first one
    entered.clear()
    unknown = list(sample_chunks(n, CPU, generate, seed=4, threads=3))
    assert max(entered[:passes]) == 1  # the first block alone, to learn its size
    assert all(np.array_equal(a, b) for a, b in zip(known, unknown, strict=True))
