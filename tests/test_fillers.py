"""Fillers: ids unique across batches, PII and text fake and private, null shares kept."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

import synthkit as sk
from synthkit.prepare.fillers import PII_POOL, fit_fillers, generate_filled
from synthkit.schema import Column, ColumnKind, PIIKind


def _faker_values(method: str, n: int, seed: int, locale: str = "en_US") -> list[str]:
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    return [getattr(fake, method)() for _ in range(n)]


@pytest.fixture(scope="module")
def people(wage_small: pl.DataFrame) -> pl.DataFrame:
    """Wage rows plus real-looking personal data and keys.

    Real people have real mail domains (the fillers only use the reserved example.* ones) and,
    here, German names, so any overlap with the output would be a leak, not a coincidence.
    """
    n = wage_small.height
    emails = _faker_values("free_email", n, seed=42)
    emails = [None if i % 5 == 0 else e for i, e in enumerate(emails)]  # 20% missing
    return wage_small.with_columns(
        pl.Series("customer_id", np.arange(1000, 1000 + n)),
        pl.Series("account", [f"AC-{i:05d}X" for i in range(n)]),
        pl.Series("email", emails),
        pl.Series("full_name", _faker_values("name", n, seed=43, locale="de_DE")),
        pl.Series("notes", _faker_values("paragraph", n, seed=44)),
    )


@pytest.fixture(scope="module")
def people_schema(people: pl.DataFrame) -> sk.Schema:
    return sk.infer_schema(people).with_overrides(
        {
            "customer_id": {"kind": "id"},
            "account": {"kind": "id"},
            "email": {"kind": "pii", "pii": "email"},
            "full_name": {"kind": "pii", "pii": "person_name"},
            "notes": {"kind": "text"},
        }
    )


def _state(df: pl.DataFrame, schema: sk.Schema) -> dict:
    return fit_fillers(df, [c for c in schema if c.kind in (ColumnKind.ID, ColumnKind.PII, ColumnKind.TEXT)])


def test_state_is_json_and_holds_no_real_value(people, people_schema):
    state = _state(people, people_schema)
    text = json.dumps(state)
    assert json.loads(text) == state
    for name in ("account", "email", "full_name", "notes"):
        for value in people.get_column(name).drop_nulls().head(200).to_list():
            assert value not in text, f"real value of {name} stored in the filler state"


def test_ids_unique_across_small_batches(people, people_schema):
    gen = sk.create("tabular/copula", seed=0).fit(people, schema=people_schema)
    batches = list(gen.sample_batches(500, batch_size=7, seed=3))
    out = pl.concat(batches)
    assert out.height == 500
    assert out["customer_id"].n_unique() == 500
    assert out["account"].n_unique() == 500
    assert out["customer_id"].dtype == pl.Int64
    assert out["account"].str.contains(r"^[A-Z]{2}-\d{5}[A-Z]$").all()


def test_string_ids_keep_shape_and_stay_unique_past_capacity():
    df = pl.DataFrame({"code": [f"Q{i % 10}" for i in range(50)]})
    state = fit_fillers(df, [Column(name="code", kind="id", dtype="String")])
    first = generate_filled(state, 6, rng=np.random.default_rng(0), offset=0)["code"]
    assert first.str.contains(r"^[A-Z]\d$").all()
    parts = [generate_filled(state, 100, rng=np.random.default_rng(i), offset=100 * i)["code"] for i in range(5)]
    everything = pl.concat(parts)
    assert everything.n_unique() == 500  # far more than the 260 shapes "A9" allows


def test_uuid_like_ids_keep_literal_dashes():
    import uuid

    values = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(200)]
    state = fit_fillers(pl.DataFrame({"uid": values}), [Column(name="uid", kind="id", dtype="String")])
    out = generate_filled(state, 1000, rng=np.random.default_rng(0), offset=0)["uid"]
    assert out.n_unique() == 1000
    assert out.str.contains(r"^[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}$").all()
    assert not set(out.to_list()) & set(values)


def test_million_ids_are_unique():
    df = pl.DataFrame({"k": [f"CUS-{i:06d}" for i in range(100)], "n": list(range(100))})
    cols = [Column(name="k", kind="id", dtype="String"), Column(name="n", kind="id", dtype="Int64")]
    state = fit_fillers(df, cols)
    out = generate_filled(state, 1_000_000, rng=np.random.default_rng(0), offset=0)
    assert out["k"].n_unique() == 1_000_000 and out["n"].n_unique() == 1_000_000


def test_pii_output_never_contains_real_values(people, people_schema):
    gen = sk.create("tabular/copula", seed=0).fit(people, schema=people_schema)
    out = gen.sample(2_000, seed=11)
    for name in ("email", "full_name", "notes"):
        real = set(people.get_column(name).drop_nulls().to_list())
        fake = set(out.get_column(name).drop_nulls().to_list())
        assert not real & fake, f"{name}: real values leaked"
    assert out["email"].drop_nulls().str.contains("@").all()


def test_pii_null_share_reproduced(people, people_schema):
    gen = sk.create("tabular/copula", seed=0).fit(people, schema=people_schema)
    out = gen.sample(4_000, seed=5)
    assert out["email"].null_count() / out.height == pytest.approx(0.2, abs=0.03)
    assert out["full_name"].null_count() == 0


def test_pii_seeded_and_pooled():
    col = Column(name="e", kind=ColumnKind.PII, dtype="String", pii=PIIKind.EMAIL)
    state = fit_fillers(pl.DataFrame({"e": ["a@b.org"] * 20}), [col])
    a = generate_filled(state, 300, rng=np.random.default_rng(1), offset=0)["e"]
    b = generate_filled(state, 300, rng=np.random.default_rng(1), offset=0)["e"]
    c = generate_filled(state, 300, rng=np.random.default_rng(2), offset=0)["e"]
    assert a.equals(b) and not a.equals(c)
    big = generate_filled(state, PII_POOL * 3, rng=np.random.default_rng(1), offset=0)["e"]
    assert big.len() == PII_POOL * 3 and big.n_unique() <= PII_POOL


@pytest.mark.parametrize("kind", [k for k in PIIKind])
def test_every_pii_kind_generates(kind):
    dtype = "Date" if kind == PIIKind.DATE_OF_BIRTH else "String"
    values = pl.Series("v", ["1990-01-01"] * 20).str.to_date() if dtype == "Date" else pl.Series("v", ["x-1"] * 20)
    state = fit_fillers(pl.DataFrame({"v": values}), [Column(name="v", kind="pii", dtype=dtype, pii=kind)])
    out = generate_filled(state, 50, rng=np.random.default_rng(0), offset=0)["v"]
    assert out.len() == 50 and out.null_count() == 0
    if dtype == "Date":
        assert out.dtype == pl.Date


def test_text_length_and_nulls(people, people_schema):
    real = people["notes"].str.len_chars().mean()
    gen = sk.create("tabular/copula", seed=0).fit(people, schema=people_schema)
    out = gen.sample(1_000, seed=2)["notes"]
    assert out.dtype == pl.String
    assert out.str.len_chars().mean() == pytest.approx(real, rel=0.2)
    assert re.match(r"^[A-Z]", out[0])
