"""One encoder for a whole table: a frame in, a float32 matrix for a neural net out, and back.

Layout per column, in schema order (see :class:`OutputBlock`):

* numerical / datetime: ``alpha`` (1 value, tanh range) + the mode one-hot (``numerical="mode"``,
  CTGAN's mode-specific normalisation) + a 2-slot null flag (present, null) if it had nulls.
  ``numerical="quantile"`` drops the mode block: alpha is a rank (normal-score) value.
* categorical / boolean: one one-hot block, a slot per category seen in training (most frequent
  first), an ``OTHER`` slot when there are more than ``max_categories`` (the rare ones share it;
  decoding draws among them by training frequency), and a null slot if nulls were seen.

CTGAN- and TVAE-style generators share it; :class:`DiscreteBlock` carries what conditional
sampling needs. ``state()`` gives numpy arrays + JSON (no pickle). Everything is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError, EmptyDataError, NotFittedError, SchemaError
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
from synthkit.prepare.modes import (
    ModeNormalizer,
    Normalizer,
    QuantileNormalizer,
    normalizer_from_state,
)
from synthkit.prepare.private_stats import (
    ContinuousFacts,
    DiscreteFacts,
    PrivateFacts,
    private_facts,
)
from synthkit.schema import Column, ColumnKind, Schema, dtype_name, parse_dtype

NumericalMode = Literal["mode", "quantile"]
_CONTINUOUS = (ColumnKind.NUMERICAL, ColumnKind.DATETIME)
_DISCRETE = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
#: How many known values an error message lists.
_SHOWN = 20
#: Datetime resolutions tried at fit, coarsest first. Decoded datetimes are rounded (in local
#: time) to the coarsest one every training value sits on: a float32 alpha cannot hold seconds
#: across decades, so without it day-level dates would come back a few seconds off.
_RESOLUTIONS = ("1d", "1h", "1m", "1s", "1ms")


class _Other:
    """The value of the slot that rare categories share (a sentinel, never a real category)."""

    def __repr__(self) -> str:
        return "OTHER"


#: Value of the shared slot of rare categories in :attr:`DiscreteBlock.values`.
OTHER: Any = _Other()


@dataclass(frozen=True)
class OutputBlock:
    """A slice of the encoded matrix: one tanh value (``alpha``) or one one-hot group (``softmax``)."""

    column: str
    kind: Literal["alpha", "softmax"]
    role: Literal["value", "mode", "category", "null"]
    start: int
    width: int


@dataclass(frozen=True)
class DiscreteBlock:
    """A categorical/boolean column's one-hot block: what conditional sampling needs."""

    column: str
    start: int
    width: int
    values: list[Any]
    frequencies: np.ndarray


