"""tabular/dpcopula: private marginals and correlation, honest epsilon, good quality."""

from __future__ import annotations

import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError
from synthkit.evaluate import evaluate
from synthkit.generators.tabular.dpcopula import PrivateCopulaGenerator
from synthkit.prepare.split import split_holdout


@pytest.fixture(scope="module")
def fitted(wage):
    train, holdout = split_holdout(wage, fraction=0.2, seed=0)
    gen = PrivateCopulaGenerator(dp={"epsilon": 3.0}, seed=0).fit(train)
    return train, holdout, gen


def test_budget_is_spent_exactly_and_reported(fitted):
    _, _, gen = fitted
    privacy = gen.fit_report_["privacy"]
    assert privacy["epsilon"] == pytest.approx(3.0, rel=1e-6)
    assert privacy["epsilon"] == pytest.approx(
        privacy["encoding"]["epsilon"] + privacy["correlation"]["epsilon"]
    )
    assert privacy["delta"] <= 1e-5 + 1e-15


def test_quality_holds_up_and_membership_stays_hidden(fitted):
    train, holdout, gen = fitted
    synth = gen.sample(train.height, seed=1)
    report = evaluate(train, synth, gen.schema_, holdout, sdmetrics=False)
    assert report.value("quality.overall") > 0.8
    assert report.value("privacy.mia_auc") < 0.6
    # the correlation it learned is real: age and wage move together as in the data
    real = train.select(pl.corr("age", "wage")).item()
    assert abs(synth.select(pl.corr("age", "wage")).item() - real) < 0.15


def test_rare_categories_are_never_released(fitted):
    train, _, gen = fitted
    rare = train["race"].value_counts().filter(pl.col("count") < 40)["race"].to_list()
    assert rare
    assert not set(rare) & set(gen.sample(5000, seed=2)["race"].drop_nulls().to_list())


def test_nulls_keep_their_share(credit):
    gen = PrivateCopulaGenerator(dp={"epsilon": 5.0}, seed=0).fit(credit)
    synth = gen.sample(credit.height, seed=0)
    for col in ("Income", "Home"):
        assert synth[col].null_count() / synth.height == pytest.approx(
            credit[col].null_count() / credit.height, abs=0.03
        )


def test_saves_loads_and_reproduces(fitted, tmp_path):
    _, _, gen = fitted
    loaded = sk.load(gen.save(tmp_path / "m"))
    assert loaded.sample(300, seed=4).equals(gen.sample(300, seed=4))


def test_needs_a_budget():
    with pytest.raises(ConfigError, match="dp"):
        sk.create("tabular/dpcopula")
