"""Local files as sources and sinks: CSV/TSV (optionally gzipped), Parquet, JSON Lines, JSON.

``read`` turns a file into a polars frame, typed by a :class:`~synthkit.schema.Schema` when one
is given. ``write`` and ``write_batches`` are sinks: they write only data that a passing policy
Decision was made for (fail closed), and write atomically (temp file in the same directory,
fsync, rename), so a failure leaves neither a half-written file nor a changed destination.
When the Decision requires labelling, the output is labelled as synthetic as it is written
(:mod:`synthkit.connectors.labelling`).
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import io
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import polars as pl

from synthkit.connectors import labelling
from synthkit.errors import (
    ConnectorError,
    DataError,
    EmptyDataError,
    GateRefusedError,
    ReadError,
    SchemaError,
    SinkExistsError,
    SourceNotFoundError,
    SynthkitError,
    UnsupportedFormatError,
    WriteError,
)
from synthkit.frames import FingerprintHasher, fingerprint, normalise_missing, to_polars
from synthkit.schema import Column, ColumnKind, Schema

#: Formats this connector reads and writes (``format=`` values).
FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl", "json")

_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_ALIASES: dict[str, str] = {"pq": "parquet", "ndjson": "jsonl", "tab": "tsv"}
_SUPPORTED = ".csv, .tsv, .parquet/.pq, .jsonl/.ndjson, .json (array of records); .csv, .tsv, .jsonl and .json may be gzipped (.gz)"
_NULLS = ("", "NA", "NaN", "null")
_INFER_ROWS = 10_000
_UTF8 = {"utf8", "utf-8"}
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_BOOLEANS: dict[str, bool] = dict.fromkeys(("true", "t", "yes", "y", "1"), True) | dict.fromkeys(
    ("false", "f", "no", "n", "0"), False
)


# --- locations and formats ----------------------------------------------------------------
def scheme_of(source: str | os.PathLike[str]) -> str:
    """The URI scheme of ``source`` in lower case; ``"file"`` for plain paths."""
    if isinstance(source, os.PathLike):
        return "file"
    m = _URI.match(str(source))
    return m.group(1).lower() if m else "file"


def _local_path(source: str | os.PathLike[str]) -> Path:
    """A local path from a plain path or a ``file://`` URI; other schemes are refused."""
    scheme = scheme_of(source)
    if scheme != "file":
        raise UnsupportedFormatError(
            f"The files connector handles local paths and file:// URIs, not '{scheme}://'.",
            hint="Call synthkit.connectors.read/write, which pick the connector by scheme.",
        )
    text = os.fspath(source)
    if _URI.match(text):
        from urllib.request import url2pathname  # lazy: urllib.request is slow to import

        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedFormatError(
                f"file:// URI names a remote host '{parts.netloc}': {text}",
                hint="Use file:///absolute/path (three slashes) for a local file.",
            )
        text = url2pathname(parts.path)
    return Path(text).expanduser()


def _resolve_format(path: Path, format: str | None) -> tuple[str, bool]:
    """(format, gzipped) from an explicit ``format=`` or the file's extension."""
    gz = path.name.lower().endswith(".gz")
    if format is not None:
        name = format.lower().lstrip(".")
        if name.endswith(".gz"):
            gz, name = True, name[: -len(".gz")]
        name = _ALIASES.get(name, name)
        if name not in FORMATS:
            raise UnsupportedFormatError(
                f"Unknown format '{format}'.", hint=f"Use one of: {', '.join(FORMATS)}."
            )
    else:
        base = path.name[: -len(".gz")] if gz else path.name
        suffix = Path(base).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise UnsupportedFormatError(
                f"Cannot tell the format of '{path}' from its extension '{suffix or '(none)'}'.",
                hint=f"Supported: {_SUPPORTED}. Or pass format= explicitly.",
            )
        name = _EXTENSIONS[suffix]
    if gz and name == "parquet":
        raise UnsupportedFormatError(
            f"Gzipped Parquet is not supported: '{path}'.",
            hint="Parquet compresses internally (zstd); drop the .gz.",
        )
    return name, gz


def _check_source(path: Path) -> None:
    """Raise a helpful error when ``path`` is missing, a directory, or empty."""
    if path.is_dir():
        raise ConnectorError(
            f"'{path}' is a directory, not a file.",
            hint="Pass the path of one file in it, e.g. a .csv or .parquet file.",
        )
    if not path.exists():
        raise _not_found(path)
    if path.stat().st_size == 0:
        raise EmptyDataError(f"'{path}' is empty (0 bytes).")


