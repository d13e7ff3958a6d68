"""Files connector: reading with schema casting, helpful errors, and the fail-closed atomic sink."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from synthkit.connectors import files, read, write, write_batches
from synthkit.errors import (
    ConnectorError,
    DataError,
    EmptyDataError,
    GateRefusedError,
    ReadError,
    SchemaError,
    SinkExistsError,
    SourceNotFoundError,
    UnsupportedFormatError,
    WriteError,
)
from synthkit.frames import FingerprintHasher, fingerprint
from synthkit.schema import Column, ColumnKind, Schema, infer_schema


@dataclass
class FakeDecision:
    """The two fields a sink reads from a policy Decision."""

    passed: bool
    data_fingerprint: str


def approve(data) -> FakeDecision:
    return FakeDecision(passed=True, data_fingerprint=fingerprint(data))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def wage_schema(wage_small: pl.DataFrame) -> Schema:
    return infer_schema(wage_small, detect_pii=False)


# --- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["w.csv", "w.csv.gz", "w.tsv", "w.parquet", "w.pq", "w.jsonl", "w.ndjson", "w.json"]
)
def test_round_trip_with_schema(tmp_path, wage_small, wage_schema, name):
    dest = write(wage_small, tmp_path / name, decision=approve(wage_small))
    assert dest == (tmp_path / name).absolute()
    back = read(dest, schema=wage_schema)
    assert_frame_equal(back, wage_small)
    assert fingerprint(back) == fingerprint(wage_small)
    assert leftovers(tmp_path) == []


def test_round_trip_without_schema_infers_types(tmp_path, wage_small):
    for name in ("w.csv", "w.parquet", "w.jsonl"):
        write(wage_small, tmp_path / name, decision=approve(wage_small))
        assert_frame_equal(read(tmp_path / name), wage_small)


def test_parquet_is_zstd(tmp_path, wage_small):
    import pyarrow.parquet as pq

    path = write(wage_small, tmp_path / "w.parquet", decision=approve(wage_small))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_pandas_input_and_file_uri(tmp_path, wage_small):
    frame = wage_small.to_pandas()
    path = write(frame, (tmp_path / "p.parquet").as_uri(), decision=approve(frame))
    assert_frame_equal(read(path.as_uri()), wage_small)


def test_columns_select_and_order(tmp_path, wage_small, wage_schema):
    path = write(wage_small, tmp_path / "w.csv", decision=approve(wage_small))
    assert read(path, columns=["wage", "age"]).columns == ["wage", "age"]
    typed = read(path, schema=wage_schema, columns=["education", "year"])
    assert typed.schema == pl.Schema({"education": pl.String, "year": pl.Int64})


def test_schema_columns_missing_from_file(tmp_path, wage_small, wage_schema):
    path = write(
        wage_small.drop("wage", "race"),
        tmp_path / "w.csv",
        decision=approve(wage_small.drop("wage", "race")),
    )
    with pytest.raises(SchemaError, match=r"\['race', 'wage'\]"):
        read(path, schema=wage_schema)
    with pytest.raises(SchemaError, match="nope"):
        read(path, columns=["age", "nope"])


# --- schema casting -----------------------------------------------------------------------
def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_keeps_strings_as_written(tmp_path):
    path = _csv(
        tmp_path,
        "zip,day,when,flag,n\n01234,2020-01-31,2020-01-31 10:00:00,yes,3\n"
        "00042,2021-12-01,2021-12-01 23:59:59,False,NA\n",
    )
    schema = Schema(
        columns=[
            Column(name="zip", kind=ColumnKind.CATEGORICAL, dtype="String"),
            Column(
                name="day", kind=ColumnKind.DATETIME, dtype="String", datetime_format="%Y-%m-%d"
            ),
            Column(
                name="when",
                kind=ColumnKind.DATETIME,
                dtype="Datetime(time_unit='us', time_zone=None)",
                datetime_format="%Y-%m-%d %H:%M:%S",
            ),
            Column(name="flag", kind=ColumnKind.BOOLEAN, dtype="Boolean"),
            Column(name="n", kind=ColumnKind.NUMERICAL, dtype="Float64"),
        ]
    )
    df = read(path, schema=schema)
    assert df["zip"].to_list() == ["01234", "00042"]
    assert df["day"].to_list() == ["2020-01-31", "2021-12-01"]
    assert df["when"].dtype == pl.Datetime("us") and df["when"].dt.hour().to_list() == [10, 23]
    assert df["flag"].to_list() == [True, False]
    assert df["n"].to_list() == [3.0, None]


def test_schema_bad_value_names_column_and_example(tmp_path):
    path = _csv(tmp_path, "age,day\n31,2020-01-31\nthirty,2020-02-30\n")
    age = Column(name="age", kind=ColumnKind.NUMERICAL, dtype="Int64")
    with pytest.raises(DataError, match=r"'age'.*'thirty'"):
        read(path, schema=Schema(columns=[age]))
    day = Column(name="day", kind=ColumnKind.DATETIME, dtype="String", datetime_format="%Y-%m-%d")
    with pytest.raises(DataError, match=r"'day'.*'2020-02-30'"):
        read(path, schema=Schema(columns=[day]))


def test_schema_refuses_to_truncate_floats(tmp_path):
    path = tmp_path / "f.parquet"
    frame = pl.DataFrame({"x": [1.0, 2.5, None]})
    write(frame, path, decision=approve(frame))
    schema = Schema(columns=[Column(name="x", kind=ColumnKind.NUMERICAL, dtype="Int64")])
    with pytest.raises(DataError, match=r"'x'.*whole number.*2\.5"):
        read(path, schema=schema)


def test_nan_is_read_as_null(tmp_path):
    frame = pl.DataFrame({"x": [1.0, float("nan"), None]})
    path = write(frame, tmp_path / "nan.parquet", decision=approve(frame))
    assert read(path)["x"].null_count() == 2


# --- read errors --------------------------------------------------------------------------
def test_missing_file_suggests_similar_names(tmp_path):
    (tmp_path / "wages.csv").write_text("a\n1\n")
    with pytest.raises(SourceNotFoundError, match="wage.csv") as info:
        read(tmp_path / "wage.csv")
    assert "wages.csv" in str(info.value)
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        read(tmp_path / "nowhere" / "x.csv")


def test_directory_empty_and_unknown_extension(tmp_path):
    with pytest.raises(ConnectorError, match="directory"):
        read(tmp_path)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(EmptyDataError, match="empty.csv"):
        read(tmp_path / "empty.csv")
    with pytest.raises(EmptyDataError, match="no rows"):
        read(_csv(tmp_path, "a,b\n", "header.csv"))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(UnsupportedFormatError, match=r"\.xlsx") as info:
        read(tmp_path / "data.xlsx")
    assert ".parquet" in str(info.value) and ".jsonl" in str(info.value)


def test_corrupt_parquet_and_non_array_json(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ReadError, match="bad.parquet"):
        read(tmp_path / "bad.parquet")
    (tmp_path / "obj.json").write_text('{"a": [1, 2]}')
    with pytest.raises(ReadError, match="array of records"):
        read(tmp_path / "obj.json")


def test_bad_unicode_csv_hints_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,n\nJosé,1\nZoë,2\n".encode("latin-1"))
    with pytest.raises(ReadError, match="UTF-8") as info:
        read(path)
    assert "encoding=" in info.value.hint
    assert read(path, encoding="latin-1")["name"].to_list() == ["José", "Zoë"]
    with pytest.raises(ReadError, match="encoding"):
        read(path, encoding="no-such-codec")


def test_other_schemes_are_refused(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="No connector for 'mssql://' databases"):
        read("mssql://user@host/db")
    with pytest.raises(UnsupportedFormatError, match="file://"):
        read("s3://bucket/data.parquet")
    frame = pl.DataFrame({"a": [1]})
    with pytest.raises(UnsupportedFormatError):
        write(frame, "oracle://user@host/db", decision=approve(frame))
    with pytest.raises(ConnectorError, match="needs table="):  # databases: tests/test_connectors_sql.py
        write(frame, f"sqlite:///{tmp_path / 'x.db'}", decision=approve(frame))


# --- the gate -----------------------------------------------------------------------------
def test_sink_refuses_without_a_passing_decision_for_this_data(tmp_path, wage_small):
    dest = tmp_path / "out" / "w.parquet"
    other = wage_small.head(10)
    refusals = [
        (None, "No policy Decision"),
        (FakeDecision(passed=False, data_fingerprint=fingerprint(wage_small)), "did not pass"),
        (approve(other), "differs from what was gated"),
        (object(), "did not pass"),
    ]
    for decision, message in refusals:
        with pytest.raises(GateRefusedError, match=message):
            write(wage_small, dest, decision=decision)
    assert not dest.parent.exists()


def test_truthy_but_not_true_is_refused(tmp_path):
    frame = pl.DataFrame({"a": [1]})
    decision = FakeDecision(passed=1, data_fingerprint=fingerprint(frame))  # type: ignore[arg-type]
    with pytest.raises(GateRefusedError):
        write(frame, tmp_path / "a.csv", decision=decision)


# --- atomic writes ------------------------------------------------------------------------
def test_overwrite_semantics(tmp_path, wage_small):
    first, second = wage_small.head(5), wage_small.tail(5)
    path = write(first, tmp_path / "w.csv", decision=approve(first))
    before = path.read_bytes()
    with pytest.raises(SinkExistsError):
        write(second, path, decision=approve(second))
    assert path.read_bytes() == before
    write(second, path, decision=approve(second), overwrite=True)
    assert_frame_equal(read(path), second)
    with pytest.raises(WriteError, match="directory"):
        write(second, tmp_path, decision=approve(second), overwrite=True)


@pytest.mark.parametrize(
    ("name", "writer"), [("w.parquet", "write_parquet"), ("w.csv", "write_csv")]
)
def test_failed_write_leaves_nothing_behind(tmp_path, wage_small, monkeypatch, name, writer):
    old = wage_small.head(3)
    path = write(old, tmp_path / "new" / name, decision=approve(old))
    before = path.read_bytes()

    def half_then_fail(self, file, **kwargs):
        file.write(b"half a file")
        raise OSError("disk full")

    decision = approve(wage_small)  # before patching: fingerprint() uses write_csv too
    monkeypatch.setattr(pl.DataFrame, writer, half_then_fail)
    monkeypatch.setattr(files, "fingerprint", lambda data: decision.data_fingerprint)
    with pytest.raises(WriteError, match="disk full"):
        write(wage_small, path, decision=decision, overwrite=True)
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    fresh = tmp_path / "deep" / "er" / name
    with pytest.raises(WriteError):
        write(wage_small, fresh, decision=decision)
    assert not (tmp_path / "deep").exists()


# --- streaming ----------------------------------------------------------------------------
def _batches(frame: pl.DataFrame, size: int):
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


@pytest.mark.parametrize("name", ["s.parquet", "s.csv", "s.jsonl", "s.csv.gz"])
def test_write_batches_round_trip(tmp_path, wage, name):
    path = write_batches(
        _batches(wage, 700), tmp_path / name, decision=approve(wage)
    )
    assert_frame_equal(read(path), wage)
    assert leftovers(tmp_path) == []


def test_stream_fingerprint_matches_across_chunk_boundaries(wage):
    big = pl.concat([wage] * 23)  # 69,000 rows: crosses the 65,536-row hashing chunk
    for size in (big.height, 65_536, 10_001):
        hasher = FingerprintHasher()
        for batch in _batches(big, size):
            hasher.update(batch)
        assert hasher.hexdigest() == fingerprint(big)


def test_write_batches_refuses_other_data(tmp_path, wage_small):
    dest = tmp_path / "s.parquet"
    decision = approve(wage_small)
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write_batches(_batches(wage_small.reverse(), 100), dest, decision=decision)
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write_batches(_batches(wage_small.head(500), 100), dest, decision=decision)
    with pytest.raises(GateRefusedError, match="differs from what was gated"):
        write_batches(_batches(pl.concat([wage_small, wage_small.head(100)]), 100), dest, decision=decision)
    with pytest.raises(GateRefusedError, match="No policy Decision"):
        write_batches(_batches(wage_small, 100), dest, decision=None)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_write_batches_failure_mid_stream(tmp_path, wage_small):
    def failing():
        yield wage_small.head(100)
        raise RuntimeError("sampler crashed")

    dest = tmp_path / "s.csv"
    with pytest.raises(WriteError, match="sampler crashed"):
        write_batches(failing(), dest, decision=approve(wage_small))
    mixed = [wage_small.head(2), wage_small.head(2).with_columns(pl.col("age").cast(pl.Float64))]
    with pytest.raises(WriteError, match="differ from the first"):
        write_batches(
            mixed, dest, decision=approve(pl.concat(mixed, how="vertical_relaxed"))
        )
    with pytest.raises(WriteError, match="empty"):
        write_batches([], dest, decision=approve(wage_small))
    assert not dest.exists() and leftovers(tmp_path) == []


def test_gzip_csv_is_really_gzipped(tmp_path, wage_small):
    path = write(wage_small, tmp_path / "w.csv.gz", decision=approve(wage_small))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        assert f.readline().startswith("year,age")
    assert os.path.getsize(path) < len(wage_small.write_csv())
