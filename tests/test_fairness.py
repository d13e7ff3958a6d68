"""Fairness metrics (distribution shift, positive-rate gaps per group) and the gate's fairness rule."""

from __future__ import annotations

import polars as pl
import pytest
from fakes import FakeReport

import synthkit as sk
from synthkit.errors import ConfigError, PolicyError, SchemaError
from synthkit.evaluate.fairness import fairness_section, metric_name
from synthkit.policies import FairnessRule, Policy, gate

REAL = pl.DataFrame({
    "group": ["a"] * 100 + ["b"] * 100,
    "outcome": ["yes"] * 50 + ["no"] * 50 + ["yes"] * 20 + ["no"] * 80,
    "age": list(range(200)),
})
SYNTH = pl.DataFrame({
    "group": ["a"] * 140 + ["b"] * 60,
    "outcome": ["yes"] * 70 + ["no"] * 70 + ["yes"] * 36 + ["no"] * 24,
    "age": list(range(0, 400, 2)),
})


def test_distribution_shift_is_total_variation_distance() -> None:
    metrics, details = fairness_section(REAL, SYNTH, {"protected": ["group"]})
    assert metrics["fairness.distribution_shift.group"].value == pytest.approx(0.2)
    groups = {g["group"]: g for g in details["attributes"]["group"]["groups"]}
    assert groups["a"]["real_share"] == 0.5 and groups["a"]["synthetic_share"] == 0.7
    assert "fairness.rate_gap.group" not in metrics  # no target declared
    same, _ = fairness_section(REAL, REAL, {"protected": ["group"]})
    assert same["fairness.distribution_shift.group"].value == 0.0


def test_rate_gap_is_the_largest_per_group_difference() -> None:
    spec = {"protected": ["group"], "target": "outcome", "positive": "yes", "min_group_size": 10}
    metrics, details = fairness_section(REAL, SYNTH, spec)
    # a: 0.5 -> 0.5; b: 0.2 -> 0.6
    assert metrics["fairness.rate_gap.group"].value == pytest.approx(0.4)
    groups = {g["group"]: g for g in details["attributes"]["group"]["groups"]}
    assert groups["a"]["rate_gap"] == 0.0 and groups["b"]["rate_gap"] == pytest.approx(0.4)
    assert groups["b"]["real_rate"] == pytest.approx(0.2) and groups["b"]["synthetic_rate"] == pytest.approx(0.6)
    small, _ = fairness_section(REAL, SYNTH, {**spec, "min_group_size": 150})
    assert small["fairness.rate_gap.group"].value is None  # every group too small to judge


def test_numbers_are_binned_booleans_and_missing_values_are_groups() -> None:
    metrics, details = fairness_section(REAL, SYNTH, {"protected": ["age"]})
    groups = details["attributes"]["age"]["groups"]
    assert len(groups) <= 11 and metrics["fairness.distribution_shift.age"].value > 0.4
    real = pl.DataFrame({"flag": [True, False, None, True], "y": [1, 0, 1, 1]})
    synth = pl.DataFrame({"flag": [True, True, False, False], "y": [1, 1, 0, 0]})
    metrics, details = fairness_section(real, synth, {"protected": ["flag"], "target": "y", "positive": 1,
                                                      "min_group_size": 1})
    names = {g["group"] for g in details["attributes"]["flag"]["groups"]}
    assert names == {"true", "false", "<missing>"}
    assert metrics["fairness.distribution_shift.flag"].value == pytest.approx(0.25)


def test_bad_declarations_say_what_to_do() -> None:
    with pytest.raises(SchemaError, match="lacks the declared column"):
        fairness_section(REAL, SYNTH, {"protected": ["sex"]})
    with pytest.raises(ConfigError, match="never occurs"):
        fairness_section(REAL, SYNTH, {"protected": ["group"], "target": "outcome", "positive": "maybe"})
    with pytest.raises(ConfigError, match="together"):
        fairness_section(REAL, SYNTH, {"protected": ["group"], "target": "outcome"})
    with pytest.raises(ValueError, match="together"):
        FairnessRule(protected=["group"], target="outcome")
    with pytest.raises(PolicyError, match="fairness"):
        from synthkit.policies.model import _validate

        _validate({"name": "x", "version": "1", "fairness": {"protected": ["g"], "max_rate_gap": 2}},
                  source="test")
    assert metric_name("rate_gap", "marital status") == "fairness.rate_gap.marital_status"


