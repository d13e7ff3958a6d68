"""Profiling before training: what in a table would mislead a generator, found and counted.

:func:`profile` runs every check on a polars frame (vectorised, no per-row Python) and returns a
:class:`Profile` of :class:`ProfileFinding` s, each with an exact count, a few example rows and
values, and a hint. :mod:`synthkit.prepare.clean` acts on the same masks, so what a cleaning
report says it changed is exactly what the profile found.

Checks, and what counts:

* ``duplicate_rows``: rows equal to an earlier row in every column (the first copy is not
  counted). ``near_duplicate_rows``: further rows equal to an earlier one once strings are
  trimmed, lower-cased and their spaces collapsed, and floats rounded to 6 significant digits.
* ``invalid_type``: values of a column that should be numbers (the schema says so, or at least
  95% of its strings parse as numbers) but do not parse. ``invalid_date``: likewise for dates,
  in the column's format (impossible dates such as 2023-02-30 do not parse), and parsed dates
  outside the years 1800-2200. ``out_of_bounds``: numbers outside the schema's declared
  ``min``/``max``. ``bad_text``: strings holding control characters or U+FFFD (the mark of bad
  unicode).
* ``incomplete_rows``: rows with at least ``incomplete_share`` (default half) of their values
  missing (columns empty in every row left out).
* ``outliers``: numbers beyond ``outlier_k`` (default 3) interquartile ranges outside the
  quartiles (Tukey's far-out values).
* Column-level: ``near_constant`` (one value holds at least 99% of the rows), ``high_cardinality``
  (a categorical column with more than 1,000 values, over half of them unique), ``id_like`` (a
  column unique in every row that the schema does not mark ``id``: a key the generator would
  memorise, or a leak of the row order).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthkit.frames import normalise_missing, to_polars
from synthkit.schema import ColumnKind, Schema

#: Share of a string column's values that must parse as numbers (or dates) for the rest to be
#: called invalid rather than the column being text.
MOSTLY = 0.95
#: Parsed dates outside these years are impossible for the data this library sees.
DATE_YEARS = (1800, 2200)
#: Control characters (not tab, newline, carriage return) and the unicode replacement mark.
BAD_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x{FFFD}]"
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^id_|identifier", re.IGNORECASE)
_EXAMPLES = 5
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class ProfileOptions:
    """Thresholds of the checks (the defaults are stated in the module docstring)."""

    incomplete_share: float = 0.5
    outlier_k: float = 3.0
    near_constant_share: float = 0.99
    high_cardinality: int = 1_000


@dataclass
class ProfileFinding:
    """One thing found: what, where, how many rows, a few examples, and what to do."""

    kind: str
    column: str | None
    count: int
    message: str
    hint: str
    rows: list[int] = field(default_factory=list)
    examples: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "examples": jsonable(self.examples)}


@dataclass
class Profile:
    """Every finding of :func:`profile` on one table."""

    rows: int
    columns: int
    findings: list[ProfileFinding]
    options: ProfileOptions = field(default_factory=ProfileOptions)

    def count(self, kind: str, column: str | None = None) -> int:
        """Rows (or values) found of ``kind``, in ``column`` or summed over columns."""
        return sum(f.count for f in self.findings
                   if f.kind == kind and (column is None or f.column == column))

    def of(self, kind: str) -> list[ProfileFinding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": self.columns, "options": asdict(self.options),
                "findings": [f.to_dict() for f in self.findings]}

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        """(check, column, count, message) per finding, for tables in the CLI."""
        return [(f.kind, f.column or "(rows)", f"{f.count:,}", f.message) for f in self.findings]


def jsonable(values: list[Any]) -> list[Any]:
    """Examples as JSON values: numbers, strings, booleans and None stay, the rest as text."""
    out: list[Any] = []
    for v in values:
        if v is None or isinstance(v, (bool, int, str)):
            out.append(v)
        elif isinstance(v, float):
            out.append(v if np.isfinite(v) else str(v))
        else:
            out.append(str(v))
    return out


def profile(data: Any, schema: Schema | None = None,
            options: ProfileOptions | None = None) -> Profile:
    """Find duplicates, invalid values, incomplete rows, outliers and risky columns in a table.

    ``schema`` (declared types and bounds) sharpens the value checks; without one, types are
    read from the data. Nothing is changed: :func:`synthkit.prepare.clean.clean` acts on it.
    """
    opts = options or ProfileOptions()
    df = normalise_missing(to_polars(data))
    findings: list[ProfileFinding] = []
    if df.height == 0:
        return Profile(0, df.width, findings, opts)
    masks = row_masks(df, schema, opts)
    for (kind, column), (mask, values) in masks.items():
        count = int(mask.sum())
        if count:
            findings.append(_finding(kind, column, mask, values, count, opts))
    findings += _column_findings(df, schema, opts)
    return Profile(df.height, df.width, findings, opts)


# --- row-level masks (shared with clean) ----------------------------------------------------
def row_masks(df: pl.DataFrame, schema: Schema | None,
              opts: ProfileOptions) -> dict[tuple[str, str | None], tuple[np.ndarray, pl.Series | None]]:
    """(check, column) -> (boolean row mask, the column's values or None) for every row check."""
    out: dict[tuple[str, str | None], tuple[np.ndarray, pl.Series | None]] = {}
    exact = duplicate_mask(df)
    out["duplicate_rows", None] = exact, None
    out["near_duplicate_rows", None] = duplicate_mask(_normalised(df)) & ~exact, None
    for name in df.columns:
        s = df.get_column(name)
        column = schema[name] if schema is not None and name in schema else None
        expected = expected_type(s, column)
        if expected == "number":
            out["invalid_type", name] = invalid_numbers(s), s
        elif expected == "date":
            out["invalid_date", name] = invalid_dates(s, column), s
        if s.dtype == pl.String:
            out["bad_text", name] = s.str.contains(BAD_TEXT).fill_null(False).to_numpy(), s
        if column is not None and s.dtype.is_numeric() and (column.min is not None or column.max is not None):
            low = s < column.min if column.min is not None else pl.Series([False] * len(s))
            high = s > column.max if column.max is not None else pl.Series([False] * len(s))
            out["out_of_bounds", name] = (low | high).fill_null(False).to_numpy(), s
        if s.dtype.is_numeric() and s.dtype != pl.Boolean:
            out["outliers", name] = outlier_mask(s, opts.outlier_k), s
    out["incomplete_rows", None] = incomplete_mask(df, opts.incomplete_share), None
    return out


def duplicate_mask(df: pl.DataFrame) -> np.ndarray:
    """Rows equal to an earlier row in every column (the first copy is False)."""
    if df.width == 0:
        return np.zeros(df.height, dtype=bool)
    return ~df.select(pl.struct(pl.all()).is_first_distinct()).to_series().to_numpy()


def _normalised(df: pl.DataFrame) -> pl.DataFrame:
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            exprs.append(col.str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " "))
        elif dtype.is_float():
            exprs.append(col.round_sig_figs(6))
        else:
            exprs.append(col)
    return df.select(exprs)