def _not_found(path: Path) -> SourceNotFoundError:
    """The not-found error, with near-miss file names from the parent directory as the hint."""
    parent = path.parent
    if not parent.is_dir():
        return SourceNotFoundError(
            f"File not found: '{path}'.",
            hint=f"Its directory '{parent}' does not exist either; check the path "
            f"(relative paths start at {Path.cwd()}).",
        )
    names = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
    hint = (
        f"Did you mean: {', '.join(repr(str(parent / c)) for c in close)}?"
        if close
        else f"No file with a similar name in '{parent}'."
    )
    return SourceNotFoundError(f"File not found: '{path}'.", hint=hint)


# --- reading ------------------------------------------------------------------------------
def read(
    path_or_uri: str | os.PathLike[str],
    *,
    format: str | None = None,
    schema: Schema | None = None,
    columns: list[str] | None = None,
    **options: Any,
) -> pl.DataFrame:
    """Read a local file into a polars frame, typed by ``schema`` when one is given.

    The format comes from the extension (or ``format=``). ``columns`` selects and orders
    columns; ``schema`` does the same with its columns and casts each to its dtype, so no
    later stage re-guesses types. ``options`` go to the polars reader (``encoding=`` for CSV
    and JSON may name any Python codec, e.g. ``"latin-1"``). Float NaN is read as null.
    """
    path = _local_path(path_or_uri)
    _check_source(path)
    fmt, gz = _resolve_format(path, format)
    if schema is not None and columns is not None:
        schema = schema.select(list(columns))
    wanted = list(columns) if columns is not None else (schema.names if schema else None)
    df = _read_frame(path, fmt, gz, wanted, as_text=schema is not None, options=options)
    if df.width == 0 or df.height == 0:
        what = "no columns" if df.width == 0 else "no rows"
        raise EmptyDataError(f"'{path}' has {what}.")
    if wanted is not None:
        _require_columns(df.columns, wanted, f"'{path}'")
        df = df.select(wanted)
    if schema is not None:
        df = apply_schema(df, schema)
    return normalise_missing(df)


def _read_frame(
    path: Path,
    fmt: str,
    gz: bool,
    wanted: list[str] | None,
    *,
    as_text: bool,
    options: dict[str, Any],
) -> pl.DataFrame:
    """Run the polars reader for ``fmt``, turning its failures into connector errors."""
    opts = dict(options)
    try:
        if fmt == "parquet":
            return pl.read_parquet(path, columns=wanted, **opts)
        source = _text_source(path, gz, opts.pop("encoding", "utf8"))
        if fmt in ("csv", "tsv"):
            csv_opts: dict[str, Any] = {
                "separator": "\t" if fmt == "tsv" else ",",
                "infer_schema_length": _INFER_ROWS,
                "try_parse_dates": False,
                "null_values": list(_NULLS),
            }
            csv_opts.update(opts)
            if wanted is not None:
                csv_opts["columns"] = wanted
                if as_text:  # the schema decides types: keep values as written
                    csv_opts.setdefault("schema_overrides", dict.fromkeys(wanted, pl.String))
            return pl.read_csv(source, **csv_opts)
        if fmt == "jsonl":
            return pl.read_ndjson(source, **{"infer_schema_length": _INFER_ROWS, **opts})
        _require_json_array(path, gz)
        return pl.read_json(source, **{"infer_schema_length": _INFER_ROWS, **opts})
    except SynthkitError:
        raise
    except pl.exceptions.ColumnNotFoundError as exc:
        try:
            available = _available_columns(path, fmt, options)
        except Exception:  # noqa: BLE001 - fall back to polars' own message
            raise _read_error(path, fmt, exc) from exc
        _require_columns(available, wanted or [], f"'{path}'")
        raise _read_error(path, fmt, exc) from exc
    except pl.exceptions.NoDataError as exc:
        raise EmptyDataError(f"'{path}' has no data: {_first_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - polars and pyarrow raise many types here
        raise _read_error(path, fmt, exc) from exc


def _text_source(path: Path, gz: bool, encoding: str) -> Path | IO[bytes]:
    """The path itself for UTF-8 (polars decompresses gzip), else the file re-encoded as UTF-8."""
    if encoding.lower() in _UTF8:
        return path
    lossy = encoding.lower() == "utf8-lossy"
    try:
        codecs.lookup("utf-8" if lossy else encoding)
    except LookupError as exc:
        raise ReadError(
            f"Unknown encoding '{encoding}'.",
            hint="Use a Python codec name such as 'utf-8', 'latin-1' or 'cp1252'.",
        ) from exc
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    try:
        text = raw.decode("utf-8", errors="replace") if lossy else raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"'{path}' is not valid {encoding}: {exc}",
            hint="Pass the file's real encoding, e.g. encoding='cp1252' or encoding='latin-1'.",
        ) from exc
    return io.BytesIO(text.encode("utf-8"))


