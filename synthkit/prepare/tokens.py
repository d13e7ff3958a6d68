"""Tables as integer tokens, one small vocabulary per token position, and back.

For autoregressive families (``tabular/argn``): every learned column becomes one token, or two,
each drawn from its own vocabulary.

* categorical: one token per category seen in at least ``rare_threshold`` rows (most frequent
  first), one shared *protected* token for the rarer ones, and a null token if nulls were seen.
  Rare categories are never stored: only their number is kept. The protected token decodes to
  ``rare_replacement``: ``"placeholder"`` (default) writes ``placeholder`` (``"(other)"``), a
  value that cannot name a real person or rare entity; ``"frequent"`` draws a frequent category
  by its training frequency (so the column keeps only real, common values). Columns whose dtype
  cannot hold the placeholder text use ``"frequent"``, and a column with no frequent category
  left decodes the token as null. Values the schema declares public (``Column.categories``)
  are never protected. Booleans are categorical tokens without protection.
* numerical and datetime (as seconds): quantile *bins*. Distinct values are grouped, in order,
  into at most ``bins`` groups of about equal row counts; a value holding many rows (a zero,
  typically) gets a bin of its own, and a column with at most ``bins`` distinct values gets one
  bin per value (reproduced exactly). With ``sub_bins > 1`` each bin is split the same way into
  at most ``sub_bins`` *sub-bins*, a second token, so the model places values finer where it
  matters. The value within a (sub-)bin is drawn from the column's empirical quantile function
  restricted to that cell, so marginals keep their shape inside every cell; a cell holding one
  distinct value returns it exactly. Missing values are a token of their own. *Extreme value
  protection* (``protect_extremes=True``): values below the ``rare_threshold``-th
  smallest or above the ``rare_threshold``-th largest are capped there before binning, so the
  few most extreme values, the most identifying ones (and often data errors), are never stored
  or reproduced.

*Private fit* (:meth:`TableTokenizer.fit_private`, for ``dp=``): nothing is read from the data
without noise. Bin edges are quantiles of the private CDF knots of
:func:`~synthkit.prepare.private_stats.private_facts` inside private bounds, or equal-width over
public bounds (``Column.public_bounds``: no budget); integer columns bin on the integer grid (one
bin per value when the range allows); the value within a (sub-)bin follows the private CDF
knots (uniform for public bounds), never the empirical quantile function. Category vocabularies
are the categories released by stability-based selection (noisy count over a threshold that a
single row's category clears with probability at most delta), most frequent (noisy) first, or the
declared ``Column.categories``; booleans are ``[False, True]``. Every undeclared categorical
column keeps a protected token for whatever was not released (whether anything was is not
known), so rare categories can never be selected or stored. Null tokens follow the schema's
``nullable`` (public metadata); the share of nulls, like every other frequency, is left to
DP-SGD.

Everything is vectorised (polars and numpy); ``state()`` gives numpy arrays + JSON, no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError, NotFittedError, SchemaError
from synthkit.prepare.encoders import (
    cast_to_column,
    from_seconds,
    plain_strings,
    restore_numeric,
    set_null,
    to_seconds,
    values_from_json,
    values_to_json,
)
from synthkit.prepare.private_stats import (
    ContinuousFacts,
    DiscreteFacts,
    PrivateFacts,
    facts_cdf,
    facts_quantile,
    private_facts,
    uniform_facts,
)
from synthkit.schema import Column, ColumnKind, Schema, dtype_name, parse_dtype

RareReplacement = Literal["placeholder", "frequent"]
TokenRole = Literal["category", "bin", "sub_bin"]
#: Most quantile knots kept per numerical column for within-cell values (fine enough that a
#: gap before an outlier is not filled with invented values).
_MAX_KNOTS = 10_000
#: Units datetimes are rounded to when decoded, coarsest first (seconds).
_RESOLUTIONS = (86_400.0, 3_600.0, 60.0, 1.0, 1e-3, 1e-6)
_SHOWN = 5


@dataclass(frozen=True)
class TokenSlot:
    """One token position: the column it belongs to, its role and its vocabulary size."""

    column: str
    role: TokenRole
    vocab: int


# --- categorical and boolean ----------------------------------------------------------------
class _CategoryTokens:
    """One token: frequent categories, a protected token for rare ones, a null token."""

    def __init__(
        self,
        column: Column,
        *,
        rare_threshold: int,
        rare_replacement: RareReplacement,
        placeholder: str,
    ) -> None:
        self.column = column
        self.rare_threshold = rare_threshold if column.kind == ColumnKind.CATEGORICAL else 1
        self.rare_replacement = rare_replacement
        self.placeholder = placeholder
        #: Fitted from private facts: ``protected`` then only says whether the token exists.
        self.private = False

    def fit(self, series: pl.Series) -> None:
        s = plain_strings(series)
        self.dtype: pl.DataType = s.dtype if s.dtype != pl.Null else pl.String()
        counts = (
            s.drop_nulls()
            .alias("value")
            .value_counts(sort=False, name="count")
            .sort(["count", "value"], descending=[True, False])
        )
        declared = self.column.categories or []
        public = counts.get_column("value").is_in(
            pl.Series(declared, dtype=self.dtype, strict=False).implode()
        )
        keep = (counts.get_column("count") >= self.rare_threshold) | public
        self.values = counts.get_column("value").filter(keep).cast(self.dtype)
        self.counts = counts.get_column("count").filter(keep).to_numpy().astype(np.float64)
        self.protected = int((~keep).sum())
        self.has_null = s.null_count() > 0
        self.other_as = self._other_as()

    def fit_private(self, series: pl.Series, facts: DiscreteFacts) -> None:
        """The vocabulary from differentially private facts alone (see the module docstring):
        the released (or declared) categories; a protected token for the rest of an undeclared
        column; a null token when the schema says the column may be null."""
        s = plain_strings(series)
        self.dtype = s.dtype if s.dtype != pl.Null else pl.String()
        values = pl.Series("value", list(facts.values), dtype=self.dtype, strict=False)
        counts = np.asarray(facts.counts, dtype=np.float64)
        if not facts.declared:
            # post-processing of the noisy counts: never keep what the threshold would protect
            keep = counts >= self.rare_threshold
            values, counts = values.filter(pl.Series(keep)), counts[keep]
        if len(values) == 0:
            raise DataError(
                f"No category of column '{self.column.name}' is frequent enough to be released "
                "under differential privacy at this epsilon.",
                hint="Declare the column's categories in the schema (Column.categories: public "
                "knowledge costs no budget), raise epsilon or the dp preprocessing_share, or "
                "drop the column.",
            )
        self.values = values
        self.counts = np.clip(counts, 1e-3, None)
        # whether any category went unreleased is not known (that would read the data): an
        # undeclared column always keeps the protected token, DP-SGD learns how often it occurs
        self.protected = 0 if facts.declared else 1
        self.private = True
        self.has_null = bool(self.column.nullable)
        self.other_as = self._other_as()

    def _other_as(self) -> str:
        """How the protected token decodes (see the module docstring)."""
        if self.protected == 0:
            return "none"
        if self.rare_replacement == "placeholder" and self.dtype == pl.String:
            return "placeholder"
        if len(self.values):
            return "frequent"
        return "placeholder" if self.dtype == pl.String else "null"

    # token layout: values..., [protected], [null]
    @property
    def other_token(self) -> int | None:
        return len(self.values) if self.protected else None

    @property
    def null_token(self) -> int | None:
        return len(self.values) + bool(self.protected) if self.has_null else None

    @property
    def vocab(self) -> int:
        return len(self.values) + bool(self.protected) + bool(self.has_null)

    def slots(self) -> list[TokenSlot]:
        return [TokenSlot(self.column.name, "category", self.vocab)]

    def encode(self, series: pl.Series) -> np.ndarray:
        """``(n, 1)`` tokens; rare or unseen values take the protected token."""
        s = plain_strings(series)
        missing = s.is_null().to_numpy()
        cast = s.cast(self.dtype, strict=False)
        failed = cast.is_null().to_numpy() & ~missing
        if failed.any():
            shown = s.filter(pl.Series(failed)).head(_SHOWN).to_list()
            raise DataError(
                f"Values of '{self.column.name}' cannot be read as {self.dtype}: {shown}.",
                hint=f"Give '{self.column.name}' values of the type it was trained on.",
            )
        codes = cast.replace_strict(
            self.values, pl.Series(np.arange(len(self.values))), default=-1, return_dtype=pl.Int64
        ).to_numpy()
        unseen = (codes < 0) & ~missing
        if unseen.any():
            if self.other_token is None:
                shown = cast.filter(pl.Series(unseen)).unique().head(_SHOWN).to_list()
                raise DataError(
                    f"Column '{self.column.name}' never held {shown} in training.",
                    hint=f"Use values seen in training, e.g. {self.values.head(_SHOWN).to_list()}.",
                )
            codes = np.where(unseen, self.other_token, codes)
        if missing.any():
            if self.null_token is None:
                raise DataError(
                    f"Column '{self.column.name}' has nulls here but had none in training.",
                    hint=f"Fill the nulls of '{self.column.name}' first.",
                )
            codes = np.where(missing, self.null_token, codes)
        return codes.astype(np.int64)[:, None]

    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pl.Series:
        t = np.clip(tokens[:, 0].astype(np.int64), 0, max(self.vocab - 1, 0))
        k = len(self.values)
        index = t.copy()
        lookup = self.values
        null_index = k
        if self.other_as == "placeholder":
            lookup = pl.concat([lookup, pl.Series("value", [self.placeholder], dtype=self.dtype)])
            null_index = k + 1
        lookup = pl.concat([lookup, pl.Series("value", [None], dtype=self.dtype)])
        if self.null_token is not None:
            index[t == self.null_token] = null_index
        if self.other_token is not None:
            other = t == self.other_token
            if self.other_as == "frequent":
                p = self.counts / self.counts.sum()
                index[other] = rng.choice(k, size=int(other.sum()), p=p)
            elif self.other_as == "null":
                index[other] = null_index
            # "placeholder": index k already points at the placeholder
        return cast_to_column(lookup.gather(index).alias(self.column.name), self.column)

    def known_values(self) -> list[Any]:
        """The values sampling can produce and conditions may fix (never a protected one)."""
        return values_to_json(self.values)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"counts": self.counts.copy()}, {
            "type": "category",
            "dtype": dtype_name(self.dtype),
            "values": values_to_json(self.values),
            "protected": self.protected,
            "has_null": self.has_null,
            "other_as": self.other_as,
            "rare_threshold": self.rare_threshold,
            "placeholder": self.placeholder,
            "private": self.private,
        }

    @classmethod
    def from_state(
        cls, column: Column, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> _CategoryTokens:
        part = cls(
            column,
            rare_threshold=int(meta["rare_threshold"]),
            rare_replacement="placeholder",
            placeholder=str(meta["placeholder"]),
        )
        part.dtype = parse_dtype(meta["dtype"])
        part.values = values_from_json(meta["values"], part.dtype).alias("value").cast(part.dtype)
        part.counts = np.asarray(arrays["counts"], dtype=np.float64)
        part.protected = int(meta["protected"])
        part.has_null = bool(meta["has_null"])
        part.other_as = str(meta["other_as"])
        part.private = bool(meta.get("private", False))
        return part


# --- numerical and datetime -----------------------------------------------------------------
def _levels(counts: np.ndarray, k: int) -> np.ndarray:
    """Group ordered distinct values (with their row counts) into at most k runs of about equal
    mass: one per value when there are at most k; a heavy value gets a run of its own."""
    if counts.size <= k:
        return np.arange(counts.size)
    before = np.cumsum(counts) - counts
    raw = np.floor(k * before / counts.sum()).astype(np.int64)
    return np.unique(raw, return_inverse=True)[1].reshape(-1)


class _NumberTokens:
    """A bin token (and a sub-bin token) for a numerical or datetime column."""

    def __init__(self, column: Column, *, bins: int, sub_bins: int, extreme_rows: int = 1) -> None:
        self.column = column
        self.bins = bins
        self.sub_bins = sub_bins
        self.extreme_rows = extreme_rows
        self.capped = 0
        #: Values are whole numbers drawn on the integer grid (private fits of integer columns).
        self.integer = False
        self.private = False

    def raw(self, series: pl.Series) -> np.ndarray:
        """float64 (datetimes in seconds since 1970), NaN where missing."""
        if self.column.kind == ColumnKind.DATETIME:
            return np.asarray(to_seconds(series, self.column), dtype=np.float64)
        s = series.to_physical() if series.dtype.is_temporal() else series
        return s.cast(pl.Float64, strict=False).fill_nan(None).to_numpy().astype(np.float64, copy=False)

    def fit(self, series: pl.Series) -> None:
        x = self.raw(series)
        seen = x[np.isfinite(x)]
        self.has_null = bool(seen.size < x.size)
        if seen.size == 0:
            raise DataError(
                f"Column '{self.column.name}' holds no usable value.",
                hint="Drop it, or fix its values (dates must match the schema's format).",
            )
        k = self.extreme_rows
        if k > 1 and seen.size >= 2 * k:
            lo, hi = np.partition(seen, (k - 1, seen.size - k))[[k - 1, seen.size - k]]
            self.capped = int(((seen < lo) | (seen > hi)).sum())
            seen = np.clip(seen, lo, hi)
        values, counts = np.unique(seen, return_counts=True)
        coarse = _levels(counts, self.bins)
        n_bins = int(coarse.max()) + 1
        # sub-bins: the same grouping inside each bin, vectorised over bins
        first = np.searchsorted(coarse, np.arange(n_bins))
        size = np.diff(np.append(first, coarse.size))
        rank = np.arange(coarse.size) - first[coarse]
        cum = np.cumsum(counts) - counts
        before_in_bin = cum - cum[first][coarse]
        bin_mass = np.add.reduceat(counts, first)
        even = np.floor(self.sub_bins * before_in_bin / bin_mass[coarse]).astype(np.int64)
        fine = np.where(size[coarse] <= self.sub_bins, rank, even)
        cell = np.unique(coarse * (fine.max() + 1) + fine, return_inverse=True)[1].reshape(-1)
        n_cells = int(cell.max()) + 1
        cell_first = np.searchsorted(cell, np.arange(n_cells))
        cell_last = np.append(cell_first[1:], cell.size) - 1
        total = float(counts.sum())
        mass = np.cumsum(counts) / total
        self.cell_lo = values[cell_first]
        self.cell_hi = values[cell_last]
        self.cell_p0 = np.append(0.0, mass[cell_last][:-1])
        self.cell_p1 = mass[cell_last]
        self.bin_first = np.append(np.searchsorted(coarse[cell_first], np.arange(n_bins)), n_cells)
        k = min(_MAX_KNOTS, seen.size)
        self.knots = np.quantile(seen, np.linspace(0.0, 1.0, k)) if k > 1 else seen[:1].copy()
        self.resolution = _resolution(seen) if self.column.kind == ColumnKind.DATETIME else None

    def fit_private(self, facts: ContinuousFacts) -> None:
        """Bins from differentially private facts alone: quantiles of the private CDF knots
        inside the private (or public) bounds, on the integer grid for integer columns; the
        value within a cell follows the knots. Nothing here reads the data."""
        col = self.column
        self.private = True
        self.has_null = bool(col.nullable)  # public metadata, not a count
        self.capped = 0
        self.resolution = None
        self.integer = col.kind == ColumnKind.NUMERICAL and (
            col.decimals == 0 or col.polars_dtype.is_integer()
        )
        knots = np.maximum.accumulate(np.asarray(facts.knots, dtype=np.float64))
        lo, hi = float(knots[0]), float(knots[-1])
        if self.integer:
            lo, hi = float(np.round(lo)), float(max(np.round(hi), np.round(lo)))
        probs = np.asarray(facts.probs, dtype=np.float64)
        fx = ContinuousFacts(lo, hi, np.clip(knots, lo, hi), probs, facts.declared_bounds)
        if hi <= lo:
            starts = [np.array([lo])]
        elif self.integer and hi - lo + 1 <= self.bins:
            starts = [np.array([v]) for v in np.arange(lo, hi + 1)]
        else:
            edges = self._starts(fx, lo, hi, self.bins)
            ends = np.append(edges[1:], hi + 1.0 if self.integer else hi)
            starts = [
                self._starts(fx, a, b - 1.0 if self.integer else b, self.sub_bins)
                for a, b in zip(edges, ends, strict=True)
            ]
        self.cell_lo = np.concatenate(starts)
        upper = np.append(self.cell_lo[1:], hi + 1.0 if self.integer else hi)
        self.cell_hi = upper - 1.0 if self.integer else upper
        half = 0.5 if self.integer else 0.0
        self.cell_p0 = facts_cdf(fx, self.cell_lo - half)
        self.cell_p1 = facts_cdf(fx, self.cell_hi + half)
        self.cell_p0[0], self.cell_p1[-1] = 0.0, 1.0
        sizes = np.array([len(c) for c in starts])
        self.bin_first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # decoding reads the knots at evenly spaced probabilities (as the plain fit's)
        self.knots = facts_quantile(fx, np.linspace(0.0, 1.0, probs.size))

    def _starts(self, fx: ContinuousFacts, a: float, b: float, k: int) -> np.ndarray:
        """Lower edges of at most ``k`` cells of about equal private mass covering ``[a, b]``
        (whole numbers for integer columns: ``[a, b]`` then holds whole numbers)."""
        if self.integer:
            if b - a + 1 <= k:
                return np.arange(a, b + 1)
            p = np.linspace(facts_cdf(fx, a - 0.5), facts_cdf(fx, b + 0.5), k + 1)[1:-1]
            inner = np.round(facts_quantile(fx, p) + 0.5)
        else:
            if b <= a:
                return np.array([a])
            p = np.linspace(facts_cdf(fx, a), facts_cdf(fx, b), k + 1)[1:-1]
            inner = facts_quantile(fx, p)
        inner = inner[(inner > a) & (inner <= b)]
        return np.unique(np.concatenate([[a], inner]))

    @property
    def n_bins(self) -> int:
        return self.bin_first.size - 1

    @property
    def sub_counts(self) -> np.ndarray:
        """Sub-bins of each bin token (the null token has one)."""
        own = np.diff(self.bin_first)
        return np.append(own, 1) if self.has_null else own

    @property
    def has_sub(self) -> bool:
        return bool(self.sub_counts.max() > 1)

    @property
    def null_token(self) -> int | None:
        return self.n_bins if self.has_null else None

    def slots(self) -> list[TokenSlot]:
        out = [TokenSlot(self.column.name, "bin", self.n_bins + int(self.has_null))]
        if self.has_sub:
            out.append(TokenSlot(self.column.name, "sub_bin", int(self.sub_counts.max())))
        return out

    def ordinal(self) -> list[list[float]]:
        """Positions in [0, 1] of the bin tokens (and sub-bin tokens): see TableTokenizer.ordinal."""
        first, last = self.bin_first[:-1], self.bin_first[1:] - 1
        bins = ((self.cell_p0[first] + self.cell_p1[last]) / 2).tolist()
        out = [bins + ([float("nan")] if self.has_null else [])]
        if self.has_sub:
            width = int(self.sub_counts.max())
            out.append(((np.arange(width) + 0.5) / width).tolist())
        return out

    def encode(self, series: pl.Series) -> np.ndarray:
        """``(n, 1 or 2)`` tokens: the cell each value falls in (clamped to the seen range)."""
        x = self.raw(series)
        missing = ~np.isfinite(x)
        unreadable = missing & ~series.is_null().to_numpy()
        if series.dtype.is_float():
            unreadable &= ~series.is_nan().fill_null(False).to_numpy()
        if unreadable.any():
            shown = series.filter(pl.Series(unreadable)).head(_SHOWN).to_list()
            raise DataError(
                f"Values of '{self.column.name}' cannot be read as numbers or dates: {shown}.",
                hint=f"Give '{self.column.name}' values of the type it was trained on"
                + (f" (format {self.column.datetime_format})." if self.column.datetime_format else "."),
            )
        if missing.any() and not self.has_null:
            raise DataError(
                f"Column '{self.column.name}' has missing values here but had none in training.",
                hint=f"Fill the nulls of '{self.column.name}' first.",
            )
        cell = np.clip(
            np.searchsorted(self.cell_lo, np.where(missing, 0.0, x), side="right") - 1,
            0,
            self.cell_lo.size - 1,
        )
        coarse = np.searchsorted(self.bin_first, cell, side="right") - 1
        fine = cell - self.bin_first[coarse]
        if self.has_null:
            coarse = np.where(missing, self.n_bins, coarse)
            fine = np.where(missing, 0, fine)
        cols = [coarse] + ([fine] if self.has_sub else [])
        return np.stack(cols, axis=1).astype(np.int64)

    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pl.Series:
        n = tokens.shape[0]
        coarse = np.clip(tokens[:, 0].astype(np.int64), 0, self.n_bins - 1 + int(self.has_null))
        missing = coarse == self.n_bins
        coarse = np.minimum(coarse, self.n_bins - 1)
        fine = tokens[:, 1].astype(np.int64) if self.has_sub else np.zeros(n, dtype=np.int64)
        limit = np.diff(self.bin_first)[coarse]
        cell = self.bin_first[coarse] + np.clip(fine, 0, limit - 1)
        p0, p1 = self.cell_p0[cell], self.cell_p1[cell]
        probs = np.linspace(0.0, 1.0, self.knots.size)
        x = np.interp(p0 + rng.random(n) * (p1 - p0), probs, self.knots)
        if self.integer:
            x = np.floor(x + 0.5)
        x = np.clip(x, self.cell_lo[cell], self.cell_hi[cell])
        if self.column.kind == ColumnKind.DATETIME:
            if self.resolution:
                x = np.round(x / self.resolution) * self.resolution
            out = from_seconds(np.where(missing, 0.0, x), self.column).alias(self.column.name)
            return set_null(out, missing)
        return restore_numeric(self.column, np.where(missing, np.nan, x))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            "cell_lo": self.cell_lo, "cell_hi": self.cell_hi, "cell_p0": self.cell_p0,
            "cell_p1": self.cell_p1, "bin_first": self.bin_first.astype(np.int64),
            "knots": self.knots,
        }
        return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, {
            "type": "number",
            "bins": self.bins,
            "sub_bins": self.sub_bins,
            "has_null": self.has_null,
            "resolution": self.resolution,
            "extreme_rows": self.extreme_rows,
            "capped": self.capped,
            "integer": self.integer,
            "private": self.private,
        }

    @classmethod
    def from_state(
        cls, column: Column, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> _NumberTokens:
        part = cls(
            column,
            bins=int(meta["bins"]),
            sub_bins=int(meta["sub_bins"]),
            extreme_rows=int(meta.get("extreme_rows", 1)),
        )
        part.capped = int(meta.get("capped", 0))
        for key in ("cell_lo", "cell_hi", "cell_p0", "cell_p1", "knots"):
            setattr(part, key, np.asarray(arrays[key], dtype=np.float64))
        part.bin_first = np.asarray(arrays["bin_first"], dtype=np.int64)
        part.has_null = bool(meta["has_null"])
        part.resolution = meta.get("resolution")
        part.integer = bool(meta.get("integer", False))
        part.private = bool(meta.get("private", False))
        return part


def _resolution(seconds: np.ndarray) -> float | None:
    """The coarsest unit every (sampled) timestamp is a whole multiple of, if any."""
    probe = seconds[:10_000]
    for step in _RESOLUTIONS:
        ratio = probe / step
        if np.all(np.abs(ratio - np.round(ratio)) <= 1e-9 * np.maximum(1.0, np.abs(ratio))):
            return step
    return None


_Part = _CategoryTokens | _NumberTokens


def _public_bounds(column: Column) -> tuple[float, float] | None:
    """Declared public bounds of a numerical column (None when they must be estimated)."""
    if column.kind == ColumnKind.NUMERICAL and column.public_bounds:
        return float(column.min), float(column.max)  # type: ignore[arg-type]
    return None


def _needs_facts(column: Column) -> bool:
    """Whether a private fit spends budget on ``column``: undeclared bounds and quantiles of
    numbers and datetimes, undeclared category sets (booleans' values are public)."""
    if column.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
        return _public_bounds(column) is None
    return column.kind == ColumnKind.CATEGORICAL and column.categories is None


# --- the table tokenizer --------------------------------------------------------------------
class TableTokenizer:
    """A table as an ``(n, tokens)`` integer matrix, column by column in schema order, and back."""

    def __init__(
        self,
        *,
        bins: int = 64,
        sub_bins: int = 1,
        rare_threshold: int = 5,
        rare_replacement: RareReplacement = "placeholder",
        placeholder: str = "(other)",
        protect_extremes: bool = False,
    ) -> None:
        for name, value in (("bins", bins), ("sub_bins", sub_bins), ("rare_threshold", rare_threshold)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if rare_replacement not in ("placeholder", "frequent"):
            raise ConfigError(
                f"rare_replacement must be 'placeholder' or 'frequent', got {rare_replacement!r}."
            )
        self.bins = bins
        self.sub_bins = sub_bins
        self.rare_threshold = rare_threshold
        self.rare_replacement = rare_replacement
        self.placeholder = placeholder
        self.protect_extremes = protect_extremes
        self.parts: list[_Part] = []
        #: Fitted by fit_private: nothing in it was read from the data without noise.
        self.private = False
        self.fitted_ = False

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, df: pl.DataFrame, schema: Schema) -> TableTokenizer:
        """Learn every column's vocabulary; returns ``self``."""
        schema.check_frame(df)
        self.schema = schema
        self.parts = [self._new_part(c) for c in schema]
        for part in self.parts:
            part.fit(df.get_column(part.column.name))
        self._index()
        self.fitted_ = True
        return self

    def fit_private(
        self,
        df: pl.DataFrame,
        schema: Schema,
        *,
        epsilon: float,
        delta: float,
        rng: np.random.Generator,
    ) -> PrivateFacts:
        """Learn every column's vocabulary under (epsilon, delta)-differential privacy (see the
        module docstring); returns the private facts with what they cost and a report.

        Only what :func:`needs_private_facts` names spends budget: undeclared bounds and
        quantiles of numerical and datetime columns, undeclared category sets. Public bounds
        give equal-width bins, declared categories their own vocabulary, for free.
        """
        schema.check_frame(df)
        # min and max the schema read from the data are not kept: decoding would clip samples
        # to them and so reproduce the exact extremes (declared public bounds stay)
        self.schema = schema.model_copy(update={"columns": [
            c if c.public_bounds else c.model_copy(update={"min": None, "max": None})
            for c in schema
        ]})
        self.parts = [self._new_part(c) for c in self.schema]
        continuous: dict[str, tuple[np.ndarray, tuple[float, float] | None]] = {}
        discrete: dict[str, tuple[pl.Series, list[Any] | None]] = {}
        for part in self.parts:
            column, series = part.column, df.get_column(part.column.name)
            if not _needs_facts(column):
                continue
            if isinstance(part, _NumberTokens):
                continuous[column.name] = (part.raw(series), None)
            else:
                discrete[column.name] = (plain_strings(series), None)
        if continuous or discrete:
            facts = private_facts(continuous, discrete, epsilon=epsilon, delta=delta, rng=rng)
        else:
            facts = PrivateFacts({}, 0.0, 0.0, 0.0, None, {"columns": {}})
        report = facts.report.setdefault("columns", {})
        for part in self.parts:
            column, series = part.column, df.get_column(part.column.name)
            fact = facts.columns.get(column.name)
            if isinstance(part, _NumberTokens):
                if fact is None:
                    lo, hi = _public_bounds(column)  # type: ignore[misc]
                    fact = uniform_facts(lo, hi)
                    report[column.name] = {"bounds": "declared", "lo": lo, "hi": hi}
                assert isinstance(fact, ContinuousFacts)
                part.fit_private(fact)
                report[column.name]["bins"] = part.n_bins
            else:
                if fact is None:
                    declared = column.categories
                    if declared is None:  # a boolean: its values are public
                        declared = [False, True]
                    fact = DiscreteFacts(list(declared), np.ones(len(declared)), declared=True)
                    report[column.name] = {"categories": "declared"}
                assert isinstance(fact, DiscreteFacts)
                part.fit_private(series, fact)
        self.private = True
        self._index()
        self.fitted_ = True
        return facts

    @staticmethod
    def needs_private_facts(schema: Schema) -> bool:
        """Whether a private fit of ``schema`` spends budget (something is not declared public)."""
        return any(_needs_facts(c) for c in schema)

    def _new_part(self, column: Column) -> _Part:
        if column.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            return _CategoryTokens(
                column,
                rare_threshold=self.rare_threshold,
                rare_replacement=self.rare_replacement,
                placeholder=self.placeholder,
            )
        if column.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            return _NumberTokens(
                column,
                bins=self.bins,
                sub_bins=self.sub_bins,
                extreme_rows=self.rare_threshold if self.protect_extremes else 1,
            )
        raise SchemaError(
            f"Column '{column.name}' is of kind '{column.kind.value}', which is never tokenised.",
            hint="ids, PII and text are generated by synthkit.prepare.fillers, not learned.",
        )

    def _index(self) -> None:
        self.slots: list[TokenSlot] = [s for part in self.parts for s in part.slots()]
        widths = [len(part.slots()) for part in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        #: Column index and position within the column of every token.
        self.column_of = np.repeat(np.arange(len(self.parts)), widths)
        self.sub_of = np.arange(len(self.slots)) - self.starts[self.column_of]

    # --- shape ------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [p.column.name for p in self.parts]

    @property
    def n_tokens(self) -> int:
        return len(self.slots)

    @property
    def vocab_sizes(self) -> list[int]:
        return [s.vocab for s in self.slots]

    def positions(self, column: str) -> list[int]:
        """Token positions of ``column``."""
        i = self._column_index(column)
        return list(range(int(self.starts[i]), int(self.starts[i + 1])))

    def sub_limits(self) -> dict[int, tuple[int, np.ndarray]]:
        """``{sub-bin position: (its bin position, sub-bins valid per bin token)}``: sampling
        masks sub-bin tokens a bin does not have."""
        out = {}
        for i, part in enumerate(self.parts):
            if isinstance(part, _NumberTokens) and part.has_sub:
                start = int(self.starts[i])
                out[start + 1] = (start, part.sub_counts.astype(np.int64))
        return out

    def ordinal(self) -> list[list[float] | None]:
        """Per token position, each token's position in [0, 1] when the tokens are ordered (the
        bins' mid quantiles; sub-bins' place within their bin; NaN for the null token), else None."""
        out: list[list[float] | None] = []
        for part in self.parts:
            if isinstance(part, _NumberTokens):
                out.extend(part.ordinal())
            else:
                out.append(None)
        return out

    def protected(self) -> dict[str, dict[str, Any]]:
        """Per column with rare categories: how many share the protected token (None after a
        private fit: unknown, as that would read the data), and what that token is sampled as
        (``"placeholder"``, ``"frequent"`` or ``"null"``)."""
        return {
            p.column.name: {
                "categories": None if p.private else p.protected, "sampled_as": p.other_as
            }
            for p in self.parts
            if isinstance(p, _CategoryTokens) and p.protected
        }

    def capped(self) -> dict[str, int]:
        """Rows whose extreme value was capped, per numerical or datetime column with any."""
        return {
            p.column.name: p.capped for p in self.parts if isinstance(p, _NumberTokens) and p.capped
        }

    def known_values(self, column: str) -> list[Any] | None:
        """Values a categorical or boolean column can produce (None for other kinds)."""
        part = self.parts[self._column_index(column)]
        return part.known_values() if isinstance(part, _CategoryTokens) else None

    # --- transform --------------------------------------------------------------------------
    def transform(self, df: pl.DataFrame, *, columns: list[str] | None = None) -> np.ndarray:
        """``(n, n_tokens)`` int64 tokens; with ``columns``, only their positions are filled
        and the rest are -1 (seed data and conditions fix some columns only)."""
        self._check_fitted()
        names = self.columns if columns is None else columns
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise SchemaError(f"The data lacks columns {missing}.", hint=f"Columns: {self.columns}")
        out = np.full((df.height, self.n_tokens), -1, dtype=np.int64)
        for name in names:
            i = self._column_index(name)
            out[:, self.starts[i] : self.starts[i + 1]] = self.parts[i].encode(df.get_column(name))
        return out

    def inverse_transform(self, tokens: np.ndarray, *, rng: np.random.Generator) -> pl.DataFrame:
        """Decode tokens (as ``transform`` lays them out) to a frame with the schema's dtypes."""
        self._check_fitted()
        arr = np.asarray(tokens)
        if arr.ndim != 2 or arr.shape[1] != self.n_tokens:
            raise SchemaError(f"Expected an (n, {self.n_tokens}) array, got shape {arr.shape}.")
        cols = [
            part.decode(arr[:, self.starts[i] : self.starts[i + 1]], rng)
            for i, part in enumerate(self.parts)
        ]
        return pl.DataFrame(cols)

    # --- state ------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (keys prefixed by column position) and JSON; rare categories are not in it."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, part in enumerate(self.parts):
            own, meta = part.state()
            arrays.update({f"{i}.{k}": v for k, v in own.items()})
            metas.append(meta)
        return arrays, {
            "schema": self.schema.to_dict(),
            "bins": self.bins,
            "sub_bins": self.sub_bins,
            "rare_threshold": self.rare_threshold,
            "rare_replacement": self.rare_replacement,
            "placeholder": self.placeholder,
            "protect_extremes": self.protect_extremes,
            "private": self.private,
            "columns": metas,
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TableTokenizer:
        """Rebuild a fitted tokenizer from ``state()``."""
        tok = cls(
            bins=int(meta["bins"]),
            sub_bins=int(meta["sub_bins"]),
            rare_threshold=int(meta["rare_threshold"]),
            rare_replacement=meta["rare_replacement"],
            placeholder=str(meta["placeholder"]),
            protect_extremes=bool(meta.get("protect_extremes", False)),
        )
        tok.schema = Schema.from_dict(meta["schema"])
        tok.private = bool(meta.get("private", False))
        for i, (column, part_meta) in enumerate(zip(tok.schema, meta["columns"], strict=True)):
            own = {k[len(f"{i}.") :]: v for k, v in arrays.items() if k.startswith(f"{i}.")}
            kind = _CategoryTokens if part_meta["type"] == "category" else _NumberTokens
            tok.parts.append(kind.from_state(column, own, part_meta))
        tok._index()
        tok.fitted_ = True
        return tok

    # --- helpers ----------------------------------------------------------------------------
    def _column_index(self, column: str) -> int:
        for i, part in enumerate(self.parts):
            if part.column.name == column:
                return i
        raise SchemaError(f"No learned column '{column}'.", hint=f"Columns: {self.columns}")

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError("The TableTokenizer is not fitted yet.")
