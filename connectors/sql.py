"""Databases as sources and sinks: PostgreSQL and SQLite (MySQL/MariaDB through SQLAlchemy).

``read(uri, table=...)`` or ``read(uri, query=...)`` returns a polars frame; ``read_batches``
streams a table larger than memory; ``limit=`` and ``sample=`` take a subset to train on.
``read_schema`` gives the :class:`~synthkit.schema.Schema` the database states (types, NOT
NULL, keys, CHECK/enum categories) over the guesses, and ``read_database`` a whole database
schema as a :class:`~synthkit.relational.MultiTable`. ``write``/``write_batches`` (in
:mod:`synthkit.connectors.sql_write`) are gated, single-transaction sinks.

URIs: ``postgresql://user@host:5432/db``, ``sqlite:///path/to/file.db``, ``mysql+pymysql://...``.
Passwords come from the URI, ``password_env=``, environment variables or a .pgpass-style file
(see :mod:`synthkit.connectors.credentials`) and are never shown: errors use the redacted URI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from synthkit.connectors.credentials import is_database_uri, redact
from synthkit.connectors.sql_connect import Database, missing_table_error, open_database
from synthkit.connectors.sql_schema import TableInfo, reflect_table, schema_from_table
from synthkit.connectors.sql_types import normalise_arrow, polars_dtype
from synthkit.connectors.sql_write import WrittenTable, write, write_batches
from synthkit.errors import ConnectorError, EmptyDataError, ReadError, SchemaError
from synthkit.frames import normalise_missing
from synthkit.schema import Schema

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "WrittenTable",
    "column_types",
    "is_database_uri",
    "list_tables",
    "read",
    "read_batches",
    "read_database",
    "read_schema",
    "redact",
    "write",
    "write_batches",
]

#: Rows per batch when streaming (a batch of a wide table stays well under 100 MB).
DEFAULT_BATCH_SIZE = 100_000


# --- reading ------------------------------------------------------------------------------------
def read(
    uri: str,
    *,
    table: str | None = None,
    query: str | None = None,
    columns: list[str] | None = None,
    schema: Schema | None = None,
    db_schema: str | None = None,
    limit: int | None = None,
    sample: int | float | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    password_env: str | None = None,
    engine: str = "auto",
) -> pl.DataFrame:
    """Read a table (``table=``) or the result of a SELECT (``query=``) into a polars frame.

    ``limit`` keeps the first rows; ``sample`` keeps a uniform random subset, either a row
    count (int) or a share (float below 1), reproducible with ``seed`` (the rows are streamed
    once, so only the sample is held in memory; a table is read in primary-key order). A
    ``schema`` selects and casts columns as the files connector does.
    """
    if schema is not None and columns is None:
        columns = schema.names
    stream = read_batches(
        uri, table=table, query=query, columns=columns, db_schema=db_schema, limit=limit,
        batch_size=batch_size, password_env=password_env, engine=engine,
        _ordered=sample is not None,
    )
    if sample is not None:
        frames = [_sample_stream(stream, sample, seed)]
    else:
        frames = list(stream)
    what = f"table '{table}'" if table else "the query"
    if not frames or all(f.height == 0 for f in frames):
        width = frames[0].width if frames else 0
        raise EmptyDataError(f"{what.capitalize()} in {redact(uri)} returned no rows"
                             + ("" if width else " and no columns") + ".")
    df = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    if schema is not None:
        from synthkit.connectors.files import apply_schema

        df = apply_schema(df, schema.select(columns) if columns else schema)
    return df


def read_batches(
    uri: str,
    *,
    table: str | None = None,
    query: str | None = None,
    columns: list[str] | None = None,
    db_schema: str | None = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    password_env: str | None = None,
    engine: str = "auto",
    _ordered: bool = False,
) -> Iterator[pl.DataFrame]:
    """Stream a table or query as polars frames of ``batch_size`` rows (the last may be shorter).

    The connection is opened (and the table checked) at once, so a wrong URI, password or
    table name fails here, not at the first batch; it closes when the stream ends.
    """
    _check_what(table, query, limit, batch_size)
    db = open_database(uri, password_env=password_env, engine=engine)
    try:
        info = _table_info(db, table, db_schema) if table is not None else None
        if info is not None and columns is not None:
            missing = [c for c in columns if c not in info.names]
            if missing:
                raise SchemaError(
                    f"Table '{table}' in {db.redacted} lacks the columns {missing}.",
                    hint=f"Columns there: {info.names}.",
                )
        sql = _select_sql(db, info, query, columns, limit, ordered=_ordered)
        if db.use_adbc and db.dialect == "postgresql":
            batches = _postgres_batches(db, sql)
        elif db.use_adbc:
            batches = _sqlite_batches(db, sql, info, batch_size)
        else:
            batches = _sqlalchemy_batches(db, sql, batch_size)
            if db.dialect == "sqlite" and info is not None:  # SQLite values carry no fixed type
                declared = {c["name"]: polars_dtype(str(c["type"])) for c in info.columns}
                batches = (_sqlite_typed(b, declared) for b in batches)
        first = next(batches, None)  # run the query now: a bad query fails here
    except BaseException:
        db.close()
        raise
    return _rebatch(db, first, batches, batch_size, columns if query is not None else None)


def _check_what(table: str | None, query: str | None, limit: int | None, batch_size: int) -> None:
    if (table is None) == (query is None):
        raise ConnectorError(
            "Name exactly one of table= or query= for a database source.",
            hint="e.g. read('postgresql://user@host/db', table='customers') or "
            "query='select * from customers where region = 1'.",
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConnectorError(f"limit must be a positive integer, not {limit!r}.")
    if batch_size < 1:
        raise ConnectorError(f"batch_size must be at least 1, not {batch_size}.")


def _rebatch(
    db: Database,
    first: pl.DataFrame | None,
    batches: Iterator[pl.DataFrame],
    size: int,
    columns: list[str] | None,
) -> Iterator[pl.DataFrame]:
    """Yield frames of exactly ``size`` rows from the driver's batches, then close ``db``."""
    try:
        pending: list[pl.DataFrame] = []
        held = 0
        schema: pl.Schema | None = None
        stream = [first] if first is not None else []
        for batch in _chain(stream, batches):
            if columns is not None:
                missing = [c for c in columns if c not in batch.columns]
                if missing:
                    raise SchemaError(f"The query's result lacks the columns {missing}.",
                                      hint=f"Columns it returns: {batch.columns}.")
                batch = batch.select(columns)
            if schema is None:
                schema = batch.schema
            elif batch.schema != schema:
                batch = _align(batch, schema)
            pending.append(normalise_missing(batch))
            held += batch.height
            while held >= size:
                whole = pl.concat(pending) if len(pending) > 1 else pending[0]
                yield whole.slice(0, size)
                rest = whole.slice(size)
                pending, held = ([rest] if rest.height else []), rest.height
        if pending:
            yield pl.concat(pending) if len(pending) > 1 else pending[0]
        elif schema is not None and first is not None and first.height == 0:
            yield first
    finally:
        db.close()


