"""Bounded-memory sampling in blocks, generated on every CPU thread torch may use.

A sampler's network passes are small matrix products and elementwise ops over a few thousand
rows: torch's intra-op threads split each op and gain little there (a second core made a TVAE
sample about 1.2x faster). :func:`sample_chunks` instead hands whole blocks of rows to
``torch.get_num_threads()`` worker threads, each running its ops on one core, while the calling
thread decodes the blocks already made (on two cores: TVAE and CTGAN about 1.5-1.7x the rows
per second of one). torch releases the GIL inside its ops, so plain Python threads run them in
parallel; the pieces must be large, though (the two halves of a TVAE training step, ~200 small
ops each, ran slower on two threads than the whole step on one: the threads queue for the GIL
between ops). Every block draws from its own generator, seeded from the call's seed and the
block's index, so the rows are the same for a seed however many threads made them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from synthkit.nn.precision import flush_denormals

#: Rows decoded per block (on a GPU, its larger passes): decoding has a fixed cost per call.
DECODE_ROWS = 16_384

Generate = Callable[[int, torch.Generator], torch.Tensor]
Finish = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def sample_chunk_rows(device: torch.device) -> int:
    """Rows a sampler generates per network pass: 4,096 on a CPU (the layers' buffers stay in
    cache: about 1.5x the rows/s of 20,000-row chunks), 65,536 on a GPU (fewer kernel launches)."""
    return 65_536 if device.type == "cuda" else 4_096


#: Most worker threads :func:`sample_chunks` starts (each holds a block in memory).
MAX_THREADS = 8


def sampling_threads(device: torch.device) -> int:
    """Worker threads :func:`sample_chunks` uses: ``torch.get_num_threads()`` on a CPU (set it,
    or ``OMP_NUM_THREADS``, to bound them) up to :data:`MAX_THREADS`, one on a GPU (its
    kernels run in parallel already)."""
    return min(MAX_THREADS, max(1, torch.get_num_threads())) if device.type == "cpu" else 1


def block_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of block ``index`` of a sampling call seeded with ``seed``: independent
    streams per block (``numpy.random.SeedSequence`` mixes the two), fixed by the seed alone."""
    state = np.random.SeedSequence([seed % 2**63, index]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


def sample_chunks(
    n: int,
    device: torch.device,
    generate: Generate,
    finish: Finish | None = None,
    *,
    seed: int,
    threads: int | None = None,
) -> Iterator[np.ndarray]:
    """``n`` generated rows as column-major float32 blocks of up to :data:`DECODE_ROWS` rows,
    in order (each column contiguous). ``generate(k, generator)`` is called for passes of
    :func:`sample_chunk_rows` rows and returns a (k, width) tensor on any device, in any layout
    and float dtype; ``finish(rows, generator)`` (optional) turns a pass's fp32 rows in place
    into what decoding reads: on a CPU it runs on the pass's slice of the block, so a bf16 pass
    is widened to fp32 by the one copy into the block; elsewhere on the device before the copy.

    Both get the block's generator (:func:`block_generator`); ``threads`` (default
    :func:`sampling_threads`) blocks are made at once, each op on one core, and at most one
    more waits to be decoded: memory stays bounded for any ``n``. ``generate`` and ``finish``
    must only read shared state."""
    per_pass = sample_chunk_rows(device)
    per_block = max(per_pass, DECODE_ROWS)
    starts = list(range(0, n, per_block))
    workers = min(sampling_threads(device) if threads is None else threads, len(starts))

    def make(index: int) -> np.ndarray:
        rows = min(per_block, n - starts[index])
        gen = block_generator(seed, index, device)
        block: torch.Tensor | None = None
        with torch.no_grad(), flush_denormals():  # both are per thread
            for done in range(0, rows, per_pass):
                out = generate(min(per_pass, rows - done), gen)
                if finish is not None and out.device.type != "cpu":
                    out = finish(out.float(), gen)
                if block is None:  # (width, rows): its transpose is the column-major block
                    block = torch.empty((out.shape[1], rows), dtype=torch.float32)
                dest = block[:, done : done + out.shape[0]]
                dest.copy_(out.t())
                if finish is not None and out.device.type == "cpu":
                    finish(dest.t(), gen)
        assert block is not None
        return block.numpy().T

    if workers <= 1:
        for index in range(len(starts)):
            yield make(index)
        return
    with _ops_on_one_core(), ThreadPoolExecutor(workers, initializer=_one_core) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        try:
            for index in range(len(starts)):
                pending.append(pool.submit(make, index))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an early stop: the blocks not started are dropped
            for future in pending:
                future.cancel()



def _one_core() -> None:
    """In a worker thread: its torch (and oneDNN, MKL) ops run on that thread alone."""
    torch.set_num_threads(1)


@contextmanager
def _ops_on_one_core() -> Iterator[None]:
    """torch's thread count is also a process-wide default that new threads adopt: one core
    for the calling thread (and the workers) inside, the count before restored on leaving."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
