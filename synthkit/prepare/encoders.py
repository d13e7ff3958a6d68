"""Reversible per-column encoders: a column in, a float matrix out, and back again.

Neural families share these (the diffusers lesson: model, noise schedule and sampling loop are
separate objects). Each encoder follows the scikit-learn habit: ``fit(series)`` learns,
``transform(series)`` gives an ``(n, width)`` float64 array, ``inverse_transform(array)`` gives
the column back in its schema dtype. ``state()`` returns ``(arrays, json)`` for safetensors and
JSON, and ``from_state`` rebuilds the encoder; no pickle. Nullable columns get a null indicator
(one extra output column, 1.0 where the value is missing). All paths are vectorised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from synthkit.errors import NotFittedError, SchemaError
from synthkit.schema import Column, ColumnKind, Schema, dtype_name, parse_dtype

EncoderState = tuple[dict[str, np.ndarray], dict[str, Any]]
CategoricalMode = Literal["onehot", "index"]

_SECONDS_PER = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3}
_DAY = 86_400.0


@dataclass(frozen=True)
class Span:
    """A slice of an encoder's output: ``continuous`` values or one ``discrete`` choice."""

    kind: Literal["continuous", "discrete"]
    width: int


# --- null indicator ------------------------------------------------------------------------
class NullIndicator:
    """One extra output column (1.0 = missing) for a column that had nulls at fit."""

    def __init__(self, active: bool = False) -> None:
        self.active = active

    def fit(self, series: pl.Series) -> NullIndicator:
        """Switch on when ``series`` holds nulls (NaN counts as null)."""
        self.active = bool(_nulls(series).any())
        return self

    @property
    def width(self) -> int:
        return 1 if self.active else 0

    def transform(self, series: pl.Series) -> np.ndarray:
        """``(n, width)``: the missing mask as floats, or an empty block when inactive."""
        if not self.active:
            return np.empty((len(series), 0))
        return _nulls(series).astype(np.float64)[:, None]

    def missing(self, block: np.ndarray) -> np.ndarray:
        """Boolean mask of rows the indicator block marks missing (> 0.5)."""
        if not self.active or block.shape[1] == 0:
            return np.zeros(block.shape[0], dtype=bool)
        return block[:, 0] > 0.5


