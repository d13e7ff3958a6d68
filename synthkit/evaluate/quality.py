"""Quality: how closely synthetic data follows the real data, column by column and pair by pair.

The scores follow SDMetrics' ``QualityReport`` definitions (KS and TV complements, correlation
and contingency similarity) but run vectorised on polars and numpy, so a table with a thousand
column pairs takes well under a second.

Missing values, explicitly: for categorical and boolean columns a null is one more category
(a generator that drops or invents nulls loses score); for numerical and datetime columns the KS
test compares the non-null values only, as SDMetrics does, and each column's null shares are
reported beside its score. In pairs, nulls are their own category (as in SDMetrics'
contingency tables) and Pearson correlation uses the rows where both values are present.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

from synthkit.schema import Column, ColumnKind

CONTINUOUS_KINDS = (ColumnKind.NUMERICAL, ColumnKind.DATETIME)
DISCRETE_KINDS = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
LEARNED_KINDS = CONTINUOUS_KINDS + DISCRETE_KINDS

#: Joint tables up to this many cells are counted densely (np.bincount); larger ones sparsely.
_DENSE_CELLS = 1 << 16
#: Columns beyond this many are left out of the stored correlation matrices (HTML heatmaps).
_MAX_HEATMAP_COLUMNS = 60
_EPS = 1e-12


# --- canonical form --------------------------------------------------------------------------
def canonical_frame(df: pl.DataFrame, columns: Sequence[Column]) -> pl.DataFrame:
    """``df``'s learned columns in one comparable form: Float64 for numbers and datetimes
    (microseconds since the epoch), String for categories and booleans.

    Real and synthetic frames often differ in dtype (Int64 vs Float64, dates as strings vs
    Date); every metric compares this form so such differences do not count as errors.
    """
    return df.select([_canonical_expr(df.schema[c.name], c) for c in columns])


def _canonical_expr(dtype: pl.DataType, col: Column) -> pl.Expr:
    e = pl.col(col.name)
    if col.kind == ColumnKind.NUMERICAL:
        if dtype.is_temporal():
            e = e.to_physical()
        elif dtype == pl.Boolean:
            e = e.cast(pl.Int8)
        return e.cast(pl.Float64, strict=False).fill_nan(None)
    if col.kind == ColumnKind.DATETIME:
        if dtype.is_numeric():
            return e.cast(pl.Float64).fill_nan(None)
        if not dtype.is_temporal():
            text = e.cast(pl.String)
            fmt = col.datetime_format
            if fmt is None:
                e = text.str.to_datetime(strict=False, time_unit="us")
            elif "%H" in fmt:
                e = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            else:
                e = text.str.strptime(pl.Date, fmt, strict=False)
        return e.dt.epoch("us").cast(pl.Float64)
    if col.kind == ColumnKind.BOOLEAN:
        if dtype == pl.Boolean:
            return e.cast(pl.String)
        if dtype.is_numeric():
            return (e != 0).cast(pl.String)
        return e.cast(pl.String).str.to_lowercase()
    # categorical: floats holding whole numbers read "3" (not "3.0") so they match integers.
    if dtype.is_float():
        whole = (e == e.round(0)) & (e.abs() < 2.0**53)
        return (
            pl.when(whole)
            .then(e.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(e.cast(pl.String))
            .alias(col.name)
        )
    return e.cast(pl.String)


def is_continuous(col: Column) -> bool:
    """True for columns compared as numbers (numerical, datetime)."""
    return col.kind in CONTINUOUS_KINDS


# --- codes ----------------------------------------------------------------------------------
def shared_codes(*series: pl.Series) -> tuple[list[np.ndarray], int]:
    """Integer codes for categories, consistent across ``series``; null is code 0."""
    joined = pl.concat([s.cast(pl.String) for s in series])
    codes = joined.rank("dense").fill_null(0).to_numpy().astype(np.int64)
    out, start = [], 0
    for s in series:
        out.append(codes[start : start + len(s)])
        start += len(s)
    return out, int(codes.max(initial=0)) + 1


def quantile_codes(
    real: pl.Series, others: Sequence[pl.Series], bins: int = 10
) -> tuple[list[np.ndarray], int]:
    """Codes for numbers binned at the real data's quantiles (about ``bins`` bins); null is 0."""
    r = real.to_numpy()
    finite = r[~np.isnan(r)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        if finite.size
        else np.empty(0)
    )
    out = []
    for s in (real, *others):
        x = s.to_numpy()
        code = np.searchsorted(edges, x, side="right") + 1
        code[np.isnan(x)] = 0
        out.append(code.astype(np.int64))
    return out, len(edges) + 2


