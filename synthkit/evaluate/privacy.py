"""Privacy: does the synthetic data copy, or sit suspiciously close to, the training rows?

Three measures, all on the learned columns in their canonical form (see ``quality``):

- exact copies: the share of synthetic rows equal to some training row (a hash join);
- distance to closest record (DCR): for every synthetic row, the distance to its nearest
  training row, and, when a holdout of unseen real rows is given, to its nearest holdout row;
- DCR share: how often the training row is the closer of the two (0.5 means the generator
  is as close to unseen data as to its training data, i.e. it did not memorise).

The distance is mixed-type Euclidean: numbers and datetimes are scaled to [0, 1] by the real
data's 1st–99th percentile range (clipped), categories and booleans are one-hot with a
mismatch costing 1, and a missing number costs 1 against a present one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from synthkit.evaluate.quality import is_continuous
from synthkit.schema import Column

#: Categories one-hot encoded per column (the most frequent in the real data); the rest share
#: one "other" slot, which can only make distances smaller (the cautious direction).
MAX_ONE_HOT = 50
#: Synthetic rows whose closest-record distances are measured (a seeded sample beyond this):
#: medians and shares over 10,000 rows are exact to about ±0.01, and the cost stays bounded.
MAX_QUERIES = 10_000
#: Distance-matrix entries computed at once in the nearest-neighbour search (float32: 64 MiB).
_BATCH_ELEMENTS = 1 << 24
_TIE = 1e-9
_NULL = "\x00null"


def exact_copy_rate(train: pl.DataFrame, synthetic: pl.DataFrame) -> float:
    """Share of synthetic rows identical to at least one training row (nulls equal nulls)."""
    names = train.columns
    copies = synthetic.join(train.unique(), on=names, how="semi", nulls_equal=True)
    return copies.height / synthetic.height


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


def nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row.

    The search runs in float32 batches (||q||² − 2 q·r + ||r||², bounded memory); the winner's
    distance is then recomputed exactly in float64, so an exact copy measures 0.
    """
    ref_norm = (reference.astype(np.float32) ** 2).sum(axis=1)
    batch = max(1, _BATCH_ELEMENTS // max(len(reference), 1))
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), batch):
        q = queries[start : start + batch]
        nearest = (ref_norm[None, :] - 2.0 * (q @ reference.T)).argmin(axis=1)
        diff = q.astype(np.float64) - reference[nearest].astype(np.float64)
        out[start : start + len(q)] = np.sqrt((diff * diff).sum(axis=1))
    return out


def closer_to_train_share(d_train: np.ndarray, d_holdout: np.ndarray) -> float:
    """Share of rows nearer to train than to holdout; exact ties count one half."""
    tie = np.abs(d_train - d_holdout) <= _TIE
    return float(((d_train < d_holdout) & ~tie).mean() + 0.5 * tie.mean())


def equal_size(
    train: np.ndarray, holdout: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger of train and holdout (rows, seeded) to the smaller one's size."""
    n = min(len(train), len(holdout))
    if len(train) > n:
        train = train[np.sort(rng.choice(len(train), n, replace=False))]
    if len(holdout) > n:
        holdout = holdout[np.sort(rng.choice(len(holdout), n, replace=False))]
    return train, holdout


@dataclass(frozen=True)
class ClosestRecords:
    """Distance-to-closest-record results, with the row counts they were measured on."""

    median: float
    n_train: int
    n_queries: int
    share: float | None = None
    holdout_median: float | None = None
    n_equal: int | None = None
    n_holdout: int | None = None


def closest_records(
    train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame | None,
    columns: Sequence[Column],
    *,
    seed: int,
) -> ClosestRecords:
    """DCR of synthetic rows to train (and holdout): medians and, with a holdout, the share.

    The share compares train and holdout at equal size (the larger one subsampled, seeded),
    so that 0.5 means "no closer to training rows than to unseen ones" whatever the sizes.
    """
    if synthetic.height > MAX_QUERIES:
        synthetic = synthetic.sample(MAX_QUERIES, seed=seed)
    others = [synthetic] + ([holdout] if holdout is not None else [])
    encoder = DistanceEncoder.fit(train, others, columns)
    x_train, x_syn = encoder.transform(train), encoder.transform(synthetic)
    median = float(np.median(nearest_distances(x_syn, x_train)))
    if holdout is None:
        return ClosestRecords(median=median, n_train=len(x_train), n_queries=len(x_syn))
    x_hold = encoder.transform(holdout)
    train_eq, hold_eq = equal_size(x_train, x_hold, np.random.default_rng(seed))
    share = closer_to_train_share(
        nearest_distances(x_syn, train_eq), nearest_distances(x_syn, hold_eq)
    )
    return ClosestRecords(
        median=median,
        n_train=len(x_train),
        n_queries=len(x_syn),
        share=share,
        holdout_median=float(np.median(nearest_distances(x_syn, x_hold))),
        n_equal=len(train_eq),
        n_holdout=len(x_hold),
    )
