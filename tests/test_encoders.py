"""Encoders: every learned kind round-trips, state survives JSON + safetensors, no pickle."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import synthkit as sk
from synthkit.errors import NotFittedError, SchemaError
from synthkit.prepare.encoders import (
    BooleanEncoder,
    CategoricalEncoder,
    ColumnEncoder,
    DatetimeEncoder,
    NumericalEncoder,
    TableEncoder,
    encoder_for,
    restore_numeric,
)
from synthkit.schema import Column


def _through_disk(enc: ColumnEncoder | TableEncoder):
    """State -> safetensors bytes + JSON text -> a rebuilt encoder (what saving does)."""
    arrays, meta = enc.state()
    arrays = st_load(st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()})) if arrays else {}
    meta = json.loads(json.dumps(meta))
    return type(enc).from_state(arrays, meta) if isinstance(enc, TableEncoder) else ColumnEncoder.from_state(arrays, meta)


@pytest.fixture(scope="module")
def credit_schema(credit):
    return sk.infer_schema(credit)


def test_numerical_round_trip_with_nulls(credit, credit_schema):
    s = credit["Income"]
    enc = NumericalEncoder(credit_schema["Income"]).fit(s)
    x = enc.transform(s)
    assert x.shape == (credit.height, 2)  # value + null indicator
    assert np.isfinite(x).all()
    assert abs(x[:, 0].mean()) < 0.1
    back = enc.inverse_transform(x)
    assert back.equals(s)
    assert _through_disk(enc).inverse_transform(x).equals(s)


def test_numerical_restores_integers_decimals_and_bounds(credit, credit_schema):
    s = credit["Price"]
    enc = encoder_for(credit_schema["Price"]).fit(s)
    assert enc.width == 1 and enc.spans[0].kind == "continuous"
    noisy = enc.transform(s) + 0.013
    back = enc.inverse_transform(noisy)
    assert back.dtype == pl.Int64
    wild = enc.inverse_transform(np.array([[-100.0], [100.0]]))
    assert wild.to_list() == [credit_schema["Price"].min, credit_schema["Price"].max]
    col = Column(name="p", kind="numerical", dtype="Float64", decimals=2)
    enc = NumericalEncoder(col).fit(pl.Series("p", [1.25, 2.5, 3.75]))
    assert enc.inverse_transform(enc.transform(pl.Series("p", [2.3456]))).to_list() == [2.35]


def test_restore_numeric_rounds_half_to_even_and_nulls_what_does_not_fit():
    """Integers are rounded half to even (as polars rounds); NaN, inf and values beyond int64
    become null, as a non-strict cast makes them."""
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.7, np.nan, np.inf, -np.inf, 1e300, 9.2e18, 41.0])
    got = restore_numeric(Column(name="n", kind="numerical", dtype="Int64"), x)
    want = pl.Series("n", x, nan_to_null=True).round(0).cast(pl.Int64, strict=False)
    assert got.dtype == pl.Int64 and got.to_list() == want.to_list()
    assert got.to_list()[:5] == [0, 2, 2, 0, -3] and got.null_count() == 4
    bounded = restore_numeric(Column(name="b", kind="numerical", dtype="Int32", min=0, max=10), x)
    assert bounded.dtype == pl.Int32 and bounded.to_list()[6:9] == [10, 0, 10]
    floats = restore_numeric(Column(name="f", kind="numerical", dtype="Float64", decimals=1), x)
    assert floats.to_list()[:5] == [0.5, 1.5, 2.5, -0.5, -2.7] and floats.null_count() == 1


def test_categorical_one_hot_with_nulls_and_unseen(credit, credit_schema):
    s = credit["Home"]
    enc = CategoricalEncoder(credit_schema["Home"]).fit(s)
    x = enc.transform(s)
    k = s.drop_nulls().n_unique()
    assert x.shape == (credit.height, k + 1)
    assert (x.sum(axis=1) == 1).all()
    assert enc.inverse_transform(x).equals(s)
    unseen = enc.transform(pl.Series("Home", ["castle"]))
    assert unseen[0, -1] == 1.0
    assert enc.inverse_transform(unseen).to_list() == [None]
    assert _through_disk(enc).inverse_transform(x).equals(s)


def test_categorical_index_mode_and_no_null_slot_when_never_null(credit, credit_schema):
    s = credit["Status"]
    enc = CategoricalEncoder(credit_schema["Status"], mode="index").fit(s)
    codes = enc.transform(s)
    assert codes.shape == (credit.height, 1)
    assert enc.inverse_transform(codes).equals(s)
    onehot = CategoricalEncoder(credit_schema["Status"]).fit(s)
    probs = np.array([[0.2, 0.1, 0.7]])  # the null/unseen slot is never chosen: no nulls at fit
    assert onehot.inverse_transform(probs).to_list() == [onehot.categories_[0]]


def test_categorical_keeps_integer_dtype():
    col = Column(name="c", kind="categorical", dtype="Int64")
    s = pl.Series("c", [3, 1, 3, 2, 3, None])
    enc = CategoricalEncoder(col).fit(s)
    back = enc.inverse_transform(enc.transform(s))
    assert back.dtype == pl.Int64 and back.equals(s)
    assert _through_disk(enc).inverse_transform(enc.transform(s)).equals(s)


def test_boolean_round_trip():
    col = Column(name="b", kind="boolean", dtype="Boolean")
    s = pl.Series("b", [True, False, None, True])
    enc = BooleanEncoder(col).fit(s)
    x = enc.transform(s)
    assert x.shape == (4, 2)
    assert enc.inverse_transform(x).equals(s)


@pytest.mark.parametrize(
    ("values", "column"),
    [
        (
            pl.Series("t", [dt.datetime(2021, 3, 1, 12, 30), None, dt.datetime(1999, 12, 31, 23, 59, 59)]),
            Column(name="t", kind="datetime", dtype="Datetime(time_unit='us', time_zone=None)"),
        ),
        (
            pl.Series("t", [dt.date(2020, 2, 29), dt.date(1970, 1, 1), dt.date(2035, 7, 4)]),
            Column(name="t", kind="datetime", dtype="Date"),
        ),
        (
            pl.Series("t", ["03/01/2021", "12/31/1999", None]),
            Column(name="t", kind="datetime", dtype="String", datetime_format="%m/%d/%Y"),
        ),
        (
            pl.Series("t", ["2021-03-01 08:15:00", "2001-01-01 00:00:01"]),
            Column(name="t", kind="datetime", dtype="String", datetime_format="%Y-%m-%d %H:%M:%S"),
        ),
        (
            pl.Series("t", [dt.datetime(2021, 3, 28, 1, 30), dt.datetime(2021, 10, 31, 2, 30)])
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone("Europe/Paris"),
            Column(name="t", kind="datetime", dtype="Datetime(time_unit='us', time_zone='Europe/Paris')"),
        ),
    ],
)
def test_datetime_round_trip(values, column):
    enc = DatetimeEncoder(column).fit(values)
    x = enc.transform(values)
    back = enc.inverse_transform(x)
    assert back.dtype == values.dtype
    assert back.equals(values)
    assert _through_disk(enc).inverse_transform(x).equals(values)


def test_table_encoder_round_trips_credit(credit, credit_schema):
    table = TableEncoder(credit_schema).fit(credit)
    x = table.transform(credit)
    assert x.shape == (credit.height, table.width)
    assert sum(span.width for _, span in table.spans) == table.width
    assert table.inverse_transform(x).equals(credit)
    rebuilt = _through_disk(table)
    assert rebuilt.inverse_transform(x).equals(credit)


def test_table_encoder_index_mode_and_shape_errors(wage, credit_schema):
    schema = sk.infer_schema(wage)
    table = TableEncoder(schema, categorical="index").fit(wage)
    x = table.transform(wage)
    assert x.shape == (wage.height, len(schema))
    assert_frame_equal(table.inverse_transform(x), wage, check_exact=False, rel_tol=1e-9)
    with pytest.raises(SchemaError):
        table.inverse_transform(x[:, :-1])


def test_non_learned_kinds_and_unfitted_use_raise():
    with pytest.raises(SchemaError, match="fillers"):
        encoder_for(Column(name="k", kind="id", dtype="Int64"))
    with pytest.raises(NotFittedError):
        NumericalEncoder(Column(name="x", kind="numerical", dtype="Float64")).transform(pl.Series("x", [1.0]))
