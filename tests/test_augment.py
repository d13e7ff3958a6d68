"""Augmentation of scarce classes on mlc_churn: conditional rows, marked, effect measured."""

from __future__ import annotations

import polars as pl
import pytest

import synthkit as sk
from synthkit.augmentation import rows_to_add
from synthkit.errors import ConfigError


@pytest.fixture(scope="module")
def balanced(churn: pl.DataFrame):
    return sk.augment(churn, target="churn", strategy="balance", generator="tabular/copula", seed=0)


def test_balance_adds_minority_rows_marked_synthetic(churn, balanced):
    before = balanced.counts_before
    assert before == {"no": int((churn["churn"] == "no").sum()), "yes": int((churn["churn"] == "yes").sum())}
    (cls, n), = balanced.added.items()
    assert cls == "yes" and n > 0
    data = balanced.data
    assert data.height == churn.height + n
    synthetic = data.filter(pl.col("is_synthetic"))
    assert synthetic.height == n and (synthetic["churn"] == "yes").all()
    assert data.filter(~pl.col("is_synthetic")).drop("is_synthetic").equals(churn)
    assert balanced.synthetic.columns == churn.columns


def test_effect_is_measured_on_held_out_real_rows(balanced):
    effect = balanced.effect
    assert effect["measured"] and effect["minority"] == "yes"
    assert effect["test_rows"] == pytest.approx(0.25 * 5000, rel=0.01)
    for metric in ("roc_auc", "f1_macro", "balanced_accuracy", "recall[yes]"):
        scores = effect["scores"][metric]
        assert 0.0 <= scores["real"] <= 1.0 and 0.0 <= scores["augmented"] <= 1.0
        assert scores["delta"] == pytest.approx(scores["augmented"] - scores["real"])
    assert isinstance(effect["helped"], bool)
    assert ("did not help" in balanced.summary()) != effect["helped"]


def test_strategies():
    counts = {"a": 100, "b": 30, "c": 10}
    assert rows_to_add(counts, "balance") == {"b": 70, "c": 90}
    assert rows_to_add(counts, {"minority": 2.0}) == {"c": 10}
    assert rows_to_add(counts, {"b": 5}) == {"b": 5}
    with pytest.raises(ConfigError, match="lacks"):
        rows_to_add(counts, {"zzz": 5})
    with pytest.raises(ConfigError, match="above 1"):
        rows_to_add(counts, {"minority": 0.5})
    with pytest.raises(ConfigError, match="Unknown"):
        rows_to_add(counts, "grow")


def test_bad_targets_and_prefitted_generator(churn):
    with pytest.raises(ConfigError, match="not a column"):
        sk.augment(churn, target="nope", generator="tabular/copula")
    with pytest.raises(ConfigError, match="numerical"):
        sk.augment(churn, target="total_day_minutes", generator="tabular/copula")
    gen = sk.create("tabular/copula", seed=0).fit(churn)
    out = sk.augment(churn, target="churn", strategy={"yes": 50}, generator=gen, measure=False)
    assert out.added == {"yes": 50} and not out.effect["measured"]
    assert out.data["is_synthetic"].sum() == 50


def test_augment_cli_reports_and_writes_gated(churn, tmp_path):
    import json

    from click.testing import CliRunner

    from synthkit.cli import main

    churn.write_csv(tmp_path / "churn.csv")
    runner = CliRunner()
    result = runner.invoke(main, ["augment", str(tmp_path / "churn.csv"), "-t", "churn",
                                  "--strategy", "yes=200", "-g", "tabular/copula", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["added"] == {"yes": 200} and payload["effect"]["measured"]
    out = tmp_path / "augmented.parquet"
    refused = runner.invoke(main, ["augment", str(tmp_path / "churn.csv"), "-t", "churn",
                                   "--strategy", "minority=1.5", "-g", "tabular/copula",
                                   "--out", str(out)])
    assert refused.exit_code != 0 and not out.exists()  # no purpose declared: nothing written
    bad = runner.invoke(main, ["augment", str(tmp_path / "churn.csv"), "-t", "churn",
                               "--strategy", "double", "-g", "tabular/copula"])
    assert bad.exit_code != 0 and "strategy" in bad.output
