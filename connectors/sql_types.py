"""Column types between polars, SQL and Arrow, so a table is created with matching types.

Writing goes polars frame → SQLAlchemy column type (``CREATE TABLE`` compiled for the target
dialect) → Arrow type the ADBC driver copies into that column unchanged. Reading goes the other
way: Arrow batches from the driver, normalised so polars can hold them, and, for SQLite whose
values carry no fixed type, declared column types → polars dtypes.
"""

from __future__ import annotations

import re

import polars as pl
import pyarrow as pa
import sqlalchemy as sa

from synthkit.errors import WriteError

__all__ = ["arrow_type", "normalise_arrow", "polars_dtype", "sql_type"]

_MICROS_PER_DAY = 86_400_000_000
_MICROS_PER_MONTH = 30 * _MICROS_PER_DAY  # PostgreSQL's own EXTRACT(EPOCH FROM interval) rule


def sql_type(dtype: pl.DataType, column: str, dialect: str) -> sa.types.TypeEngine:
    """The SQLAlchemy type a polars ``dtype`` is stored as in ``dialect`` (refuses nested types)."""
    if dtype == pl.Boolean:
        return sa.Boolean(create_constraint=False)
    if dtype in (pl.Int8, pl.Int16, pl.UInt8):
        return sa.SmallInteger()
    if dtype in (pl.Int32, pl.UInt16):
        return sa.Integer()
    if dtype in (pl.Int64, pl.UInt32, pl.UInt64):
        return sa.BigInteger()
    if dtype == pl.Float32:
        return sa.REAL()
    if dtype.is_float():
        return sa.Double()
    if isinstance(dtype, pl.Decimal):
        return sa.Numeric(dtype.precision or 38, dtype.scale or 0)
    if isinstance(dtype, pl.Datetime):
        return sa.DateTime(timezone=dtype.time_zone is not None)
    if dtype == pl.Date:
        return sa.Date()
    if dtype == pl.Time:
        return sa.Time()
    if isinstance(dtype, pl.Duration):
        return sa.Interval() if dialect == "postgresql" else sa.BigInteger()  # microseconds
    if dtype == pl.Binary:
        return sa.LargeBinary()
    if dtype in (pl.String, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum):
        return sa.Text()
    raise WriteError(
        f"Column '{column}' has the nested type {dtype}, which no SQL column type holds.",
        hint=f"Flatten or serialise it first, e.g. df.with_columns(pl.col('{column}').cast(pl.String)) "
        "for lists, or struct.json_encode() for structs.",
    )


def arrow_type(satype: sa.types.TypeEngine, dtype: pl.DataType, dialect: str) -> pa.DataType | None:
    """The Arrow type the ADBC driver copies into a column of ``satype``; None when unknown.

    ``dtype`` is the data's polars dtype (it decides the time zone and unit where the SQL
    type does not). None means the server must cast: see the temp-table path in sql.py.
    """
    t = satype if isinstance(satype, type) else type(satype)
    inst = satype if not isinstance(satype, type) else satype()
    if issubclass(t, sa.Boolean):
        return pa.bool_()
    if issubclass(t, sa.SmallInteger):
        return pa.int16() if dialect == "postgresql" else pa.int64()
    if issubclass(t, sa.BigInteger):
        return pa.int64()
    if issubclass(t, sa.Integer):
        return pa.int32() if dialect == "postgresql" else pa.int64()
    if issubclass(t, (sa.Float, sa.Double)) or isinstance(inst, sa.REAL):
        name = type(inst).__name__.upper()
        single = name in ("REAL", "FLOAT4") or getattr(inst, "precision", None) in range(1, 25)
        return pa.float32() if single and dialect == "postgresql" else pa.float64()
    if issubclass(t, sa.Numeric):
        p, s = getattr(inst, "precision", None), getattr(inst, "scale", None)
        if dialect == "postgresql" and p and p <= 38:
            return pa.decimal128(p, s or 0)
        return None if dialect == "postgresql" else pa.float64()
    if issubclass(t, sa.DateTime):
        tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
        if getattr(inst, "timezone", False) and tz is None:
            tz = "UTC"
        return pa.timestamp("us", tz=tz if getattr(inst, "timezone", False) else None)
    if issubclass(t, sa.Date):
        return pa.date32()
    if issubclass(t, sa.Time):
        return pa.time64("us")
    if issubclass(t, sa.Interval):
        return pa.duration("us") if dialect == "postgresql" else pa.int64()
    if issubclass(t, (sa.LargeBinary, sa.types._Binary)):
        return pa.binary()
    if issubclass(t, sa.Enum):
        return pa.large_string() if dialect != "postgresql" else None
    if issubclass(t, sa.String):
        return pa.large_string()
    return None if dialect == "postgresql" else pa.large_string()


