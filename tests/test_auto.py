"""tabular/auto: family and training length from the table and a time budget, with reasons."""

from __future__ import annotations

import pytest

import synthkit as sk
from synthkit.errors import ConfigError
from synthkit.generators.tabular.auto import AutoGenerator

TVAE_ONLY = {"candidates": ["tabular/tvae"], "options": {"tabular/tvae": {"epochs": 3, "batch_size": 200}}}


def test_small_tables_get_the_copula_and_say_why(wage_small):
    gen = AutoGenerator(seed=0, min_neural_rows=1000).fit(wage_small)
    auto = gen.fit_report_["auto"]
    assert auto["chosen"] == "tabular/copula" and "min_neural_rows" in auto["reasons"][0]
    assert gen.sample(50, seed=0).columns == wage_small.columns


def test_without_a_budget_the_first_candidate_trains_with_its_options(wage_small, tmp_path):
    gen = AutoGenerator(seed=0, min_neural_rows=100, **TVAE_ONLY).fit(wage_small)
    auto = gen.fit_report_["auto"]
    assert auto["chosen"] == "tabular/tvae" and auto["config"]["epochs"] == 3
    assert gen.fit_report_["training"]["epochs_run"] == 3
    out = gen.sample(200, seed=1, conditions={"jobclass": "2. Information"})
    assert (out["jobclass"] == "2. Information").all()
    loaded = sk.load(gen.save(tmp_path / "m"))
    assert isinstance(loaded, AutoGenerator) and loaded.sample(100, seed=2).equals(gen.sample(100, seed=2))


def test_a_budget_is_probed_and_respected(wage_small):
    gen = AutoGenerator(seed=0, min_neural_rows=100, time_budget_s=120, **TVAE_ONLY).fit(wage_small)
    auto = gen.fit_report_["auto"]
    assert auto["chosen"] == "tabular/tvae"
    assert auto["probes"]["tabular/tvae"]["seconds_per_epoch"] > 0
    assert auto["config"]["epochs"] == 3  # the cap given in options, affordable within 120 s


def test_a_budget_too_small_for_any_network_falls_back_to_the_copula(wage_small):
    gen = AutoGenerator(seed=0, min_neural_rows=100, time_budget_s=0.01,
                        candidates=["tabular/tvae"]).fit(wage_small)
    auto = gen.fit_report_["auto"]
    assert auto["chosen"] == "tabular/copula"
    assert any("tabular/tvae" in r for r in auto["reasons"])


def test_dp_keeps_to_private_families_and_never_falls_back(wage_small):
    with pytest.raises(ConfigError, match="private family"):
        AutoGenerator(seed=0, time_budget_s=0.01, candidates=["tabular/tvae"],
                      dp={"epsilon": 8}).fit(wage_small)
    gen = AutoGenerator(seed=0, dp={"epsilon": 8, "preprocessing_share": 0.5}, **TVAE_ONLY).fit(wage_small)
    assert gen.fit_report_["auto"]["chosen"] == "tabular/tvae"
    assert 0 < gen.fit_report_["privacy"]["epsilon"] <= 8


def test_unknown_candidates_are_refused(wage_small):
    with pytest.raises(ConfigError, match="cannot budget"):
        AutoGenerator(candidates=["tabular/nope"]).fit(wage_small)
