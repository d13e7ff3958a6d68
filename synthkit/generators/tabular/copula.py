"""Gaussian copula: empirical marginals joined by the correlation of latent normal scores.

Every learned column becomes one or more latent dimensions:

* categorical and boolean columns: one dimension, categories as intervals of [0, 1] sized by
  their frequencies (null a category of its own);
* numerical and datetime columns: a *value* dimension (a bounded set of quantile knots with
  linear interpolation, or the exact support when there are few distinct values), an *is
  null* flag when the column has nulls, and an *is mass point* flag when one value (a zero,
  typically) holds a large share of the rows. Flags make missingness and zero-inflation
  correlate with the rest instead of being independent noise.

Fitting maps every dimension to normal scores (ranks, ties broken at random) and estimates
their correlation; discrete dimensions then get their latent scores redrawn by a few rounds of
Gibbs sampling within their intervals (a stochastic EM), which undoes the weakening random
tie-breaking causes. Sampling draws correlated normals, maps them to [0, 1] and through each
inverse marginal. All numpy and scipy, vectorised; the state is arrays (safetensors) plus JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field
from scipy.special import ndtr, ndtri

from synthkit.generators.base import Generator, GeneratorConfig
from synthkit.prepare.encoders import (
    from_seconds,
    restore_numeric,
    to_seconds,
    values_from_json,
    values_to_json,
)
from synthkit.schema import Column, ColumnKind, Schema

_STATE_FILE = "copula.json"
_STATE_VERSION = 1
#: Smallest eigenvalue kept when the correlation matrix is repaired.
_MIN_EIGEN = 1e-6
#: Pairs observed together in fewer rows than this get no correlation.
_MIN_PAIR_ROWS = 5
#: Ridge added to the correlation before the Gibbs conditionals are taken from it.
_RIDGE = 1e-2
_CATEGORY, _VALUE, _NULL, _MASS = "category", "value", "null", "mass"
_Dim = tuple[np.ndarray, np.ndarray, np.ndarray, str, str]  # code, knots, probs, inverse, role


class GaussianCopulaConfig(GeneratorConfig):
    """Options of the Gaussian copula (all have defaults that suit most tables)."""

    marginals: Literal["empirical"] = Field(
        "empirical", description="How each column's distribution is kept: its quantile knots."
    )
    max_knots: int = Field(1_000, ge=2, le=100_000, description="Quantile knots kept per column.")
    max_fit_rows: int = Field(
        20_000, ge=100, description="Rows (a random subset) used to estimate the correlation."
    )
    discrete_max_unique: int = Field(
        32,
        ge=0,
        description="Numerical and datetime columns with at most this many distinct values are "
        "sampled from their exact support rather than interpolated.",
    )
    mass_point_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="The smallest or largest value of a numerical column, when it holds at least "
        "this share of the rows (zero-inflation), gets its own latent flag; 0 turns it off.",
    )
    latent_rounds: int = Field(
        30,
        ge=0,
        le=100,
        description="Gibbs rounds that redraw the latent scores of discrete dimensions within "
        "their intervals; recovers correlation that random tie-breaking hides. 0 turns it off.",
    )
    category_order: Literal["frequency", "correlated"] = Field(
        "correlated",
        description="Order of categories on the latent axis: by frequency (as SDV), or along "
        "the strongest direction they share with the other columns, so that one latent axis "
        "carries more of a categorical column's relations.",
    )


class GaussianCopulaGenerator(Generator):
    """Gaussian copula with empirical marginals: fast, no training loop, a strong baseline."""

    name = "tabular/copula"
    config_class = GaussianCopulaConfig
    config: GaussianCopulaConfig

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool = False) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = df.height
        rows = np.sort(rng.choice(n, cfg.max_fit_rows, replace=False)) if n > cfg.max_fit_rows else None
        self.columns_: list[dict[str, Any]] = []
        self.knots_: list[np.ndarray] = []
        self.probs_: list[np.ndarray] = []
        self.inverse_: list[str] = []
        self.roles_: list[str] = []
        codes: list[np.ndarray] = []
        for col in schema:
            meta, dims = self._fit_column(df.get_column(col.name), col)
            meta["dims"] = {}
            for code, knots, probs, inverse, role in dims:
                meta["dims"][role] = len(self.knots_)
                self.knots_.append(knots)
                self.probs_.append(probs)
                self.inverse_.append(inverse)
                self.roles_.append(role)
                codes.append(code if rows is None else code[rows])
            self.columns_.append(meta)
        if cfg.category_order == "correlated" and codes:
            self._order_categories(codes, rng)
        unlinked = self._unlinked(len(codes))
        discrete = np.array(
            [r != _VALUE or inv == "step" for r, inv in zip(self.roles_, self.inverse_, strict=True)],
            dtype=bool,
        )
        self.corr_, clipped = _latent_correlation(codes, unlinked, discrete, rng, cfg.latent_rounds)
        self.chol_ = _cholesky(self.corr_)
        self.fit_report_["copula"] = {"dimensions": len(self.knots_), "eigen_clipped": clipped}

    def _fit_column(self, s: pl.Series, col: Column) -> tuple[dict[str, Any], list[_Dim]]:
        """JSON facts about one column and its latent dimensions."""
        meta: dict[str, Any] = {"name": col.name, "kind": col.kind.value}
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            values, code = _categories(s)
            meta["categories"] = values
            knots, probs = _step_marginal(code, len(values))
            return meta, [(code.astype(np.float64), knots, probs, "step", _CATEGORY)]
        x = _as_float(s, col)
        missing = np.isnan(x)
        observed = x[~missing]
        if col.kind == ColumnKind.DATETIME:
            meta["resolution"] = _resolution(observed)
        support, counts = np.unique(observed, return_counts=True)
        dims: list[_Dim] = []
        meta["null_share"] = float(missing.mean())
        meta["mass_value"] = None
        if support.size <= max(self.config.discrete_max_unique, 1):
            idx = np.searchsorted(support, observed)
            _, probs = _step_marginal(idx, support.size)
            dims.append((x, support, probs, "step", _VALUE))
        else:
            top = int(counts.argmax())
            share = counts[top] / observed.size
            # only at an end of the range (zero-inflation): an inner mass point is ordinary ties
            at_end = top in (0, support.size - 1)
            mass = at_end and 0 < self.config.mass_point_share <= share
            value = x
            if mass:
                meta["mass_value"] = float(support[top])
                value = np.where(x == support[top], np.nan, x)
            knots, probs = _quantile_marginal(value[~np.isnan(value)], self.config.max_knots)
            dims.append((value, knots, probs, "interp", _VALUE))
            if mass:
                flag = np.where(missing, np.nan, (x == support[top]).astype(np.float64))
                _, probs = _step_marginal(flag[~missing].astype(np.int64), 2)
                dims.append((flag, np.arange(2.0), probs, "step", _MASS))
        if missing.any():
            _, probs = _step_marginal(missing.astype(np.int64), 2)
            dims.append((missing.astype(np.float64), np.arange(2.0), probs, "step", _NULL))
        return meta, dims

    def _unlinked(self, d: int) -> np.ndarray:
        """Pairs whose correlation stays 0: a column's own dimensions, constant dimensions.

        A value and its own null (or mass point) flag never occur together in the data, so
        their correlation is not identified; 0 means "missing at random given the rest".
        """
        unlinked = np.zeros((d, d), dtype=bool)
        for meta in self.columns_:
            own = list(meta["dims"].values())
            unlinked[np.ix_(own, own)] = True
        for j, knots in enumerate(self.knots_):
            if knots.size <= 1:
                unlinked[j, :] = unlinked[:, j] = True
        np.fill_diagonal(unlinked, False)
        return unlinked

    def _order_categories(self, codes: list[np.ndarray], rng: np.random.Generator) -> None:
        """Reorder each categorical column's categories along its strongest shared direction.

        The direction is the first principal component of the categories' (frequency-weighted)
        mean normal scores on the other dimensions; sorting categories along it makes their
        relation with the rest as monotone as one latent axis can carry.
        """
        filled = np.column_stack([np.nan_to_num(_normal_scores(c, rng)) for c in codes])
        for meta in self.columns_:
            k = len(meta.get("categories") or [])
            if meta["kind"] != ColumnKind.CATEGORICAL.value or k < 3 or len(codes) < 2:
                continue
            dim = meta["dims"][_CATEGORY]
            cat = codes[dim].astype(np.int64)
            others = [j for j in range(len(codes)) if j != dim]
            counts = np.bincount(cat, minlength=k).astype(np.float64)
            means = _group_means(filled[:, others], cat, k, counts)
            centred = means - (counts @ means) / counts.sum()
            _, _, vt = np.linalg.svd(centred * np.sqrt(counts)[:, None], full_matrices=False)
            order = np.argsort(centred @ vt[0], kind="stable")
            rank = np.empty(k, dtype=np.int64)
            rank[order] = np.arange(k)
            meta["categories"] = [meta["categories"][i] for i in order]
            codes[dim] = rank[cat].astype(np.float64)
            freq = np.diff(np.concatenate([[0.0], self.probs_[dim]]))[order]
            self.probs_[dim] = _cumulative(freq)

    # --- sample ------------------------------------------------------------------------------
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        z = rng.standard_normal((n, len(self.knots_))) @ self.chol_.T
        u = ndtr(z)
        cols = []
        for meta in self.columns_:
            col = self.schema_[meta["name"]]
            cols.append(self._sample_column(meta, col, u).alias(col.name))
        return pl.DataFrame(cols)

    def _sample_column(self, meta: dict[str, Any], col: Column, u: np.ndarray) -> pl.Series:
        dims = meta["dims"]
        if _CATEGORY in dims:
            j = dims[_CATEGORY]
            codes = _step_inverse(u[:, j], self.probs_[j])
            return _category_values(meta["categories"], col).gather(codes)
        j = dims[_VALUE]
        if self.inverse_[j] == "step":
            x = self.knots_[j][_step_inverse(u[:, j], self.probs_[j])]
        else:
            x = np.interp(u[:, j], self.probs_[j], self.knots_[j])
        if _MASS in dims:
            m = dims[_MASS]
            x = np.where(_step_inverse(u[:, m], self.probs_[m]) == 1, meta["mass_value"], x)
        if _NULL in dims:
            m = dims[_NULL]
            x = np.where(_step_inverse(u[:, m], self.probs_[m]) == 1, np.nan, x)
        if col.kind == ColumnKind.DATETIME:
            step = float(meta.get("resolution") or 0.0)
            x = np.round(x / step) * step if step > 0 else x
            missing = np.isnan(x)
            out = from_seconds(np.where(missing, 0.0, x), col)
            return _null_where(out, missing) if missing.any() else out
        return restore_numeric(col, x)

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {"corr": np.ascontiguousarray(self.corr_)}
        for i, (knots, probs) in enumerate(zip(self.knots_, self.probs_, strict=True)):
            tensors[f"dim{i}.knots"] = np.asarray(knots, dtype=np.float64)
            tensors[f"dim{i}.probs"] = np.asarray(probs, dtype=np.float64)
        state = {
            "version": _STATE_VERSION,
            "columns": self.columns_,
            "inverse": self.inverse_,
            "roles": self.roles_,
        }
        return tensors, {_STATE_FILE: state}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        state = files[_STATE_FILE]
        self.columns_ = state["columns"]
        self.inverse_ = list(state["inverse"])
        self.roles_ = list(state["roles"])
        d = len(self.inverse_)
        self.knots_ = [tensors[f"dim{i}.knots"] for i in range(d)]
        self.probs_ = [tensors[f"dim{i}.probs"] for i in range(d)]
        self.corr_ = tensors["corr"].reshape(d, d)
        self.chol_ = _cholesky(self.corr_)


# --- marginals -----------------------------------------------------------------------------
def _categories(s: pl.Series) -> tuple[list[Any], np.ndarray]:
    """Categories by descending frequency (null a category of its own) and each row's code.

    Values other than strings, numbers and booleans (dates, ...) are kept as text, so the
    state stays plain JSON; sampling parses them back.
    """
    if isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
    counts = s.value_counts(sort=False, name="__count__").sort(
        ["__count__", s.name], descending=[True, False], nulls_last=True
    )
    values = counts.get_column(s.name)
    present = values.is_not_null().to_numpy()
    positions = np.arange(values.len(), dtype=np.int64)
    code = s.replace_strict(
        values.filter(pl.Series(present)),
        pl.Series(positions[present]),
        default=None,
        return_dtype=pl.Int64,
    )
    null_pos = int(positions[~present][0]) if (~present).any() else 0
    return values_to_json(values), code.fill_null(null_pos).to_numpy().astype(np.int64, copy=False)


def _category_values(categories: list[Any], col: Column) -> pl.Series:
    """The stored categories as a series of the column's dtype."""
    return values_from_json(categories, col.polars_dtype).alias(col.name)


