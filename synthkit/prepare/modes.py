"""Per-value normalisation of numerical columns for neural generators (CTGAN's idea).

:class:`ModeNormalizer` is mode-specific normalisation: a variational (Dirichlet-process)
Gaussian mixture finds the modes of a column; each value becomes the mode it was sampled to
(from its posterior responsibilities) plus ``alpha``, its offset from that mode's mean in units of
four standard deviations. Multi-modal and long-tailed columns then look simple to a network.
:class:`QuantileNormalizer` is the "quantile option": a rank (normal-score) transform with one mode.

Both take float64 arrays (NaN = missing), return ``(alpha, mode)``, invert exactly and save as
numpy arrays plus JSON (``state`` / ``from_state``); no pickle, no per-row Python.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from synthkit.errors import ConfigError, NotFittedError, SchemaError

#: alpha is kept strictly inside (-1, 1) so that a tanh output can reach every value.
ALPHA_LIMIT = 0.99
#: alpha = (x - mean) / (SPREAD * std): four standard deviations map to 1.
SPREAD = 4.0
#: Smallest standard deviation of a mode, relative to the column's scale (constant columns).
_MIN_STD_REL = 1e-6
_MIN_STD_ABS = 1e-9
#: A value no fitted mode reaches widens its nearest mode up to this many times its std ...
_MAX_STRETCH = 3.0
#: ... values farther out get modes of their own: a group ends where the next such value
#: lies more than this many typical mode reaches (2 · SPREAD · ALPHA_LIMIT · median std) away ...
_OUTLIER_GAP_WIDTHS = 1.0
#: ... and at most this many such modes per column (then split at the widest gaps only).
_MAX_OUTLIER_MODES = 4
#: Such a mode of fewer rows than this is *rare*: it encodes its values exactly, but
#: generators do not decode into it (see :attr:`ModeNormalizer.rare`).
MIN_DECODED_ROWS = 5


def _kmeans_labels(x: np.ndarray, k: int, seed: int | None) -> np.ndarray:
    """Cluster labels of 1-D ``x``: scikit-learn's k-means (k-means++, one init) with the seed
    that ``BayesianGaussianMixture(random_state=seed)`` hands it, so both start alike."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # "fewer distinct clusters than k": columns with few values
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x[:, None]).labels_