def expected_type(s: pl.Series, column: Any = None) -> str | None:
    """'number' or 'date' for a string column that should hold them, else None."""
    if s.dtype != pl.String:
        return None
    if column is not None:
        if column.kind == ColumnKind.NUMERICAL:
            return "number"
        if column.kind == ColumnKind.DATETIME:
            return "date"
        if column.kind in (ColumnKind.PII, ColumnKind.TEXT, ColumnKind.ID):
            return None
    non_null = s.drop_nulls()
    if len(non_null) < 20:
        return None
    if _parse_numbers(non_null).is_not_null().mean() >= MOSTLY:
        return "number"
    if _best_date_format(non_null) is not None:
        return "date"
    return None


def _parse_numbers(s: pl.Series) -> pl.Series:
    return s.str.strip_chars().cast(pl.Float64, strict=False)


def invalid_numbers(s: pl.Series) -> np.ndarray:
    """Non-missing strings that do not parse as a finite number."""
    parsed = _parse_numbers(s)
    bad = s.is_not_null() & (parsed.is_null() | ~parsed.is_finite().fill_null(False))
    return bad.to_numpy()


def parse_dates(s: pl.Series, column: Any = None) -> pl.Series:
    """The strings as dates (or datetimes) in the column's format or the best-fitting one."""
    fmt = getattr(column, "datetime_format", None) or _best_date_format(s.drop_nulls()) or "%Y-%m-%d"
    kind = pl.Datetime if "%H" in fmt else pl.Date
    return s.str.strip_chars().str.strptime(kind, fmt, strict=False)


def invalid_dates(s: pl.Series, column: Any = None) -> np.ndarray:
    """Non-missing strings that are no date in the format, or a date outside DATE_YEARS."""
    parsed = parse_dates(s, column)
    year = parsed.dt.year()
    bad = s.is_not_null() & (parsed.is_null() | (year < DATE_YEARS[0]) | (year > DATE_YEARS[1]))
    return bad.fill_null(True).to_numpy()


def _best_date_format(non_null: pl.Series) -> str | None:
    probe = non_null.head(5_000)
    if len(probe) == 0 or probe.str.contains(r"\d").mean() < MOSTLY:
        return None
    best, best_share = None, 0.0
    for fmt in _DATE_FORMATS:
        kind = pl.Datetime if "%H" in fmt else pl.Date
        share = probe.str.strip_chars().str.strptime(kind, fmt, strict=False).is_not_null().mean()
        if share > best_share:
            best, best_share = fmt, share
    return best if best_share >= MOSTLY else None


def outlier_mask(s: pl.Series, k: float) -> np.ndarray:
    """Numbers beyond ``k`` interquartile ranges outside the quartiles (none when IQR is 0)."""
    values = s.cast(pl.Float64)
    finite = values.filter(values.is_finite().fill_null(False))
    if len(finite) < 8:
        return np.zeros(len(s), dtype=bool)
    q1, q3 = finite.quantile(0.25, "linear"), finite.quantile(0.75, "linear")
    iqr = q3 - q1
    if not iqr or iqr <= 0:
        return np.zeros(len(s), dtype=bool)
    low, high = outlier_fences(q1, q3, k)
    return ((values < low) | (values > high)).fill_null(False).to_numpy()


