"""Differentially private facts about columns: the data-dependent part of an encoding, made honest.

A neural generator's encoding reads the data: numerical bounds and quantiles, category sets. Under
differential privacy those facts leak unless they are declared public (``Column.public_bounds``
with ``min``/``max``; ``Column.categories``) or estimated with noise that spends budget. This
module does the estimating, in three rounds of noisy histograms (the Gaussian mechanism), all
accounted together in zero-concentrated DP (zCDP, Bun and Steinke 2016):

1. **bounds**: a histogram over signed powers of two (data-independent buckets) per numerical
   column with undeclared bounds; the outermost buckets whose noisy count clears a threshold
   give coarse bounds. Category counts of undeclared categorical columns go in the same round;
   a category is kept only if its noisy count clears ``tau``, so that one row's own category is
   released with probability at most ``delta_keys`` (stability-based selection).
2. **zoom**: 64 equal bins inside the coarse bounds; bounds tighten to the noisy 0.2%..99.8% range.
3. **cdf**: 128 equal bins inside the final bounds (or the declared ones); the noisy cumulative
   counts give quantile knots for a quantile (rank) transform.

Every histogram has L2 sensitivity 1 per column (a row adds one to one bucket). Each kind of
histogram gets a weight ``w`` and noise ``sigma / sqrt(w)`` (category counts, whose threshold
decides what is released at all, and the final quantile histograms weigh more), so its zCDP cost
is ``w / (2 sigma^2)``; ``sigma`` is chosen so that the costs add up to the budget. Column names, kinds, dtypes, nullability and decimal
places are treated as public metadata (the schema), as in other DP libraries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from synthkit.errors import ConfigError, DataError

#: Powers of two that bound the coarse buckets: 2**-8 .. 2**63, mirrored for negatives.
_POWERS = np.ldexp(1.0, np.arange(-8, 64))
_ZOOM_BINS = 64
_CDF_BINS = 128
#: Share of the noisy mass cut at each end when zooming in (outliers are clipped, not learned).
_ZOOM_TAIL = 0.002
#: Chance that a round-1 bucket with no rows at all clears the threshold, over all buckets.
_EMPTY_BUCKET_RISK = 0.01
#: Quantile knots handed to the quantile transform.
_KNOTS = 129


@dataclass
class ContinuousFacts:
    """Private bounds and quantile knots of one numerical or datetime column."""

    lo: float
    hi: float
    knots: np.ndarray
    probs: np.ndarray
    declared_bounds: bool


@dataclass
class DiscreteFacts:
    """Private category set (most frequent first) and noisy counts of one discrete column."""

    values: list[Any]
    counts: np.ndarray
    declared: bool


@dataclass
class PrivateFacts:
    """What a private encoding may use, and what it cost."""

    columns: dict[str, ContinuousFacts | DiscreteFacts]
    epsilon: float
    delta: float
    rho: float
    noise_std: float | None
    report: dict[str, Any] = field(default_factory=dict)


# --- zCDP conversions ------------------------------------------------------------------------
def rho_for(epsilon: float, delta: float) -> float:
    """The zCDP budget rho whose (epsilon, delta) guarantee is exactly ``epsilon``.

    From rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP, solved for rho.
    """
    if epsilon <= 0 or not 0 < delta < 1:
        raise ConfigError(f"Need epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}.")
    log = math.log(1.0 / delta)
    return (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2


def epsilon_for(rho: float, delta: float) -> float:
    """The epsilon that rho-zCDP guarantees at ``delta``."""
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


# --- the estimate ----------------------------------------------------------------------------
def private_facts(
    continuous: dict[str, tuple[np.ndarray, tuple[float, float] | None]],
    discrete: dict[str, tuple[pl.Series, list[Any] | None]],
    *,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
) -> PrivateFacts:
    """Estimate every column's facts within (epsilon, delta)-DP.

    ``continuous`` maps a column to (float64 values with NaN for missing, declared bounds or
    None); ``discrete`` maps a column to (values, declared categories or None). Declared facts
    cost nothing; everything else is noisy.
    """
    undeclared_cont = [c for c, (_, b) in continuous.items() if b is None]
    undeclared_disc = [c for c, (_, cats) in discrete.items() if cats is None]
    # Each histogram gets a weight w and noise sigma / sqrt(w), so it costs w / (2 sigma^2) of
    # rho: category counts (whose threshold decides what is released at all) and the final
    # quantile histograms weigh more than the coarse bounds and the zoom.
    weights = {"categories": 4.0, "bounds": 1.0, "zoom": 1.0, "cdf": 2.0}
    total = (
        weights["categories"] * len(undeclared_disc)
        + (weights["bounds"] + weights["zoom"]) * len(undeclared_cont)
        + weights["cdf"] * len(continuous)
    )
    out: dict[str, ContinuousFacts | DiscreteFacts] = {}
    if total == 0:
        for name, (_series, cats) in discrete.items():
            out[name] = DiscreteFacts(list(cats or []), np.ones(len(cats or [])), declared=True)
        return PrivateFacts(out, 0.0, 0.0, 0.0, None, {"columns": {}})
    # delta splits into the zCDP conversion and the risk of releasing a row's own category
    delta_keys = delta / 2 if undeclared_disc else 0.0
    delta_conv = delta - delta_keys
    rho = rho_for(epsilon, delta_conv)
    # the weighted costs add up to rho: sum(w) / (2 sigma^2) = rho
    sigma = math.sqrt(total / (2.0 * rho))
    noise = {kind: sigma / math.sqrt(w) for kind, w in weights.items()}
    report: dict[str, Any] = {"noise_std": noise, "columns": {}}

    # round 1: coarse bounds and category sets
    for name in undeclared_disc:
        series, _ = discrete[name]
        tau = 1.0 + noise["categories"] * float(ndtri(1.0 - delta_keys / len(undeclared_disc)))
        out[name] = _private_categories(series, noise["categories"], tau, rng)
        report["columns"][name] = {
            "categories": "estimated",
            "threshold": round(tau, 2),
            "kept": len(out[name].values),  # type: ignore[union-attr]
        }
    for name, (_series, cats) in discrete.items():
        if cats is not None:
            out[name] = DiscreteFacts(list(cats), np.ones(len(cats)), declared=True)
            report["columns"][name] = {"categories": "declared"}
    bounds: dict[str, tuple[float, float]] = {}
    for name in undeclared_cont:
        x = _finite(continuous[name][0])
        bounds[name] = _coarse_bounds(x, noise["bounds"], rng, name)
    # round 2: zoom into the coarse bounds
    for name in undeclared_cont:
        x = _finite(continuous[name][0])
        bounds[name] = _zoom(x, bounds[name], noise["zoom"], rng)
    # round 3: quantile knots inside the final bounds
    for name, (values, declared) in continuous.items():
        lo, hi = declared if declared is not None else bounds[name]
        knots, probs = _quantile_knots(_finite(values), lo, hi, noise["cdf"], rng)
        out[name] = ContinuousFacts(lo, hi, knots, probs, declared_bounds=declared is not None)
        report["columns"][name] = {
            "bounds": "declared" if declared is not None else "estimated",
            "lo": lo,
            "hi": hi,
        }
    spent = epsilon_for(rho, delta_conv)
    report.update({
        "rho": rho, "epsilon": spent, "delta": delta,
        "histograms": len(undeclared_disc) + 2 * len(undeclared_cont) + len(continuous),
    })
    return PrivateFacts(out, spent, delta, rho, sigma, report)


# --- rounds ----------------------------------------------------------------------------------
def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def _signed_edges() -> np.ndarray:
    """Bucket edges: -2**63 .. -2**-8, 0, 2**-8 .. 2**63 (data-independent)."""
    return np.concatenate([-_POWERS[::-1], [0.0], _POWERS])


def _coarse_bounds(
    x: np.ndarray, sigma: float, rng: np.random.Generator, name: str
) -> tuple[float, float]:
    edges = _signed_edges()
    clipped = np.clip(x, edges[0], np.nextafter(edges[-1], 0))
    counts = np.bincount(
        np.searchsorted(edges, clipped, side="right") - 1, minlength=edges.size - 1
    ).astype(np.float64)[: edges.size - 1]
    noisy = counts + rng.normal(0.0, sigma, counts.size)
    tau = sigma * float(ndtri(1.0 - _EMPTY_BUCKET_RISK / counts.size))
    hits = np.flatnonzero(noisy > tau)
    if hits.size == 0:
        raise DataError(
            f"Too few rows to estimate the range of column '{name}' privately at this epsilon "
            f"(the noise, std {sigma:.0f} rows, drowns every bucket).",
            hint="Declare the column's range as public in the schema (min, max and "
            "public_bounds=True), raise epsilon or dp preprocessing_share, or train on more rows.",
        )
    return float(edges[hits[0]]), float(edges[hits[-1] + 1])


def _histogram(x: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    if hi <= lo:
        return np.array([float(x.size)] + [0.0] * (bins - 1))
    idx = np.floor((np.clip(x, lo, hi) - lo) / (hi - lo) * bins).astype(np.int64)
    return np.bincount(np.clip(idx, 0, bins - 1), minlength=bins).astype(np.float64)


def _zoom(
    x: np.ndarray, bounds: tuple[float, float], sigma: float, rng: np.random.Generator
) -> tuple[float, float]:
    lo, hi = bounds
    noisy = _histogram(x, lo, hi, _ZOOM_BINS) + rng.normal(0.0, sigma, _ZOOM_BINS)
    # bins under 1.5 noise deviations count as empty, or noise alone would set the bounds
    noisy = np.where(noisy > 1.5 * sigma, noisy, 0.0)
    if noisy.sum() <= 0:
        return lo, hi
    cdf = np.cumsum(noisy) / noisy.sum()
    edges = np.linspace(lo, hi, _ZOOM_BINS + 1)
    first = int(np.searchsorted(cdf, _ZOOM_TAIL, side="left"))
    last = int(np.searchsorted(cdf, 1.0 - _ZOOM_TAIL, side="left"))
    return float(edges[first]), float(edges[min(last + 1, _ZOOM_BINS)])


def _quantile_knots(
    x: np.ndarray, lo: float, hi: float, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Knots at evenly spaced probabilities from a noisy histogram's piecewise-linear CDF."""
    probs = np.linspace(0.0, 1.0, _KNOTS)
    if hi <= lo:
        return np.full(_KNOTS, lo), probs
    noisy = _histogram(x, lo, hi, _CDF_BINS) + rng.normal(0.0, sigma, _CDF_BINS)
    noisy = np.where(noisy > sigma, noisy, 0.0)
    # a small floor keeps the CDF strictly increasing (every value in range stays reachable)
    noisy += max(noisy.sum(), 1.0) * 1e-4 / _CDF_BINS
    cdf = np.concatenate([[0.0], np.cumsum(noisy) / noisy.sum()])
    edges = np.linspace(lo, hi, _CDF_BINS + 1)
    return np.interp(probs, cdf, edges), probs