def _tvd(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Total variation distance between the code distributions of ``a`` and ``b``."""
    pa = np.bincount(a, minlength=k) / len(a)
    pb = np.bincount(b, minlength=k) / len(b)
    return float(0.5 * np.abs(pa - pb).sum())


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic (largest gap between the two ECDFs)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


# --- column shapes --------------------------------------------------------------------------
def column_shapes(
    real: pl.DataFrame, synthetic: pl.DataFrame, columns: Sequence[Column]
) -> list[dict[str, Any]]:
    """Per column: 1 − KS statistic (numerical, datetime) or 1 − TVD (categorical, boolean)."""
    rows = []
    for col in columns:
        r, s = real.get_column(col.name), synthetic.get_column(col.name)
        row: dict[str, Any] = {
            "name": col.name,
            "kind": col.kind.value,
            "real_null_share": _share(r.null_count(), len(r)),
            "synthetic_null_share": _share(s.null_count(), len(s)),
        }
        if is_continuous(col):
            a, b = r.drop_nulls().to_numpy(), s.drop_nulls().to_numpy()
            row["metric"] = "ks_complement"
            if a.size and b.size:
                row["score"] = _round(1.0 - _ks(a, b))
            else:
                row["score"] = None
                row["note"] = "No non-null values to compare."
        else:
            (a, b), k = shared_codes(r, s)
            row["metric"] = "tvd_complement"
            row["score"] = _round(1.0 - _tvd(a, b, k))
        rows.append(row)
    return rows


# --- column pair trends ---------------------------------------------------------------------
def pair_trends(
    real: pl.DataFrame, synthetic: pl.DataFrame, columns: Sequence[Column], *, bins: int = 10
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Per pair of columns: correlation similarity (both continuous) or contingency similarity.

    Returns the pair rows and, for the HTML heatmaps, the real and synthetic Pearson matrices
    of the continuous columns (None when there are fewer than two).
    """
    cont = [c.name for c in columns if is_continuous(c)]
    corr_real = corr_syn = np.empty((0, 0))
    if len(cont) >= 2:
        corr_real = pairwise_pearson(real.select(cont).to_numpy().astype(np.float64))
        corr_syn = pairwise_pearson(synthetic.select(cont).to_numpy().astype(np.float64))
    pos = {name: i for i, name in enumerate(cont)}

    codes: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for col in columns:
        r, s = real.get_column(col.name), synthetic.get_column(col.name)
        (cr, cs), k = quantile_codes(r, [s], bins) if is_continuous(col) else shared_codes(r, s)
        codes[col.name] = (cr, cs, k)

    rows = []
    for a, b in combinations(columns, 2):
        if is_continuous(a) and is_continuous(b):
            rows.append(_correlation_row(a.name, b.name, corr_real, corr_syn, pos))
        else:
            rows.append(_contingency_row(a.name, b.name, codes[a.name], codes[b.name]))

    matrices = None
    if len(cont) >= 2:
        keep = cont[:_MAX_HEATMAP_COLUMNS]
        n = len(keep)
        matrices = {
            "columns": keep,
            "real": _matrix_to_lists(corr_real[:n, :n]),
            "synthetic": _matrix_to_lists(corr_syn[:n, :n]),
        }
    return rows, matrices


def pairwise_pearson(x: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column pair over rows where both are present (NaN = missing).

    Done with four matrix products instead of one pass per pair; columns are standardised
    first so the one-pass formulas stay accurate for large values such as epoch microseconds.
    Undefined entries (constant column, fewer than two shared rows) are NaN.
    """
    x = np.ascontiguousarray(x)  # polars hands over column-major arrays; rows are walked here
    present = ~np.isnan(x)
    count = np.maximum(present.sum(axis=0), 1)
    mean = np.where(present, x, 0.0).sum(axis=0) / count
    std = np.sqrt(np.where(present, (x - mean) ** 2, 0.0).sum(axis=0) / count)
    std = np.where(std > 0, std, 1.0)
    z = np.where(present, (x - mean) / std, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = present.astype(np.float64)
        n = m.T @ m
        sx = z.T @ m  # sx[i, j]: sum of column i over rows where i and j are both present
        sxx = (z * z).T @ m
        sxy = z.T @ z
        mx, my = sx / n, sx.T / n
        vx, vy = sxx / n - mx**2, sxx.T / n - my**2
        r = (sxy / n - mx * my) / np.sqrt(vx * vy)
    r[(n < 2) | (vx <= _EPS) | (vy <= _EPS)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _correlation_row(
    a: str, b: str, corr_real: np.ndarray, corr_syn: np.ndarray, pos: dict[str, int]
) -> dict[str, Any]:
    rr, rs = corr_real[pos[a], pos[b]], corr_syn[pos[a], pos[b]]
    row: dict[str, Any] = {
        "a": a,
        "b": b,
        "metric": "correlation_similarity",
        "real": _round(rr),
        "synthetic": _round(rs),
    }
    if np.isnan(rr):
        row["score"] = None
        row["note"] = (
            "Real correlation undefined (a constant column or no shared values); pair left out."
        )
    elif np.isnan(rs):
        row["score"] = _round(1.0 - abs(rr) / 2.0)
        row["note"] = (
            "Synthetic correlation undefined (a constant column or no shared values); counted as 0."
        )
    else:
        row["score"] = _round(1.0 - abs(rr - rs) / 2.0)
    return row


def _contingency_row(
    a: str, b: str, ca: tuple[np.ndarray, np.ndarray, int], cb: tuple[np.ndarray, np.ndarray, int]
) -> dict[str, Any]:
    (ra, sa, ka), (rb, sb, kb) = ca, cb
    jr, js = ra * kb + rb, sa * kb + sb
    if ka * kb <= _DENSE_CELLS:
        cells = np.arange(ka * kb)
        nr, ns = np.bincount(jr, minlength=ka * kb), np.bincount(js, minlength=ka * kb)
    else:
        cells, inv = np.unique(np.concatenate([jr, js]), return_inverse=True)
        nr = np.bincount(inv[: len(jr)], minlength=len(cells))
        ns = np.bincount(inv[len(jr) :], minlength=len(cells))
    tvd = 0.5 * np.abs(nr / len(jr) - ns / len(js)).sum()
    return {
        "a": a,
        "b": b,
        "metric": "contingency_similarity",
        "score": _round(1.0 - tvd),
        "real": _round(_cramers_v(cells, nr, ka, kb)),
        "synthetic": _round(_cramers_v(cells, ns, ka, kb)),
    }


def _cramers_v(cells: np.ndarray, counts: np.ndarray, ka: int, kb: int) -> float:
    """Cramér's V of a joint table given as (cell id, count); NaN when a margin is constant."""
    nz = counts > 0
    cells, counts = cells[nz], counts[nz].astype(np.float64)
    rows, cols = cells // kb, cells % kb
    rsum = np.bincount(rows, weights=counts, minlength=ka)
    csum = np.bincount(cols, weights=counts, minlength=kb)
    dof = min(int((rsum > 0).sum()), int((csum > 0).sum())) - 1
    n = counts.sum()
    if dof < 1 or n == 0:
        return float("nan")
    phi2 = (counts**2 / (rsum[rows] * csum[cols])).sum() - 1.0
    return float(np.sqrt(max(phi2, 0.0) / dof))


# --- distributions for plots ----------------------------------------------------------------
def distributions(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    columns: Sequence[Column],
    *,
    bins: int = 30,
    top: int = 20,
) -> dict[str, dict[str, Any]]:
    """Per column, what the HTML report plots: shared-bin histograms or top-category shares."""
    out = {}
    for col in columns:
        r, s = real.get_column(col.name), synthetic.get_column(col.name)
        if is_continuous(col):
            out[col.name] = _histogram(r, s, bins, col.kind == ColumnKind.DATETIME)
        else:
            out[col.name] = _category_shares(r, s, top)
    return out


def _histogram(r: pl.Series, s: pl.Series, bins: int, is_datetime: bool) -> dict[str, Any]:
    a, b = r.drop_nulls().to_numpy(), s.drop_nulls().to_numpy()
    both = np.concatenate([a, b])
    if both.size == 0:
        edges = np.array([0.0, 1.0])
    else:
        lo, hi = np.quantile(both, [0.005, 0.995])
        if hi <= lo:
            lo, hi = float(both.min()) - 0.5, float(both.max()) + 0.5
        edges = np.linspace(lo, hi, bins + 1)

    def shares(x: np.ndarray) -> list[float]:
        if x.size == 0:
            return [0.0] * (len(edges) - 1)
        counts, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)
        return [_round(v, 5) for v in counts / x.size]

    return {
        "type": "histogram",
        "datetime": is_datetime,
        "edges": [float(e) for e in edges],
        "real": shares(a),
        "synthetic": shares(b),
    }


def _category_shares(r: pl.Series, s: pl.Series, top: int) -> dict[str, Any]:
    key = "value"
    vr = r.alias(key).value_counts(name="real")
    vs = s.alias(key).value_counts(name="synthetic")
    joined = (
        vr.join(vs, on=key, how="full", coalesce=True, nulls_equal=True)
        .with_columns(pl.col("real", "synthetic").fill_null(0))
        .sort(
            [pl.col("real"), pl.col("synthetic"), pl.col(key).cast(pl.String)],
            descending=[True, True, False],
            maintain_order=True,
        )
    )
    head, rest = joined.head(top), joined.slice(top)
    labels = ["(missing)" if v is None else str(v) for v in head.get_column(key).to_list()]
    real_n = head.get_column("real").to_list()
    syn_n = head.get_column("synthetic").to_list()
    if rest.height:
        labels.append(f"(other {rest.height})")
        real_n.append(int(rest.get_column("real").sum()))
        syn_n.append(int(rest.get_column("synthetic").sum()))
    return {
        "type": "bars",
        "categories": labels,
        "real": [_round(v / max(len(r), 1), 5) for v in real_n],
        "synthetic": [_round(v / max(len(s), 1), 5) for v in syn_n],
    }


# --- averages and helpers -------------------------------------------------------------------
def mean_score(rows: Sequence[dict[str, Any]]) -> float | None:
    """Mean of the rows' defined scores; None when none is defined."""
    scores = [r["score"] for r in rows if r.get("score") is not None]
    return _round(float(np.mean(scores))) if scores else None


def _matrix_to_lists(m: np.ndarray) -> list[list[float | None]]:
    return [[_round(v, 4) for v in row] for row in m.tolist()]


def _share(part: int, whole: int) -> float:
    return _round(part / whole) if whole else 0.0


def _round(value: Any, digits: int = 6) -> Any:
    """A plain rounded float, or None for NaN/None, so reports stay JSON-clean."""
    if value is None:
        return None
    v = float(value)
    return None if np.isnan(v) else round(v, digits)


def sdmetrics_score(
    real: pl.DataFrame, synthetic: pl.DataFrame, sdv_table: dict[str, Any]
) -> tuple[float | None, str | None]:
    """SDMetrics' ``QualityReport`` overall score as a cross-check, or None and why not.

    SDMetrics (0.2x and later) by default averages only pairs whose real association is
    strong; its thresholds are set to 0 here so every pair counts, as in our score, and the
    two numbers measure the same thing.
    """
    try:
        import sdmetrics
    except ImportError:
        return None, "SDMetrics is not installed (pip install sdmetrics); cross-check skipped."
    try:
        from sdmetrics.reports import QualityReport

        real_data: Any = {"table": real.to_pandas()}
        synthetic_data: Any = {"table": synthetic.to_pandas()}
        metadata: dict[str, Any] = {"tables": {"table": sdv_table}, "relationships": []}
    except ImportError:  # SDMetrics before the unified report
        from sdmetrics.reports.single_table import QualityReport  # type: ignore[no-redef]

        real_data, synthetic_data, metadata = real.to_pandas(), synthetic.to_pandas(), sdv_table
    try:
        report = QualityReport()
        report.real_correlation_threshold = 0
        report.real_association_threshold = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.generate(real_data, synthetic_data, metadata, verbose=False)
            score = report.get_score()
    except Exception as exc:  # noqa: BLE001 - a failed cross-check must not fail the report
        return None, f"SDMetrics failed: {type(exc).__name__}: {exc}"
    value = _round(score)
    if value is None:
        return None, "SDMetrics returned no score (it needs at least one column pair)."
    return value, (
        f"SDMetrics {sdmetrics.__version__} QualityReport with its association thresholds at 0, "
        "so every column pair counts as in quality.overall."
    )
