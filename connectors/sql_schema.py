"""What a database says about a table, turned into a synthkit Schema that overrides guesses.

SQLAlchemy's inspector reads column types, NOT NULL, primary and foreign keys, CHECK
constraints and enum types. :func:`schema_from_table` starts from ``infer_schema`` on the data
and then applies those facts: a single-column primary key is kind ``id`` (and the schema's
``primary_key``), NOT NULL columns are not nullable, foreign-key columns draw their values from
the parent's keys (kind ``categorical``, ``references`` set), ``CHECK (c IN (...))`` and enum
types declare the categories, and NUMERIC scales become ``decimals``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlalchemy as sa

from synthkit.schema import Column, ColumnKind, Schema, infer_schema

__all__ = ["ForeignKeyInfo", "TableInfo", "check_categories", "reflect_table", "schema_from_table"]


@dataclass(frozen=True)
class ForeignKeyInfo:
    """``columns`` of this table refer to ``parent_columns`` of ``parent_table``."""

    columns: tuple[str, ...]
    parent_table: str
    parent_columns: tuple[str, ...]
    parent_schema: str | None = None
    name: str | None = None

    def target(self, column: str) -> str:
        """'table.column' (schema-qualified when the parent is in another schema)."""
        parent = self.parent_columns[self.columns.index(column)]
        prefix = f"{self.parent_schema}." if self.parent_schema else ""
        return f"{prefix}{self.parent_table}.{parent}"


@dataclass
class TableInfo:
    """The reflected facts about one table (or view)."""

    name: str
    db_schema: str | None
    columns: list[dict[str, Any]]
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[ForeignKeyInfo] = field(default_factory=list)
    categories: dict[str, list[Any]] = field(default_factory=dict)
    unique: list[list[str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def type_of(self, column: str) -> sa.types.TypeEngine:
        return next(c["type"] for c in self.columns if c["name"] == column)

    @property
    def not_null(self) -> set[str]:
        return {c["name"] for c in self.columns if not c.get("nullable", True)}


def reflect_table(inspector: Any, table: str, db_schema: str | None) -> TableInfo:
    """Read one table's columns and constraints through a SQLAlchemy inspector."""
    columns = inspector.get_columns(table, schema=db_schema)
    info = TableInfo(name=table, db_schema=db_schema, columns=columns)
    is_view = table in _safe(lambda: inspector.get_view_names(schema=db_schema), [])
    if is_view:
        return info
    pk = _safe(lambda: inspector.get_pk_constraint(table, schema=db_schema), {}) or {}
    info.primary_key = list(pk.get("constrained_columns") or [])
    for fk in _safe(lambda: inspector.get_foreign_keys(table, schema=db_schema), []):
        if not fk.get("referred_table") or not fk.get("constrained_columns"):
            continue
        parent_schema = fk.get("referred_schema")
        if parent_schema == db_schema:
            parent_schema = None
        info.foreign_keys.append(
            ForeignKeyInfo(
                columns=tuple(fk["constrained_columns"]),
                parent_table=fk["referred_table"],
                parent_columns=tuple(fk["referred_columns"]),
                parent_schema=parent_schema,
                name=fk.get("name"),
            )
        )
    for uq in _safe(lambda: inspector.get_unique_constraints(table, schema=db_schema), []):
        info.unique.append(list(uq.get("column_names") or []))
    for check in _safe(lambda: inspector.get_check_constraints(table, schema=db_schema), []):
        info.categories.update(check_categories(str(check.get("sqltext", ""))))
    for col in columns:  # enum types (PostgreSQL ENUM, MySQL ENUM, SQLAlchemy Enum)
        enums = getattr(col["type"], "enums", None)
        if enums:
            info.categories.setdefault(col["name"], list(enums))
    return info


def _safe(call: Any, default: Any) -> Any:
    """Some dialects cannot report some constraints (e.g. views, old servers): treat as none."""
    try:
        return call()
    except (NotImplementedError, sa.exc.SQLAlchemyError):
        return default


# --- CHECK (c IN (...)) -----------------------------------------------------------------------
_IDENT = r'\(*"?(?P<col>[A-Za-z_][\w$]*)"?\)*(?:::[\w ]+(?:\[\])?)?'
_ANY = re.compile(rf"^\(*{_IDENT}\s*=\s*ANY\s*\(+\s*ARRAY\s*\[(?P<items>.*?)\](?:\)*::[\w ]+\[\])?\s*\)+$", re.S)
_IN = re.compile(rf"^\(*{_IDENT}\s+IN\s*\((?P<items>.*)\)\s*\)*$", re.S | re.I)
_ITEM = re.compile(r"\s*(?:'(?P<s>(?:[^']|'')*)'|(?P<n>[-+]?\d+(?:\.\d+)?))(?:::[\w ]+)?\s*(?:,|$)")