def _chain(head: list[pl.DataFrame], tail: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    yield from head
    yield from tail


def _align(batch: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Cast a later batch to the first batch's dtypes (SQLite infers types batch by batch)."""
    try:
        return batch.cast({n: t for n, t in schema.items() if t != pl.Null}, strict=True)
    except Exception as exc:  # noqa: BLE001 - polars raises several types here
        raise ReadError(
            f"A later batch's types differ from the first batch's: {exc}",
            hint="CAST the columns in the query to one type, or read the table (table=...), "
            "whose declared types are used.",
        ) from exc


def _sample_stream(stream: Iterator[pl.DataFrame], sample: int | float, seed: int) -> pl.DataFrame:
    """A uniform random subset of the streamed rows, holding at most the sample in memory.

    An int keeps that many rows (each row gets a seeded uniform key; the smallest keys win,
    which is sampling without replacement); a float below 1 keeps each row with that chance.
    """
    import numpy as np

    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or sample <= 0 or (
        isinstance(sample, float) and sample >= 1
    ):
        raise ConnectorError(
            f"sample must be a row count (int ≥ 1) or a share (0 < float < 1), not {sample!r}.",
            hint="e.g. sample=50_000 or sample=0.1; limit= keeps the first rows instead.",
        )
    rng = np.random.default_rng(seed)
    key, order = "__synthkit_sample_key", "__synthkit_sample_row"
    kept: pl.DataFrame | None = None
    parts: list[pl.DataFrame] = []
    seen = 0
    for batch in stream:
        draws = rng.random(batch.height)
        if isinstance(sample, float):
            parts.append(batch.filter(pl.Series(draws < sample)))
            continue
        keyed = batch.with_columns(pl.Series(key, draws), pl.int_range(seen, seen + batch.height).alias(order))
        seen += batch.height
        merged = keyed if kept is None else pl.concat([kept, keyed], how="vertical_relaxed")
        kept = merged.top_k(int(sample), by=key, reverse=True) if merged.height > sample else merged
    if isinstance(sample, float):
        return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    if kept is None:
        return pl.DataFrame()
    return kept.sort(order).drop(key, order)  # the sampled rows in the order they were read


# --- per-engine batch streams -------------------------------------------------------------------
def _postgres_batches(db: Database, sql: str) -> Iterator[pl.DataFrame]:
    conn = db.adbc(autocommit=True)
    cur = conn.cursor()
    try:
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        except Exception as exc:  # noqa: BLE001 - ADBC raises DB-API errors
            raise _query_error(db, exc) from None
        return _arrow_frames(db, reader, cur, conn)
    except BaseException:
        cur.close()
        conn.close()
        raise


def _arrow_frames(db: Database, reader: Any, cur: Any, conn: Any) -> Iterator[pl.DataFrame]:
    try:
        got = False
        for batch in reader:
            got = True
            yield pl.from_arrow(normalise_arrow(batch))  # type: ignore[misc]
        if not got:
            import pyarrow as pa

            empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
            yield pl.from_arrow(normalise_arrow(empty))  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, ConnectorError):
            raise
        raise _query_error(db, exc) from None
    finally:
        cur.close()
        conn.close()


def _sqlite_batches(db: Database, sql: str, info: TableInfo | None, size: int) -> Iterator[pl.DataFrame]:
    conn = db.sqlite_reader()
    declared = {c["name"]: polars_dtype(str(c["type"])) for c in info.columns} if info else {}
    raw = {n: (pl.String if t is not None and t.is_temporal() else pl.Int64 if t == pl.Boolean else t)
           for n, t in declared.items() if t is not None}
    try:
        stream = pl.read_database(sql, conn, iter_batches=True, batch_size=size,
                                  schema_overrides=raw or None, infer_schema_length=None)
        first = next(iter(stream), None)  # type: ignore[call-overload]
    except Exception as exc:  # noqa: BLE001 - sqlite3 raises several types
        conn.close()
        raise _query_error(db, exc) from None
    return _sqlite_frames(db, conn, first, stream, declared)


def _sqlite_frames(db: Database, conn: Any, first: Any, stream: Any, declared: dict[str, Any]) -> Iterator[pl.DataFrame]:
    try:
        if first is None:
            yield pl.DataFrame(schema={n: (t or pl.String) for n, t in declared.items()})
            return
        for batch in _chain([first], iter(stream)):
            yield _sqlite_typed(batch, declared)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, (ConnectorError, SchemaError)):
            raise
        raise _query_error(db, exc) from None
    finally:
        conn.close()


