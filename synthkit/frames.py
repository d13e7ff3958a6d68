"""Tabular data at the edges: convert what users hand us to polars, check it, fingerprint it.

Everything inside synthkit works on ``polars.DataFrame``; pandas frames, Arrow tables and dicts
of columns are accepted at the edges and converted here, once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

from synthkit.errors import DataError, EmptyDataError

#: Rows hashed per chunk when fingerprinting, so memory stays bounded on large frames.
_FINGERPRINT_CHUNK = 65_536


def to_polars(data: Any) -> pl.DataFrame:
    """Return ``data`` as a polars DataFrame; pandas, Arrow and dict-of-columns are accepted.

    Columns of mixed Python types (a pandas ``object`` column holding numbers and strings)
    cannot be typed reliably and raise :class:`DataError` naming the column.
    """
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return _from_pandas(data)
    try:
        import pyarrow as pa

        if isinstance(data, pa.Table):
            return pl.from_arrow(data)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(data, dict):
        try:
            return pl.DataFrame(data)
        except Exception as exc:  # noqa: BLE001 - polars raises several types here
            raise DataError(
                f"Could not build a table from the dict given: {exc}",
                hint="Pass a mapping of column name to a list of values of one type.",
            ) from exc
    raise DataError(
        f"Expected a table (polars or pandas DataFrame, Arrow table), got {type(data).__name__}.",
        hint="Read files with synthkit.connectors.read(path) and pass the frame it returns.",
    )


def _from_pandas(frame: Any) -> pl.DataFrame:
    frame = frame.copy(deep=False)
    frame.columns = [str(c) for c in frame.columns]
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object:
            kinds = {type(v) for v in col.dropna().head(100_000).tolist()}
            kinds.discard(type(None))
            if len(kinds) > 1 and not kinds <= {int, float, bool}:
                names = ", ".join(sorted(k.__name__ for k in kinds))
                raise DataError(
                    f"Column '{name}' mixes value types ({names}).",
                    hint=f"Convert '{name}' to one type first, e.g. df['{name}'].astype(str).",
                )
    try:
        return pl.from_pandas(frame, include_index=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"Could not convert the pandas frame: {exc}") from exc


def check_table(df: pl.DataFrame, *, min_rows: int = 1, what: str = "table") -> None:
    """Raise a clear :class:`DataError` when ``df`` cannot be learned from or evaluated.

    Checks: at least one column, at least ``min_rows`` rows, unique column names, and no
    infinite values in float columns (NaN is read as missing; infinity is almost always a bug).
    """
    if df.width == 0:
        raise EmptyDataError(f"The {what} has no columns.")
    if df.height == 0:
        raise EmptyDataError(f"The {what} has no rows.")
    if df.height < min_rows:
        raise DataError(
            f"The {what} has {df.height} row(s); at least {min_rows} are needed.",
            hint="A generator fitted on so few rows can only copy them. Use more data.",
        )
    objects = [c for c, t in df.schema.items() if t == pl.Object]
    if objects:
        raise DataError(
            f"Column(s) {objects} hold Python objects, which cannot be typed or compared.",
            hint="Convert them to numbers, strings or dates first.",
        )
    floats = [c for c, t in df.schema.items() if t.is_float()]
    if floats:
        counts = df.select(pl.col(floats).is_infinite().sum()).row(0)
        bad = {c: n for c, n in zip(floats, counts, strict=True) if n}
        if bad:
            listed = ", ".join(f"'{c}' ({n})" for c, n in bad.items())
            raise DataError(
                f"Infinite values in {listed}.",
                hint="Replace them with null or a finite value, e.g. "
                "df.with_columns(pl.col(c).replace([float('inf'), float('-inf')], None)).",
            )


def normalise_missing(df: pl.DataFrame) -> pl.DataFrame:
    """Treat float NaN as missing (null), the way every later stage expects."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    if not floats:
        return df
    return df.with_columns(pl.col(floats).fill_nan(None))


class FingerprintHasher:
    """:func:`fingerprint` computed batch by batch, for data streamed to a sink.

    Feeding the batches of a frame in order gives exactly ``fingerprint(frame)``, whatever the
    batch sizes: values are hashed row by row through their CSV text, and the row count last.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.schema: pl.Schema | None = None
        self.rows = 0

    def update(self, df: pl.DataFrame) -> None:
        """Hash one batch; every batch must have the first batch's columns and dtypes."""
        if self.schema is None:
            self.schema = df.schema
            self._h.update(repr([(n, str(t)) for n, t in df.schema.items()]).encode())
        elif df.schema != self.schema:
            raise DataError(
                f"A batch's columns differ from the first batch's: {dict(df.schema)} "
                f"vs {dict(self.schema)}.",
                hint="Every batch must have the same column names, order and dtypes.",
            )
        for start in range(0, df.height, _FINGERPRINT_CHUNK):
            chunk = df.slice(start, _FINGERPRINT_CHUNK)
            self._h.update(chunk.write_csv(include_header=False, null_value="\x00").encode())
        self.rows += df.height

    def hexdigest(self) -> str:
        """The fingerprint of everything hashed so far (``sha256:<hex>``)."""
        h = self._h.copy()
        h.update(f"\x00rows={self.rows}".encode())
        return "sha256:" + h.hexdigest()


def fingerprint(data: Any) -> str:
    """A stable sha256 over column names, types and values (``sha256:<hex>``).

    Used to tie a model, a Decision and an audit record to exactly one table. Values are
    hashed through their CSV text in chunks, so the result does not depend on polars'
    internal hash seeds and memory stays bounded.
    """
    hasher = FingerprintHasher()
    hasher.update(to_polars(data))
    return hasher.hexdigest()
