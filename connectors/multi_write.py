"""Gated, all-or-nothing sinks for a set of tables: every table appears, or none does.

``write_tables(tables, destination, decision=...)`` writes a
:class:`~synthkit.relational.MultiTable` (or a mapping of frames) only when ``decision`` passed
for exactly this set: ``decision.data_fingerprint`` must equal
:func:`synthkit.relational_io.fingerprint_tables` of it (one Decision, one audit record for the
whole set).

* **Files** (a directory): every table is written to ``<name>.<format>`` in a hidden staging
  folder next to the destination, with a ``relationships.yaml`` that
  :func:`~synthkit.relational_io.read_tables` reads back; each file and the folder are fsynced,
  and the folder is renamed into place only when all tables were written. A failure removes the
  staging folder; a killed process may leave it (hidden, ``.<name>.*.tmp``), never a partial
  destination.
* **Databases** (PostgreSQL, SQLite): every table is created and filled in ONE transaction,
  parents before children, with primary keys, foreign keys, NOT NULL and CHECK categories from
  the schemas (reusing :mod:`synthkit.connectors.sql_write`'s table plans). Any error, or a
  killed process, rolls the whole set back. ``mode="replace"`` drops the old tables (children
  first) inside the same transaction; ``mode="append"`` adds rows to existing tables. On
  MySQL/MariaDB (SQLAlchemy path) DDL commits at once, so only rows are transactional there.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import (
    ConnectorError,
    SinkExistsError,
    SourceNotFoundError,
    SynthkitError,
    WriteError,
)
from synthkit.frames import to_polars
from synthkit.relational import ForeignKey, MultiTable
from synthkit.schema import Schema

__all__ = ["WrittenTables", "write_tables"]

RELATIONSHIPS_FILE = "relationships.yaml"
_FILE_FORMATS = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}


@dataclass(frozen=True)
class WrittenTables:
    """Where a set of tables went: the directory or redacted URI, rows per table, the fingerprint."""

    destination: str
    rows: dict[str, int]
    fingerprint: str
    kind: str  # "files" or "database"
    mode: str = "create"
    skipped_foreign_keys: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.destination} ({len(self.rows)} tables, {sum(self.rows.values()):,} rows)"


def write_tables(
    data: MultiTable | Mapping[str, Any],
    destination: str | os.PathLike[str],
    *,
    decision: Any,
    format: str = "parquet",
    overwrite: bool = False,
    mode: str = "create",
    db_schema: str | None = None,
    password_env: str | None = None,
    foreign_keys: bool = True,
) -> WrittenTables:
    """Write every table of ``data`` to a directory or a database, all or nothing, if ``decision``
    passed for exactly this set of tables.

    Files: ``format`` (parquet, csv, jsonl) and ``overwrite`` (swap an existing directory).
    Databases: ``mode`` (create, replace, append), ``db_schema``, ``password_env``, and
    ``foreign_keys=False`` to leave out the FOREIGN KEY constraints.
    """
    from synthkit.connectors.credentials import is_database_uri
    from synthkit.connectors.files import _refuse_other_data, _require_passing
    from synthkit.relational_io import fingerprint_tables

    multi = _as_multitable(data)
    expected = _require_passing(decision)
    actual = fingerprint_tables(multi)
    if actual != expected:
        raise _refuse_other_data(expected, actual)
    if is_database_uri(str(destination)):
        if overwrite and mode == "create":
            mode = "replace"
        return _write_database(multi, str(destination), decision=decision, fingerprint=actual, mode=mode,
                               db_schema=db_schema, password_env=password_env, foreign_keys=foreign_keys)
    if mode != "create":
        raise ConnectorError(f"mode='{mode}' applies to database destinations only.",
                             hint="For a directory use overwrite=True to replace it.")
    return _write_directory(multi, Path(destination), decision=decision, fingerprint=actual,
                            fmt=format, overwrite=overwrite)


def _as_multitable(data: MultiTable | Mapping[str, Any]) -> MultiTable:
    if isinstance(data, MultiTable):
        return data
    if not isinstance(data, Mapping) or not data:
        raise WriteError("write_tables takes a MultiTable or a mapping of table name → frame.",
                         hint="e.g. write_tables({'customers': df1, 'orders': df2}, 'out/', decision=...)")
    return MultiTable({str(n): to_polars(f) for n, f in data.items()})


def _table_schema(multi: MultiTable, name: str) -> Schema:
    """The table's Schema with its single-column primary key and foreign-key references set."""
    schema = multi.schemas[name]
    refs = {fk.child_columns[0]: f"{fk.parent}.{fk.parent_columns[0]}"
            for fk in multi.parents(name) if len(fk.child_columns) == 1 and fk.parent != name}
    cols = [c.model_copy(update={"references": refs[c.name]}) if c.name in refs else c for c in schema]
    pk = multi.primary_keys.get(name) or []
    return Schema(columns=cols, primary_key=pk[0] if len(pk) == 1 else schema.primary_key)


