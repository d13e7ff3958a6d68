"""Mixed-type row distance and nearest-neighbour search, shared by every privacy measure.

Rows become float32 vectors whose Euclidean distance is the mixed-type distance: numbers and
datetimes are scaled to [0, 1] by the real data's 1st–99th percentile range (clipped),
categories and booleans are one-hot with a mismatch costing 1, and a missing number costs 1
against a present one. Searches run in blocks of at most ``BATCH_ELEMENTS`` distances, so a
50,000 × 50,000 search needs tens of megabytes, not ten gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from synthkit.evaluate.quality import is_continuous
from synthkit.schema import Column

#: Categories one-hot encoded per column (the most frequent in the real data); the rest share
#: one "other" slot, which can only make distances smaller (the cautious direction).
MAX_ONE_HOT = 50
#: Distance-matrix entries computed at once in a search (float32: 64 MiB).
BATCH_ELEMENTS = 1 << 24
_NULL = "\x00null"
_REPEATED_ARGMIN = 3


@dataclass(frozen=True)
class DistanceEncoder:
    """Turns rows into vectors whose Euclidean distance is the mixed-type row distance."""

    columns: tuple[Column, ...]
    lows: dict[str, float]
    spans: dict[str, float]
    with_null_flag: frozenset[str]
    slots: dict[str, dict[str, int]]

    @classmethod
    def fit(
        cls, real: pl.DataFrame, others: Sequence[pl.DataFrame], columns: Sequence[Column]
    ) -> DistanceEncoder:
        """Learn scales and category slots from ``real``; null flags from every frame."""
        lows, spans, slots, flags = {}, {}, {}, set()
        for col in columns:
            r = real.get_column(col.name)
            if is_continuous(col):
                x = r.drop_nulls().to_numpy()
                lo, hi = np.quantile(x, [0.01, 0.99]) if x.size else (0.0, 1.0)
                if hi <= lo and x.size:
                    lo, hi = float(x.min()), float(x.max())
                lows[col.name], spans[col.name] = float(lo), float(hi - lo) if hi > lo else 1.0
                if any(f.get_column(col.name).null_count() for f in (real, *others)):
                    flags.add(col.name)
            else:
                counts = (
                    r.fill_null(_NULL)
                    .value_counts(name="n")
                    .sort(["n", col.name], descending=[True, False])
                    .head(MAX_ONE_HOT)
                )
                labels = counts.get_column(col.name).to_list()
                slots[col.name] = {label: i for i, label in enumerate(labels)}
        return cls(tuple(columns), lows, spans, frozenset(flags), slots)

    @property
    def width(self) -> int:
        """Length of an encoded row."""
        n = 0
        for col in self.columns:
            if is_continuous(col):
                n += 1 + (col.name in self.with_null_flag)
            else:
                n += len(self.slots[col.name]) + 1
        return n

    def transform(self, df: pl.DataFrame) -> np.ndarray:
        """Encode ``df`` (canonical form) as a float32 matrix, one row per row."""
        out = np.zeros((df.height, self.width), dtype=np.float32)
        rows = np.arange(df.height)
        at = 0
        for col in self.columns:
            s = df.get_column(col.name)
            if is_continuous(col):
                x = s.to_numpy().astype(np.float64)
                missing = np.isnan(x)
                scaled = np.clip((x - self.lows[col.name]) / self.spans[col.name], 0.0, 1.0)
                out[:, at] = np.where(missing, 0.0, scaled)
                at += 1
                if col.name in self.with_null_flag:
                    out[:, at] = missing
                    at += 1
            else:
                slots = self.slots[col.name]
                code = (
                    s.fill_null(_NULL)
                    .replace_strict(slots, default=len(slots), return_dtype=pl.Int64)
                    .to_numpy()
                )
                out[rows, at + code] = np.sqrt(0.5)
                at += len(slots) + 1
        return out


def squared_distance_blocks(
    queries: np.ndarray, reference: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)``: squared distances of query rows ``start:`` to every reference row.

    Blocks hold at most ``BATCH_ELEMENTS`` float32 entries (||q||² − 2 q·r + ||r||², clipped at 0).
    """
    q_all = np.ascontiguousarray(queries, dtype=np.float32)
    ref = np.ascontiguousarray(reference, dtype=np.float32)
    ref_norm = (ref * ref).sum(axis=1)
    # Rows per block: bounded by the block itself and by the float64 re-check of winners.
    step = max(1, BATCH_ELEMENTS // max(len(ref), 8 * ref.shape[1], 1))
    for start in range(0, len(q_all), step):
        q = q_all[start : start + step]
        block = q @ ref.T
        block *= -2.0
        block += ref_norm[None, :]
        block += (q * q).sum(axis=1)[:, None]
        np.maximum(block, 0.0, out=block)
        yield start, block


def nearest_neighbours(
    queries: np.ndarray, reference: np.ndarray, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (float64) and indices of each query row's ``k`` nearest reference rows, nearest first.

    The search runs in float32 blocks; the winners' distances are then recomputed exactly in
    float64, so an exact copy measures 0.
    """
    if not 1 <= k <= len(reference):
        raise ValueError(f"k must be between 1 and the {len(reference)} reference rows, got {k}")
    distance = np.empty((len(queries), k), dtype=np.float64)
    index = np.empty((len(queries), k), dtype=np.int64)
    for start, block in squared_distance_blocks(queries, reference):
        rows = np.arange(len(block))[:, None]
        if k <= _REPEATED_ARGMIN:  # k passes of argmin beat a partition for small k
            picks = []
            for _ in range(k):
                picks.append(block.argmin(axis=1))
                block[rows[:, 0], picks[-1]] = np.inf
            nearest = np.stack(picks, axis=1)
        else:
            nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
        q = queries[start : start + len(block), None, :].astype(np.float64)
        diff = q - reference[nearest].astype(np.float64)
        exact = np.sqrt((diff * diff).sum(axis=2))
        # Exact distances put float32's near-ties in the right order.
        order = np.argsort(exact, axis=1, kind="stable")
        distance[start : start + len(block)] = exact[rows, order]
        index[start : start + len(block)] = nearest[rows, order]
    return distance, index


def nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row (float64)."""
    return nearest_neighbours(queries, reference, k=1)[0][:, 0]


def leave_one_out_nearest(rows: np.ndarray) -> np.ndarray:
    """Each row's distance to its nearest *other* row of the same set (float64)."""
    if len(rows) < 2:
        raise ValueError("need at least two rows")
    distance, index = nearest_neighbours(rows, rows, k=2)
    # A row's nearest hit is itself unless an identical twin came first: either way the other
    # slot holds the nearest other row (twins measure 0, as they should).
    itself = index[:, 0] == np.arange(len(rows))
    return np.where(itself, distance[:, 1], distance[:, 0])
