"""synthkit.connectors: ``read(uri)`` and ``write(data, uri, decision=...)``, by URI scheme.

Plain paths and ``file://`` URIs go to :mod:`synthkit.connectors.files` (CSV, TSV, Parquet,
JSON Lines, JSON); ``postgresql://``, ``sqlite:///``, ``mysql://`` and ``mariadb://`` URIs go to
:mod:`synthkit.connectors.sql` (``table=`` or ``query=``; sinks take ``table=`` and ``mode=``).
Sinks fail closed: they write only data that a passing policy Decision was
made for, and never leave a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from synthkit.connectors import files
from synthkit.connectors.credentials import is_database_uri, redact
from synthkit.connectors.files import FORMATS, apply_schema, scheme_of
from synthkit.errors import UnsupportedFormatError
from synthkit.schema import Schema

if TYPE_CHECKING:
    from synthkit.connectors.sql_write import WrittenTable

__all__ = [
    "FORMATS",
    "apply_schema",
    "is_database_uri",
    "read",
    "read_batches",
    "redact",
    "scheme_of",
    "write",
    "write_batches",
]

#: Database schemes; those without a connector (all but postgresql/sqlite/mysql/mariadb) are refused.
_DATABASE_SCHEMES = frozenset(
    {
        "postgresql",
        "postgres",
        "mysql",
        "mariadb",
        "sqlite",
        "mssql",
        "oracle",
        "snowflake",
        "bigquery",
        "duckdb",
        "redshift",
    }
)


def _require_files(source: str | os.PathLike[str]) -> None:
    """Raise UnsupportedFormatError unless ``source`` is a local path or file:// URI."""
    scheme = scheme_of(source)
    if scheme == "file":
        return
    if scheme.split("+", 1)[0] in _DATABASE_SCHEMES:
        raise UnsupportedFormatError(
            f"No connector for '{scheme}://' databases yet.",
            hint="Supported databases: postgresql://, sqlite:///, mysql:// and mariadb://. "
            "Otherwise export the table to Parquet or CSV and pass that file's path.",
        )
    raise UnsupportedFormatError(
        f"No connector for '{scheme}://' sources.",
        hint="Supported today: local paths and file:// URIs. Copy the data to a local file first.",
    )


def read(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    schema: Schema | None = None,
    columns: list[str] | None = None,
    **options: Any,
) -> pl.DataFrame:
    """Read a table from ``source`` with the connector its scheme names (see files.read, sql.read)."""
    if is_database_uri(source):
        from synthkit.connectors import sql

        _no_format(format)
        return sql.read(str(source), schema=schema, columns=columns, **options)
    _require_files(source)
    return files.read(source, format=format, schema=schema, columns=columns, **options)


def write(
    data: Any,
    destination: str | os.PathLike[str],
    *,
    decision: Any,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path | WrittenTable:
    """Write ``data`` to ``destination`` only with a passing Decision for it (see files.write, sql.write).

    For a database, ``table=`` names the table and ``mode=`` says what to do if it exists
    (``overwrite=True`` means ``mode="replace"``); the result is a ``WrittenTable``.
    """
    if is_database_uri(destination):
        from synthkit.connectors import sql

        _no_format(format)
        options.setdefault("mode", "replace" if overwrite else "create")
        return sql.write(data, str(destination), decision=decision, **options)
    _require_files(destination)
    return files.write(
        data, destination, decision=decision, format=format, overwrite=overwrite, **options
    )


def write_batches(
    batches: Iterable[Any],
    destination: str | os.PathLike[str],
    *,
    decision: Any,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path | WrittenTable:
    """Stream batches to ``destination`` with bounded memory, gated (see files/sql.write_batches)."""
    if is_database_uri(destination):
        from synthkit.connectors import sql

        _no_format(format)
        options.setdefault("mode", "replace" if overwrite else "create")
        return sql.write_batches(batches, str(destination), decision=decision, **options)
    _require_files(destination)
    return files.write_batches(
        batches,
        destination,
        decision=decision,
        format=format,
        overwrite=overwrite,
        **options,
    )


def read_batches(source: str, **options: Any) -> Iterable[pl.DataFrame]:
    """Stream a database table or query in batches of ``batch_size`` rows (see sql.read_batches)."""
    if not is_database_uri(source):
        raise UnsupportedFormatError(
            f"read_batches streams database tables; {redact(str(source))} is not a database URI.",
            hint="For a file, use read(path) (Parquet files can also be scanned with pl.scan_parquet).",
        )
    from synthkit.connectors import sql

    return sql.read_batches(str(source), **options)


def _no_format(format: str | None) -> None:
    if format is not None:
        raise UnsupportedFormatError(
            "format= applies to files, not to database tables.",
            hint="Drop format=; name the table with table= (or a SELECT with query=).",
        )