# --- base ----------------------------------------------------------------------------------
class ColumnEncoder(ABC):
    """Base class: fit / transform / inverse_transform one column, saved as arrays + JSON."""

    kind: ClassVar[str] = ""
    #: Whether nulls get an indicator column; encoders that encode missingness themselves say no.
    uses_null_indicator: ClassVar[bool] = True

    def __init__(self, column: Column) -> None:
        self.column = column
        self.nulls = NullIndicator()
        self.fitted_ = False

    # public API -------------------------------------------------------------------------------
    def fit(self, series: pl.Series) -> ColumnEncoder:
        """Learn the encoding from ``series``; returns ``self``."""
        if self.uses_null_indicator:
            self.nulls.fit(series)
        self._fit(series)
        self.fitted_ = True
        return self

    def transform(self, series: pl.Series) -> np.ndarray:
        """Encode ``series`` as an ``(n, width)`` float64 array."""
        self._check_fitted()
        values = self._transform(series)
        return np.hstack([values, self.nulls.transform(series)]) if self.nulls.active else values

    def inverse_transform(self, array: np.ndarray) -> pl.Series:
        """Decode an ``(n, width)`` array (or ``(n,)`` when width is 1) back to the column."""
        self._check_fitted()
        arr = np.asarray(array, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.shape[1] != self.width:
            raise SchemaError(
                f"Encoder for '{self.column.name}' expects {self.width} column(s), got {arr.shape[1]}."
            )
        own = arr.shape[1] - self.nulls.width
        series = self._inverse(arr[:, :own]).alias(self.column.name)
        if not self.uses_null_indicator:
            return series
        missing = self.nulls.missing(arr[:, own:]) | np.isnan(arr[:, :own]).any(axis=1)
        return set_null(series, missing)

    @property
    def width(self) -> int:
        """Number of output columns."""
        return self._width() + self.nulls.width

    @property
    def spans(self) -> list[Span]:
        """How the output columns group (continuous values, discrete choices)."""
        own = self._spans()
        return [*own, Span("discrete", 1)] if self.nulls.active else own

    def state(self) -> EncoderState:
        """Arrays for safetensors and a JSON-able dict that ``from_state`` reads back."""
        self._check_fitted()
        arrays, meta = self._state()
        meta = {
            **meta,
            "encoder": self.kind,
            "column": self.column.model_dump(mode="json"),
            "nullable": self.nulls.active,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ColumnEncoder:
        """Rebuild a fitted encoder (of the class named in ``meta``) from ``state()``."""
        target = ENCODERS.get(meta.get("encoder", ""))
        if target is None:
            raise SchemaError(f"Unknown encoder '{meta.get('encoder')}' in saved state.")
        enc = target._empty(Column.model_validate(meta["column"]), meta)
        enc.nulls = NullIndicator(bool(meta.get("nullable", False)))
        enc._restore(arrays, meta)
        enc.fitted_ = True
        return enc

    # what subclasses implement -----------------------------------------------------------------
    @classmethod
    def _empty(cls, column: Column, meta: dict[str, Any]) -> ColumnEncoder:
        return cls(column)

    @abstractmethod
    def _fit(self, series: pl.Series) -> None: ...

    @abstractmethod
    def _transform(self, series: pl.Series) -> np.ndarray: ...

    @abstractmethod
    def _inverse(self, array: np.ndarray) -> pl.Series: ...

    @abstractmethod
    def _width(self) -> int: ...

    @abstractmethod
    def _spans(self) -> list[Span]: ...

    @abstractmethod
    def _state(self) -> EncoderState: ...

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError(f"The encoder for '{self.column.name}' is not fitted yet.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.column.name!r})"


# --- numerical and datetime: one standardised value -----------------------------------------
class StandardisedEncoder(ColumnEncoder):
    """One value per row, standardised; on inverse: unscaled and clipped to the bounds.

    Subclasses say how a column becomes floats (``_raw``, NaN for missing) and back
    (``_from_raw``), and may take bounds from the schema (``_declared_bounds``).
    """

    @abstractmethod
    def _raw(self, series: pl.Series) -> np.ndarray:
        """The column as float64, NaN where missing."""

    @abstractmethod
    def _from_raw(self, x: np.ndarray) -> pl.Series:
        """Floats back to the column's dtype (rounding, formats)."""

    def _declared_bounds(self) -> tuple[float | None, float | None]:
        return None, None

    def _fit(self, series: pl.Series) -> None:
        x = self._raw(series)
        x = x[~np.isnan(x)]
        self.mean_ = float(x.mean()) if x.size else 0.0
        std = float(x.std()) if x.size else 0.0
        self.std_ = std if np.isfinite(std) and std > 0 else 1.0
        lo, hi = self._declared_bounds()
        lo = lo if lo is not None else (float(x.min()) if x.size else 0.0)
        hi = hi if hi is not None else (float(x.max()) if x.size else 0.0)
        self.bounds_ = (float(lo), float(hi))

    def _transform(self, series: pl.Series) -> np.ndarray:
        x = self._raw(series)
        x = np.where(np.isnan(x), self.mean_, x)
        return ((x - self.mean_) / self.std_)[:, None]

    def _inverse(self, array: np.ndarray) -> pl.Series:
        return self._from_raw(np.clip(array[:, 0] * self.std_ + self.mean_, *self.bounds_))

    def _width(self) -> int:
        return 1

    def _spans(self) -> list[Span]:
        return [Span("continuous", 1)]

    def _state(self) -> EncoderState:
        return {}, {"mean": self.mean_, "std": self.std_, "bounds": list(self.bounds_)}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.mean_, self.std_ = float(meta["mean"]), float(meta["std"])
        self.bounds_ = (float(meta["bounds"][0]), float(meta["bounds"][1]))


class NumericalEncoder(StandardisedEncoder):
    """Standardised value; on inverse: clipped to bounds, rounded, integer dtype restored."""

    kind = "numerical"

    def _raw(self, series: pl.Series) -> np.ndarray:
        s = series.to_physical() if series.dtype.is_temporal() else series
        return s.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64, copy=False)

    def _from_raw(self, x: np.ndarray) -> pl.Series:
        return restore_numeric(self.column, x)

    def _declared_bounds(self) -> tuple[float | None, float | None]:
        return self.column.min, self.column.max


class CategoricalEncoder(ColumnEncoder):
    """One-hot (or index) over categories by frequency, plus one slot for null or unseen.

    The last slot stands for "missing or not seen at fit"; it decodes to null when the column
    had nulls at fit, and is never chosen on inverse otherwise. The null indicator is not used:
    the slot already carries missingness.
    """

    kind = "categorical"
    uses_null_indicator = False

    def __init__(self, column: Column, mode: CategoricalMode = "onehot") -> None:
        super().__init__(column)
        if mode not in ("onehot", "index"):
            raise SchemaError(f"Categorical mode must be 'onehot' or 'index', got {mode!r}.")
        self.mode = mode

    @classmethod
    def _empty(cls, column: Column, meta: dict[str, Any]) -> ColumnEncoder:
        return cls(column, mode=meta.get("mode", "onehot"))

    def _fit(self, series: pl.Series) -> None:
        s = plain_strings(series)
        self.has_null_ = bool(s.null_count())
        counts = s.drop_nulls().value_counts(sort=False, name="__count__")
        counts = counts.sort(["__count__", s.name], descending=[True, False], nulls_last=True)
        learned = counts.get_column(s.name).to_list()
        declared = [v for v in (self.column.categories or []) if v is not None]
        order = declared + [v for v in learned if v not in set(declared)]
        self.dtype_ = s.dtype if s.dtype != pl.Null else pl.String()
        self.categories_ = pl.Series("c", order, dtype=self.dtype_, strict=False)

    def codes(self, series: pl.Series) -> np.ndarray:
        """Integer code per value: its category's position, or the last slot."""
        self._check_fitted()
        k = len(self.categories_)
        s = plain_strings(series).cast(self.dtype_, strict=False)
        mapped = s.replace_strict(
            self.categories_, pl.Series(np.arange(k, dtype=np.int64)), default=k, return_dtype=pl.Int64
        )
        return mapped.fill_null(k).to_numpy().astype(np.int64, copy=False)

    def _transform(self, series: pl.Series) -> np.ndarray:
        codes = self.codes(series)
        if self.mode == "index":
            return codes.astype(np.float64)[:, None]
        out = np.zeros((codes.size, len(self.categories_) + 1))
        out[np.arange(codes.size), codes] = 1.0
        return out

    def _inverse(self, array: np.ndarray) -> pl.Series:
        k = len(self.categories_)
        last = k if self.has_null_ or k == 0 else k - 1
        if self.mode == "index":
            codes = np.clip(np.rint(np.nan_to_num(array[:, 0], nan=k)), 0, last).astype(np.int64)
        else:
            codes = np.nan_to_num(array[:, : last + 1], nan=-np.inf).argmax(axis=1)
        values = pl.concat([self.categories_, pl.Series("c", [None], dtype=self.dtype_)])
        return cast_to_column(values.gather(codes), self.column)

    def _width(self) -> int:
        return 1 if self.mode == "index" else len(self.categories_) + 1

    def _spans(self) -> list[Span]:
        return [Span("continuous" if self.mode == "index" else "discrete", self._width())]

    def _state(self) -> EncoderState:
        return {}, {
            "mode": self.mode,
            "categories": values_to_json(self.categories_),
            "dtype": dtype_name(self.dtype_),
            "has_null": self.has_null_,
        }

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.dtype_ = parse_dtype(meta["dtype"])
        self.categories_ = values_from_json(meta["categories"], self.dtype_).alias("c")
        self.has_null_ = bool(meta["has_null"])


# --- boolean -------------------------------------------------------------------------------
class BooleanEncoder(ColumnEncoder):
    """True as 1.0, False as 0.0; inverse thresholds at 0.5."""

    kind = "boolean"

    def _fit(self, series: pl.Series) -> None:
        x = self._values(series)
        self.share_true_ = float(np.nanmean(x)) if np.isfinite(x).any() else 0.5

    def _values(self, series: pl.Series) -> np.ndarray:
        return series.cast(pl.Float64, strict=False).to_numpy().astype(np.float64, copy=False)

    def _transform(self, series: pl.Series) -> np.ndarray:
        x = self._values(series)
        return np.where(np.isnan(x), float(self.share_true_ > 0.5), x)[:, None]

    def _inverse(self, array: np.ndarray) -> pl.Series:
        return cast_to_column(pl.Series("b", array[:, 0] > 0.5), self.column)

    def _width(self) -> int:
        return 1

    def _spans(self) -> list[Span]:
        return [Span("continuous", 1)]

    def _state(self) -> EncoderState:
        return {}, {"share_true": self.share_true_}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.share_true_ = float(meta["share_true"])


# --- datetime ------------------------------------------------------------------------------
class DatetimeEncoder(StandardisedEncoder):
    """Seconds since the epoch, standardised; back to the same dtype, time zone or string format."""

    kind = "datetime"

    def _raw(self, series: pl.Series) -> np.ndarray:
        return to_seconds(series, self.column)

    def _from_raw(self, x: np.ndarray) -> pl.Series:
        return from_seconds(x, self.column)


def to_seconds(series: pl.Series, column: Column) -> np.ndarray:
    """Seconds since 1970 (UTC) as float64, NaN where missing; strings parse with the format."""
    s = series
    if s.dtype == pl.String or isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        fmt = column.datetime_format
        target = pl.Date if fmt and not _has_time(fmt) else pl.Datetime("us")
        s = s.cast(pl.String).str.strptime(target, fmt, strict=False)
    if s.dtype == pl.Date:
        return s.to_physical().cast(pl.Float64).to_numpy() * _DAY
    if isinstance(s.dtype, pl.Datetime):
        unit = s.dtype.time_unit or "us"
        return s.to_physical().cast(pl.Float64).to_numpy() * _SECONDS_PER[unit]
    return s.cast(pl.Float64, strict=False).to_numpy().astype(np.float64, copy=False)


def from_seconds(secs: np.ndarray, column: Column) -> pl.Series:
    """Inverse of :func:`to_seconds`: the column's dtype, time zone or string format."""
    dtype = column.polars_dtype
    fmt = column.datetime_format
    if dtype == pl.Date or (fmt and not _has_time(fmt) and not isinstance(dtype, pl.Datetime)):
        days = pl.Series(column.name, np.rint(secs / _DAY)).cast(pl.Int32).cast(pl.Date)
        return days.dt.strftime(fmt) if fmt and dtype == pl.String else days
    unit = dtype.time_unit if isinstance(dtype, pl.Datetime) and dtype.time_unit else "us"
    tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    ticks = pl.Series(column.name, np.rint(secs / _SECONDS_PER[unit])).cast(pl.Int64)
    stamps = ticks.cast(pl.Datetime(unit, tz))  # type: ignore[arg-type]
    if dtype == pl.String:
        return stamps.dt.strftime(fmt or "%Y-%m-%d %H:%M:%S")
    return stamps


def _has_time(fmt: str) -> bool:
    return any(code in fmt for code in ("%H", "%M", "%S", "%I", "%T", "%R", "%c"))


# --- choosing and table-wide -----------------------------------------------------------------
ENCODERS: dict[str, type[ColumnEncoder]] = {
    NumericalEncoder.kind: NumericalEncoder,
    CategoricalEncoder.kind: CategoricalEncoder,
    BooleanEncoder.kind: BooleanEncoder,
    DatetimeEncoder.kind: DatetimeEncoder,
}


def encoder_for(column: Column, *, categorical: CategoricalMode = "onehot") -> ColumnEncoder:
    """The unfitted encoder for ``column``'s kind; ids, PII and text are not encoded."""
    if column.kind == ColumnKind.NUMERICAL:
        return NumericalEncoder(column)
    if column.kind == ColumnKind.CATEGORICAL:
        return CategoricalEncoder(column, mode=categorical)
    if column.kind == ColumnKind.BOOLEAN:
        return BooleanEncoder(column)
    if column.kind == ColumnKind.DATETIME:
        return DatetimeEncoder(column)
    raise SchemaError(
        f"Column '{column.name}' is of kind '{column.kind.value}', which is never encoded.",
        hint="ids, PII and text are generated by synthkit.prepare.fillers, not learned; "
        "select only numerical, categorical, boolean and datetime columns.",
    )


class TableEncoder:
    """One encoder per schema column; a frame becomes one float matrix and back."""

    def __init__(self, schema: Schema, *, categorical: CategoricalMode = "onehot") -> None:
        self.schema = schema
        self.categorical = categorical
        self.encoders: list[ColumnEncoder] = [
            encoder_for(c, categorical=categorical) for c in schema
        ]

    def fit(self, df: pl.DataFrame) -> TableEncoder:
        """Fit every column's encoder; returns ``self``."""
        self.schema.check_frame(df)
        for enc in self.encoders:
            enc.fit(df.get_column(enc.column.name))
        return self

    def transform(self, df: pl.DataFrame) -> np.ndarray:
        """The ``(n, width)`` matrix of all columns, in schema order."""
        self.schema.check_frame(df)
        blocks = [enc.transform(df.get_column(enc.column.name)) for enc in self.encoders]
        return np.hstack(blocks) if blocks else np.empty((df.height, 0))

    def inverse_transform(self, array: np.ndarray) -> pl.DataFrame:
        """Decode a matrix (as ``transform`` lays it out) into a frame with the schema's dtypes."""
        arr = np.asarray(array, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise SchemaError(f"Expected an (n, {self.width}) array, got shape {arr.shape}.")
        cols, start = [], 0
        for enc in self.encoders:
            cols.append(enc.inverse_transform(arr[:, start : start + enc.width]))
            start += enc.width
        return pl.DataFrame(cols)

    @property
    def width(self) -> int:
        """Total number of output columns."""
        return sum(enc.width for enc in self.encoders)

    @property
    def spans(self) -> list[tuple[str, Span]]:
        """(column name, span) in output order: where each column's block lies."""
        return [(enc.column.name, span) for enc in self.encoders for span in enc.spans]

    def state(self) -> EncoderState:
        """Arrays (keys prefixed by column position) and JSON for every encoder."""
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, enc in enumerate(self.encoders):
            arr, meta = enc.state()
            arrays.update({f"{i}.{k}": v for k, v in arr.items()})
            metas.append(meta)
        return arrays, {
            "schema": self.schema.to_dict(),
            "categorical": self.categorical,
            "encoders": metas,
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TableEncoder:
        """Rebuild a fitted TableEncoder from ``state()``."""
        table = cls(Schema.from_dict(meta["schema"]), categorical=meta.get("categorical", "onehot"))
        encoders = []
        for i, enc_meta in enumerate(meta["encoders"]):
            prefix = f"{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            encoders.append(ColumnEncoder.from_state(own, enc_meta))
        table.encoders = encoders
        return table


# --- helpers ---------------------------------------------------------------------------------
def values_to_json(series: pl.Series) -> list[Any]:
    """Values as a JSON-safe list: strings, numbers, booleans and None (dates become text)."""
    dtype = series.dtype
    if dtype.is_integer() or dtype.is_float() or dtype in (pl.String, pl.Boolean, pl.Null):
        return series.to_list()
    return series.cast(pl.String).to_list()


def values_from_json(values: list[Any], dtype: pl.DataType) -> pl.Series:
    """Inverse of :func:`values_to_json`: the list as a series of ``dtype`` (text parsed back)."""
    series = pl.Series("values", values, strict=False)
    if series.dtype == dtype:
        return series
    try:
        if series.dtype == pl.String and dtype == pl.Date:
            return series.str.to_date()
        if series.dtype == pl.String and isinstance(dtype, pl.Datetime):
            parsed = series.str.to_datetime().dt.cast_time_unit(dtype.time_unit or "us")
            return parsed if dtype.time_zone is None else parsed.dt.convert_time_zone(dtype.time_zone)
        return series.cast(dtype)
    except pl.exceptions.PolarsError:
        return series

def _nulls(series: pl.Series) -> np.ndarray:
    mask = series.is_null()
    if series.dtype.is_float():
        mask = mask | series.is_nan().fill_null(False)
    return mask.to_numpy()


def plain_strings(series: pl.Series) -> pl.Series:
    """Categorical and Enum series as plain strings; others unchanged."""
    if isinstance(series.dtype, (pl.Categorical, pl.Enum)):
        return series.cast(pl.String)
    return series


def set_null(series: pl.Series, missing: np.ndarray) -> pl.Series:
    """``series`` with nulls where ``missing`` is True."""
    if not missing.any():
        return series
    return series.to_frame().select(
        pl.when(pl.lit(pl.Series(missing))).then(None).otherwise(pl.col(series.name)).alias(series.name)
    ).to_series()


def restore_numeric(column: Column, x: np.ndarray) -> pl.Series:
    """Floats clipped to the column's bounds, rounded to its decimals, cast to its dtype.

    NaN becomes null; integer and duration dtypes are rounded to whole numbers first.
    """
    dtype = column.polars_dtype
    lo = -np.inf if column.min is None else column.min
    hi = np.inf if column.max is None else column.max
    x = np.clip(np.asarray(x, dtype=np.float64), lo, hi)
    if column.decimals is not None:
        x = np.round(x, column.decimals)
    if dtype.is_integer() or dtype.is_temporal():
        whole = np.rint(x)  # half to even, as polars rounds
        fits = np.abs(whole) < 2.0**63  # False for NaN and inf: those become null
        series = pl.Series(column.name, np.where(fits, whole, 0.0).astype(np.int64))
        if not fits.all():
            series = series.scatter(np.flatnonzero(~fits), None)
        return cast_to_column(series, column)
    return cast_to_column(pl.Series(column.name, x, nan_to_null=True), column)


def cast_to_column(series: pl.Series, column: Column) -> pl.Series:
    """``series`` as ``column``'s dtype and name (values that do not convert become null)."""
    dtype = column.polars_dtype
    if series.dtype == dtype:
        return series.alias(column.name)
    return series.cast(dtype, strict=False).alias(column.name)
