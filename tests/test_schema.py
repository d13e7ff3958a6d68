"""Schema inference, editing, JSON and SDV metadata round trips."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pytest

from synthkit.errors import SchemaError
from synthkit.schema import Column, ColumnKind, PIIKind, Schema, infer_schema, parse_dtype


def test_wage_kinds(wage: pl.DataFrame) -> None:
    schema = infer_schema(wage)
    assert schema["age"].kind == ColumnKind.NUMERICAL
    assert schema["age"].decimals == 0
    assert schema["age"].min == wage["age"].min()
    assert schema["wage"].kind == ColumnKind.NUMERICAL
    assert schema["maritl"].kind == ColumnKind.CATEGORICAL
    assert schema.primary_key is None
    assert schema.names == wage.columns


def test_pandas_frames_are_accepted(wage_small: pl.DataFrame) -> None:
    assert infer_schema(wage_small.to_pandas()).names == wage_small.columns


def test_ids_pii_text_datetime_boolean() -> None:
    df = pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(50)],
            "email": [f"user{i}@example.com" for i in range(50)],
            "card": ["4111 1111 1111 1111", "5500 0000 0000 0004"] * 25,
            "ip": [f"10.0.{i}.1" for i in range(50)],
            "note": [f"the customer number {i} called about a very long complaint text" for i in range(50)],
            "joined": [f"2021-03-{1 + i % 28:02d}" for i in range(50)],
            "active": [True, False] * 25,
            "when": [dt.datetime(2020, 1, 1) + dt.timedelta(days=i) for i in range(50)],
        }
    )
    schema = infer_schema(df)
    assert schema["customer_id"].kind == ColumnKind.ID
    assert schema.primary_key == "customer_id"
    assert (schema["email"].kind, schema["email"].pii) == (ColumnKind.PII, PIIKind.EMAIL)
    assert schema["card"].pii == PIIKind.CREDIT_CARD
    assert schema["ip"].pii == PIIKind.IP_ADDRESS
    assert schema["note"].kind == ColumnKind.TEXT
    assert (schema["joined"].kind, schema["joined"].datetime_format) == (ColumnKind.DATETIME, "%Y-%m-%d")
    assert schema["active"].kind == ColumnKind.BOOLEAN
    assert schema["when"].kind == ColumnKind.DATETIME
    assert schema["when"].polars_dtype == pl.Datetime("us")


def test_random_digits_are_not_credit_cards() -> None:
    df = pl.DataFrame({"code": ["1234 5678 9012 3456", "1111 2222 3333 4445"] * 20})
    assert infer_schema(df)["code"].kind != ColumnKind.PII


def test_pii_detected_by_name() -> None:
    df = pl.DataFrame({"first_name": ["Ann", "Bob", "Cy"] * 5, "phone": ["+44 20 7946 0958"] * 15})
    schema = infer_schema(df)
    assert schema["first_name"].pii == PIIKind.FIRST_NAME
    assert schema["phone"].pii == PIIKind.PHONE
    assert infer_schema(df, detect_pii=False)["first_name"].kind == ColumnKind.CATEGORICAL


def test_json_round_trip(wage: pl.DataFrame, tmp_path) -> None:
    schema = infer_schema(wage)
    path = tmp_path / "schema.json"
    schema.to_json(path)
    assert Schema.from_json(path) == schema
    assert Schema.from_json(schema.to_json()) == schema


def test_overrides() -> None:
    schema = infer_schema(pl.DataFrame({"zip": [10115, 80331, 20095] * 5, "x": [1.5, 2.5, 3.5] * 5}))
    edited = schema.with_overrides({"zip": {"kind": "categorical"}})
    assert edited["zip"].kind == ColumnKind.CATEGORICAL
    assert edited["x"] == schema["x"]
    with pytest.raises(SchemaError, match="do not exist"):
        schema.with_overrides({"nope": {"kind": "categorical"}})
    with pytest.raises(SchemaError):
        schema.with_overrides({"x": {"kind": "no-such-kind"}})


def test_invalid_schema_errors() -> None:
    with pytest.raises(SchemaError):
        Schema.from_dict({"columns": [{"name": "a"}]})
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.from_json("{not json")
    with pytest.raises(ValueError, match="duplicate"):
        Schema(columns=[Column(name="a", kind="numerical", dtype="Int64")] * 2)
    schema = infer_schema(pl.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(SchemaError, match="lacks columns"):
        schema.check_frame(pl.DataFrame({"b": [1]}))


def test_sdv_round_trip(wage: pl.DataFrame) -> None:
    schema = infer_schema(wage)
    metadata = schema.to_sdv()
    back = Schema.from_sdv(metadata)
    assert back.names == schema.names
    assert [c.kind for c in back] == [c.kind for c in schema]
    assert back["age"].decimals == 0


def test_sdv_metadata_import_from_sdv_detection(wage_small: pl.DataFrame) -> None:
    from sdv.metadata import Metadata

    frame = wage_small.to_pandas()
    frame["email"] = [f"u{i}@example.com" for i in range(len(frame))]
    metadata = Metadata.detect_from_dataframes({"wage": frame})
    schema = Schema.from_sdv(metadata)
    assert schema["email"].kind == ColumnKind.PII
    assert schema["email"].pii == PIIKind.EMAIL
    assert schema["education"].kind == ColumnKind.CATEGORICAL


def test_dtype_strings_round_trip() -> None:
    for dtype in (pl.Int64(), pl.Float32(), pl.String(), pl.Boolean(), pl.Date(),
                  pl.Datetime("ms", "Europe/Berlin")):
        frame = pl.DataFrame({"c": pl.Series([None], dtype=dtype)})
        assert parse_dtype(infer_schema(frame)["c"].dtype) in (dtype, pl.String())


def test_all_null_and_pandas_nan(tmp_path) -> None:
    frame = pd.DataFrame({"a": [1.0, float("nan"), 3.0], "b": [None, None, None]})
    schema = infer_schema(frame)
    assert schema["a"].nullable and schema["a"].kind == ColumnKind.NUMERICAL
    assert schema["b"].nullable


@pytest.mark.parametrize("name", ["voice_mail_plan", "automobile", "has_phone", "ipsum"])
def test_pii_names_do_not_match_inside_words_or_flags(name: str) -> None:
    df = pl.DataFrame({name: ["yes", "no"] * 10})
    assert infer_schema(df)[name].kind == ColumnKind.CATEGORICAL


def test_churn_has_no_pii(churn: pl.DataFrame) -> None:
    assert infer_schema(churn).of_kind(ColumnKind.PII) == []


def test_decimals_are_exact_or_none(wage: pl.DataFrame) -> None:
    schema = infer_schema(wage)
    assert schema["logwage"].decimals is None  # measurements are not rounded
    money = infer_schema(pl.DataFrame({"price": [12345.67, 0.5, 99999.99]}))
    assert money["price"].decimals == 2
    assert "decimal_places" not in schema.to_sdv_dict()["tables"]["table"]["columns"]["logwage"]