def _private_categories(
    series: pl.Series, sigma: float, tau: float, rng: np.random.Generator
) -> DiscreteFacts:
    # sorted by value: the noise each category gets must not depend on hash-table order
    counts = series.drop_nulls().alias("value").value_counts(sort=False, name="count").sort("value")
    values = counts.get_column("value")
    noisy = counts.get_column("count").to_numpy().astype(np.float64) + rng.normal(
        0.0, sigma, counts.height
    )
    keep = np.flatnonzero(noisy > tau)
    order = keep[np.argsort(-noisy[keep], kind="stable")]
    kept = values.gather(order).to_list() if order.size else []
    return DiscreteFacts(kept, noisy[order], declared=False)


# --- helpers for encodings built on the facts (additions; the estimate above is unchanged) ----
def uniform_facts(lo: float, hi: float) -> ContinuousFacts:
    """Facts of a column whose bounds are declared public and whose quantiles are not estimated:
    a uniform distribution over ``[lo, hi]`` (no data read, no budget spent)."""
    lo, hi = float(lo), float(hi)
    probs = np.linspace(0.0, 1.0, _KNOTS)
    return ContinuousFacts(lo, hi, lo + probs * (hi - lo), probs, declared_bounds=True)


def facts_quantile(facts: ContinuousFacts, p: np.ndarray | float) -> np.ndarray:
    """The private quantile function (piecewise linear through the knots) at ``p``."""
    return np.interp(np.asarray(p, dtype=np.float64), facts.probs, facts.knots)


def facts_cdf(facts: ContinuousFacts, x: np.ndarray | float) -> np.ndarray:
    """The private CDF (the inverse of :func:`facts_quantile`) at ``x``: 0 below the lower
    bound, 1 above the upper one."""
    x = np.asarray(x, dtype=np.float64)
    knots = np.maximum.accumulate(np.asarray(facts.knots, dtype=np.float64))
    if knots[-1] <= knots[0]:
        return np.where(x < knots[0], 0.0, 1.0)
    return np.interp(x, knots, facts.probs, left=0.0, right=1.0)