def _sqlite_typed(batch: pl.DataFrame, declared: dict[str, Any]) -> pl.DataFrame:
    """Dates, times and booleans from SQLite's text and integers, by declared column type."""
    exprs = []
    for name, dtype in declared.items():
        if name not in batch.columns or dtype is None or batch.schema[name] == dtype:
            continue
        col = pl.col(name)
        if dtype == pl.Boolean:
            exprs.append(col.cast(pl.Int64).cast(pl.Boolean))
        elif batch.schema[name] == pl.String and dtype.is_temporal():
            exprs.append(_parse_temporal(batch.get_column(name), dtype))
    return batch.with_columns(exprs) if exprs else batch


def _parse_temporal(s: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Parse ISO text as ``dtype``; text that is not ISO stays text (SQLite types are hints)."""
    text = s.str.replace("T", " ", literal=True)
    try:
        if dtype == pl.Date:
            return text.str.to_date("%Y-%m-%d", strict=True)
        if dtype == pl.Time:
            return text.str.to_time(strict=True)
        tz = bool(text.drop_nulls().str.contains(r"[+-]\d\d:?\d\d$|Z$").any())
        parsed = text.str.to_datetime(time_unit="us", strict=True, time_zone="UTC" if tz else None)
        return parsed
    except Exception:  # noqa: BLE001 - leave values that do not parse as they are stored
        return s


def _sqlalchemy_batches(db: Database, sql: str, size: int) -> Iterator[pl.DataFrame]:
    import sqlalchemy as sa

    conn = db.guard(db.engine.connect)
    try:
        result = conn.execution_options(stream_results=True).execute(sa.text(sql))
        names = list(result.keys())
    except Exception as exc:  # noqa: BLE001
        conn.close()
        raise _query_error(db, exc) from None
    return _sqlalchemy_frames(db, conn, result, names, size)


def _sqlalchemy_frames(db: Database, conn: Any, result: Any, names: list[str], size: int) -> Iterator[pl.DataFrame]:
    try:
        got = False
        while rows := result.fetchmany(size):
            got = True
            yield pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
        if not got:
            yield pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    except Exception as exc:  # noqa: BLE001
        raise _query_error(db, exc) from None
    finally:
        conn.close()


def _query_error(db: Database, exc: BaseException) -> ReadError:
    err = db.error(exc, doing="read from")
    return ReadError(err.message, hint="Check the query (run it in the database's own client) and "
                     "that the user may read the table." if "Could not read" in err.message else err.hint)


# --- SQL ----------------------------------------------------------------------------------------
#: PostgreSQL types read as they come; any other type is cast to text (money to numeric).
_PG_NATIVE = ("Integer", "Float", "Numeric", "Boolean", "String", "Date", "DateTime", "Interval",
              "LargeBinary", "_Binary", "Uuid", "JSON", "BYTEA", "_AbstractInterval")


def _select_sql(
    db: Database,
    info: TableInfo | None,
    query: str | None,
    columns: list[str] | None,
    limit: int | None,
    *,
    ordered: bool,
) -> str:
    import sqlalchemy as sa

    dialect = db.sa_dialect
    if info is None:
        text = (query or "").strip().rstrip(";").strip()
        if not text:
            raise ConnectorError("The query is empty.", hint="Pass a SELECT statement as query=.")
        if limit is not None:
            text = f"SELECT * FROM ({text}) AS synthkit_query LIMIT {int(limit)}"
        return text
    names = columns or info.names
    exprs = [_column_expr(db, info, name) for name in names]
    stmt = sa.select(*exprs).select_from(sa.table(info.name, schema=info.db_schema))
    if ordered and info.primary_key:
        stmt = stmt.order_by(*[sa.column(c) for c in info.primary_key])
    if limit is not None:
        stmt = stmt.limit(int(limit))
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _column_expr(db: Database, info: TableInfo, name: str) -> Any:
    import sqlalchemy as sa

    col = sa.column(name)
    if db.dialect != "postgresql":
        return col
    satype = info.type_of(name)
    mro = {k.__name__ for k in type(satype).__mro__}
    if "MONEY" in mro:
        return sa.cast(col, sa.Numeric).label(name)
    if getattr(satype, "timezone", False) and "Time" in mro and "DateTime" not in mro:
        return sa.cast(col, sa.Text).label(name)  # TIME WITH TIME ZONE
    if "ARRAY" in mro or "Enum" in mro or not mro.intersection(_PG_NATIVE):
        return sa.cast(col, sa.Text).label(name)
    return col


# --- metadata -----------------------------------------------------------------------------------
def _table_info(db: Database, table: str, db_schema: str | None) -> TableInfo:
    with db.connect() as conn:
        inspector = db.inspector(conn)
        names = _names(db, inspector, db_schema)
        if table not in names:
            raise missing_table_error(db, table, sorted(names), db_schema)
        return db.guard(lambda: reflect_table(inspector, table, db_schema))


def _names(db: Database, inspector: Any, db_schema: str | None) -> list[str]:
    try:
        return list(inspector.get_table_names(schema=db_schema)) + list(
            inspector.get_view_names(schema=db_schema)
        )
    except Exception as exc:  # noqa: BLE001
        raise db.error(exc, doing="list the tables of") from None


def list_tables(uri: str, *, db_schema: str | None = None, password_env: str | None = None) -> list[str]:
    """The names of the tables (and views) in ``uri`` (in ``db_schema`` when given), sorted."""
    db = open_database(uri, password_env=password_env)
    try:
        with db.connect() as conn:
            return sorted(_names(db, db.inspector(conn), db_schema))
    finally:
        db.close()


def column_types(
    uri: str, table: str, *, db_schema: str | None = None, password_env: str | None = None
) -> dict[str, Any]:
    """``{column: SQLAlchemy type}`` of a table, e.g. to create a synthetic copy with them."""
    db = open_database(uri, password_env=password_env)
    try:
        info = _table_info(db, table, db_schema)
    finally:
        db.close()
    return {c["name"]: c["type"] for c in info.columns}


def read_schema(
    uri: str,
    *,
    table: str,
    data: pl.DataFrame | None = None,
    db_schema: str | None = None,
    sample: int = 20_000,
    detect_pii: bool = True,
    password_env: str | None = None,
) -> Schema:
    """The Schema of ``table``: guesses from the data, overridden by what the database states.

    ``data`` is the frame read from the table (a ``sample``-row read is made when omitted);
    see :func:`synthkit.connectors.sql_schema.schema_from_table` for the facts applied.
    """
    db = open_database(uri, password_env=password_env)
    try:
        info = _table_info(db, table, db_schema)
    finally:
        db.close()
    if data is None:
        try:
            data = read(uri, table=table, db_schema=db_schema, limit=sample, password_env=password_env)
        except EmptyDataError:
            data = next(read_batches(uri, table=table, db_schema=db_schema, password_env=password_env))
    return schema_from_table(data, info, detect_pii=detect_pii)


def read_database(
    uri: str,
    *,
    db_schema: str | None = None,
    tables: list[str] | None = None,
    limit: int | None = None,
    detect_pii: bool = True,
    password_env: str | None = None,
) -> Any:
    """Every table of a database schema (or ``tables``) with its Schema and foreign keys.

    Returns a :class:`synthkit.relational.MultiTable`. Foreign keys to tables that were not
    read are left out; ``limit`` caps the rows read per table (orphans may then appear).
    """
    from synthkit.relational import ForeignKey, MultiTable

    db = open_database(uri, password_env=password_env)
    try:
        with db.connect() as conn:
            inspector = db.inspector(conn)
            available = sorted(db.guard(lambda: list(inspector.get_table_names(schema=db_schema))))
            wanted = list(tables) if tables is not None else available
            for name in wanted:
                if name not in available:
                    raise missing_table_error(db, name, available, db_schema)
            infos = {n: db.guard(lambda n=n: reflect_table(inspector, n, db_schema)) for n in wanted}
    finally:
        db.close()
    if not infos:
        raise EmptyDataError(f"{redact(uri)} has no tables" + (f" in schema '{db_schema}'." if db_schema else "."))
    frames: dict[str, pl.DataFrame] = {}
    schemas: dict[str, Schema] = {}
    for name, info in infos.items():
        batches = list(read_batches(uri, table=name, db_schema=db_schema, limit=limit, password_env=password_env))
        frame = pl.concat(batches, how="vertical_relaxed") if len(batches) > 1 else batches[0]
        frames[name] = frame
        schemas[name] = schema_from_table(frame, info, detect_pii=detect_pii)
    fks = [
        ForeignKey(name, fk.columns, fk.parent_table, fk.parent_columns)
        for name, info in infos.items()
        for fk in info.foreign_keys
        if fk.parent_table in infos and fk.parent_schema is None
    ]
    pks = {name: info.primary_key for name, info in infos.items() if info.primary_key}
    return MultiTable(frames, schemas=schemas, foreign_keys=fks, primary_keys=pks)
