"""Privacy: does the synthetic data copy, or sit suspiciously close to, the training rows?

Measures on the learned columns in their canonical form (see ``quality``), with the mixed-type
distance of :mod:`synthkit.evaluate.distance`:

- exact copies: the share of synthetic rows equal to some training row (a hash join);
- distance to closest record (DCR): for every synthetic row, the distance to its nearest
  training row, and, when a holdout of unseen real rows is given, to its nearest holdout row;
- DCR share: how often the training row is the closer of the two (0.5 means the generator
  is as close to unseen data as to its training data, i.e. it did not memorise);
- nearest-neighbour distance ratio (NNDR): nearest over second-nearest training row; near 0
  means a synthetic row points at one real record rather than at a crowd of similar ones.

Membership inference lives in ``attacks``, k-anonymity and anonymeter in ``anonymity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from synthkit.evaluate.distance import DistanceEncoder, nearest_distances, nearest_neighbours
from synthkit.schema import Column

__all__ = [
    "ClosestRecords",
    "DistanceEncoder",
    "closer_to_train_share",
    "closest_records",
    "equal_size",
    "exact_copy_rate",
    "nearest_distances",
    "nn_distance_ratio",
]

#: Synthetic rows whose closest-record distances are measured (a seeded sample beyond this):
#: medians and shares over 10,000 rows are exact to about ±0.01, and the cost stays bounded.
MAX_QUERIES = 10_000
#: Bins of the stored DCR histogram (the HTML report plots it).
DCR_BINS = 30
_TIE = 1e-9


def exact_copy_rate(train: pl.DataFrame, synthetic: pl.DataFrame) -> float:
    """Share of synthetic rows identical to at least one training row (nulls equal nulls)."""
    names = train.columns
    copies = synthetic.join(train.unique(), on=names, how="semi", nulls_equal=True)
    return copies.height / synthetic.height


def nn_distance_ratio(distances: np.ndarray) -> np.ndarray:
    """Nearest over second-nearest distance per row (``distances`` is n × 2, nearest first).

    A row equal to two or more reference rows gets 1: it matches a crowd, not one record.
    """
    d1, d2 = distances[:, 0], distances[:, 1]
    return np.divide(d1, d2, out=np.ones_like(d1), where=d2 > _TIE)


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
    nndr_median: float | None = None
    share: float | None = None
    holdout_median: float | None = None
    holdout_nndr_median: float | None = None
    n_equal: int | None = None
    n_holdout: int | None = None
    distribution: dict[str, Any] | None = None


def closest_records(
    train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame | None,
    columns: Sequence[Column],
    *,
    seed: int,
) -> ClosestRecords:
    """DCR and NNDR of synthetic rows to train (and holdout); with a holdout, the DCR share.

    The share compares train and holdout at equal size (the larger one subsampled, seeded),
    so that 0.5 means "no closer to training rows than to unseen ones" whatever the sizes.
    """
    if synthetic.height > MAX_QUERIES:
        synthetic = synthetic.sample(MAX_QUERIES, seed=seed)
    others = [synthetic] + ([holdout] if holdout is not None else [])
    encoder = DistanceEncoder.fit(train, others, columns)
    x_train, x_syn = encoder.transform(train), encoder.transform(synthetic)
    two = min(2, len(x_train))
    near, _ = nearest_neighbours(x_syn, x_train, k=two)
    d_train = near[:, 0]
    nndr = float(np.median(nn_distance_ratio(near))) if two == 2 else None
    result = {
        "median": float(np.median(d_train)),
        "n_train": len(x_train),
        "n_queries": len(x_syn),
        "nndr_median": nndr,
    }
    if holdout is None:
        return ClosestRecords(**result, distribution=dcr_histogram(d_train, None))
    x_hold = encoder.transform(holdout)
    train_eq, hold_eq = equal_size(x_train, x_hold, np.random.default_rng(seed))
    d_train_eq, d_hold_eq = nearest_distances(x_syn, train_eq), nearest_distances(x_syn, hold_eq)
    if two == 2:
        hold_near, _ = nearest_neighbours(x_hold, x_train, k=2)
        result["holdout_nndr_median"] = float(np.median(nn_distance_ratio(hold_near)))
    return ClosestRecords(
        **result,
        share=closer_to_train_share(d_train_eq, d_hold_eq),
        holdout_median=float(np.median(nearest_distances(x_syn, x_hold))),
        n_equal=len(train_eq),
        n_holdout=len(x_hold),
        distribution=dcr_histogram(d_train_eq, d_hold_eq),
    )


def dcr_histogram(d_train: np.ndarray, d_holdout: np.ndarray | None) -> dict[str, Any]:
    """Shares of synthetic rows per distance bin, to train (and to holdout), with quantiles.

    Bins are shared and span 0 to the larger 99.5th percentile; rows beyond it fall in the last.
    """
    parts = {"train": d_train} | ({"holdout": d_holdout} if d_holdout is not None else {})
    top = max(float(np.quantile(d, 0.995)) for d in parts.values())
    edges = np.linspace(0.0, top if top > 0 else 1.0, DCR_BINS + 1)
    out: dict[str, Any] = {
        "edges": [round(float(e), 6) for e in edges],
        "n": len(d_train),
        "holdout": None,
        "holdout_quantiles": None,
        "holdout_zero_share": None,
    }
    for name, d in parts.items():
        counts = np.bincount(
            np.clip(np.searchsorted(edges, d, side="right") - 1, 0, DCR_BINS - 1),
            minlength=DCR_BINS,
        )
        q = np.quantile(d, [0.01, 0.05, 0.25, 0.5])
        out[name] = [round(float(c), 6) for c in counts / len(d)]
        out[f"{name}_quantiles"] = {
            k: round(float(v), 6) for k, v in zip(("p01", "p05", "p25", "p50"), q, strict=True)
        }
        out[f"{name}_zero_share"] = round(float((d <= _TIE).mean()), 6)
    return out
