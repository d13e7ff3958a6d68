"""Gated, all-or-nothing database sinks: a table appears complete or not at all.

Like the files sink, ``write``/``write_batches`` write only data that a passing policy Decision
was made for (``decision.passed`` and its ``data_fingerprint`` equal to the data's). Rows go
into a staging table created with the data's types (or ``sql_types=``), NOT NULL, the primary
key, foreign keys and CHECK (IN ...) categories from the Schema, inside one transaction; at the
end the staging table is renamed to the target (``mode="replace"`` drops the old one in the same
transaction) and the transaction commits. PostgreSQL and SQLite make DDL transactional, so an
error, a refused fingerprint or a killed process leaves the database exactly as it was; readers
of a replaced table see the old rows until the commit. ``mode="append"`` inserts into the
existing table in one transaction. On MySQL/MariaDB (SQLAlchemy path) DDL commits at once: a
failure drops the staging table, but a killed process may leave a ``_synthkit_stage_*`` table
(never a partial target).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synthkit.connectors.sql_connect import Database, open_database
from synthkit.connectors.sql_types import arrow_type, sql_type, to_arrow
from synthkit.errors import (
    ConnectorError,
    DataError,
    SchemaError,
    SinkExistsError,
    SourceNotFoundError,
    SynthkitError,
    WriteError,
)
from synthkit.frames import FingerprintHasher, fingerprint, to_polars
from synthkit.schema import Schema

__all__ = ["MODES", "WrittenTable", "write", "write_batches"]

MODES = ("create", "replace", "append")
_CHUNK = 100_000
_PG_NAME_MAX = 63
_DRIVER_MODULES = frozenset({"adbc_driver_manager", "sqlalchemy", "psycopg", "sqlite3", "pymysql", "MySQLdb"})


@dataclass(frozen=True)
class WrittenTable:
    """Where a database sink wrote: the redacted URI, the table, how many rows, and how."""

    uri: str
    table: str
    rows: int
    mode: str
    db_schema: str | None = None
    skipped_foreign_keys: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.db_schema}.{self.table}" if self.db_schema else self.table
        return f"{self.uri} table {where}"


def write(
    data: Any,
    uri: str,
    *,
    decision: Any,
    table: str | None = None,
    mode: str = "create",
    schema: Schema | None = None,
    db_schema: str | None = None,
    sql_types: dict[str, Any] | None = None,
    foreign_keys: bool = True,
    password_env: str | None = None,
    engine: str = "auto",
) -> WrittenTable:
    """Write ``data`` to ``table`` in one transaction, only if ``decision`` passed for exactly it.

    ``mode``: ``create`` (the table must not exist), ``replace`` (an existing table is swapped
    for the new one at commit) or ``append`` (rows are added to an existing table). ``schema``
    gives NOT NULL (``nullable=False``), the primary key, foreign keys (``references``; kept
    where the parent table exists at the destination, unless ``foreign_keys=False``) and CHECK
    categories; ``sql_types`` maps columns to SQLAlchemy types (e.g. the source's, from
    :func:`synthkit.connectors.sql.column_types`) instead of the types following the data.
    """
    from synthkit.connectors import labelling
    from synthkit.connectors.files import _refuse_other_data, _require_passing

    df = to_polars(data)
    expected = _require_passing(decision)
    actual = fingerprint(df)
    if actual != expected:
        raise _refuse_other_data(expected, actual)
    df = labelling.plan_labels(decision, "table").apply(df)  # after the check: gated data + label
    chunks = (df.slice(i, _CHUNK) for i in range(0, max(df.height, 1), _CHUNK))
    return _write(chunks, uri, expected=None, table=table, mode=mode, schema=schema, db_schema=db_schema,
                  sql_types=sql_types, foreign_keys=foreign_keys, password_env=password_env, engine=engine)


def write_batches(
    batches: Iterable[Any],
    uri: str,
    *,
    decision: Any,
    table: str | None = None,
    mode: str = "create",
    schema: Schema | None = None,
    db_schema: str | None = None,
    sql_types: dict[str, Any] | None = None,
    foreign_keys: bool = True,
    password_env: str | None = None,
    engine: str = "auto",
) -> WrittenTable:
    """Stream ``batches`` into ``table`` in one transaction (see :func:`write`).

    ``decision.data_fingerprint`` must equal ``fingerprint(pl.concat(batches))``; it is checked
    after the last batch and before the commit, so a mismatch, a failing batch or any other
    error rolls everything back.
    """
    from synthkit.connectors import labelling
    from synthkit.connectors.files import _require_passing

    expected = _require_passing(decision)
    labels = labelling.plan_labels(decision, "table")
    if labels.column is not None:  # hash the gated batches, write them labelled
        batches, expected = _labelled(iter(batches), labels, expected), None
    return _write(iter(batches), uri, expected=expected, table=table, mode=mode, schema=schema,
                  db_schema=db_schema, sql_types=sql_types, foreign_keys=foreign_keys,
                  password_env=password_env, engine=engine)


def _labelled(batches: Iterator[Any], labels: Any, expected: str) -> Iterator[pl.DataFrame]:
    """Yield the batches with the label column; after the last, check they were the gated data.

    Raising after the last batch (inside the write's transaction) rolls everything back.
    """
    from synthkit.connectors.files import _refuse_other_data

    hasher = FingerprintHasher()
    for batch in batches:
        df = to_polars(batch)
        hasher.update(df)
        yield labels.apply(df)
    if hasher.hexdigest() != expected:
        raise _refuse_other_data(expected, hasher.hexdigest())


# --- the transaction ----------------------------------------------------------------------------
def _write(
    batches: Iterator[Any],
    uri: str,
    *,
    expected: str | None,
    table: str | None,
    mode: str,
    schema: Schema | None,
    db_schema: str | None,
    sql_types: dict[str, Any] | None,
    foreign_keys: bool,
    password_env: str | None,
    engine: str,
) -> WrittenTable:
    if mode not in MODES:
        raise ConnectorError(f"Unknown write mode '{mode}'.", hint=f"Use one of: {', '.join(MODES)}.")
    if not table or not isinstance(table, str):
        raise ConnectorError("A database sink needs table='name' (the table to write).",
                             hint="e.g. write(df, 'postgresql://user@host/db', table='customers_synth', ...)")
    db = open_database(uri, password_env=password_env, engine=engine, create=True)
    new_file = db.uri.sqlite_path if db.dialect == "sqlite" and not db.uri.sqlite_path.exists() else None
    written = False
    try:
        first = _first_batch(batches)
        existing, parents = _inspect_target(db, table, db_schema, schema if foreign_keys else None)
        if mode == "create" and existing is not None:
            raise SinkExistsError(
                f"Table '{table}' already exists in {db.redacted}; nothing was written.",
                hint="Pass mode='replace' (CLI/YAML: mode: replace) to swap it for the new rows, "
                "mode='append' to add them, or choose another table name.",
            )
        if mode == "append" and existing is None:
            raise SourceNotFoundError(
                f"Table '{table}' does not exist in {db.redacted}, so rows cannot be appended to it.",
                hint="Use mode='create' to create it.",
            )
        plan = _Plan.build(db, first, table, db_schema, mode, schema, sql_types, existing, parents)
        session = _AdbcSession(db) if db.use_adbc else _SQLAlchemySession(db)
        try:
            rows = session.run(plan, _chain(first, batches), expected)
        except BaseException as exc:
            session.abort()
            if isinstance(exc, SynthkitError) or not isinstance(exc, Exception):
                raise
            if type(exc).__module__.split(".")[0] in _DRIVER_MODULES:
                raise _write_error(db, table, exc) from None  # driver text may quote the URI
            raise _write_error(db, table, exc) from exc
        written = True
        return WrittenTable(db.redacted, table, rows, mode, db_schema, plan.skipped_foreign_keys)
    finally:
        db.close()
        if new_file is not None and not written:  # leave no empty database file behind either
            for leftover in (new_file, new_file.with_name(new_file.name + "-journal")):
                leftover.unlink(missing_ok=True)


def _first_batch(batches: Iterator[Any]) -> pl.DataFrame:
    try:
        first = next(batches)
    except StopIteration:
        raise WriteError("The batches were empty: there is nothing to write.") from None
    return to_polars(first)


def _chain(first: pl.DataFrame, rest: Iterator[Any]) -> Iterator[pl.DataFrame]:
    yield first
    for batch in rest:
        yield to_polars(batch)


def _inspect_target(
    db: Database, table: str, db_schema: str | None, schema: Schema | None
) -> tuple[Any, set[str]]:
    """The existing target's reflected columns (or None), and which referenced tables exist."""
    from synthkit.connectors.sql_schema import reflect_table

    with db.connect() as conn:
        inspector = db.inspector(conn)
        existing = None
        if db.guard(lambda: inspector.has_table(table, schema=db_schema)):
            existing = db.guard(lambda: reflect_table(inspector, table, db_schema))
        parents: set[str] = set()
        for col in schema or []:
            if col.references:
                (pschema, ptable), _ = _split_reference(col.references)
                if db.guard(lambda t=ptable, s=pschema: inspector.has_table(t, schema=s or db_schema)):
                    parents.add(col.references)
    return existing, parents


def _split_reference(ref: str) -> tuple[tuple[str | None, str], str]:
    parts = ref.split(".")
    if len(parts) < 2:
        raise SchemaError(f"Column reference '{ref}' is not 'table.column'.",
                          hint="Write references as 'table.column' or 'schema.table.column'.")
    schema = ".".join(parts[:-2]) or None
    return (schema, parts[-2]), parts[-1]


def _write_error(db: Database, table: str, exc: BaseException) -> WriteError:
    text = db.scrub(" ".join(str(exc).split())[:600])
    hint = "Nothing was written: the transaction was rolled back."
    lowered = text.lower()
    if "depend" in lowered:
        hint += " Other objects (views, foreign keys) depend on the old table; drop them or use mode='append'."
    elif "already exists" in lowered:
        hint += " The table was created by someone else meanwhile; use mode='replace' or another name."
    elif "not-null" in lowered or "not null" in lowered:
        hint += " A NOT NULL column got a null value."
    return WriteError(f"Could not write table '{table}' to {db.redacted}: {text}", hint=hint)


# --- what to create -----------------------------------------------------------------------------
@dataclass
class _Plan:
    """The staging table's DDL, the Arrow type of each column, and the statements at commit."""

    dialect: str
    table: str
    db_schema: str | None
    mode: str
    columns: list[str]
    dtypes: dict[str, pl.DataType]
    not_null: list[str]
    target: str  # the table rows are ingested into (staging table, or the target itself)
    create_sql: str | None
    finish_sql: list[str]
    arrow: dict[str, Any]  # column → Arrow type; None when the server must cast
    cast_types: dict[str, str]  # column → SQL type text, for the server-cast path
    skipped_foreign_keys: list[str]

    @classmethod
    def build(
        cls,
        db: Database,
        first: pl.DataFrame,
        table: str,
        db_schema: str | None,
        mode: str,
        schema: Schema | None,
        sql_types: dict[str, Any] | None,
        existing: Any,
        parents: set[str],
    ) -> _Plan:
        import sqlalchemy as sa
        from sqlalchemy.schema import CreateTable

        if first.width == 0:
            raise WriteError("The data has no columns: there is nothing to write.")
        dialect = db.sa_dialect
        name = db.dialect
        schema = schema.select([c for c in first.columns if c in schema]) if schema else None
        sql_types = dict(sql_types or {})
        odd = [c for c, t in sql_types.items()
               if not isinstance(t, sa.types.TypeEngine) and not (isinstance(t, type) and issubclass(t, sa.types.TypeEngine))]
        if odd:
            raise SchemaError(f"sql_types for {odd} are not SQLAlchemy types.",
                              hint="Give types such as sqlalchemy.String(20) or sqlalchemy.Numeric(10, 2), "
                              "or the source's own: synthkit.connectors.sql.column_types(uri, table).")
        unknown = [c for c in sql_types if c not in first.columns]
        if unknown:
            raise SchemaError(f"sql_types names columns the data lacks: {unknown}.",
                              hint=f"Columns: {first.columns}")
        if existing is not None and mode == "append":
            missing = [c for c in first.columns if c not in existing.names]
            if missing:
                raise SchemaError(
                    f"Table '{table}' has no columns {missing}, so the rows cannot be appended.",
                    hint=f"Its columns: {existing.names}. Select matching columns or write a new table.",
                )
            types = {c: existing.type_of(c) for c in first.columns}
            not_null = [c for c in first.columns if c in existing.not_null]
            arrow = {c: arrow_type(types[c], first.schema[c], name) for c in first.columns}
            return cls(name, table, db_schema, mode, first.columns, dict(first.schema), not_null, table,
                       None, [], arrow, _type_text(types, dialect), [])
        types = {c: sql_types.get(c) or sql_type(first.schema[c], c, name) for c in first.columns}
        types = {c: (t() if isinstance(t, type) else t) for c, t in types.items()}
        stage = _stage_name(table)
        pk = schema.primary_key if schema is not None else None
        not_null = [c.name for c in schema if not c.nullable] if schema is not None else []
        if pk and pk not in not_null:
            not_null.append(pk)
        prefix = stage if name == "postgresql" else None
        md = sa.MetaData()
        cols = [sa.Column(c, types[c], nullable=c not in not_null, autoincrement=False) for c in first.columns]
        constraints: list[Any] = []
        if pk:
            constraints.append(sa.PrimaryKeyConstraint(pk, name=f"{prefix}_pkey" if prefix else None))
        skipped = []
        for col in schema or []:
            if col.references and col.references not in parents:
                skipped.append(f"{col.name} → {col.references}")
            elif col.references:
                (pschema, ptable), pcol = _split_reference(col.references)
                sa.Table(ptable, md, sa.Column(pcol, types[col.name]), schema=pschema or db_schema,
                         extend_existing=True)
                target = ".".join(p for p in (pschema or db_schema, ptable, pcol) if p)
                constraints.append(sa.ForeignKeyConstraint(
                    [col.name], [target], name=f"{prefix}_{col.name}_fkey" if prefix else None))
            if col.categories and col.kind.value == "categorical":
                expr = sa.column(col.name).in_(col.categories)
                sql = str(expr.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
                constraints.append(sa.CheckConstraint(sql, name=f"{prefix}_{col.name}_check" if prefix else None))
        sa.Table(stage, md, *cols, *constraints, schema=db_schema)
        create_sql = str(CreateTable(md.tables[f"{db_schema}.{stage}" if db_schema else stage])
                         .compile(dialect=dialect)).strip()
        finish = _finish_sql(dialect, name, stage, table, db_schema, mode, existing is not None, constraints)
        arrow = {c: arrow_type(types[c], first.schema[c], name) for c in first.columns}
        return cls(name, table, db_schema, mode, first.columns, dict(first.schema), not_null, stage,
                   create_sql, finish, arrow, _type_text(types, dialect), skipped)

    def check(self, df: pl.DataFrame) -> None:
        """Refuse a batch whose columns differ from the first's, or with nulls in NOT NULL columns."""
        if df.columns != self.columns:
            raise WriteError(f"A batch's columns {df.columns} differ from the first batch's {self.columns}.",
                             hint="Every batch must have the same columns in the same order.")
        if self.not_null:
            counts = df.select(pl.col(self.not_null).null_count()).row(0, named=True)
            bad = {c: n for c, n in counts.items() if n}
            if bad:
                raise DataError(
                    f"Null values in NOT NULL column(s): {bad}; nothing was written.",
                    hint="Fill or drop those nulls, or mark the column nullable in the schema "
                    "(schema.with_overrides({'col': {'nullable': True}})).",
                )


def _type_text(types: dict[str, Any], dialect: Any) -> dict[str, str]:
    return {c: t.compile(dialect=dialect) for c, t in types.items()}


def _stage_name(table: str) -> str:
    return f"_synthkit_stage_{table[:24]}_{secrets.token_hex(4)}"


def _finish_sql(
    dialect: Any, name: str, stage: str, table: str, db_schema: str | None, mode: str, exists: bool,
    constraints: list[Any],
) -> list[str]:
    quote = dialect.identifier_preparer.quote
    qualified = (lambda t: f"{quote(db_schema)}.{quote(t)}") if db_schema else quote
    out = []
    if mode == "replace" and exists:
        out.append(f"DROP TABLE {qualified(table)}")
    out.append(f"ALTER TABLE {qualified(stage)} RENAME TO {quote(table)}")
    if name == "postgresql":
        for c in constraints:
            if c.name:
                new = table + c.name[len(stage):]
                out.append(f"ALTER TABLE {qualified(table)} RENAME CONSTRAINT {quote(c.name)} "
                           f"TO {quote(new[:_PG_NAME_MAX])}")
    return out


# --- sessions: one transaction each -------------------------------------------------------------
class _AdbcSession:
    """PostgreSQL or SQLite through ADBC: autocommit off, one commit at the very end."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn: Any = None
        self.cur: Any = None

    def run(self, plan: _Plan, batches: Iterator[pl.DataFrame], expected: str | None) -> int:
        self.conn = self.db.adbc(autocommit=False)
        self.cur = self.conn.cursor()
        if plan.create_sql:
            self.cur.execute(plan.create_sql)
        server_cast = plan.dialect == "postgresql" and any(t is None for t in plan.arrow.values())
        temp = f"_synthkit_tmp_{secrets.token_hex(4)}" if server_cast else None
        hasher = FingerprintHasher() if expected is not None else None
        rows = 0
        for df in batches:
            plan.check(df)
            if hasher is not None:
                try:
                    hasher.update(df)
                except DataError as exc:
                    raise WriteError(exc.message, hint=exc.hint) from exc
            if df.height == 0:
                continue
            if temp is not None:
                self.cur.adbc_ingest(temp, df.to_arrow(), mode="create_append", temporary=True)
            else:
                self.cur.adbc_ingest(plan.target, to_arrow(df, plan.arrow, plan.dialect), mode="append",
                                     db_schema_name=plan.db_schema)
            rows += df.height
        if hasher is not None:
            from synthkit.connectors.files import _refuse_other_data

            actual = hasher.hexdigest()
            if actual != expected:
                raise _refuse_other_data(expected, actual)
        if temp is not None and rows:
            self.cur.execute(_insert_cast_sql(self.db, plan, temp))
        for sql in plan.finish_sql:
            self.cur.execute(sql)
        self.conn.commit()
        self._close()
        return rows

    def abort(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                pass
        self._close()

    def _close(self) -> None:
        for thing in (self.cur, self.conn):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001
                    pass
        self.cur = self.conn = None


def _insert_cast_sql(db: Database, plan: _Plan, temp: str) -> str:
    quote = db.sa_dialect.identifier_preparer.quote
    target = f"{quote(plan.db_schema)}.{quote(plan.target)}" if plan.db_schema else quote(plan.target)
    cols = ", ".join(quote(c) for c in plan.columns)
    casts = ", ".join(f"CAST({quote(c)} AS {plan.cast_types[c]})" for c in plan.columns)
    return f"INSERT INTO {target} ({cols}) SELECT {casts} FROM {quote(temp)}"


class _SQLAlchemySession:
    """Other dialects: DML in one transaction; the staging table is dropped on failure."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.plan: _Plan | None = None
        self.created = False
        self.conn: Any = None

    def run(self, plan: _Plan, batches: Iterator[pl.DataFrame], expected: str | None) -> int:
        import sqlalchemy as sa

        self.plan = plan
        self.conn = self.db.guard(self.db.engine.connect)
        trans = self.conn.begin()
        if plan.create_sql:
            self.conn.execute(sa.text(plan.create_sql))
            self.created = True
        target = sa.table(plan.target, *[sa.column(c) for c in plan.columns], schema=plan.db_schema)
        hasher = FingerprintHasher() if expected is not None else None
        rows = 0
        for df in batches:
            plan.check(df)
            if hasher is not None:
                hasher.update(df)
            if df.height:
                self.conn.execute(target.insert(), _python_rows(df, plan))
                rows += df.height
        if hasher is not None:
            from synthkit.connectors.files import _refuse_other_data

            actual = hasher.hexdigest()
            if actual != expected:
                raise _refuse_other_data(expected, actual)
        for sql in plan.finish_sql:
            self.conn.execute(sa.text(sql))
        trans.commit()
        self.conn.close()
        self.conn = None
        return rows

    def abort(self) -> None:
        import sqlalchemy as sa

        if self.conn is not None:
            try:
                self.conn.rollback()
                if self.created and self.plan is not None and self.plan.create_sql:
                    quote = self.db.sa_dialect.identifier_preparer.quote
                    stage = self.plan.target
                    name = f"{quote(self.plan.db_schema)}.{quote(stage)}" if self.plan.db_schema else quote(stage)
                    self.conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
                    self.conn.commit()
            except Exception:  # noqa: BLE001 - best effort on a broken connection
                pass
            finally:
                self.conn.close()
                self.conn = None


def _python_rows(df: pl.DataFrame, plan: _Plan) -> list[dict[str, Any]]:
    """Rows as dicts for executemany; durations as microseconds where the column is an integer."""
    exprs = []
    for c in plan.columns:
        if isinstance(df.schema[c], pl.Duration) and plan.arrow.get(c) is not None and str(plan.arrow[c]) == "int64":
            exprs.append(pl.col(c).dt.total_microseconds())
        else:
            exprs.append(pl.col(c))
    return df.select(exprs).to_dicts()