def dp_mixture_1d(
    x: np.ndarray,
    k: int,
    *,
    seed: int | None = None,
    concentration: float = 0.001,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, means, variances)`` of a variational Dirichlet-process Gaussian mixture on 1-D ``x``.

    The update equations, priors and stopping rule are scikit-learn's ``BayesianGaussianMixture``
    (``weight_concentration_prior_type="dirichlet_process"``, its default priors, one feature),
    written for one dimension: each component's expected log density is a quadratic in x, so an
    E-step is one ``(k, 3) @ (3, n)`` product plus a softmax and an M-step one ``(k, n) @ (n, 3)``
    product of sufficient statistics. Responsibilities are held component-major, ``(k, n)``: the
    softmax's reductions over components then run along contiguous rows of n values (over the
    short axis of an ``(n, k)`` matrix numpy's reductions crawl: a column's fit took 2-3x as long).
    Started, as scikit-learn is, from k-means with ``seed``: the same seed gives scikit-learn's
    mixture up to rounding, several times faster on a column.
    """
    from scipy.special import betaln, digamma, gammaln

    x = np.asarray(x, dtype=np.float64)
    n = x.size
    eps = 10 * np.finfo(np.float64).eps
    mean_prior = float(x.mean())
    cov_prior = float(np.var(x, ddof=1)) if n > 1 else 1.0
    features_t = np.stack([np.ones(n), x, x * x])  # (3, n): 1, x, x^2
    features = np.ascontiguousarray(features_t.T)
    labels = _kmeans_labels(x, k, seed)  # hard responsibilities: statistics summed per cluster
    start = np.stack([np.bincount(labels, weights=f, minlength=k) for f in features_t], axis=1)

    def m_step(stats: np.ndarray) -> tuple[np.ndarray, ...]:
        raw, sx, sxx = stats[:, 0], stats[:, 1], stats[:, 2]
        nk = raw + eps
        xk = sx / nk
        sk = np.maximum(sxx - 2.0 * xk * sx + xk * xk * raw, 0.0) / nk + reg
        tail = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        a, b = 1.0 + nk, concentration + tail
        precision = 1.0 + nk  # mean precision prior 1
        means = (mean_prior + nk * xk) / precision
        dof = 1.0 + nk  # degrees-of-freedom prior: the number of features
        cov = (cov_prior + nk * sk + nk / precision * (xk - mean_prior) ** 2) / dof
        return a, b, precision, means, dof, cov

    params = m_step(start)
    lower = -np.inf
    for _ in range(max_iter):
        a, b, precision, means, dof, cov = params
        # E[log p(x | k)] + E[log w_k] = c0 + c1 x + c2 x^2 per component
        inv = 1.0 / cov
        dsum = digamma(a + b)
        log_w = digamma(a) - dsum + np.concatenate([[0.0], np.cumsum(digamma(b) - dsum)[:-1]])
        c0 = (
            -0.5 * np.log(2 * np.pi) - 0.5 * np.log(cov) - 0.5 * np.log(dof) - 0.5 * inv * means**2
            + 0.5 * (np.log(2.0) + digamma(0.5 * dof) - 1.0 / precision) + log_w
        )
        weighted = np.stack([c0, inv * means, -0.5 * inv], axis=1) @ features_t  # (k, n)
        top = weighted.max(axis=0)
        resp = np.exp(weighted - top)
        total = resp.sum(axis=0)
        resp /= total
        # sum(resp * log_resp), with log_resp = weighted - top - log(total), each value's
        # responsibilities summing to 1
        neg_entropy = float(np.vdot(resp, weighted) - np.sum(top + np.log(total)))
        params = m_step(resp @ features)
        a, b, precision, means, dof, cov = params
        log_det = -0.5 * np.log(cov) - 0.5 * np.log(dof)
        log_wishart = -np.sum(dof * log_det + dof * 0.5 * np.log(2.0) + gammaln(0.5 * dof))
        previous, lower = lower, (
            -neg_entropy - log_wishart + float(np.sum(betaln(a, b)))
            - 0.5 * float(np.sum(np.log(precision)))
        )
        if abs(lower - previous) < tol:
            break
    a, b, _, means, _, cov = params
    weights = a / (a + b) * np.concatenate([[1.0], np.cumprod(b / (a + b))[:-1]])
    return weights / weights.sum(), means, cov


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(
            f"{name} must be at least 1, got {value}.", hint=f"Pass {name}=1 or more."
        )


def _as_values(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise SchemaError(f"Expected a 1-D array of values, got shape {arr.shape}.")
    return arr


def _check_fitted(normalizer: object, attribute: str) -> None:
    if not hasattr(normalizer, attribute):
        raise NotFittedError(
            f"The {type(normalizer).__name__} is not fitted yet.", hint="Call fit(x) first."
        )


def _min_std(x: np.ndarray) -> float:
    scale = float(np.abs(x).max()) if x.size else 0.0
    return max(_MIN_STD_ABS, _MIN_STD_REL * scale)


class ModeNormalizer:
    """Mode-specific normalisation: value -> (alpha in [-0.99, 0.99], sampled mode index)."""

    def __init__(
        self,
        *,
        max_modes: int = 10,
        weight_threshold: float = 0.005,
        max_fit_rows: int = 10_000,
        seed: int | None = None,
    ) -> None:
        _check_positive("max_modes", max_modes)
        _check_positive("max_fit_rows", max_fit_rows)
        if not 0.0 <= weight_threshold < 1.0:
            raise ConfigError(
                f"weight_threshold must lie in [0, 1), got {weight_threshold}.",
                hint="The default 0.005 drops modes holding under 0.5% of the rows.",
            )
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold
        self.max_fit_rows = max_fit_rows
        self.seed = seed

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, x: np.ndarray) -> ModeNormalizer:
        """Learn the modes of ``x`` (NaN ignored) from a random subsample of at most max_fit_rows."""
        values = _as_values(x)
        values = values[np.isfinite(values)]
        rng = np.random.default_rng(self.seed)
        sample = values
        if values.size > self.max_fit_rows:
            sample = values[rng.choice(values.size, size=self.max_fit_rows, replace=False)]
        floor = _min_std(values)
        if np.unique(sample).size <= 1 or sample.size < self.max_modes:
            means = np.array([float(sample.mean()) if sample.size else 0.0])
            stds = np.array([float(sample.std()) if sample.size else 1.0])
            weights = np.ones(1)
        else:
            means, stds, weights = self._mixture(sample)
        stds = np.maximum(stds, floor)
        order = np.argsort(means, kind="stable")
        self.means_, self.stds_, self.weights_ = means[order], stds[order], weights[order]
        self.rare_ = np.zeros(self.means_.size, dtype=bool)
        self._cover(values)
        return self

    def _mixture(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit the Dirichlet-process mixture on the standardised sample; keep weighty modes."""
        centre, scale = float(sample.mean()), float(sample.std())
        scale = scale if scale > 0 else 1.0
        weights, means, variances = dp_mixture_1d(
            (sample - centre) / scale, self.max_modes, seed=self.seed
        )
        keep = weights > self.weight_threshold
        if not keep.any():
            keep = weights == weights.max()
        means = means[keep] * scale + centre
        stds = np.sqrt(variances[keep]) * scale
        return means, stds, weights[keep] / weights[keep].sum()

    def _cover(self, values: np.ndarray) -> None:
        """Give every training value a mode that represents it without clipping alpha.

        A value no fitted mode reaches widens its nearest mode when that takes at most
        :data:`_MAX_STRETCH` times the mode's std (a tail just past the mixture's reach).
        Values farther out (outliers the mixture's weight threshold dropped, such as diamonds'
        y of 31.8 and 58.9 beside modes 0.1-0.6 wide near 4-9) get modes of their own instead:
        runs of them split at gaps wider than :data:`_OUTLIER_GAP_WIDTHS` typical mode reaches
        (at most :data:`_MAX_OUTLIER_MODES` runs, split at the widest gaps), each weighted by
        its rows. Stretching a populous mode to reach them makes every row of that mode a tiny
        alpha whose every error a network makes is magnified (diamonds' y: a mode of 5% of the
        rows at std 13.3 instead of 0.4, and 3% of TVAE's rows far outside the real range).
        Such a mode of fewer than :data:`MIN_DECODED_ROWS` rows is marked :attr:`rare`."""
        if not values.size:
            return
        reach = np.abs(values[:, None] - self.means_[None, :]) / (SPREAD * ALPHA_LIMIT)
        uncovered = (reach > self.stds_[None, :]).all(axis=1)
        if not uncovered.any():
            return
        stretch = reach[uncovered] / self.stds_[None, :]
        nearest = stretch.argmin(axis=1)
        near = stretch[np.arange(nearest.size), nearest] <= _MAX_STRETCH
        if near.any():
            needed = np.zeros_like(self.stds_)
            rows = np.flatnonzero(uncovered)[near]
            np.maximum.at(needed, nearest[near], reach[rows, nearest[near]] * (1 + 1e-9))
            self.stds_ = np.maximum(self.stds_, needed)
            uncovered[rows] = False
        if not uncovered.any():
            return
        out = np.sort(values[uncovered])
        gap = 2.0 * SPREAD * ALPHA_LIMIT * float(np.median(self.stds_)) * _OUTLIER_GAP_WIDTHS
        # groups: runs of outliers split where neighbours lie more than a typical reach apart,
        # at the widest such gaps only when there are more than _MAX_OUTLIER_MODES groups
        gaps = np.diff(out)
        cut = np.flatnonzero(gaps > gap)
        if cut.size >= _MAX_OUTLIER_MODES:
            cut = np.sort(cut[np.argsort(gaps[cut], kind="stable")[cut.size - _MAX_OUTLIER_MODES + 1 :]])
        starts = np.concatenate([[0], cut + 1])
        ends = np.concatenate([cut + 1, [out.size]])
        lo, hi, counts = out[starts], out[ends - 1], (ends - starts).astype(np.float64)
        means = (lo + hi) / 2.0
        floor = max(_min_std(values), float(np.min(self.stds_)))
        stds = np.maximum((hi - lo) / (2.0 * SPREAD * ALPHA_LIMIT) * (1 + 1e-9), floor)
        share = counts / values.size
        weights = np.concatenate([self.weights_ * (1.0 - share.sum()), share])
        means = np.concatenate([self.means_, means])
        stds = np.concatenate([self.stds_, stds])
        rare = np.concatenate([self.rare_, counts < MIN_DECODED_ROWS])
        order = np.argsort(means, kind="stable")
        self.means_, self.stds_, self.weights_ = means[order], stds[order], weights[order]
        self.rare_ = rare[order]

    # --- use -------------------------------------------------------------------------------
    @property
    def n_modes(self) -> int:
        """Number of modes kept (the width of the mode one-hot block)."""
        _check_fitted(self, "means_")
        return int(self.means_.size)

    @property
    def means(self) -> np.ndarray:
        """Mean of each mode, ascending."""
        return self.means_.copy()

    @property
    def stds(self) -> np.ndarray:
        """Standard deviation of each mode."""
        return self.stds_.copy()

    @property
    def weights(self) -> np.ndarray:
        """Mixture weight of each mode (sums to 1)."""
        return self.weights_.copy()

    @property
    def rare(self) -> np.ndarray:
        """True for each mode of a few far outliers (fewer than :data:`MIN_DECODED_ROWS`
        rows, such as diamonds' y of 58.9, one record): the encoding represents those values
        exactly, but a generator should not decode into such a mode. A network decodes it far
        more often than its share (TVAE: y's two one-record modes in 40 of 53,940 sampled rows,
        the synthetic x-y correlation 0.68 against the real 0.98), and every such row repeats
        one real record's value."""
        _check_fitted(self, "means_")
        return self.rare_.copy()

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_modes)`` posterior probability of each mode for each value (NaN rows: weights)."""
        _check_fitted(self, "means_")
        values = _as_values(x)
        missing = ~np.isfinite(values)
        z = (np.where(missing, 0.0, values)[:, None] - self.means_[None, :]) / self.stds_[None, :]
        logp = (
            np.log(np.maximum(self.weights_, 1e-300))[None, :]
            - np.log(self.stds_)[None, :]
            - 0.5 * z**2
        )
        # Prefer modes that represent the value without clipping alpha (all, when none does).
        fits = np.abs(z) <= SPREAD * ALPHA_LIMIT
        logp = np.where(fits | ~fits.any(axis=1, keepdims=True), logp, -np.inf)
        logp -= logp.max(axis=1, keepdims=True)
        prob = np.exp(logp)
        prob /= prob.sum(axis=1, keepdims=True)
        prob[missing] = self.weights_
        return prob

    def transform(
        self, x: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, mode)``: the mode sampled from each value's responsibilities, and its offset."""
        values = _as_values(x)
        missing = ~np.isfinite(values)
        cumulative = np.cumsum(self.responsibilities(values), axis=1)
        draws = rng.random(values.size)[:, None] * cumulative[:, -1:]
        mode = np.minimum((cumulative < draws).sum(axis=1), self.n_modes - 1)
        mode[missing] = int(np.argmax(self.weights_))
        alpha = (np.where(missing, self.means_[mode], values) - self.means_[mode]) / (
            SPREAD * self.stds_[mode]
        )
        return np.clip(alpha, -ALPHA_LIMIT, ALPHA_LIMIT), mode.astype(np.int64)

    def inverse(self, alpha: np.ndarray, mode: np.ndarray) -> np.ndarray:
        """Values back from ``(alpha, mode)``: ``alpha * 4 * std + mean`` of the mode."""
        k = np.clip(np.asarray(mode, dtype=np.int64), 0, self.n_modes - 1)
        return np.asarray(alpha, dtype=np.float64) * SPREAD * self.stds_[k] + self.means_[k]

    # --- saving ----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (means, stds, weights) and JSON config that :meth:`from_state` reads back."""
        arrays = {
            "means": self.means_.copy(),
            "stds": self.stds_.copy(),
            "weights": self.weights_.copy(),
            "rare": self.rare_.astype(np.float64),
        }
        meta = {
            "normalizer": "mode",
            "max_modes": self.max_modes,
            "weight_threshold": self.weight_threshold,
            "max_fit_rows": self.max_fit_rows,
            "seed": self.seed,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ModeNormalizer:
        """Rebuild a fitted normalizer from :meth:`state`."""
        norm = cls(
            max_modes=int(meta["max_modes"]),
            weight_threshold=float(meta["weight_threshold"]),
            max_fit_rows=int(meta["max_fit_rows"]),
            seed=meta.get("seed"),
        )
        norm.means_ = np.asarray(arrays["means"], dtype=np.float64)
        norm.stds_ = np.asarray(arrays["stds"], dtype=np.float64)
        norm.weights_ = np.asarray(arrays["weights"], dtype=np.float64)
        rare = arrays.get("rare")  # (absent from models saved before rare modes were marked)
        norm.rare_ = (np.zeros(norm.means_.size, dtype=bool) if rare is None
                      else np.asarray(rare, dtype=np.float64) > 0.5)
        return norm


class QuantileNormalizer:
    """Rank transform: value -> normal score of its empirical CDF / 5, clipped; one mode."""

    #: CDF values are squeezed into [EDGE, 1 - EDGE] so the normal score stays finite (|z| < 4.8).
    EDGE = 1e-6
    #: z is divided by this so alpha fits [-0.99, 0.99].
    Z_SCALE = 5.0

    def __init__(self, *, n_quantiles: int = 1_000) -> None:
        if n_quantiles < 2:
            raise ConfigError(f"n_quantiles must be at least 2, got {n_quantiles}.")
        self.n_quantiles = n_quantiles

    def fit(self, x: np.ndarray) -> QuantileNormalizer:
        """Store at most n_quantiles knots of the empirical distribution of ``x`` (NaN ignored)."""
        values = _as_values(x)
        values = values[np.isfinite(values)]
        if not values.size:
            values = np.zeros(1)
        n = int(min(self.n_quantiles, max(values.size, 2)))
        self.probs_ = np.linspace(0.0, 1.0, n)
        self.knots_ = np.quantile(values, self.probs_)
        return self

    @property
    def n_modes(self) -> int:
        """Always 1: the quantile transform has no modes."""
        return 1

    def transform(
        self, x: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, mode)``: the scaled normal score and zeros; missing values get alpha 0."""
        _check_fitted(self, "knots_")
        values = _as_values(x)
        missing = ~np.isfinite(values)
        cdf = np.interp(np.where(missing, self.knots_[0], values), self.knots_, self.probs_)
        alpha = np.where(missing, 0.0, self._alpha(cdf))
        return alpha, np.zeros(values.size, dtype=np.int64)

    def _alpha(self, cdf: np.ndarray) -> np.ndarray:
        """CDF values to alpha: the normal score (CDF squeezed into [EDGE, 1 - EDGE]) scaled by
        1 / Z_SCALE and clipped to the tanh range."""
        z = ndtri(self.EDGE + (1.0 - 2.0 * self.EDGE) * cdf) / self.Z_SCALE
        return np.clip(z, -ALPHA_LIMIT, ALPHA_LIMIT)

    def spread(self, x: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        """alpha of ``x`` with each repeated value spread uniformly over its stretch of the scale.

        :meth:`transform` sends every copy of a repeated value (a year, a count, a zero of a
        zero-inflated column) to one point, the top of the value's stretch of the CDF: a
        network then has to hit a spike whose upper side decodes into the next value. A uniform
        draw over the stretch (dequantisation) makes the distribution to learn smooth, and every
        point of a stretch still decodes to the value itself. Missing values get alpha 0.
        """
        _check_fitted(self, "knots_")
        values = _as_values(x)
        seen = np.isfinite(values)
        knots, probs = self.knots_, self.probs_
        top = np.interp(values[seen], knots, probs)
        bottom = -np.interp(-values[seen], -knots[::-1], -probs[::-1])
        cdf = top
        if (top - bottom > 1e-9).any():  # no draws where no value repeats: transform's alpha
            cdf = bottom + (top - bottom) * rng.random(top.size)
        alpha = np.zeros(values.size)
        alpha[seen] = self._alpha(cdf)
        return alpha

    def inverse(self, alpha: np.ndarray, mode: np.ndarray) -> np.ndarray:
        """Values back from alpha (mode is ignored): the quantile of its CDF value.

        With evenly spaced knot probabilities (every fit from data) the knot below a CDF value
        is found by arithmetic instead of ``np.interp``'s binary search: the same piecewise-linear
        quantile function, about four times faster (sampling decodes every numerical value here).
        """
        u = ndtr(np.asarray(alpha, dtype=np.float64) * self.Z_SCALE)
        cdf = np.clip((u - self.EDGE) / (1.0 - 2.0 * self.EDGE), 0.0, 1.0)
        knots, probs = self.knots_, self.probs_
        if knots.size < 2 or probs[0] != 0.0 or probs[-1] != 1.0 or not np.allclose(
                np.diff(probs), 1.0 / (probs.size - 1), rtol=1e-9, atol=0.0):
            return np.interp(cdf, probs, knots)
        position = cdf * (knots.size - 1)
        below = np.minimum(position.astype(np.int64), knots.size - 2)
        low = knots[below]
        return low + (position - below) * (knots[below + 1] - low)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (knots, probs) and JSON config that :meth:`from_state` reads back."""
        return {"knots": self.knots_.copy(), "probs": self.probs_.copy()}, {
            "normalizer": "quantile",
            "n_quantiles": self.n_quantiles,
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> QuantileNormalizer:
        """Rebuild a fitted normalizer from :meth:`state`."""
        norm = cls(n_quantiles=int(meta["n_quantiles"]))
        norm.knots_ = np.asarray(arrays["knots"], dtype=np.float64)
        norm.probs_ = np.asarray(arrays["probs"], dtype=np.float64)
        return norm


Normalizer = ModeNormalizer | QuantileNormalizer


def normalizer_from_state(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Normalizer:
    """Rebuild whichever normalizer ``meta`` names."""
    kind = meta.get("normalizer")
    if kind == "mode":
        return ModeNormalizer.from_state(arrays, meta)
    if kind == "quantile":
        return QuantileNormalizer.from_state(arrays, meta)
    raise SchemaError(
        f"Unknown normalizer {kind!r} in saved state.", hint="Use 'mode' or 'quantile'."
    )