def test_evaluate_adds_fairness_metrics_for_wage(wage: pl.DataFrame) -> None:
    train, holdout = sk.split_holdout(wage, fraction=0.2, seed=0)
    gen = sk.create("tabular/copula", seed=0).fit(train)
    synthetic = gen.sample(train.height, seed=0)
    rule = FairnessRule(protected=["race", "jobclass"], target="health_ins", positive="1. Yes",
                        max_distribution_shift=0.05, max_rate_gap=0.1)
    report = sk.evaluate(train, synthetic, gen.schema_, sdmetrics=False, fairness=rule)
    for attr in ("race", "jobclass"):
        assert report.value(f"fairness.distribution_shift.{attr}") < 0.05
        assert report.value(f"fairness.rate_gap.{attr}") is not None
    assert report.settings["fairness"]["target"] == "health_ins"
    assert sk.Report.from_json(report.to_json()).settings["fairness"] == report.settings["fairness"]

    policy = Policy(name="fair", version="1", purpose={"required": False}, fairness=rule)
    decision = gate(policy, report, None)
    rules = {f.rule: f for f in decision.findings}
    assert set(rules) >= {"fairness:race:distribution_shift", "fairness:race:rate_gap",
                          "fairness:jobclass:distribution_shift", "fairness:jobclass:rate_gap"}
    gap = rules["fairness:race:rate_gap"]
    assert gap.kind == "fairness" and gap.evidence["target"] == "health_ins"
    assert {g["group"] for g in gap.evidence["groups"]} == {"1. White", "2. Black", "3. Asian", "4. Other"}

    # flip the target for one group in the synthetic data: its rate drifts, the rule blocks
    drifted = synthetic.with_columns(
        pl.when(pl.col("jobclass") == "2. Information").then(pl.lit("2. No"))
        .otherwise(pl.col("health_ins")).alias("health_ins"))
    report = sk.evaluate(train, drifted, gen.schema_, sdmetrics=False, fairness=rule)
    failed = {f.rule: f for f in gate(policy, report, None).failed}
    assert "fairness:jobclass:rate_gap" in failed
    info = {g["group"]: g for g in failed["fairness:jobclass:rate_gap"].evidence["groups"]}
    assert info["2. Information"]["synthetic_rate"] == 0.0 and info["2. Information"]["rate_gap"] > 0.5


def test_the_gate_fails_closed_without_fairness_metrics() -> None:
    rule = FairnessRule(protected=["race"], target="y", positive=1)
    policy = Policy(name="fair", version="1", purpose={"required": False}, fairness=rule)
    decision = gate(policy, FakeReport({}), None)
    assert [f.rule for f in decision.failed] == ["fairness:race:distribution_shift", "fairness:race:rate_gap"]
    assert "fairness=policy.fairness" in decision.failed[0].hint
    nothing = gate(Policy(name="f", version="1", purpose={"required": False}, fairness=FairnessRule()),
                   FakeReport({}), None)
    assert nothing.passed and "nothing to check" in nothing.findings[-1].message


def test_attributes_declared_at_evaluation_are_judged_too() -> None:
    report = FakeReport({"fairness.distribution_shift.group": 0.2})
    report.settings = {"fairness": {"protected": ["group"], "target": None, "positive": None,  # type: ignore[attr-defined]
                                    "attributes": {"group": {"groups": [{"group": "a", "real_share": 0.5,
                                                                         "synthetic_share": 0.7}]}}}}
    policy = Policy(name="f", version="1", purpose={"required": False}, fairness=FairnessRule())
    failed = gate(policy, report, None).failed
    assert [f.rule for f in failed] == ["fairness:group:distribution_shift"]
    assert failed[0].evidence["groups"][0]["synthetic_share"] == 0.7
    mismatch = Policy(name="f", version="1", purpose={"required": False},
                      fairness=FairnessRule(target="other", positive="x"))
    assert any("not other" in f.message for f in gate(mismatch, report, None).failed)