def check_categories(sqltext: str) -> dict[str, list[Any]]:
    """``{column: values}`` when a CHECK constraint is exactly ``column IN (values)``."""
    text = sqltext.strip()
    m = _ANY.match(text) or _IN.match(text)
    if m is None:
        return {}
    items = m.group("items")
    values: list[Any] = []
    pos = 0
    while pos < len(items):
        item = _ITEM.match(items, pos)
        if item is None or item.end() == pos:
            return {}  # not a plain list of literals: leave the column to the data
        if item.group("s") is not None:
            values.append(item.group("s").replace("''", "'"))
        else:
            number = item.group("n")
            values.append(float(number) if "." in number else int(number))
        pos = item.end()
    return {m.group("col"): values} if values else {}


# --- Schema -------------------------------------------------------------------------------------
def schema_from_table(frame: pl.DataFrame, info: TableInfo, *, detect_pii: bool = True) -> Schema:
    """``infer_schema(frame)`` with the database's facts about ``info``'s table applied."""
    inferred = infer_schema(frame, detect_pii=detect_pii) if frame.height else _empty_schema(frame)
    fk_target = {c: fk.target(c) for fk in info.foreign_keys if len(fk.columns) == 1 for c in fk.columns}
    primary = info.primary_key[0] if len(info.primary_key) == 1 else None
    if primary is not None and primary in fk_target:
        primary = None  # a key that is also a reference must keep the parent's values
    known = set(info.names)
    cols = []
    for col in inferred:
        if col.name not in known:  # a column of a query, not of the table
            cols.append(col)
            continue
        cols.append(_apply_facts(col, info, frame, primary=primary, reference=fk_target.get(col.name)))
    return Schema(columns=cols, primary_key=primary if primary in frame.columns else None)


def _apply_facts(
    col: Column, info: TableInfo, frame: pl.DataFrame, *, primary: str | None, reference: str | None
) -> Column:
    update: dict[str, Any] = {"nullable": col.name not in info.not_null}
    satype = info.type_of(col.name)
    if col.name == primary:
        update.update(kind=ColumnKind.ID, pii=None, categories=None, min=None, max=None, decimals=None)
    elif reference is not None:
        update.update(kind=ColumnKind.CATEGORICAL, pii=None, references=reference,
                      min=None, max=None, decimals=None, datetime_format=None)
    if col.name != primary and col.name in info.categories:
        dtype = frame.schema[col.name]
        values = [_typed(v, dtype) for v in info.categories[col.name]]
        update.update(kind=ColumnKind.CATEGORICAL, pii=None, categories=values,
                      min=None, max=None, decimals=None, datetime_format=None)
    elif reference is None and isinstance(satype, sa.Numeric) and not isinstance(satype, sa.Float):
        scale = getattr(satype, "scale", None)
        if scale is not None and col.kind == ColumnKind.NUMERICAL:
            update["decimals"] = int(scale)
    if update.get("kind") not in (None, ColumnKind.PII) and col.kind == ColumnKind.PII:
        update["pii"] = None
    return Column.model_validate({**col.model_dump(), **update})


def _typed(value: Any, dtype: pl.DataType) -> Any:
    """A CHECK/enum literal as a value of the column's dtype (text for string columns)."""
    if dtype.is_integer():
        return int(value)
    if dtype.is_float():
        return float(value)
    return str(value)


def _empty_schema(frame: pl.DataFrame) -> Schema:
    """A schema for a table with no rows: every column learned as its dtype suggests."""
    from synthkit.schema import dtype_name

    cols = []
    for name, dtype in frame.schema.items():
        if dtype.is_numeric():
            kind = ColumnKind.NUMERICAL
        elif dtype == pl.Boolean:
            kind = ColumnKind.BOOLEAN
        elif dtype.is_temporal() and not isinstance(dtype, (pl.Duration, pl.Time)):
            kind = ColumnKind.DATETIME
        else:
            kind = ColumnKind.CATEGORICAL
        cols.append(Column(name=name, kind=kind, dtype=dtype_name(dtype)))
    return Schema(columns=cols)
