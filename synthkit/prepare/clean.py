"""Cleaning before training: act on what :mod:`synthkit.prepare.profile` finds, and say so.

:func:`clean` applies :class:`CleanRules` (one action per kind of problem) and returns the
cleaned frame with a :class:`CleaningReport`: per rule, the action, how many rows or values it
changed, and examples. It goes into the quality report and the audit record. Rows that break no
rule are never changed, and nothing is changed silently.

Defaults are conservative, and stated here: values that break the column's type, date or
declared bounds become missing (``invalid="null"``: they would otherwise derail the encoders);
control characters and broken unicode are stripped from strings (``bad_text="repair"``);
duplicates, near duplicates, incomplete rows and outliers are only reported (``"keep"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from synthkit.frames import normalise_missing, to_polars
from synthkit.prepare.profile import (
    BAD_TEXT,
    ProfileOptions,
    jsonable,
    outlier_fences,
    parse_dates,
    row_masks,
)
from synthkit.schema import Schema

_EXAMPLES = 5


class CleanRules(BaseModel):
    """What to do with each kind of problem (``pipeline YAML: prepare:``)."""

    model_config = ConfigDict(extra="forbid")

    duplicates: Literal["keep", "drop"] = Field(
        "keep", description="Rows repeating an earlier row exactly: 'drop' keeps the first.")
    near_duplicates: Literal["keep", "drop"] = Field(
        "keep", description="Rows repeating an earlier row up to case, spaces and rounding.")
    invalid: Literal["keep", "null", "drop_row"] = Field(
        "null", description="Values that are not numbers/dates where they should be, impossible "
        "dates, values outside declared bounds: 'null' makes them missing (and parses the rest "
        "of a string column of numbers or dates); 'drop_row' drops their rows.")
    bad_text: Literal["keep", "repair", "null"] = Field(
        "repair", description="Strings with control characters or broken unicode: 'repair' "
        "strips those characters.")
    incomplete_rows: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Drop rows missing at least this share of their values (None: keep).")
    outliers: Literal["keep", "winsorise", "null", "drop_row", "flag"] = Field(
        "keep", description="Numbers beyond outlier_k IQRs outside the quartiles: 'winsorise' "
        "caps them at the fences, 'flag' adds a boolean column <name>_outlier.")
    outlier_k: float = Field(3.0, gt=0.0, description="Fence distance in interquartile ranges.")


@dataclass
class CleaningAction:
    """One rule applied: how many rows or values it changed, with examples."""

    rule: str
    column: str | None
    action: str
    count: int
    rows: list[int] = field(default_factory=list)
    examples: list[Any] = field(default_factory=list)


@dataclass
class CleaningReport:
    """What :func:`clean` did, rule by rule; empty ``actions`` means nothing changed."""

    rows_in: int
    rows_out: int
    rules: dict[str, Any]
    actions: list[CleaningAction]
    found: dict[str, int] = field(default_factory=dict)  # check -> count, kept ones too

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def count(self, rule: str, column: str | None = None) -> int:
        return sum(a.count for a in self.actions
                   if a.rule == rule and (column is None or a.column == column))

    def to_dict(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "rules": self.rules,
                "found": self.found,
                "actions": [{**asdict(a), "examples": jsonable(a.examples)} for a in self.actions]}

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        return [(a.rule, a.column or "(rows)", a.action, f"{a.count:,}") for a in self.actions]


class Cleaned(NamedTuple):
    """The cleaned frame and what was done to it (unpacks as ``data, report``)."""

    data: pl.DataFrame
    report: CleaningReport


def clean(data: Any, schema: Schema | None = None,
          rules: CleanRules | dict[str, Any] | None = None) -> Cleaned:
    """Repair or drop what breaks ``rules``; report every change (see the module docstring)."""
    rules = rules if isinstance(rules, CleanRules) else CleanRules(**(rules or {}))
    df = normalise_missing(to_polars(data))
    opts = ProfileOptions(incomplete_share=rules.incomplete_rows or 0.5, outlier_k=rules.outlier_k)
    masks = row_masks(df, schema, opts) if df.height else {}
    found = {f"{kind}:{col}" if col else kind: int(mask.sum())
             for (kind, col), (mask, _) in masks.items() if mask.any()}
    actions: list[CleaningAction] = []
    drop = np.zeros(df.height, dtype=bool)
    columns: dict[str, pl.Series] = {}

    def record(rule: str, column: str | None, action: str, mask: np.ndarray,
               values: pl.Series | None) -> None:
        rows = np.flatnonzero(mask)[:_EXAMPLES].tolist()
        examples = values.gather(rows).to_list() if values is not None else []
        actions.append(CleaningAction(rule, column, action, int(mask.sum()), rows, examples))

    for (kind, column), (mask, values) in masks.items():
        if not mask.any():
            continue
        if kind == "duplicate_rows" and rules.duplicates == "drop":
            record(kind, None, "drop", mask, None)
            drop |= mask
        elif kind == "near_duplicate_rows" and rules.near_duplicates == "drop":
            record(kind, None, "drop", mask, None)
            drop |= mask
        elif kind == "incomplete_rows" and rules.incomplete_rows is not None:
            record(kind, None, "drop", mask, None)
            drop |= mask
        elif kind in ("invalid_type", "invalid_date", "out_of_bounds") and rules.invalid != "keep":
            record(kind, column, rules.invalid, mask, values)
            if rules.invalid == "drop_row":
                drop |= mask
            else:
                current = columns.get(column, values)
                columns[column] = current.scatter(np.flatnonzero(mask), None)
        elif kind == "bad_text" and rules.bad_text != "keep":
            record(kind, column, rules.bad_text, mask, values)
            current = columns.get(column, values)
            fixed = (current.str.replace_all(BAD_TEXT, "") if rules.bad_text == "repair"
                     else current.scatter(np.flatnonzero(mask), None))
            columns[column] = fixed  # only rows in the mask hold what replace_all removes
        elif kind == "outliers" and rules.outliers != "keep":
            record(kind, column, rules.outliers, mask, values)
            if rules.outliers == "drop_row":
                drop |= mask
            elif rules.outliers == "flag":
                columns[f"{column}_outlier"] = pl.Series(f"{column}_outlier", mask)
            else:
                columns[column] = _fix_outliers(columns.get(column, values), mask, rules)
    # parse string columns of numbers or dates once their invalid values are gone
    if rules.invalid == "null":
        for (kind, column), (mask, _values) in masks.items():
            if kind == "invalid_type" and mask.any():
                columns[column] = columns[column].str.strip_chars().cast(pl.Float64, strict=False)
            elif kind == "invalid_date" and mask.any():
                column_spec = schema[column] if schema is not None and column in schema else None
                columns[column] = parse_dates(columns[column], column_spec)
    out = df.with_columns(list(columns.values())) if columns else df
    if drop.any():
        out = out.filter(pl.Series(~drop))
    report = CleaningReport(df.height, out.height, rules.model_dump(), actions, found)
    return Cleaned(out, report)


def _fix_outliers(s: pl.Series, mask: np.ndarray, rules: CleanRules) -> pl.Series:
    if rules.outliers == "null":
        return s.scatter(np.flatnonzero(mask), None)
    values = s.cast(pl.Float64)
    finite = values.filter(values.is_finite().fill_null(False))
    low, high = outlier_fences(finite.quantile(0.25, "linear"), finite.quantile(0.75, "linear"),
                               rules.outlier_k)
    if s.dtype.is_integer():
        low, high = float(np.ceil(low)), float(np.floor(high))
    capped = values.clip(low, high)
    return capped.cast(s.dtype) if s.dtype.is_integer() else capped.cast(s.dtype, strict=False)