def to_arrow(df: pl.DataFrame, plan: dict[str, pa.DataType], dialect: str) -> pa.Table:
    """``df`` as an Arrow table whose columns have exactly the planned types."""
    exprs = []
    for name, target in plan.items():
        col = pl.col(name)
        dtype = df.schema[name]
        if pa.types.is_decimal(target) and not isinstance(dtype, pl.Decimal):
            col = col.cast(pl.Float64).round(target.scale).cast(pl.Decimal(target.precision, target.scale))
        elif pa.types.is_floating(target) and isinstance(dtype, pl.Decimal):
            col = col.cast(pl.Float64)
        elif pa.types.is_integer(target) and isinstance(dtype, pl.Duration):
            col = col.dt.total_microseconds()
        elif pa.types.is_large_string(target) and dtype != pl.String:
            col = col.cast(pl.String)
        elif dialect == "sqlite" and isinstance(dtype, pl.Datetime) and dtype.time_zone:
            # SQLite keeps text: store the instant in UTC with its offset, so it reads back aware
            col = col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00:00")
            plan = {**plan, name: pa.large_string()}
        exprs.append(col)
    table = df.select(exprs).to_arrow()
    try:
        return table.cast(pa.schema([pa.field(n, t) for n, t in plan.items()]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise WriteError(
            f"The data does not fit the table's column types: {exc}",
            hint="Cast the columns named in the message to the table's types, or write to a new "
            "table (mode='create') whose types follow the data.",
        ) from exc


# --- reading ------------------------------------------------------------------------------------
def normalise_arrow(batch: pa.RecordBatch) -> pa.RecordBatch:
    """An ADBC PostgreSQL batch in types polars holds: numeric → float64, interval → duration, ...

    Decimals become float64 (the schema keeps their scale as ``decimals``), intervals
    microsecond durations (a month counted as 30 days, as PostgreSQL's EXTRACT(EPOCH) does),
    UUIDs their canonical text, enums and other opaque text-like types strings, money its
    amount.
    """
    arrays, fields, changed = [], [], False
    for field, array in zip(batch.schema, batch.columns, strict=True):
        new = _normalise_column(field, array)
        changed |= new is not array
        arrays.append(new)
        fields.append(pa.field(field.name, new.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)) if changed else batch


def _pg_type(field: pa.Field) -> str:
    meta = field.metadata or {}
    return (meta.get(b"POSTGRESQL:type") or b"").decode()


def _normalise_column(field: pa.Field, array: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    t = array.type
    pgtype = _pg_type(field)
    if pgtype == "money" and pa.types.is_integer(t):
        return pc.divide(array.cast(pa.float64()), 100.0)
    if isinstance(t, pa.BaseExtensionType):
        storage = array.storage if hasattr(array, "storage") else array.cast(t.storage_type)
        if pa.types.is_fixed_size_binary(storage.type) and storage.type.byte_width == 16:
            return _uuid_text(storage)
        if pgtype == "numeric" or getattr(t, "type_name", "") == "numeric":
            return _numeric(storage)
        if pa.types.is_binary(storage.type) or pa.types.is_large_binary(storage.type):
            try:
                return storage.cast(pa.string())
            except pa.ArrowInvalid:
                return storage
        return storage
    if pa.types.is_interval(t):
        return _interval(array)
    if pa.types.is_decimal(t):
        return array.cast(pa.float64())
    return array


def _numeric(storage: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    text = storage.cast(pa.string())
    special = pc.is_in(text, pa.array(["NaN", "Infinity", "-Infinity"]))
    cleaned = pc.if_else(special, pa.scalar(None, pa.string()), text)
    values = cleaned.cast(pa.float64())
    if pc.any(special).as_py():
        nan = pc.if_else(pc.equal(text, "NaN"), float("nan"), None)
        inf = pc.if_else(pc.equal(text, "Infinity"), float("inf"), nan)
        ninf = pc.if_else(pc.equal(text, "-Infinity"), float("-inf"), inf)
        values = pc.coalesce(values, ninf)
    return values


def _interval(array: pa.Array) -> pa.Array:
    import numpy as np

    flat = array.cast(pa.month_day_nano_interval())
    # MonthDayNano has no vectorised accessors in pyarrow; go through its buffer (12+4 bytes).
    buf = flat.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.dtype([("m", "<i4"), ("d", "<i4"), ("n", "<i8")]),
                        count=len(flat) + flat.offset)[flat.offset:]
    micros = raw["m"].astype(np.int64) * _MICROS_PER_MONTH + raw["d"].astype(np.int64) * _MICROS_PER_DAY
    micros += raw["n"] // 1000
    return pa.array(micros, type=pa.duration("us"), mask=np.asarray(flat.is_null()))


def _uuid_text(storage: pa.Array) -> pa.Array:
    hexed = pl.from_arrow(storage.cast(pa.binary())).bin.encode("hex")  # type: ignore[union-attr]
    s = pl.DataFrame({"h": hexed}).select(
        pl.concat_str(
            [pl.col("h").str.slice(a, b - a) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))],
            separator="-",
        )
    ).to_series()
    return s.to_arrow().cast(pa.string())


# --- SQLite: declared types → polars ----------------------------------------------------------
_SQLITE_RULES: tuple[tuple[str, pl.DataType], ...] = (
    (r"BOOL", pl.Boolean()),
    (r"TIMESTAMP|DATETIME", pl.Datetime("us")),
    (r"^DATE$", pl.Date()),
    (r"^TIME$", pl.Time()),
    (r"INT", pl.Int64()),
    (r"CHAR|CLOB|TEXT|UUID|JSON", pl.String()),
    (r"BLOB|BINARY|BYTEA", pl.Binary()),
    (r"REAL|FLOA|DOUB|NUMERIC|DECIMAL", pl.Float64()),
)


def polars_dtype(declared: str) -> pl.DataType | None:
    """The polars dtype for an SQLite declared column type, by SQLite's affinity rules."""
    text = re.sub(r"\(.*\)", "", declared or "").strip().upper()
    for pattern, dtype in _SQLITE_RULES:
        if re.search(pattern, text):
            return dtype
    return None
