"""Bounded-memory sampling in blocks, generated on every CPU thread torch may use.

A sampler's network passes are small matrix products and elementwise ops over a few thousand
rows: torch's intra-op threads split each op and gain little there (a second core made a TVAE
sample about 1.2x faster). :func:`sample_chunks` instead hands whole blocks of rows to
``torch.get_num_threads()`` worker threads, each running its ops on one core, while the calling
thread decodes the blocks already made (on two cores: TVAE 1.2-1.35x and CTGAN 1.55-1.8x the
rows per second of one). torch releases the GIL inside its ops, so plain Python threads run
them in parallel; the pieces must be large, though (the two halves of a TVAE training step,
~200 small ops each, ran slower on two threads than the whole step on one: the threads queue
for the GIL between ops). Every block draws from its own generator, seeded from the call's
seed and the block's index, so the rows are the same for a seed however many threads made them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch

from synthkit.nn.precision import flush_denormals

#: Rows decoded per block where the width is not known, and the fewest where it is (on a GPU,
#: its larger passes): decoding has a fixed cost per call.
DECODE_ROWS = 16_384
#: Where the width is known, blocks hold about this many bytes (fp32), up to
#: :data:`MAX_DECODE_ROWS` rows: a narrow table's blocks are larger, so decoding's fixed costs
#: (Python per column, a polars series per column) spread over more rows, while the blocks in
#: flight (the one decoded, one per worker) stay within a shared L3 cache. On the 2-core AMD box
#: TVAE sampled diamonds (101 encoded columns) at ~1.2 M rows/s in 40,960-row blocks against
#: ~1.05 M in 16,384-row ones, wage (60) 1.29-1.37 M against 1.20-1.25 M; 65,536-row blocks
#: (26 MB for diamonds) were slower again.
DECODE_BYTES = 16 * 2**20
MAX_DECODE_ROWS = 40_960

Generate = Callable[[int, torch.Generator], torch.Tensor]
Finish = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def sample_chunk_rows(device: torch.device) -> int:
    """Rows a sampler generates per network pass: 4,096 on a CPU (the layers' buffers stay in
    cache: about 1.5x the rows/s of 20,000-row chunks), 65,536 on a GPU (fewer kernel launches)."""
    return 65_536 if device.type == "cuda" else 4_096


#: Most worker threads :func:`sample_chunks` starts.
MAX_THREADS = 8
#: Blocks at least this large hand the memory their worker freed back to the OS (see
#: ``_trim_heap``); below it what a thread's heap keeps is small, and trimming after every
#: block cost a fifth of the rate (pages freed to the OS fault back in).
TRIM_BYTES = 32 * 2**20
#: Memory the blocks made while one is decoded may take: fewer run at once where blocks are wide
#: (a 16,384-row block of a table encoded 2,000 columns wide is 131 MB), and a block over it is
#: made only after the one before was decoded (no overlap, as on one thread).
AHEAD_BYTES = 256 * 2**20


def decode_rows(width: int | None, per_pass: int) -> int:
    """Rows per block of :func:`sample_chunks`: :data:`DECODE_ROWS` for an unknown width, else
    about :data:`DECODE_BYTES` of fp32 rows between :data:`DECODE_ROWS` and
    :data:`MAX_DECODE_ROWS`; a whole number of passes of ``per_pass`` rows, at least one."""
    rows = DECODE_ROWS
    if width is not None:
        rows = min(MAX_DECODE_ROWS, max(DECODE_ROWS, DECODE_BYTES // (4 * max(width, 1))))
    return max(per_pass, rows // per_pass * per_pass)


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
    width: int | None = None,
) -> Iterator[np.ndarray]:
    """``n`` generated rows as column-major float32 blocks of up to :func:`decode_rows` rows,
    in order (each column contiguous). ``generate(k, generator)`` is called for passes of
    :func:`sample_chunk_rows` rows and returns a (k, width) tensor on any device, in any layout
    and float dtype; ``finish(rows, generator)`` (optional) turns a pass's fp32 rows in place
    into what decoding reads: on a CPU it runs on the pass's slice of the block, so a bf16 pass
    is widened to fp32 by the one copy into the block; elsewhere on the device before the copy.

    Both get the block's generator (:func:`block_generator`); up to ``threads`` (default
    :func:`sampling_threads`) blocks are made at once, each op on one core, while the caller
    decodes the block before them; the blocks made meanwhile take at most :data:`AHEAD_BYTES`
    (wider blocks are made one after another), so memory stays bounded for any ``n``.
    ``width``, the columns ``generate`` returns, if the caller knows it: blocks are sized for
    it, and the workers all start at once (otherwise the first block is made alone, to learn
    its size). The rows follow from ``seed`` and the block size, whatever ``threads``.
    ``generate`` and ``finish`` must only read shared state."""
    per_pass = sample_chunk_rows(device)
    per_block = decode_rows(width, per_pass)
    count = -(-n // per_block)  # blocks, the last one possibly shorter
    workers = min(sampling_threads(device) if threads is None else threads, count)

    def make(index: int) -> np.ndarray:
        rows = min(per_block, n - index * per_block)
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
        if workers > 1 and block.nbytes >= TRIM_BYTES:
            _trim_heap()
        return block.numpy().T

    if workers <= 1:
        for index in range(count):
            yield make(index)
        return

    def budget(block_bytes: int) -> int:  # blocks made while one is decoded
        return min(workers + 1, AHEAD_BYTES // max(block_bytes, 1))

    with _ops_on_one_core(), ThreadPoolExecutor(workers, initializer=_one_core) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        # one until a block's size is known (0: blocks over the budget, made in turn)
        ahead = 1 if width is None else budget(4 * width * min(per_block, n))
        following = 0

        def top_up(limit: int) -> None:
            nonlocal following
            while following < count and len(pending) < limit:
                pending.append(pool.submit(make, following))
                following += 1

        try:
            top_up(max(ahead, 1))
            while pending:
                block = pending.popleft().result()
                if following == 1 and width is None:  # the first block: as many as the budget holds
                    ahead = budget(block.nbytes)
                top_up(ahead)  # the workers make the next blocks while this one is decoded
                yield block
                top_up(1)  # blocks over the budget (ahead 0): the next after this one, in turn
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


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def _trim_heap() -> None:
    """Hand the memory freed in this thread back to the OS. glibc gives every thread that
    allocates its own heap (arena) and keeps what is freed there for reuse: a worker's passes
    left each arena holding their high-water mark, and sampling 1,000,000 rows of the loans
    CTGAN peaked at 2.5 GB resident on two workers against 1.3 GB on one thread (1.6 GB with
    ``MALLOC_ARENA_MAX=1``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
