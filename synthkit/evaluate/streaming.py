"""Streaming evaluation: a Report for synthetic output larger than memory.

``evaluate_streaming(real, "synth/", schema)`` (or ``sk.evaluate(real, "synth/")``, or a polars
``LazyFrame``) never holds the synthetic table. It scans the Parquet partitions lazily (polars'
streaming engine) and splits the work in two:

* **exact over every row**: the row count, nulls per column, category frequencies, min/max of
  numbers and dates, the exact-copy count against the training rows (a hash semi-join of every
  synthetic row with the distinct training rows, nulls equal) and the fingerprint (for a
  directory of ``part-*.parquet`` partitions, :func:`synthkit.distributed.fingerprint_partitions`,
  the fingerprint a partitioned sample's Decision binds to);
* **on a seeded uniform sample** of ``sample_rows`` of the ``M`` rows (row positions drawn without
  replacement, then filtered in the scan): every distribution, pair, privacy-distance and
  utility metric, through the ordinary :func:`synthkit.evaluate.evaluate`.

The Report says which is which: ``notes`` state "computed on a sample of N of M rows", the
exact figures sit in ``settings["streaming"]``, and ``privacy.exact_copy_rate`` is replaced by
its exact value over all rows. Memory is the sample, the training rows and one scan batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError
from synthkit.evaluate.report import Report
from synthkit.schema import ColumnKind, Schema

#: Rows per batch when the fingerprint streams a single file or a LazyFrame.
_BATCH_ROWS = 65_536
#: At most this many distinct values per column are listed in the exact category counts.
MAX_CATEGORIES = 1_000


def is_streaming_source(data: Any) -> bool:
    """Whether ``data`` is evaluated by streaming: a LazyFrame or a directory of Parquet files."""
    if isinstance(data, pl.LazyFrame):
        return True
    return isinstance(data, (str, Path)) and "://" not in str(data) and Path(data).is_dir()


def scan_synthetic(data: Any) -> tuple[pl.LazyFrame, list[Path]]:
    """A LazyFrame over ``data`` (a LazyFrame, a Parquet file or a directory of them) and its files."""
    if isinstance(data, pl.LazyFrame):
        return data, []
    path = Path(data).expanduser()
    if path.is_dir():
        files = sorted(path.glob("part-*.parquet")) or sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(f"'{path}' holds no Parquet files to evaluate.",
                            hint="Point at a directory of part-NNNNN.parquet files (a partitioned sample).")
    elif path.is_file() and path.suffix == ".parquet":
        files = [path]
    else:
        raise ConfigError(f"Cannot stream '{path}': give a Parquet file, a directory of them or a LazyFrame.",
                          hint="Other formats: read them with synthkit.connectors.read and use evaluate().")
    return pl.scan_parquet([str(f) for f in files]), files


def _collect(lf: pl.LazyFrame) -> pl.DataFrame:
    """Every materialisation goes through here (the streaming engine; tests watch its sizes)."""
    return lf.collect(engine="streaming")


def evaluate_streaming(
    real: Any,
    synthetic: Any,
    schema: Schema | None = None,
    holdout: Any = None,
    *,
    sample_rows: int = 50_000,
    seed: int = 0,
    fingerprint: str | None = None,
    **options: Any,
) -> Report:
    """Evaluate a synthetic table too large for memory: exact counts by streaming, the rest on a sample.

    ``synthetic``: a directory of Parquet partitions, a Parquet file or a polars LazyFrame.
    ``sample_rows``: how many synthetic rows (a seeded uniform sample) the distribution, pair and
    privacy metrics see. ``fingerprint``: the table's fingerprint when known; otherwise it is
    computed streaming. ``options`` go to :func:`synthkit.evaluate.evaluate`.
    """
    from synthkit.evaluate import _as_table, evaluate
    from synthkit.evaluate.quality import LEARNED_KINDS, _canonical_expr
    from synthkit.frames import normalise_missing
    from synthkit.schema import infer_schema

    if isinstance(sample_rows, bool) or not isinstance(sample_rows, (int, np.integer)) or sample_rows < 2:
        raise ConfigError(f"sample_rows must be a whole number of at least 2, got {sample_rows!r}.")
    for reserved in ("synthetic_of", "max_rows"):
        if reserved in options:
            raise ConfigError(f"{reserved} is set by the streaming evaluation; leave it out.")
    lf, files = scan_synthetic(synthetic)
    real_df = _as_table(real, "real data")
    schema = schema if schema is not None else infer_schema(real_df)
    total = int(_collect(lf.select(pl.len())).item())
    if total == 0:
        raise DataError("The synthetic table has no rows to evaluate.")
    n = min(int(sample_rows), total)
    picks = np.sort(np.random.default_rng([int(seed), 0x57EA]).choice(total, size=n, replace=False))
    sample = _collect(lf.with_row_index("__synthkit_row")
                      .filter(pl.col("__synthkit_row").is_in(pl.Series(picks, dtype=pl.UInt32).implode()
                                                             if total < 2**32 else picks.tolist()))
                      .drop("__synthkit_row"))
    if fingerprint is None:
        fingerprint = _fingerprint(lf, files)
    report = evaluate(real_df, sample, schema, holdout, seed=seed, max_rows=max(n, 2),
                      synthetic_of=(fingerprint, total), **options)

    learned = [c for c in schema if c.kind in LEARNED_KINDS]
    names = lf.collect_schema()
    columns = {c.name: _column_counts(lf, c.name, c.kind, total) for c in schema if c.name in names}
    canon = lf.select([_canonical_expr(names[c.name], c) for c in learned])
    from synthkit.evaluate.quality import canonical_frame

    real_c = canonical_frame(normalise_missing(real_df), learned).unique()
    copies = int(_collect(canon.join(real_c.lazy(), on=[c.name for c in learned], how="semi",
                                     nulls_equal=True).select(pl.len())).item())
    exact = {"rows": total, "sample_rows": n, "exact_copies": copies, "columns": columns,
             "fingerprint": fingerprint}
    report.settings["streaming"] = exact
    metric = report.metrics.get("privacy.exact_copy_rate")
    if metric is not None:
        report.metrics["privacy.exact_copy_rate"] = metric.model_copy(update={
            "value": round(copies / total, 6),
            "note": f"Exact over all {total:,} rows ({copies:,} copies). " + (metric.note or ""),
        })
    for entry in report.columns:
        counted = columns.get(entry.get("name", ""))
        if counted is not None and "synthetic_null_share" in entry:
            entry["synthetic_null_share"] = round(counted["nulls"] / total, 6)
    report.notes.append(
        f"Streaming evaluation: the distribution, pair, privacy-distance and utility metrics were "
        f"computed on a sample of {n:,} of {total:,} rows (seeded, uniform, without replacement). "
        "Exact over all rows: the row count, the fingerprint, nulls per column (and the synthetic "
        "null shares shown), category frequencies, min/max and privacy.exact_copy_rate "
        "(settings['streaming'])."
    )
    return report


def _column_counts(lf: pl.LazyFrame, name: str, kind: ColumnKind, total: int) -> dict[str, Any]:
    """Nulls, and min/max or category frequencies, of one column over every row."""
    col = pl.col(name)
    out: dict[str, Any] = {"nulls": int(_collect(lf.select(col.null_count())).item())}
    if kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
        lo, hi = _collect(lf.select(col.min().alias("min"), col.max().alias("max"))).row(0)
        out["min"], out["max"] = _jsonable(lo), _jsonable(hi)
    elif kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        counts = _collect(lf.group_by(col).agg(pl.len().alias("n"))
                          .sort("n", descending=True).head(MAX_CATEGORIES + 1))
        rows = counts.rows()
        out["categories"] = {str(v): int(k) for v, k in rows[:MAX_CATEGORIES]}
        if len(rows) > MAX_CATEGORIES:
            out["categories_truncated"] = True
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def combine_fingerprints(parts: list[tuple[str, int]]) -> str:
    """A partitioned table's fingerprint from its partitions' ``(fingerprint, rows)``, in order.

    ``sha256`` over a version tag, one ``"<fingerprint> <rows>"`` line per partition and the
    total row count (the fingerprint a partitioned sample's Decision binds to).
    """
    import hashlib

    h = hashlib.sha256(b"synthkit.partitions.v1\n")
    for fp, rows in parts:
        h.update(f"{fp} {int(rows)}\n".encode())
    h.update(f"rows={sum(int(r) for _, r in parts)}".encode())
    return "sha256:" + h.hexdigest()


def fingerprint_partitions(directory: str | Path, *, label_column: str | None = None) -> str:
    """The combined fingerprint of a directory's ``part-*.parquet`` files, read batch by batch."""
    import pyarrow.parquet as pq

    from synthkit.frames import FingerprintHasher

    parts = []
    for path in sorted(Path(directory).glob("part-*.parquet")):
        hasher = FingerprintHasher()
        pf = pq.ParquetFile(path)
        batches = list(pf.iter_batches(batch_size=_BATCH_ROWS)) or [pf.schema_arrow.empty_table()]
        for batch in batches:
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            if label_column is not None and label_column in df.columns:
                df = df.drop(label_column)
            hasher.update(df)
        parts.append((hasher.hexdigest(), hasher.rows))
    return combine_fingerprints(parts)


def _fingerprint(lf: pl.LazyFrame, files: list[Path]) -> str:
    """The table's fingerprint, streamed: partition-combined for a directory of partitions."""
    from synthkit.frames import FingerprintHasher

    if files and all(f.name.startswith("part-") for f in files):
        directory = files[0].parent
        return fingerprint_partitions(directory, label_column=_label_column(directory))
    if len(files) > 1:  # other Parquet files: one stream in name order
        lf = pl.scan_parquet([str(f) for f in files])
    hasher = FingerprintHasher()
    for batch in lf.collect_batches(chunk_size=_BATCH_ROWS, engine="streaming"):
        hasher.update(batch)
    return hasher.hexdigest()


def _label_column(directory: Path) -> str | None:
    """The label column a partitioned sample's manifest names (added after hashing)."""
    import json

    manifest = directory / "_synthkit.json"  # synthkit.distributed.MANIFEST_NAME
    if not manifest.exists():
        return None
    data: Mapping[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    return data.get("label_column")