def _require_json_array(path: Path, gz: bool) -> None:
    """Refuse .json files that are not an array of records (polars would guess a shape)."""
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        raise ReadError(
            f"'{path}' is not a JSON array of records.",
            hint='Use an array like [{"a": 1}, ...], or JSON Lines (.jsonl): one object a line.',
        )


def _available_columns(path: Path, fmt: str, options: dict[str, Any]) -> list[str]:
    """Column names in the file, read cheaply (only used to explain a missing column)."""
    if fmt == "parquet":
        return list(pl.read_parquet_schema(path))
    opts = {k: v for k, v in options.items() if k in ("separator", "has_header", "skip_rows")}
    opts.setdefault("separator", "\t" if fmt == "tsv" else ",")
    return pl.read_csv(path, n_rows=0, **opts).columns


def _require_columns(available: list[str], wanted: list[str], where: str) -> None:
    """Raise SchemaError naming the ``wanted`` columns that ``where`` lacks."""
    missing = [c for c in wanted if c not in available]
    if missing:
        raise SchemaError(
            f"{where} lacks the columns {missing}.",
            hint=f"Columns there: {available}. Fix the schema or the columns= list.",
        )


def _read_error(path: Path, fmt: str, exc: Exception) -> ReadError:
    text = _first_line(exc)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        return ReadError(
            f"'{path}' is not valid UTF-8: {text}",
            hint="Pass the file's encoding, e.g. read(path, encoding='latin-1') or "
            "encoding='cp1252'; encoding='utf8-lossy' replaces the bad bytes.",
        )
    if isinstance(exc, TypeError):
        return ReadError(
            f"Bad option for reading {fmt}: {text}",
            hint=f"Extra options are passed to polars' {fmt} reader; check their names.",
        )
    return ReadError(
        f"Could not read '{path}' as {fmt}: {text}",
        hint=f"Check that the file is complete and really {fmt}, or pass format= explicitly.",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- schema -------------------------------------------------------------------------------
def apply_schema(df: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Select ``schema``'s columns in order and cast each to its dtype, naming bad values."""
    _require_columns(df.columns, schema.names, "The data")
    return df.select([_conform(df.get_column(c.name), c) for c in schema])


def _conform(s: pl.Series, col: Column) -> pl.Series:
    """One column cast to ``col``'s dtype; values that do not convert raise DataError."""
    s = normalise_missing(s.to_frame()).to_series()
    target = col.polars_dtype
    fmt = col.datetime_format
    if isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
    if s.dtype == pl.String and target != pl.String:
        out = _parse_strings(s.str.strip_chars(), target, fmt)
    elif target == pl.String:
        out = s.dt.strftime(fmt) if fmt and s.dtype.is_temporal() else s.cast(pl.String)
    elif isinstance(target, pl.Datetime) and isinstance(s.dtype, pl.Datetime):
        out = _to_datetime_type(s, target)
    elif target.is_integer() and s.dtype.is_float():
        fractional = s.is_not_null() & (s != s.floor())
        _raise_bad(s, fractional, col, "is not a whole number")
        out = s.cast(target, strict=False)
    else:
        out = s.cast(target, strict=False)
    _raise_bad(s, s.is_not_null() & out.is_null(), col, f"does not convert to {target}")
    if col.kind == ColumnKind.DATETIME and fmt and out.dtype == pl.String:
        parsed = out.str.strptime(pl.Datetime if "%H" in fmt else pl.Date, fmt, strict=False)
        _raise_bad(out, out.is_not_null() & parsed.is_null(), col, f"does not match '{fmt}'")
    return out.alias(col.name)


def _parse_strings(s: pl.Series, target: pl.DataType, fmt: str | None) -> pl.Series:
    if target == pl.Boolean:
        return s.str.to_lowercase().replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)
    if isinstance(target, pl.Datetime):
        return s.str.to_datetime(
            fmt, time_unit=target.time_unit, time_zone=target.time_zone, strict=False
        )
    if target == pl.Date:
        return s.str.to_date(fmt, strict=False)
    if target == pl.Time:
        return s.str.to_time(fmt, strict=False)
    return s.cast(target, strict=False)


def _to_datetime_type(s: pl.Series, target: pl.Datetime) -> pl.Series:
    out = s.dt.cast_time_unit(target.time_unit or "us")
    src_tz = s.dtype.time_zone  # type: ignore[union-attr]
    if target.time_zone == src_tz:
        return out
    if src_tz is None:
        return out.dt.replace_time_zone(target.time_zone)
    if target.time_zone is None:
        return out.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return out.dt.convert_time_zone(target.time_zone)


def _raise_bad(s: pl.Series, bad: pl.Series, col: Column, problem: str) -> None:
    n_bad = int(bad.sum())
    if n_bad:
        example = s.filter(bad).head(1).to_list()[0]
        raise DataError(
            f"Column '{col.name}': {n_bad} value(s) {problem}, e.g. {example!r}.",
            hint=f"Fix those values in the source, or change the column's dtype in the schema "
            f"(schema.with_overrides({{'{col.name}': {{'dtype': 'String'}}}})).",
        )


# --- the gate -----------------------------------------------------------------------------
def _require_passing(decision: Any) -> str:
    """The Decision's data fingerprint, after checking that it is a passing Decision."""
    if decision is None:
        raise GateRefusedError(
            "No policy Decision was given: synthetic data is written only with a passing one."
        )
    passed = getattr(decision, "passed", None)
    if passed is not True:
        raise GateRefusedError(
            f"The policy Decision did not pass (passed={passed!r}); nothing was written.",
            hint="Read the Decision's findings to see which rules failed, improve the data or "
            "the model, then evaluate and gate again.",
        )
    expected = getattr(decision, "data_fingerprint", None)
    if not isinstance(expected, str) or not expected:
        raise GateRefusedError(
            "The Decision names no data fingerprint, so it cannot vouch for this data.",
            hint="Pass the Decision returned by synthkit.policies.gate for exactly this data.",
        )
    return expected


def _refuse_other_data(expected: str, actual: str) -> GateRefusedError:
    return GateRefusedError(
        f"The data differs from what was gated: the Decision is for {expected}, "
        f"this data is {actual}. Nothing was written.",
        hint="Write exactly the frame that was evaluated and gated; any change after gating "
        "(filtering, casting, re-sampling) needs a new evaluation and Decision.",
    )


# --- writing ------------------------------------------------------------------------------
def write(
    data: Any,
    path: str | os.PathLike[str],
    *,
    decision: Any,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Write ``data`` to a local file, only if ``decision`` passed for exactly this data.

    Fails closed: without a Decision whose ``passed`` is True and whose ``data_fingerprint``
    equals :func:`synthkit.frames.fingerprint` of ``data``, nothing is written. The write is
    atomic (temp file, fsync, rename); an existing file is kept unless ``overwrite=True``.
    ``options`` go to the polars writer, except ``provenance`` (a mapping, e.g. the generator)
    which goes into the labels a Decision requiring labelling gets. Returns the absolute path.
    """
    df = to_polars(data)
    dest = _local_path(path)
    _refuse_directory(dest)
    fmt, gz = _resolve_format(dest, format)
    expected = _require_passing(decision)
    actual = fingerprint(df)
    if actual != expected:
        raise _refuse_other_data(expected, actual)
    labels = labelling.plan_labels(decision, fmt, options.pop("provenance", None))
    df = labels.apply(df)
    with _atomic_file(dest, overwrite=overwrite, sidecar=labels.sidecar) as f:
        writer = _BatchWriter(f, fmt, gz, options, stream=False, metadata=labels.parquet_metadata)
        try:
            writer.write(df)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return dest.absolute()


def write_batches(
    batches: Iterable[Any],
    path: str | os.PathLike[str],
    *,
    decision: Any,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Stream ``batches`` into one file with bounded memory, only if ``decision`` covers them.

    ``decision.data_fingerprint`` must equal ``fingerprint(pl.concat(batches))``; it is
    computed as the batches are written (:class:`synthkit.frames.FingerprintHasher`). On a
    mismatch, a failing batch or any other error the temp file is removed and the
    destination is left as it was.
    """
    dest = _local_path(path)
    _refuse_directory(dest)
    fmt, gz = _resolve_format(dest, format)
    if fmt == "json":
        raise UnsupportedFormatError(
            "A JSON array cannot be streamed.", hint="Write JSON Lines (.jsonl), CSV or Parquet."
        )
    expected = _require_passing(decision)
    labels = labelling.plan_labels(decision, fmt, options.pop("provenance", None))
    with _atomic_file(dest, overwrite=overwrite, sidecar=labels.sidecar) as f:
        writer = _BatchWriter(f, fmt, gz, options, stream=True, metadata=labels.parquet_metadata)
        try:
            hasher = FingerprintHasher()
            for batch in batches:
                df = to_polars(batch)
                try:
                    hasher.update(df)
                except DataError as exc:
                    raise WriteError(exc.message, hint=exc.hint) from exc
                writer.write(labels.apply(df))
            if hasher.schema is None:
                raise WriteError("The batches were empty: there is nothing to write.")
            actual = hasher.hexdigest()
            if actual != expected:
                raise _refuse_other_data(expected, actual)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return dest.absolute()


class _BatchWriter:
    """Appends frames to one open binary file in a given format (the header/footer once)."""

    def __init__(
        self, f: IO[bytes], fmt: str, gz: bool, options: dict[str, Any], *, stream: bool,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self._metadata = metadata or {}  # Parquet key-value metadata (labels)
        self._fmt = fmt
        self._stream = stream
        self._options = options
        self._gzip = gzip.GzipFile(fileobj=f, mode="wb", mtime=0) if gz else None
        self._out: IO[bytes] = self._gzip if self._gzip is not None else f
        self._parquet: Any = None
        self._first = True

    def write(self, df: pl.DataFrame) -> None:
        fmt, out, opts = self._fmt, self._out, self._options
        if fmt == "parquet" and not self._stream:
            labels = {"metadata": self._metadata} if self._metadata else {}
            df.write_parquet(out, **{"compression": "zstd", **labels, **opts})
        elif fmt == "parquet":  # pyarrow appends row groups; polars writes whole files only
            table = df.to_arrow()
            if self._parquet is None:
                import pyarrow.parquet as pq

                schema = table.schema.with_metadata(self._metadata) if self._metadata else table.schema
                self._parquet = pq.ParquetWriter(out, schema, **{"compression": "zstd", **opts})
            self._parquet.write_table(table)
        elif fmt in ("csv", "tsv"):
            sep = {"separator": "\t"} if fmt == "tsv" else {}
            df.write_csv(out, include_header=self._first, **{**sep, **opts})
        elif fmt == "jsonl":
            df.write_ndjson(out, **opts)
        else:
            df.write_json(out, **opts)
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._gzip is not None:
            self._gzip.close()

    def abort(self) -> None:
        """Close quietly after a failure; the temp file is about to be removed."""
        with suppress(Exception):
            self.close()


@contextmanager
def _atomic_file(
    dest: Path, *, overwrite: bool, sidecar: dict[str, Any] | None = None
) -> Iterator[IO[bytes]]:
    """A temp file next to ``dest`` that becomes ``dest`` only if the block succeeds.

    ``sidecar`` (a label) is staged before and committed right after ``dest``, or not at all.
    """
    _refuse_directory(dest)
    for target in (dest, *([labelling.sidecar_path(dest)] if sidecar is not None else [])):
        if target.exists() and not overwrite:
            raise SinkExistsError(f"'{target}' already exists; nothing was written.")
    created = _make_parents(dest.parent)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.tmp"
    opened = False
    staged: Path | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        opened = True
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if sidecar is not None:
            staged = labelling.stage_sidecar(dest, sidecar)
        _commit(tmp, dest, overwrite=overwrite)
        if staged is not None:
            labelling.commit_sidecar(staged, dest)
    except BaseException as exc:
        if opened:
            with suppress(OSError):
                tmp.unlink()
        if staged is not None:
            with suppress(OSError):
                staged.unlink()
        for d in created:
            with suppress(OSError):
                d.rmdir()
        if isinstance(exc, SynthkitError) or not isinstance(exc, Exception):
            raise
        raise WriteError(f"Could not write '{dest}': {_first_line(exc)}") from exc
    _fsync_dir(dest.parent)


def _refuse_directory(dest: Path) -> None:
    if dest.is_dir():
        raise WriteError(
            f"'{dest}' is a directory.",
            hint=f"Give a file path, e.g. '{dest / 'synthetic.parquet'}'.",
        )


def _make_parents(parent: Path) -> list[Path]:
    """Create missing parent directories; return those created, deepest first."""
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"Could not create the directory '{parent}': {exc}") from exc
    return missing


def _commit(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    """Move ``tmp`` onto ``dest`` atomically; without overwrite, never replace a file."""
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)  # atomic "create if absent", unlike exists() then replace()
    except FileExistsError as exc:
        raise SinkExistsError(f"'{dest}' already exists; nothing was written.") from exc
    except OSError:  # the filesystem has no hard links
        if dest.exists():
            raise SinkExistsError(f"'{dest}' already exists; nothing was written.") from None
        os.replace(tmp, dest)
        return
    with suppress(OSError):
        tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
    with suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
