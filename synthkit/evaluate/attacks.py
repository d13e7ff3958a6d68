"""Membership inference: can an attacker holding the synthetic data tell training rows from unseen ones?

Two attacks, each scoring candidate real rows (members: training rows; non-members: holdout
rows the generator never saw) and reported as the ROC AUC of members against non-members
(0.5: no better than a coin; 1: every training row recognised):

- distance: a row is guessed a member the closer the nearest synthetic row sits to it
  (score = −DCR). It catches generators that reproduce or hug their training rows.
- density (after DOMIAS, van Breugel et al., 2023): a row is guessed a member the more the
  synthetic data's density at it exceeds the real data's density there (score = log p_synth −
  log p_reference, both Gaussian kernel density estimates in the mixed-type distance space,
  the reference fitted on half of the holdout). Dividing by the reference density keeps
  naturally dense regions from looking like memorisation, so local overfitting stands out.

Candidates are taken at equal numbers (seeded), so 0.5 is the no-leak value whatever the sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import rankdata

from synthkit.evaluate.distance import (
    DistanceEncoder,
    leave_one_out_nearest,
    nearest_distances,
    squared_distance_blocks,
)
from synthkit.schema import Column

#: Most members (and as many non-members) attacked: the AUC is then known to about ±0.01.
MAX_CANDIDATES = 5_000
#: Most synthetic rows the attacker's density and distances use (a seeded sample beyond this).
MAX_SYNTHETIC = 10_000
#: Rows used to pick a kernel bandwidth (median leave-one-out nearest-neighbour distance).
_BANDWIDTH_ROWS = 2_000
#: The density attack needs at least this many holdout rows (half reference, half non-members).
MIN_DENSITY_HOLDOUT = 4
_TINY = 1e-6


@dataclass(frozen=True)
class MembershipInference:
    """Both attacks' AUCs and what they were measured on."""

    distance_auc: float
    n_members: int
    n_non_members: int
    n_synthetic: int
    density_auc: float | None = None
    n_density: int | None = None
    n_reference: int | None = None
    bandwidths: tuple[float, float] | None = None

    @property
    def auc(self) -> float:
        """The stronger attack's AUC: what a capable attacker achieves."""
        return max(self.distance_auc, self.density_auc or 0.0)


def roc_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """ROC AUC of member scores against non-member scores; ties count one half (Mann–Whitney)."""
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError("need at least one member and one non-member score")
    ranks = rankdata(np.concatenate([members, non_members]))
    n1, n0 = len(members), len(non_members)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def distance_scores(candidates: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Membership score per candidate row: minus its distance to the closest synthetic row."""
    return -nearest_distances(candidates, synthetic)


def kde_bandwidth(rows: np.ndarray, rng: np.random.Generator) -> float:
    """Kernel width for ``rows``: the median distance from a row to its nearest other row.

    It adapts to how crowded the data is, so the kernel looks at each row's neighbourhood (where
    memorisation shows) rather than at the whole table. Falls back to the median positive distance
    when most rows have a twin, and to 1 (one category mismatch) when all rows are equal.
    """
    if len(rows) > _BANDWIDTH_ROWS:
        rows = rows[rng.choice(len(rows), _BANDWIDTH_ROWS, replace=False)]
    nearest = leave_one_out_nearest(rows)
    width = float(np.median(nearest))
    if width > _TINY:
        return width
    positive = nearest[nearest > _TINY]
    return float(np.median(positive)) if positive.size else 1.0


def kernel_log_density(queries: np.ndarray, reference: np.ndarray, bandwidth: float) -> np.ndarray:
    """Log of the Gaussian kernel density of ``reference`` at each query row (up to a constant).

    Computed in bounded-memory blocks with a stable log-sum-exp; the constant (kernel
    normalisation) is the same for every query, so rankings and AUCs do not depend on it.
    """
    out = np.empty(len(queries), dtype=np.float64)
    scale = -0.5 / (bandwidth * bandwidth)
    for start, block in squared_distance_blocks(queries, reference):
        block *= scale
        top = block.max(axis=1)
        block -= top[:, None]
        np.exp(block, out=block)
        total = block.sum(axis=1, dtype=np.float64)
        out[start : start + len(block)] = np.log(total) + top - np.log(len(reference))
    return out


def density_scores(
    candidates: np.ndarray,
    synthetic: np.ndarray,
    reference: np.ndarray,
    bandwidths: tuple[float, float],
) -> np.ndarray:
    """Membership score per candidate: log synthetic density minus log reference density."""
    return kernel_log_density(candidates, synthetic, bandwidths[0]) - kernel_log_density(
        candidates, reference, bandwidths[1]
    )


def _take(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return rows[np.sort(rng.choice(len(rows), n, replace=False))]


def membership_inference(
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    synthetic: pl.DataFrame,
    columns: Sequence[Column],
    *,
    seed: int,
) -> MembershipInference:
    """Run both attacks (canonical frames in, AUCs out); seeded, so it reproduces exactly.

    Needs at least one training and one holdout row; the density attack needs
    ``MIN_DENSITY_HOLDOUT`` holdout rows and at least two synthetic rows, and is skipped below.
    """
    if train.height < 1 or holdout.height < 1 or synthetic.height < 1:
        raise ValueError("membership inference needs training, holdout and synthetic rows")
    rng = np.random.default_rng(seed)
    encoder = DistanceEncoder.fit(train, [synthetic, holdout], columns)
    x_train, x_hold = encoder.transform(train), encoder.transform(holdout)
    x_syn = _take(encoder.transform(synthetic), MAX_SYNTHETIC, rng)

    n = min(len(x_train), len(x_hold), MAX_CANDIDATES)
    members, non_members = _take(x_train, n, rng), _take(x_hold, n, rng)
    distance_auc = roc_auc(distance_scores(members, x_syn), distance_scores(non_members, x_syn))
    result = MembershipInference(
        distance_auc=distance_auc, n_members=n, n_non_members=n, n_synthetic=len(x_syn)
    )
    if len(x_hold) < MIN_DENSITY_HOLDOUT or len(x_syn) < 2:
        return result

    shuffled = x_hold[rng.permutation(len(x_hold))]
    half = len(shuffled) // 2
    reference, others = shuffled[:half], shuffled[half:]
    m = min(len(others), len(x_train), MAX_CANDIDATES)
    d_members, d_non_members = _take(x_train, m, rng), _take(others, m, rng)
    bandwidths = (kde_bandwidth(x_syn, rng), kde_bandwidth(reference, rng))
    density_auc = roc_auc(
        density_scores(d_members, x_syn, reference, bandwidths),
        density_scores(d_non_members, x_syn, reference, bandwidths),
    )
    return MembershipInference(
        distance_auc=distance_auc,
        n_members=n,
        n_non_members=n,
        n_synthetic=len(x_syn),
        density_auc=density_auc,
        n_density=m,
        n_reference=len(reference),
        bandwidths=bandwidths,
    )
