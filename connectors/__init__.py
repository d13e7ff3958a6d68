"""synthkit.connectors: ``read(uri)`` and ``write(data, uri, decision=...)``, by URI scheme.

Plain paths and ``file://`` URIs go to :mod:`synthkit.connectors.files` (CSV, TSV, Parquet,
JSON Lines, JSON). Sinks fail closed: they write only data that a passing policy Decision was
made for, and never leave a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.connectors import files
from synthkit.connectors.files import FORMATS, apply_schema, scheme_of
from synthkit.errors import UnsupportedFormatError
from synthkit.schema import Schema

__all__ = ["FORMATS", "apply_schema", "read", "scheme_of", "write", "write_batches"]

#: Schemes of databases, named so the error can say their connector is not installed yet.
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
            f"No connector for '{scheme}://' sources: database connectors are not installed yet.",
            hint="Export the table to Parquet or CSV and pass that file's path. "
            "Supported today: local paths and file:// URIs.",
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
    """Read a table from ``source`` with the connector its scheme names (see files.read)."""
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
) -> Path:
    """Write ``data`` to ``destination`` only with a passing Decision for it (see files.write)."""
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
) -> Path:
    """Stream batches to ``destination`` with bounded memory, gated (see files.write_batches)."""
    _require_files(destination)
    return files.write_batches(
        batches,
        destination,
        decision=decision,
        format=format,
        overwrite=overwrite,
        **options,
    )