def outlier_fences(q1: float, q3: float, k: float) -> tuple[float, float]:
    iqr = q3 - q1
    return q1 - k * iqr, q3 + k * iqr


def incomplete_mask(df: pl.DataFrame, share: float) -> np.ndarray:
    """Rows with at least ``share`` of their values missing.

    Columns missing in every row are left out (they are a column's problem, reported as
    near-constant), so one empty column does not make every row incomplete.
    """
    counts = df.null_count().row(0)
    present = [c for c, nulls in zip(df.columns, counts, strict=True) if nulls < df.height]
    if not present:
        return np.zeros(df.height, dtype=bool)
    missing = df.select(pl.sum_horizontal(pl.col(present).is_null().cast(pl.Int32))).to_series()
    return missing.to_numpy() >= np.ceil(share * len(present) - 1e-9)


# --- findings ------------------------------------------------------------------------------
_TEXT = {
    "duplicate_rows": ("{n} rows repeat an earlier row exactly",
                       "Keep them if repeats are real events; else clean with duplicates='drop'."),
    "near_duplicate_rows": ("{n} rows repeat an earlier row up to case, spaces and rounding",
                            "Check the source for double entry; near_duplicates='drop' removes them."),
    "invalid_type": ("{n} values of {col} are not numbers in a column of numbers",
                     "invalid='null' makes them missing (and the column numeric); or fix the source."),
    "invalid_date": ("{n} values of {col} are no valid date (or lie outside 1800-2200)",
                     "invalid='null' makes them missing; or fix the source."),
    "out_of_bounds": ("{n} values of {col} lie outside the schema's declared bounds",
                      "invalid='null' makes them missing; or widen the declared min/max."),
    "bad_text": ("{n} values of {col} hold control characters or broken unicode",
                 "bad_text='repair' strips those characters (the default when cleaning)."),
    "incomplete_rows": ("{n} rows miss at least {share:.0%} of their values",
                        "incomplete_rows=<share> drops rows missing that share or more."),
    "outliers": ("{n} values of {col} lie beyond {k:g} IQRs outside the quartiles",
                 "Keep real extremes; outliers='winsorise' caps them, 'null' removes them."),
}


def _finding(kind: str, column: str | None, mask: np.ndarray, values: pl.Series | None,
             count: int, opts: ProfileOptions) -> ProfileFinding:
    rows = np.flatnonzero(mask)[:_EXAMPLES].tolist()
    examples = values.gather(rows).to_list() if values is not None else []
    message, hint = _TEXT[kind]
    return ProfileFinding(kind, column, count,
                          message.format(n=f"{count:,}", col=column, share=opts.incomplete_share,
                                         k=opts.outlier_k),
                          hint, rows, examples)


def _column_findings(df: pl.DataFrame, schema: Schema | None,
                     opts: ProfileOptions) -> list[ProfileFinding]:
    found: list[ProfileFinding] = []
    n = df.height
    for name in df.columns:
        s = df.get_column(name)
        column = schema[name] if schema is not None and name in schema else None
        counts = s.value_counts(sort=True)
        top_share = float(counts.get_column("count")[0]) / n if counts.height else 0.0
        if n >= 20 and top_share >= opts.near_constant_share:
            value = counts.get_column(name)[0]
            found.append(ProfileFinding(
                "near_constant", name, n - int(counts.get_column("count")[0]),
                f"{name} is {value!r} in {top_share:.1%} of rows",
                "A generator learns almost nothing from it; drop it or keep it as a constant.",
                examples=[value]))
        n_unique = s.n_unique()
        is_id = column is not None and column.kind == ColumnKind.ID
        if n >= 20 and n_unique == n and not is_id and s.dtype != pl.Boolean and (
                s.dtype.is_integer() or s.dtype == pl.String) and (
                _ID_NAME.search(name) or s.dtype.is_integer() or _looks_like_codes(s)):
            found.append(ProfileFinding(
                "id_like", name, n,
                f"{name} is unique in every row: a key, not a feature",
                "Mark it kind 'id' in the schema (generated fresh, never learned) or drop it.",
                examples=s.head(3).to_list()))
        elif (s.dtype == pl.String and (column is None or column.kind == ColumnKind.CATEGORICAL)
              and n_unique > opts.high_cardinality and n_unique > 0.5 * n):
            found.append(ProfileFinding(
                "high_cardinality", name, n_unique,
                f"{name} has {n_unique:,} distinct values in {n:,} rows",
                "Mark it 'text', 'id' or 'pii' in the schema, or generalise it; as a category "
                "it is mostly rare values.", examples=s.head(3).to_list()))
    return found


def _looks_like_codes(s: pl.Series) -> bool:
    """Strings without spaces of nearly one length: codes, hashes, keys."""
    probe = s.drop_nulls().head(2_000)
    if len(probe) == 0:
        return False
    lengths = probe.str.len_chars()
    return not bool(probe.str.contains(" ").any()) and float(lengths.std() or 0.0) <= 1.0