def _relationships_yaml(multi: MultiTable, files: dict[str, str]) -> str:
    import yaml

    doc = {
        "tables": {n: {"path": files[n], **({"primary_key": multi.primary_keys[n][0]}
                                           if len(multi.primary_keys.get(n) or []) == 1 else {})}
                   for n in multi.names},
        "relationships": [_fk_yaml(fk) for fk in multi.foreign_keys],
    }
    return "# Written by synthkit.connectors.multi_write: read back with synthkit.relational_io.read_tables\n" \
        + yaml.safe_dump(doc, sort_keys=True)


def _fk_yaml(fk: ForeignKey) -> dict[str, Any]:
    return {"parent": fk.parent, "parent_columns": list(fk.parent_columns),
            "child": fk.child, "child_columns": list(fk.child_columns)}


# --- files --------------------------------------------------------------------------------------
def _write_directory(
    multi: MultiTable, dest: Path, *, decision: Any, fingerprint: str, fmt: str, overwrite: bool
) -> WrittenTables:
    from synthkit.connectors import labelling
    from synthkit.connectors.files import _BatchWriter, _fsync_dir, _make_parents

    if fmt not in _FILE_FORMATS:
        raise ConnectorError(f"Unknown format '{fmt}' for a directory of tables.",
                             hint=f"Use one of: {', '.join(_FILE_FORMATS)}.")
    if dest.exists() and not dest.is_dir():
        raise WriteError(f"'{dest}' is a file; a set of tables is written to a directory.",
                         hint="Give a directory path, e.g. 'out/synthetic_db'.")
    if dest.exists() and not overwrite:
        raise SinkExistsError(f"'{dest}' already exists; nothing was written.",
                              hint="Pass overwrite=True (CLI --overwrite) to replace it, or choose another path.")
    labels = labelling.plan_labels(decision, fmt)
    created = _make_parents(dest.parent)
    stage = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.tmp"
    rows: dict[str, int] = {}
    try:
        stage.mkdir()
        files: dict[str, str] = {}
        for name in multi.order():
            filename = f"{name}{_FILE_FORMATS[fmt]}"
            files[name] = filename
            frame = labels.apply(multi[name])
            fd = os.open(stage / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as fh:
                writer = _BatchWriter(fh, fmt, False, {}, stream=False, metadata=labels.parquet_metadata)
                writer.write(frame)
                writer.close()
                fh.flush()
                os.fsync(fh.fileno())
            if labels.sidecar is not None:
                _write_synced(labelling.sidecar_path(stage / filename),
                              json.dumps({"file": filename, **labels.sidecar}, indent=2, sort_keys=True,
                                         default=str) + "\n")
            rows[name] = frame.height
        _write_synced(stage / RELATIONSHIPS_FILE, _relationships_yaml(multi, files))
        _fsync_dir(stage)
        _commit_directory(stage, dest, overwrite=overwrite)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        for d in created:
            with suppress(OSError):
                d.rmdir()
        if isinstance(exc, SynthkitError) or not isinstance(exc, Exception):
            raise
        raise WriteError(f"Could not write the tables to '{dest}': {exc}",
                         hint="Nothing was written: the staging folder was removed.") from exc
    _fsync_dir(dest.parent)
    return WrittenTables(str(dest.absolute()), rows, fingerprint, "files")


def _write_synced(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _commit_directory(stage: Path, dest: Path, *, overwrite: bool) -> None:
    """Rename the staged folder onto ``dest``; an old one is moved aside first, then removed."""
    if not dest.exists():
        try:
            os.rename(stage, dest)
        except OSError as exc:  # created by someone else meanwhile (a non-empty directory)
            raise SinkExistsError(f"'{dest}' appeared while writing; nothing was written.") from exc
        return
    if not overwrite:
        raise SinkExistsError(f"'{dest}' already exists; nothing was written.")
    backup = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.old"
    os.rename(dest, backup)
    try:
        os.rename(stage, dest)
    except BaseException:
        os.rename(backup, dest)
        raise
    shutil.rmtree(backup, ignore_errors=True)


# --- databases ----------------------------------------------------------------------------------
def _write_database(
    multi: MultiTable, uri: str, *, decision: Any, fingerprint: str, mode: str, db_schema: str | None,
    password_env: str | None, foreign_keys: bool,
) -> WrittenTables:
    from synthkit.connectors import labelling
    from synthkit.connectors.sql_connect import open_database
    from synthkit.connectors.sql_write import MODES, _inspect_target, _Plan

    if mode not in MODES:
        raise ConnectorError(f"Unknown write mode '{mode}'.", hint=f"Use one of: {', '.join(MODES)}.")
    labels = labelling.plan_labels(decision, "table")
    order = multi.order()
    db = open_database(uri, password_env=password_env, create=True)
    new_file = db.uri.sqlite_path if db.dialect == "sqlite" and not db.uri.sqlite_path.exists() else None
    written = False
    try:
        schemas = {n: _table_schema(multi, n) for n in order}
        existing: dict[str, Any] = {}
        available: dict[str, set[str]] = {}
        for name in order:
            existing[name], available[name] = _inspect_target(db, name, db_schema,
                                                              schemas[name] if foreign_keys else None)
        present = [n for n in order if existing[n] is not None]
        if mode == "create" and present:
            raise SinkExistsError(
                f"Tables {present} already exist in {db.redacted}; nothing was written.",
                hint="Pass mode='replace' (CLI --mode replace) to swap them for the new rows, "
                "mode='append' to add them, or write to another database.",
            )
        if mode == "append" and len(present) < len(order):
            missing = [n for n in order if existing[n] is None]
            raise SourceNotFoundError(f"Tables {missing} do not exist in {db.redacted}, so rows cannot "
                                      "be appended to them.", hint="Use mode='create' to create them.")
        frames = {n: labels.apply(multi[n]) for n in order}
        plans = []
        skipped: list[str] = []
        made: set[str] = set()
        for name in order:
            if frames[name].width == 0:
                raise WriteError(f"Table '{name}' has no columns: there is nothing to write.")
            schema = schemas[name] if foreign_keys else _without_references(schemas[name])
            refs = available[name] | {c.references for c in schema
                                      if c.references and c.references.split(".")[0] in made}
            keep = existing[name] if mode == "append" else None
            plan = _Plan.build(db, frames[name], name, db_schema, "append" if mode == "append" else "create",
                               schema, None, keep, refs)
            skipped += [f"{name}.{s}" for s in plan.skipped_foreign_keys]
            plans.append(plan)
            made.add(name)
        drops = [n for n in reversed(order) if existing[n] is not None] if mode == "replace" else []
        session = _Session(db)
        try:
            rows = session.run(plans, frames, drops, db_schema)
        except BaseException as exc:
            session.abort()
            if isinstance(exc, SynthkitError) or not isinstance(exc, Exception):
                raise
            from synthkit.connectors.sql_write import _DRIVER_MODULES

            text = db.scrub(" ".join(str(exc).split())[:600])
            err = WriteError(f"Could not write the tables to {db.redacted}: {text}",
                             hint="Nothing was written: the transaction was rolled back.")
            if type(exc).__module__.split(".")[0] in _DRIVER_MODULES:
                raise err from None  # driver text may quote the URI
            raise err from exc
        written = True
        return WrittenTables(db.redacted, rows, fingerprint, "database", mode, skipped)
    finally:
        db.close()
        if new_file is not None and not written:  # leave no empty database file behind either
            for leftover in (new_file, new_file.with_name(new_file.name + "-journal")):
                leftover.unlink(missing_ok=True)


def _without_references(schema: Schema) -> Schema:
    cols = [c.model_copy(update={"references": None}) for c in schema]
    return Schema(columns=cols, primary_key=schema.primary_key)


class _Session:
    """All tables in one transaction: ADBC (PostgreSQL, SQLite) or one SQLAlchemy connection."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.conn: Any = None
        self.cur: Any = None
        self.sa_created: list[str] = []

    def run(self, plans: list[Any], frames: dict[str, pl.DataFrame], drops: list[str],
            db_schema: str | None) -> dict[str, int]:
        quote = self.db.sa_dialect.identifier_preparer.quote
        qualified = (lambda t: f"{quote(db_schema)}.{quote(t)}") if db_schema else quote
        if self.db.use_adbc:
            self.conn = self.db.adbc(autocommit=False)
            self.cur = self.conn.cursor()
        else:
            self.conn = self.db.guard(self.db.engine.connect)
            self.conn.begin()
        for name in drops:
            self._execute(f"DROP TABLE {qualified(name)}")
        rows: dict[str, int] = {}
        for plan in plans:
            df = frames[plan.table]
            plan.check(df)
            if plan.create_sql:
                self._execute(plan.create_sql)
                self.sa_created.append(plan.target)
            if df.height:
                self._ingest(plan, df)
            for sql in plan.finish_sql:
                self._execute(sql)
            rows[plan.table] = df.height
        self.conn.commit()
        self._close()
        return rows

    def _execute(self, sql: str) -> None:
        if self.cur is not None:
            self.cur.execute(sql)
        else:
            import sqlalchemy as sa

            self.conn.execute(sa.text(sql))

    def _ingest(self, plan: Any, df: pl.DataFrame) -> None:
        from synthkit.connectors.sql_types import to_arrow
        from synthkit.connectors.sql_write import _CHUNK, _insert_cast_sql, _python_rows

        if self.cur is None:
            import sqlalchemy as sa

            target = sa.table(plan.target, *[sa.column(c) for c in plan.columns], schema=plan.db_schema)
            for i in range(0, df.height, _CHUNK):
                self.conn.execute(target.insert(), _python_rows(df.slice(i, _CHUNK), plan))
            return
        if plan.dialect == "postgresql" and any(t is None for t in plan.arrow.values()):
            temp = f"_synthkit_tmp_{secrets.token_hex(4)}"  # the server casts what Arrow cannot carry
            self.cur.adbc_ingest(temp, df.to_arrow(), mode="create_append", temporary=True)
            self.cur.execute(_insert_cast_sql(self.db, plan, temp))
            self.cur.execute(f"DROP TABLE {temp}")
            return
        for i in range(0, df.height, _CHUNK):
            self.cur.adbc_ingest(plan.target, to_arrow(df.slice(i, _CHUNK), plan.arrow, plan.dialect),
                                 mode="append", db_schema_name=plan.db_schema)

    def abort(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.rollback()
            if self.cur is None and self.sa_created:  # DDL that committed by itself (MySQL)
                import sqlalchemy as sa

                quote = self.db.sa_dialect.identifier_preparer.quote
                for stage in self.sa_created:
                    self.conn.execute(sa.text(f"DROP TABLE IF EXISTS {quote(stage)}"))
                self.conn.commit()
        except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
            pass
        self._close()

    def _close(self) -> None:
        for thing in (self.cur, self.conn):
            if thing is not None:
                with suppress(Exception):
                    thing.close()
        self.cur = self.conn = None