# --- per-column parts ------------------------------------------------------------------------
class _ContinuousPart:
    """A numerical or datetime column: normalised value, mode one-hot, optional null flag."""

    def __init__(self, column: Column, normalizer: Normalizer) -> None:
        self.column = column
        self.normalizer = normalizer
        self.has_null = False
        self.bounds = (0.0, 0.0)
        self.resolution: str | None = None

    @property
    def uses_modes(self) -> bool:
        return isinstance(self.normalizer, ModeNormalizer)

    def raw(self, series: pl.Series) -> np.ndarray:
        """The column as float64 (datetimes in seconds), NaN where missing."""
        if self.column.kind == ColumnKind.DATETIME:
            return np.asarray(to_seconds(series, self.column), dtype=np.float64)
        s = series.to_physical() if series.dtype.is_temporal() else series
        return (
            s.cast(pl.Float64, strict=False)
            .fill_nan(None)
            .to_numpy()
            .astype(np.float64, copy=False)
        )

    def fit(self, series: pl.Series) -> None:
        x = self.raw(series)
        seen = x[np.isfinite(x)]
        self.has_null = bool(seen.size < x.size)
        lo = self.column.min if self.column.kind == ColumnKind.NUMERICAL else None
        hi = self.column.max if self.column.kind == ColumnKind.NUMERICAL else None
        self.bounds = (
            float(lo if lo is not None else (seen.min() if seen.size else 0.0)),
            float(hi if hi is not None else (seen.max() if seen.size else 0.0)),
        )
        if self.column.kind == ColumnKind.DATETIME:
            stamps = _stamps(seen, self.column)
            ok = (r for r in _RESOLUTIONS if bool((stamps.dt.round(r) == stamps).all()))
            self.resolution = next(ok, None)
        self.normalizer.fit(x)

    @classmethod
    def from_facts(cls, column: Column, facts: ContinuousFacts) -> _ContinuousPart:
        """A part built from differentially private facts alone: it never reads the data."""
        normalizer = QuantileNormalizer(n_quantiles=len(facts.knots))
        normalizer.knots_ = np.asarray(facts.knots, dtype=np.float64)
        normalizer.probs_ = np.asarray(facts.probs, dtype=np.float64)
        part = cls(column, normalizer)
        part.has_null = bool(column.nullable)  # public metadata, not a count
        part.bounds = (float(facts.lo), float(facts.hi))
        return part

    def layout(
        self,
    ) -> list[tuple[Literal["alpha", "softmax"], Literal["value", "mode", "null"], int]]:
        out: list[tuple[Any, Any, int]] = [("alpha", "value", 1)]
        if self.uses_modes:
            out.append(("softmax", "mode", self.normalizer.n_modes))
        if self.has_null:
            out.append(("softmax", "null", 2))
        return out

    def transform(self, series: pl.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        x = self.raw(series)
        alpha, mode = self.normalizer.transform(x, rng=rng)
        rows = np.arange(x.size)
        out[:, 0] = alpha
        at = 1
        if self.uses_modes:
            out[rows, at + mode] = 1.0
            at += self.normalizer.n_modes
        if self.has_null:
            out[rows, at + (~np.isfinite(x)).astype(np.int64)] = 1.0

    def inverse(self, block: np.ndarray, rng: np.random.Generator) -> pl.Series:
        alpha = np.clip(block[:, 0].astype(np.float64), -1.0, 1.0)  # inf -> +-1, NaN stays
        np.copyto(alpha, 0.0, where=np.isnan(alpha))
        at, mode = 1, np.zeros(block.shape[0], dtype=np.int64)
        if self.uses_modes:
            width = self.normalizer.n_modes
            mode = _argmax(block[:, at : at + width])
            at += width
        x = np.clip(self.normalizer.inverse(alpha, mode), *self.bounds)
        missing = _argmax(block[:, at : at + 2]) == 1 if self.has_null else np.zeros(x.size, bool)
        if self.column.kind == ColumnKind.DATETIME:
            if self.resolution is not None:
                rounded = _stamps(x, self.column).dt.round(self.resolution)
                x = rounded.to_physical().to_numpy().astype(np.float64) * 1e-6
            return set_null(from_seconds(x, self.column).alias(self.column.name), missing)
        return restore_numeric(self.column, np.where(missing, np.nan, x))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.normalizer.state()
        return arrays, {
            "normalizer": meta,
            "has_null": self.has_null,
            "bounds": list(self.bounds),
            "resolution": self.resolution,
        }

    @classmethod
    def from_state(
        cls, column: Column, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> _ContinuousPart:
        part = cls(column, normalizer_from_state(arrays, meta["normalizer"]))
        part.has_null = bool(meta["has_null"])
        part.bounds = (float(meta["bounds"][0]), float(meta["bounds"][1]))
        part.resolution = meta.get("resolution")
        return part


class _DiscretePart:
    """A categorical or boolean column: frequent categories, a shared rare slot, a null slot."""

    def __init__(self, column: Column, max_categories: int) -> None:
        self.column = column
        self.max_categories = max_categories

    def fit(self, series: pl.Series) -> None:
        s = plain_strings(series)
        self.dtype: pl.DataType = s.dtype if s.dtype != pl.Null else pl.String()
        counts = (
            s.drop_nulls()
            .alias("value")
            .value_counts(sort=False, name="count")
            .sort(["count", "value"], descending=[True, False])
        )
        values = counts.get_column("value").cast(self.dtype)
        tally = counts.get_column("count").to_numpy().astype(np.float64)
        keep = len(values) if len(values) <= self.max_categories else self.max_categories - 1
        self.kept, self.rare = values.head(keep), values.slice(keep)
        self.kept_counts, self.rare_counts = tally[:keep], tally[keep:]
        self.null_count = float(s.null_count())
        self._index()

    @classmethod
    def from_facts(cls, column: Column, facts: DiscreteFacts, dtype: pl.DataType) -> _DiscretePart:
        """A part built from differentially private facts alone: released categories only.

        Categories that were not released share no slot: their rows are encoded as null (when
        the column may be null) or as the most frequent released category, and are never
        generated.
        """
        if not facts.values:
            raise DataError(
                f"No category of column '{column.name}' is frequent enough to be released "
                "under differential privacy at this epsilon.",
                hint="Declare the column's categories in the schema (Column.categories: public "
                "knowledge costs no budget), raise epsilon or the dp preprocessing_share, or "
                "drop the column.",
            )
        part = cls(column, max(len(facts.values), 2))
        part.dtype = dtype
        part.kept = pl.Series("value", facts.values, dtype=dtype)
        part.rare = pl.Series("value", [], dtype=dtype)
        part.kept_counts = np.clip(np.asarray(facts.counts, dtype=np.float64), 1e-3, None)
        part.rare_counts = np.zeros(0)
        part.null_count = 1.0 if column.nullable else 0.0
        part._index()
        return part

    def _index(self) -> None:
        """Slot positions: kept categories, then OTHER (if any rare), then null (if seen)."""
        k = len(self.kept)
        self.other_slot = k if len(self.rare) else None
        self.null_slot = k + (self.other_slot is not None) if self.null_count > 0 else None
        self.width = k + (self.other_slot is not None) + (self.null_slot is not None)
        self.slots = {v: i for i, v in enumerate(self.kept.to_list())}
        if self.other_slot is not None:
            self.slots.update(dict.fromkeys(self.rare.to_list(), self.other_slot))
        fallback = self.other_slot if self.other_slot is not None else self.null_slot
        self.unseen_slot = fallback if fallback is not None else 0
        # decoding's value per index (kept, rare, then null) in one chunk: a gather from a
        # concatenation of several chunks costs several times as much
        self._lookup = pl.concat(
            [self.kept, self.rare, pl.Series("value", [None], dtype=self.dtype)]
        ).rechunk()

    @property
    def values(self) -> list[Any]:
        extra = ([OTHER] if self.other_slot is not None else []) + (
            [None] if self.null_slot is not None else []
        )
        return self.kept.to_list() + extra

    @property
    def frequencies(self) -> np.ndarray:
        counts = [self.kept_counts]
        if self.other_slot is not None:
            counts.append(np.array([self.rare_counts.sum()]))
        if self.null_slot is not None:
            counts.append(np.array([self.null_count]))
        tally = np.concatenate(counts)
        return tally / tally.sum() if tally.sum() > 0 else tally

    def layout(self) -> list[tuple[Literal["alpha", "softmax"], Literal["category"], int]]:
        return [("softmax", "category", self.width)] if self.width else []

    def codes(self, series: pl.Series) -> np.ndarray:
        """Slot of each value; rare values share OTHER, unseen go to OTHER, null or the top slot."""
        s = plain_strings(series).cast(self.dtype, strict=False)
        lookup = pl.concat([self.kept, self.rare])
        slots = np.arange(len(self.kept), dtype=np.int64)
        if self.other_slot is not None:
            slots = np.concatenate(
                [slots, np.full(len(self.rare), self.other_slot, dtype=np.int64)]
            )
        codes = s.replace_strict(
            lookup, pl.Series(slots), default=self.unseen_slot, return_dtype=pl.Int64
        ).to_numpy()
        missing = s.is_null().to_numpy()
        null_slot = self.null_slot if self.null_slot is not None else self.unseen_slot
        return np.where(missing, null_slot, codes).astype(np.int64)

    def transform(self, series: pl.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        if self.width:
            out[np.arange(out.shape[0]), self.codes(series)] = 1.0

    def inverse(self, block: np.ndarray, rng: np.random.Generator) -> pl.Series:
        n, k = block.shape[0], len(self.kept)
        if not self.width:
            return cast_to_column(pl.Series(self.column.name, [None] * n, dtype=self.dtype), self.column)
        slot = _argmax(block)
        index = np.where(slot < k, slot, k + len(self.rare))  # null slot -> the trailing None
        if self.other_slot is not None:
            other = slot == self.other_slot
            p = self.rare_counts / self.rare_counts.sum()
            index[other] = k + rng.choice(len(self.rare), size=int(other.sum()), p=p)
        return cast_to_column(self._lookup[index].alias(self.column.name), self.column)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"kept_counts": self.kept_counts.copy(), "rare_counts": self.rare_counts.copy()}
        meta = {
            "dtype": dtype_name(self.dtype),
            "kept": values_to_json(self.kept),
            "rare": values_to_json(self.rare),
            "null_count": self.null_count,
        }
        return arrays, meta

    @classmethod
    def from_state(
        cls,
        column: Column,
        max_categories: int,
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any],
    ) -> _DiscretePart:
        part = cls(column, max_categories)
        part.dtype = parse_dtype(meta["dtype"])
        part.kept = values_from_json(meta["kept"], part.dtype).alias("value").cast(part.dtype)
        part.rare = values_from_json(meta["rare"], part.dtype).alias("value").cast(part.dtype)
        part.kept_counts = np.asarray(arrays["kept_counts"], dtype=np.float64)
        part.rare_counts = np.asarray(arrays["rare_counts"], dtype=np.float64)
        part.null_count = float(meta["null_count"])
        part._index()
        return part


class _ValuesPart(_DiscretePart):
    """A numerical column with few distinct values (loan terms, counts, years) encoded as a
    category per value: generated values are then values the column takes, not near misses of
    them (a 59-month term where terms are 12, 24, ..., 60)."""

    def fit(self, series: pl.Series) -> None:
        super().fit(_nan_as_null(series))

    def codes(self, series: pl.Series) -> np.ndarray:
        return super().codes(_nan_as_null(series))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = super().state()
        return arrays, {**meta, "encoding": "values"}


def _nan_as_null(series: pl.Series) -> pl.Series:
    return series.fill_nan(None) if series.dtype.is_float() else series


_Part = _ContinuousPart | _DiscretePart


def _stamps(secs: np.ndarray, column: Column) -> pl.Series:
    """Seconds as microsecond datetimes in the column's time zone (rounding happens in local time)."""
    dtype = column.polars_dtype
    tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    return pl.Series(np.rint(secs * 1e6)).cast(pl.Int64).cast(pl.Datetime("us", tz))


#: Column-major blocks up to this wide are reduced column by column (see _argmax).
_COLUMNWISE_WIDTH = 64


def _argmax(block: np.ndarray) -> np.ndarray:
    """Winning slot per row (the first on a tie), NaN never winning; no full-size copy.

    A block of a column-major matrix (each column contiguous, as sampling decodes) is scanned
    column by column with whole-column ops: numpy's own argmax along rows of a narrow block
    pays a fixed cost per row, several times the work."""
    n, width = block.shape
    if width == 1:
        return np.zeros(n, dtype=np.int64)
    columnwise = width <= _COLUMNWISE_WIDTH and n > 1
    if columnwise and block.strides[0] == block.itemsize and not np.isnan(block[:, 0]).any():
        # branch-free: a column that beats the best so far has a larger index than the slot
        # it replaces, so the slot is the running maximum of j * (column > best); a masked
        # copy instead mispredicts on every other row (about 8x slower)
        best = block[:, 0].copy()
        slot = np.zeros(n, dtype=np.int8)
        won, step = np.empty(n, dtype=bool), np.empty(n, dtype=np.int8)
        for j in range(1, width):
            column = block[:, j]
            np.greater(column, best, out=won)  # NaN compares False: it never wins
            np.multiply(won.view(np.int8), np.int8(j), out=step)
            np.maximum(slot, step, out=slot)
            np.fmax(best, column, out=best)  # fmax ignores NaN
        return slot.astype(np.int64)
    slot = block.argmax(axis=1)  # numpy picks the first NaN of a row that has one
    rows = np.flatnonzero(np.isnan(block[np.arange(block.shape[0]), slot]))
    if rows.size:
        slot[rows] = np.nan_to_num(block[rows], nan=-np.inf).argmax(axis=1)
    return slot


# --- the table encoder ------------------------------------------------------------------------
class NeuralTableEncoder:
    """A whole table as a float32 matrix (alpha values + one-hot blocks) and back, exactly."""

    def __init__(
        self,
        *,
        numerical: NumericalMode = "mode",
        max_modes: int = 10,
        max_fit_rows: int = 10_000,
        max_categories: int = 1_000,
        max_discrete_values: int = 0,
        seed: int | None = None,
    ) -> None:
        if numerical not in ("mode", "quantile"):
            raise ConfigError(
                f"numerical must be 'mode' or 'quantile', got {numerical!r}.",
                hint="'mode' is CTGAN's mode-specific normalisation; 'quantile' a rank transform.",
            )
        for name, value, least in (
            ("max_modes", max_modes, 1),
            ("max_fit_rows", max_fit_rows, 1),
            ("max_categories", max_categories, 2),
        ):
            if value < least:
                raise ConfigError(f"{name} must be at least {least}, got {value}.")
        self.numerical = numerical
        self.max_modes = max_modes
        self.max_fit_rows = max_fit_rows
        self.max_categories = max_categories
        #: Numerical columns with at most this many distinct values, each seen 10 times on
        #: average, get a category per value (0: never); a private fit never does this (the value
        #: set would be a private fact).
        self.max_discrete_values = max(0, int(max_discrete_values))
        self.seed = seed
        self.width = 0
        self.blocks: list[OutputBlock] = []
        self.discrete: list[DiscreteBlock] = []
        self.fitted_ = False

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, df: pl.DataFrame, schema: Schema) -> NeuralTableEncoder:
        """Learn every column's encoding; ``schema`` must hold only learned kinds."""
        self._check_frame(df, schema)
        seeds = np.random.default_rng(self.seed).integers(0, 2**31 - 1, size=len(schema))
        self.schema = schema
        self.parts_: list[_Part] = []
        for column, seed in zip(schema, seeds, strict=True):
            series = df.get_column(column.name)
            part = self._new_part(column, int(seed), series)
            part.fit(series)
            self.parts_.append(part)
        self._layout()
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
        """Learn the encoding under (epsilon, delta)-differential privacy; return what it cost.

        Declared facts (``public_bounds`` with min/max, ``categories``, booleans) are used as
        they are; every other bound, quantile and category set is estimated with noise
        (:mod:`synthkit.prepare.private_stats`). Numerical columns use the quantile transform:
        mixture modes would need many more private statistics.
        """
        self._check_frame(df, schema)
        self.numerical = "quantile"
        continuous: dict[str, tuple[np.ndarray, tuple[float, float] | None]] = {}
        discrete: dict[str, tuple[pl.Series, list[Any] | None]] = {}
        dtypes: dict[str, pl.DataType] = {}
        for column in schema:
            series = df.get_column(column.name)
            if column.kind in _DISCRETE:
                plain = plain_strings(series)
                dtypes[column.name] = plain.dtype if plain.dtype != pl.Null else pl.String()
                declared = column.categories
                if column.kind == ColumnKind.BOOLEAN and declared is None:
                    declared = [False, True]
                discrete[column.name] = (plain, declared)
            else:
                raw = _ContinuousPart(column, QuantileNormalizer()).raw(series)
                public = column.public_bounds and column.kind == ColumnKind.NUMERICAL
                continuous[column.name] = (
                    raw, (float(column.min), float(column.max)) if public else None  # type: ignore[arg-type]
                )
        facts = private_facts(continuous, discrete, epsilon=epsilon, delta=delta, rng=rng)
        self.schema = schema
        self.parts_ = []
        for column in schema:
            fact = facts.columns[column.name]
            if isinstance(fact, DiscreteFacts):
                self.parts_.append(_DiscretePart.from_facts(column, fact, dtypes[column.name]))
            else:
                self.parts_.append(_ContinuousPart.from_facts(column, fact))
        self._layout()
        return facts

    def _check_frame(self, df: pl.DataFrame, schema: Schema) -> None:
        schema.check_frame(df)
        if df.height == 0:
            raise EmptyDataError("The table has no rows to learn an encoding from.")
        bad = [
            f"{c.name} ({c.kind.value})" for c in schema if c.kind not in (*_CONTINUOUS, *_DISCRETE)
        ]
        if bad:
            raise SchemaError(
                f"Columns of kinds that are never learned were given: {bad}.",
                hint="Select only numerical, datetime, categorical and boolean columns; ids, PII "
                "and text are filled by synthkit.prepare.fillers.",
            )

    def _new_part(self, column: Column, seed: int, series: pl.Series | None = None) -> _Part:
        if column.kind in _DISCRETE:
            return _DiscretePart(column, self.max_categories)
        if self.max_discrete_values and series is not None and column.kind == ColumnKind.NUMERICAL:
            seen = _nan_as_null(series).drop_nulls()
            distinct = seen.n_unique()
            # few values, each seen often: a small sample of a continuous column is no value set
            if 0 < distinct <= min(self.max_discrete_values, self.max_categories) and seen.len() >= 10 * distinct:
                return _ValuesPart(column, self.max_categories)
        normalizer: Normalizer = (
            ModeNormalizer(max_modes=self.max_modes, max_fit_rows=self.max_fit_rows, seed=seed)
            if self.numerical == "mode"
            else QuantileNormalizer()
        )
        return _ContinuousPart(column, normalizer)

    def _layout(self) -> None:
        """Blocks and discrete blocks from the fitted parts; resets the default random stream."""
        self.blocks, self.discrete, self.spans_ = [], [], []
        start = 0
        for part in self.parts_:
            first = start
            for kind, role, width in part.layout():
                self.blocks.append(OutputBlock(part.column.name, kind, role, start, width))
                start += width
            self.spans_.append((first, start))
            if isinstance(part, _DiscretePart) and part.width:
                self.discrete.append(
                    DiscreteBlock(
                        part.column.name, first, part.width, part.values, part.frequencies
                    )
                )
        self.width = start
        self.discrete_parts_ = {
            p.column.name: p for p in self.parts_ if isinstance(p, _DiscretePart)
        }
        self.rng_ = np.random.default_rng(self.seed)
        self.fitted_ = True

    def rare_mode_positions(self) -> list[int]:
        """Positions in the encoded row of the mode slots generators should not decode into:
        modes of a few far outliers (:attr:`~synthkit.prepare.modes.ModeNormalizer.rare`).
        Encoding and :meth:`inverse_transform` still use them (round trips stay exact)."""
        positions: list[int] = []
        for part, (first, _) in zip(self.parts_, self.spans_, strict=True):
            if isinstance(part, _ContinuousPart) and part.uses_modes:
                start = first + 1  # after the alpha value
                positions.extend(start + int(i) for i in np.flatnonzero(part.normalizer.rare))
        return positions

    # --- encoding --------------------------------------------------------------------------
    def transform(self, df: pl.DataFrame, *, rng: np.random.Generator | None = None) -> np.ndarray:
        """The ``(n, width)`` float32 matrix; modes are sampled with ``rng`` (default: own stream)."""
        self._check_fitted()
        self.schema.check_frame(df)
        rng = self.rng_ if rng is None else rng
        out = np.zeros((df.height, self.width), dtype=np.float32)
        for part, (lo, hi) in zip(self.parts_, self.spans_, strict=True):
            block = out[:, lo:hi]
            part.transform(df.get_column(part.column.name), block, rng)
        return out

    def spread_ties(self, df: pl.DataFrame, matrix: np.ndarray, *, seed: int) -> None:
        """Dequantise the quantile-encoded columns of ``matrix`` (:meth:`transform` of ``df``) in
        place: every repeated value spread over its stretch of the scale
        (:meth:`QuantileNormalizer.spread`), so a network learns a smooth distribution and
        every point of a stretch still decodes to its value. Mode-encoded columns are kept."""
        self._check_fitted()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7D]))
        for part, (lo, _) in zip(self.parts_, self.spans_, strict=True):
            normalizer = getattr(part, "normalizer", None)
            if isinstance(normalizer, QuantileNormalizer):
                x = part.raw(df.get_column(part.column.name))
                matrix[:, lo] = normalizer.spread(x, rng=rng)

    def inverse_transform(
        self, array: np.ndarray, *, rng: np.random.Generator | None = None
    ) -> pl.DataFrame:
        """Decode a matrix: argmax per one-hot block, alpha clipped to [-1, 1], schema dtypes back.

        ``rng`` draws the rare categories behind an OTHER slot (default: the encoder's own stream).
        """
        self._check_fitted()
        arr = np.asarray(array)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise SchemaError(
                f"Expected an (n, {self.width}) array, got shape {arr.shape}.",
                hint="Pass the generator's output laid out as encoder.blocks describe.",
            )
        rng = self.rng_ if rng is None else rng
        cols = [
            part.inverse(arr[:, lo:hi], rng)
            for part, (lo, hi) in zip(self.parts_, self.spans_, strict=True)
        ]
        return pl.DataFrame(cols)

    # --- conditional sampling ----------------------------------------------------------------
    def discrete_block(self, column: str) -> DiscreteBlock:
        """The one-hot block of categorical/boolean ``column``."""
        self._check_fitted()
        for block in self.discrete:
            if block.column == column:
                return block
        names = [b.column for b in self.discrete]
        if column not in self.schema:
            raise SchemaError(
                f"No column '{column}' in the encoder.", hint=f"Discrete columns: {names}"
            )
        raise ConfigError(
            f"Column '{column}' is {self.schema[column].kind.value}, not discrete: it has no one-hot block.",
            hint=f"Condition on a categorical or boolean column: {names}",
        )

    def slot_of(self, column: str, value: Any) -> int:
        """Index of ``value`` inside ``column``'s block (rare values share the OTHER slot)."""
        self.discrete_block(column)
        part = self.discrete_parts_[column]
        if value is None and part.null_slot is not None:
            return part.null_slot
        if value is OTHER and part.other_slot is not None:
            return part.other_slot
        slot = part.slots.get(value) if value is not None and value is not OTHER else None
        if slot is None:
            known = part.kept.to_list()
            shown = ", ".join(repr(v) for v in known[:_SHOWN]) + (
                " ..." if len(known) > _SHOWN else ""
            )
            raise ConfigError(
                f"Value {value!r} of column '{column}' was not seen in training.",
                hint=f"Known values ({len(known) + len(part.rare)}): {shown}",
            )
        return slot

    # --- saving ----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Numeric arrays (keys prefixed by column position) and JSON-able meta; no pickle."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {}
        parts = []
        for i, part in enumerate(self.parts_):
            own, meta = part.state()
            arrays.update({f"{i}.{k}": np.asarray(v, dtype=np.float64) for k, v in own.items()})
            parts.append(meta)
        config = {
            "numerical": self.numerical,
            "max_modes": self.max_modes,
            "max_fit_rows": self.max_fit_rows,
            "max_categories": self.max_categories,
            "max_discrete_values": self.max_discrete_values,
            "seed": self.seed,
        }
        return arrays, {"config": config, "schema": self.schema.to_dict(), "columns": parts}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> NeuralTableEncoder:
        """Rebuild a fitted encoder from :meth:`state` (e.g. safetensors arrays + JSON)."""
        enc = cls(**meta["config"])
        enc.schema = Schema.from_dict(meta["schema"])
        enc.parts_ = []
        for i, (column, part_meta) in enumerate(zip(enc.schema, meta["columns"], strict=True)):
            prefix = f"{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            part: _Part
            if part_meta.get("encoding") == "values":
                part = _ValuesPart.from_state(column, enc.max_categories, own, part_meta)
            elif column.kind in _DISCRETE:
                part = _DiscretePart.from_state(column, enc.max_categories, own, part_meta)
            else:
                part = _ContinuousPart.from_state(column, own, part_meta)
            enc.parts_.append(part)
        enc._layout()
        return enc

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError(
                "The NeuralTableEncoder is not fitted yet.", hint="Call fit(df, schema) first."
            )