def _step_marginal(code: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..k-1 and their cumulative probabilities (upper interval ends)."""
    return np.arange(k, dtype=np.float64), _cumulative(np.bincount(code, minlength=k))


def _cumulative(freq: np.ndarray) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    cum = np.cumsum(freq) / max(float(freq.sum()), 1e-300)
    cum[-1] = 1.0
    return cum


def _step_inverse(u: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Index of the interval of [0, 1] each ``u`` falls in."""
    return np.minimum(np.searchsorted(cum, u, side="right"), cum.size - 1)


def _quantile_marginal(x: np.ndarray, max_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_knots`` quantiles at evenly spaced probabilities (all values when fewer)."""
    if x.size == 0:
        return np.zeros(1), np.ones(1)
    ordered = np.sort(x)
    k = min(max_knots, ordered.size)
    if k == 1:
        return ordered[:1], np.ones(1)
    probs = np.linspace(0.0, 1.0, k)
    knots = ordered if k == ordered.size else np.quantile(ordered, probs)
    return knots, probs


#: Units datetimes are rounded to, coarsest first (seconds): day, hour, minute, second, ms, µs.
_RESOLUTIONS = (86_400.0, 3_600.0, 60.0, 1.0, 1e-3, 1e-6)


def _resolution(seconds: np.ndarray) -> float | None:
    """The coarsest unit every (sampled) timestamp is a whole multiple of, if any."""
    probe = seconds[:10_000]
    for step in _RESOLUTIONS:
        ratio = probe / step
        if np.all(np.abs(ratio - np.round(ratio)) <= 1e-9 * np.maximum(1.0, np.abs(ratio))):
            return step
    return None


def _as_float(s: pl.Series, col: Column) -> np.ndarray:
    """Numerical or datetime values as float64 (datetimes in seconds), NaN where missing."""
    if col.kind == ColumnKind.DATETIME:
        return to_seconds(s, col)
    if s.dtype.is_temporal():
        s = s.to_physical()
    return s.cast(pl.Float64, strict=False).fill_nan(None).to_numpy().astype(np.float64, copy=False)


# --- dependence ----------------------------------------------------------------------------
def _latent_correlation(
    codes: list[np.ndarray],
    unlinked: np.ndarray,
    discrete: np.ndarray,
    rng: np.random.Generator,
    rounds: int,
) -> tuple[np.ndarray, int]:
    """Correlation of the latent normal scores, discrete dimensions resolved by Gibbs sampling.

    Random tie-breaking treats the place of a value inside its block of ties as noise, which
    weakens every correlation a discrete dimension takes part in. With the marginals fixed, a
    tied value's latent score is only known to lie in its block's interval; each round redraws
    it from its conditional normal given the other scores, truncated to that interval, and
    re-estimates the correlation (a stochastic EM). The estimate averages the later rounds.
    Pairs marked in ``unlinked`` keep a correlation of 0.
    """
    d = len(codes)
    if d == 0:
        return np.eye(0), 0
    scores = np.column_stack([_normal_scores(c, rng) for c in codes])
    corr, clipped = _fixed_corr(scores, unlinked)
    constant = np.array([np.unique(c[~np.isnan(c)]).size <= 1 for c in codes])
    # discrete dimensions redraw every row within its block; the others only their missing rows
    gibbs = {
        j: _block_bounds(codes[j]) if discrete[j] else _missing_rows(codes[j])
        for j in range(d)
        if not constant[j] and (discrete[j] and _has_ties(codes[j]) or np.isnan(codes[j]).any())
    }
    if d < 2 or not gibbs or rounds == 0:
        return corr, clipped
    blocks = [gibbs[j] if discrete[j] and j in gibbs else None for j in range(d)]
    corr = _disattenuate(corr, blocks, unlinked)
    # every non-constant dimension with missing scores is in `gibbs`, so after one round
    # `filled` is complete (constant dimensions keep 0s there; they are unlinked anyway)
    filled = np.asfortranarray(np.nan_to_num(scores))
    total = np.zeros_like(corr)
    kept = 0
    for r in range(rounds):
        # a small ridge keeps the conditionals stable when columns are (nearly) collinear
        precision = np.linalg.inv(corr + _RIDGE * np.eye(d))
        for j, (rows, lo, hi) in gibbs.items():
            coef = -precision[:, j] / precision[j, j]
            coef[j] = 0.0
            mean = filled @ coef if rows is None else filled[rows] @ coef
            draw = _truncated_normal(mean, 1.0 / np.sqrt(precision[j, j]), lo, hi, rng)
            if rows is None:
                filled[:, j] = draw
            else:
                filled[rows, j] = draw
        corr, clipped = _fixed_corr(filled, unlinked)
        if r >= rounds // 2:
            total += corr
            kept += 1
    return _nearest_correlation(total / kept)


def _fixed_corr(scores: np.ndarray, unlinked: np.ndarray) -> tuple[np.ndarray, int]:
    corr = np.where(unlinked, 0.0, _pairwise_corr(scores))
    np.fill_diagonal(corr, 1.0)
    return _nearest_correlation(corr)


def _has_ties(code: np.ndarray) -> bool:
    """True when some values repeat or are missing: their latent scores are uncertain."""
    observed = code[~np.isnan(code)]
    return observed.size < code.size or np.unique(observed).size < observed.size


def _disattenuate(
    corr: np.ndarray,
    bounds: list[tuple[Any, np.ndarray, np.ndarray] | None],
    unlinked: np.ndarray,
) -> np.ndarray:
    """A starting point for the Gibbs rounds: correlations divided by their tie attenuation.

    A score whose ties are broken at random keeps only the share ``Σ p_k m_k²`` of its latent
    variance (``m_k`` the mean of the normal over block ``k``); correlations shrink by it.
    """
    keep = np.ones(corr.shape[0])
    for j, b in enumerate(bounds):
        if b is None:
            continue
        _, lo, hi = b
        seen = np.isfinite(lo) | np.isfinite(hi)
        lower, first = np.unique(lo[seen], return_index=True)
        upper = hi[seen][first]
        p = ndtr(upper) - ndtr(lower)
        m = (_pdf(lower) - _pdf(upper)) / np.maximum(p, 1e-300)
        keep[j] = float(np.clip((p * m * m).sum(), 0.05, 1.0))
    scaled = np.where(unlinked, 0.0, np.clip(corr / np.outer(keep, keep), -0.99, 0.99))
    np.fill_diagonal(scaled, 1.0)
    return _nearest_correlation(scaled)[0]


def _pdf(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    return np.where(finite, np.exp(-0.5 * np.where(finite, x, 0.0) ** 2) / np.sqrt(2 * np.pi), 0.0)


def _block_bounds(code: np.ndarray) -> tuple[None, np.ndarray, np.ndarray]:
    """All rows (None), with the latent interval of their value's block (missing: unbounded)."""
    observed = ~np.isnan(code)
    _, inverse, counts = np.unique(code[observed], return_inverse=True, return_counts=True)
    cum = np.cumsum(counts) / max(int(observed.sum()), 1)
    lo = np.full(code.size, -np.inf)
    hi = np.full(code.size, np.inf)
    lo[observed] = ndtri(np.concatenate([[0.0], cum[:-1]]))[inverse]
    hi[observed] = ndtri(np.clip(cum, 0.0, 1.0))[inverse]
    return None, lo, hi


def _missing_rows(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The missing rows only, unbounded: they are imputed, the observed scores stay."""
    rows = np.flatnonzero(np.isnan(code))
    return rows, np.full(rows.size, -np.inf), np.full(rows.size, np.inf)


def _truncated_normal(
    mean: np.ndarray, sd: float, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draws from N(mean, sd²) truncated to [lo, hi], by inverse CDF in the accurate tail."""
    alpha = (lo - mean) / sd
    beta = (hi - mean) / sd
    flip = alpha > 0  # upper tail: mirror it, where ndtr keeps its precision
    a = np.where(flip, -beta, alpha)
    b = np.where(flip, -alpha, beta)
    pa, pb = ndtr(a), ndtr(b)
    t = ndtri(np.clip(pa + rng.random(mean.size) * (pb - pa), 1e-300, 1.0 - 1e-16))
    return np.clip(mean + sd * np.where(flip, -t, t), lo, hi)


def _normal_scores(code: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Φ⁻¹ of mid-ranks among observed values, ties broken at random; NaN stays NaN."""
    out = np.full(code.size, np.nan)
    idx = np.flatnonzero(~np.isnan(code))
    m = idx.size
    if m == 0:
        return out
    perm = rng.permutation(m)
    order = perm[np.argsort(code[idx][perm], kind="stable")]
    ranks = np.empty(m)
    ranks[order] = np.arange(m)
    out[idx] = ndtri((ranks + 0.5) / m)
    return out


def _pairwise_corr(z: np.ndarray) -> np.ndarray:
    """Pearson correlation of every pair of columns over the rows where both are observed."""
    if z.shape[0] >= _MIN_PAIR_ROWS and not np.isnan(z).any():
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(z, rowvar=False).reshape(z.shape[1], z.shape[1])
        return np.clip(np.nan_to_num(corr), -1.0, 1.0)
    mask = (~np.isnan(z)).astype(np.float64)
    z0 = np.nan_to_num(z)
    n = mask.T @ mask
    safe = np.maximum(n, 1.0)
    sx = (z0.T @ mask) / safe  # mean of column i over the rows where j is observed too
    sxx = ((z0 * z0).T @ mask) / safe
    sxy = (z0.T @ z0) / safe
    cov = sxy - sx * sx.T
    var_i = np.maximum(sxx - sx * sx, 0.0)
    denom = np.sqrt(var_i * var_i.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where((denom > 1e-12) & (n >= _MIN_PAIR_ROWS), cov / denom, 0.0)
    return np.clip(corr, -1.0, 1.0)


def _nearest_correlation(corr: np.ndarray) -> tuple[np.ndarray, int]:
    """A positive definite correlation matrix near ``corr`` (eigenvalues clipped, unit diagonal)."""
    if corr.size == 0:
        return corr, 0
    sym = (corr + corr.T) / 2.0
    vals, vecs = np.linalg.eigh(sym)
    clipped = int((vals < _MIN_EIGEN).sum())
    if clipped:
        sym = (vecs * np.maximum(vals, _MIN_EIGEN)) @ vecs.T
        d = np.sqrt(np.diag(sym))
        sym = sym / d[:, None] / d[None, :]
    np.fill_diagonal(sym, 1.0)
    return sym, clipped


def _cholesky(corr: np.ndarray) -> np.ndarray:
    """Cholesky factor, adding a little to the diagonal if rounding left it borderline."""
    if corr.size == 0:
        return corr
    eye = np.eye(len(corr))
    for jitter in (0.0, 1e-10, 1e-8, 1e-6, 1e-4):
        try:
            return np.linalg.cholesky((corr + jitter * eye) / (1.0 + jitter))
        except np.linalg.LinAlgError:
            continue
    return eye


def _group_means(x: np.ndarray, group: np.ndarray, k: int, counts: np.ndarray) -> np.ndarray:
    """Mean of each column of ``x`` within each of ``k`` groups (vectorised)."""
    sums = np.column_stack([np.bincount(group, weights=col, minlength=k) for col in x.T])
    return sums / np.maximum(counts, 1.0)[:, None]


def _null_where(s: pl.Series, mask: np.ndarray) -> pl.Series:
    return s.to_frame().select(
        pl.when(pl.lit(pl.Series(mask))).then(None).otherwise(pl.col(s.name)).alias(s.name)
    ).to_series()
