"""Edge conversions, table checks, fingerprints and the holdout split."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from synthkit.errors import ConfigError, DataError, EmptyDataError
from synthkit.frames import check_table, fingerprint, normalise_missing, to_polars
from synthkit.prepare.split import split_holdout


def test_to_polars_accepts_pandas_arrow_dict(wage_small: pl.DataFrame) -> None:
    assert to_polars(wage_small.to_pandas()).equals(wage_small)
    assert to_polars(wage_small.to_arrow()).equals(wage_small)
    assert to_polars({"a": [1, 2]}).shape == (2, 1)
    with pytest.raises(DataError, match="Expected a table"):
        to_polars([1, 2, 3])


def test_mixed_types_are_refused() -> None:
    frame = pd.DataFrame({"mixed": [1, "two", 3.0]})
    with pytest.raises(DataError, match="mixes value types"):
        to_polars(frame)


def test_check_table_errors() -> None:
    with pytest.raises(EmptyDataError):
        check_table(pl.DataFrame())
    with pytest.raises(EmptyDataError, match="no rows"):
        check_table(pl.DataFrame({"a": []}))
    with pytest.raises(DataError, match="at least 10"):
        check_table(pl.DataFrame({"a": [1]}), min_rows=10)
    with pytest.raises(DataError, match="Infinite"):
        check_table(pl.DataFrame({"a": [1.0, float("inf")]}))


def test_nan_becomes_null() -> None:
    out = normalise_missing(pl.DataFrame({"a": [1.0, float("nan")]}))
    assert out["a"].null_count() == 1


def test_fingerprint_is_stable_and_sensitive(wage_small: pl.DataFrame) -> None:
    fp = fingerprint(wage_small)
    assert fp.startswith("sha256:") and fp == fingerprint(wage_small.clone())
    assert fp == fingerprint(wage_small.to_pandas())
    changed = wage_small.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(0).otherwise(pl.col("age")).alias("age"))
    assert fingerprint(changed) != fp
    assert fingerprint(wage_small.reverse()) != fp


def test_split_is_reproducible(wage: pl.DataFrame) -> None:
    train, hold = split_holdout(wage, fraction=0.2, seed=3)
    assert hold is not None and train.height + hold.height == wage.height
    assert hold.height == 600
    again, _ = split_holdout(wage, fraction=0.2, seed=3)
    assert fingerprint(train) == fingerprint(again)
    other, _ = split_holdout(wage, fraction=0.2, seed=4)
    assert fingerprint(train) != fingerprint(other)
    assert split_holdout(wage, fraction=0.0)[1] is None
    with pytest.raises(ConfigError):
        split_holdout(wage, fraction=1.0)
    with pytest.raises(DataError):
        split_holdout(wage.head(1), fraction=0.2)


def test_object_columns_are_refused() -> None:
    frame = pl.DataFrame({"o": pl.Series([object(), object()], dtype=pl.Object)})
    with pytest.raises(DataError, match="Python objects"):
        check_table(frame)
