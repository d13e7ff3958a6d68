"""ML utility (TSTR vs TRTR) and detectability (C2ST) in the report, on real tables."""

from __future__ import annotations

import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError
from synthkit.evaluate.utility import detectability_auc


@pytest.fixture(scope="module")
def credit_parts(credit: pl.DataFrame):
    frame = credit.drop("rownames") if "rownames" in credit.columns else credit
    schema = sk.infer_schema(frame)
    train, holdout = sk.split_holdout(frame, fraction=0.25, seed=0)
    synthetic = sk.create("tabular/copula", seed=0).fit(train, schema=schema).sample(train.height, seed=1)
    return schema, train, holdout, synthetic


def test_tstr_classification_on_credit(credit_parts):
    schema, train, holdout, synthetic = credit_parts
    report = sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False, target="Status")
    trtr, tstr = report.value("utility.trtr_auc"), report.value("utility.tstr_auc")
    assert 0.75 < trtr < 0.95  # credit scoring is learnable, not trivial
    assert 0.65 < tstr <= trtr + 0.05
    assert report.value("utility.tstr_ratio") == pytest.approx(tstr / trtr)
    assert 0.0 < report.value("utility.tstr_f1") <= 1.0
    evidence = report.settings["utility"]["tstr"]
    assert evidence["task"] == "classification" and evidence["classes"] == ["bad", "good"]
    assert "utility.tstr_ratio" in report.to_json()
    assert "ML utility" in report.to_html()


def test_tstr_regression_on_wage(wage):
    frame = wage.drop("logwage")  # logwage would give wage away
    schema = sk.infer_schema(frame)
    train, holdout = sk.split_holdout(frame, fraction=0.25, seed=0)
    synthetic = sk.create("tabular/copula", seed=0).fit(train, schema=schema).sample(train.height, seed=1)
    report = sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False, target="wage")
    assert 0.1 < report.value("utility.trtr_r2") < 0.6  # wage from age, education, ...: partly
    assert report.value("utility.tstr_r2") > 0.0
    assert 0.3 < report.value("utility.tstr_ratio") <= 1.2
    assert report.value("utility.tstr_rmse") > 0


def test_detectability_real_vs_real_is_chance_and_junk_is_caught(wage):
    schema = sk.infer_schema(wage)
    first, second = wage.head(1500), wage.tail(1500)
    fair = sk.evaluate(first, second, schema, sdmetrics=False)
    assert fair.value("utility.detectability_auc") < 0.6
    junk = second.select([pl.col(c).shuffle(seed=i) for i, c in enumerate(second.columns)])
    caught = sk.evaluate(first, junk, schema, sdmetrics=False)
    assert caught.value("utility.detectability_auc") > 0.85


def test_utility_needs_a_holdout_and_a_known_target(credit_parts):
    schema, train, holdout, synthetic = credit_parts
    report = sk.evaluate(train, synthetic, schema, sdmetrics=False, target="Status")
    assert report.value("utility.tstr_ratio") is None
    assert any("utility.tstr" in note for note in report.notes)
    with pytest.raises(ConfigError, match="not a learned column"):
        sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False, target="nope")
    off = sk.evaluate(train, synthetic, schema, sdmetrics=False, detectability=False)
    assert off.value("utility.detectability_auc") is None
    with pytest.raises(ConfigError, match="20"):
        learned = [c for c in schema if c.name != "rownames"]
        detectability_auc(train.head(5), synthetic.head(5), learned)


def test_a_policy_rule_can_use_utility(credit_parts):
    from synthkit.policies import Policy, gate

    schema, train, holdout, synthetic = credit_parts
    report = sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False, target="Status")
    policy = Policy(name="utility-floor", version="1", purpose={"required": False}, rules=[
        {"id": "useful", "metric": "utility.tstr_ratio", "op": ">=", "threshold": 0.99},
        {"id": "undetectable", "metric": "utility.detectability_auc", "op": "<=", "threshold": 0.99},
    ])
    decision = gate(policy, report, None)
    failed = {f.rule for f in decision.failed}
    assert "useful" in failed and "undetectable" not in failed
