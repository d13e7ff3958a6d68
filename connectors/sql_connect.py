"""Open a database named by a URI: the ADBC driver for data, SQLAlchemy for metadata.

PostgreSQL and SQLite move data through their ADBC drivers (Arrow batches, one transaction per
write); SQLite reads go through the standard library because its values carry no fixed type;
other dialects (MySQL, MariaDB) use SQLAlchemy for everything. Every error that leaves this
module names the database by its redacted URI and has any password scrubbed from its text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from synthkit.connectors.credentials import DatabaseURI, parse_uri, resolve_credentials, scrub
from synthkit.errors import (
    ConnectorError,
    MissingDependencyError,
    SourceNotFoundError,
    SynthkitError,
)

__all__ = ["ENGINES", "Database", "open_database"]

#: ``engine=`` values: "auto" picks ADBC for PostgreSQL and SQLite, SQLAlchemy elsewhere.
ENGINES = ("auto", "adbc", "sqlalchemy")
_ADBC_DIALECTS = ("postgresql", "sqlite")


class Database:
    """One database: its (password-resolved) URI, a SQLAlchemy engine, ADBC connections."""

    def __init__(self, uri: DatabaseURI, *, engine: str = "auto", create: bool = False) -> None:
        if engine not in ENGINES:
            raise ConnectorError(f"Unknown engine '{engine}'.", hint=f"Use one of: {', '.join(ENGINES)}.")
        if engine == "adbc" and uri.dialect not in _ADBC_DIALECTS:
            raise ConnectorError(
                f"No ADBC driver is used for {uri.dialect}.",
                hint="Leave engine='auto' (SQLAlchemy is used for this database).",
            )
        self.uri = uri
        self.create = create  # a sink may create a new SQLite file; a source must find one
        self.use_adbc = uri.dialect in _ADBC_DIALECTS and engine != "sqlalchemy"
        self._engine: Any = None

    @property
    def dialect(self) -> str:
        return self.uri.dialect

    @property
    def redacted(self) -> str:
        return self.uri.redacted

    # --- SQLAlchemy ---------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        """A SQLAlchemy engine without a pool (connections close when released)."""
        if self._engine is None:
            import sqlalchemy as sa
            from sqlalchemy.pool import NullPool

            if self.dialect == "sqlite" and not self.create:
                self._require_sqlite_file()
            elif self.dialect == "sqlite":
                self._require_sqlite_directory()
            try:
                self._engine = sa.create_engine(self.uri.sqlalchemy_url(), poolclass=NullPool)
            except ImportError as exc:
                raise MissingDependencyError(
                    f"The Python driver for {self.dialect} is not installed: {exc}",
                    hint="Install it, e.g. `pip install pymysql` for mysql:// URIs, or name the driver "
                    "in the URI (mysql+mysqldb://...).",
                ) from exc
        return self._engine

    @property
    def sa_dialect(self) -> Any:
        """The SQLAlchemy dialect, without connecting (for compiling DDL and SELECTs)."""
        if self._engine is not None:
            return self._engine.dialect
        return self.uri.sqlalchemy_url().get_dialect()()

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A SQLAlchemy connection; connection failures become a clear ConnectorError."""
        conn = self.guard(self.engine.connect)
        try:
            yield conn
        finally:
            conn.close()

    def inspector(self, conn: Any) -> Any:
        import sqlalchemy as sa

        return sa.inspect(conn)

    # --- ADBC ---------------------------------------------------------------------------------
    def adbc(self, *, autocommit: bool) -> Any:
        """A new ADBC DB-API connection (PostgreSQL or SQLite)."""
        if self.dialect == "postgresql":
            import adbc_driver_postgresql.dbapi as driver

            return self.guard(lambda: driver.connect(self.uri.libpq_uri(), autocommit=autocommit))
        import adbc_driver_sqlite.dbapi as sqlite_driver

        path = self._require_sqlite_directory()
        return self.guard(lambda: sqlite_driver.connect(str(path), autocommit=autocommit))

    def _require_sqlite_directory(self) -> Any:
        path = self.uri.sqlite_path
        if not path.parent.is_dir():
            raise ConnectorError(
                f"The directory of the SQLite database {path} does not exist.",
                hint=f"Create it first (mkdir -p {path.parent}) or fix the URI.",
            )
        return path

    def sqlite_reader(self) -> Any:
        """A read-only standard-library connection to the SQLite file."""
        import sqlite3

        path = self._require_sqlite_file()
        return self.guard(lambda: sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))

    def _require_sqlite_file(self) -> Any:
        path = self.uri.sqlite_path
        if not path.is_file():
            from synthkit.connectors.files import _not_found

            err = _not_found(path)
            raise SourceNotFoundError(f"SQLite database file not found: '{path}'.", hint=err.hint)
        return path

    # --- errors -------------------------------------------------------------------------------
    def guard(self, call: Any) -> Any:
        """Run ``call``; turn driver errors into ConnectorError with secrets scrubbed."""
        try:
            return call()
        except SynthkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - drivers raise many types
            raise self.error(exc) from None

    def error(self, exc: BaseException, *, doing: str = "connect to") -> ConnectorError:
        """A ConnectorError for a driver failure, naming the database by its redacted URI."""
        text = self.scrub(_first_lines(exc))
        lowered = text.lower()
        if "password authentication failed" in lowered or "access denied" in lowered or (
            "no password supplied" in lowered
        ):
            hint = (
                "Check the user name and password. synthkit takes the password from the URI, from "
                "password_env=NAME (YAML: password_env), from PGPASSWORD or SYNTHKIT_DB_PASSWORD, "
                "or from a .pgpass-style file (SYNTHKIT_PASSFILE, PGPASSFILE or ~/.pgpass)."
            )
        elif "connection refused" in lowered or "could not connect" in lowered or "timeout" in lowered:
            hint = "Check the host and port in the URI and that the database server is running."
        elif "does not exist" in lowered and "database" in lowered:
            hint = "Check the database name at the end of the URI."
        else:
            hint = "Check the URI, the credentials and the server's log."
        return ConnectorError(f"Could not {doing} {self.redacted}: {text}", hint=hint)

    def scrub(self, text: str) -> str:
        return scrub(text, self.uri.password)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def open_database(
    uri: str, *, password_env: str | None = None, engine: str = "auto", create: bool = False
) -> Database:
    """Parse ``uri``, fill in its password (see credentials.py) and prepare its connections."""
    resolved = resolve_credentials(parse_uri(str(uri)), password_env=password_env)
    return Database(resolved, engine=engine, create=create)


def _first_lines(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.startswith("(Background on this error")]
    return " ".join(kept[:3]) or type(exc).__name__


def missing_table_error(db: Database, table: str, available: list[str], db_schema: str | None) -> SourceNotFoundError:
    """The not-found error for a table, listing (near misses first) the tables that exist."""
    where = f"schema '{db_schema}' of " if db_schema else ""
    if not available:
        return SourceNotFoundError(
            f"No table '{table}' in {where}{db.redacted}: it has no tables at all.",
            hint="Check the database name in the URI (and db_schema=), or load the table first.",
        )
    close = difflib.get_close_matches(table, available, n=3, cutoff=0.5)
    shown = ", ".join(available[:50]) + (f" … ({len(available)} in all)" if len(available) > 50 else "")
    hint = f"Tables there: {shown}."
    if close:
        hint = f"Did you mean {', '.join(repr(c) for c in close)}? " + hint
    return SourceNotFoundError(f"No table '{table}' in {where}{db.redacted}.", hint=hint)
