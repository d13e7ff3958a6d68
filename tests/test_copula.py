"""The Gaussian copula: conformance, marginals, dependence, nulls, kinds, errors, speed."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular.copula import GaussianCopulaConfig, GaussianCopulaGenerator
from synthkit.testing import check_generator


@pytest.fixture(scope="module")
def wage_model(wage):
    return sk.create("tabular/copula", seed=0).fit(wage)


@pytest.fixture(scope="module")
def wage_sample(wage_model):
    return wage_model.sample(6_000, seed=1)


def test_conformance_wage(wage_small, tmp_path):
    passed = check_generator("tabular/copula", wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "tampered_weights_raise" in passed


def test_conformance_credit_with_nulls(credit, tmp_path):
    check_generator(GaussianCopulaGenerator(seed=3, max_knots=50), credit, tmp_path=tmp_path)


def test_create_by_name_and_config():
    gen = sk.create("tabular/copula", seed=1, max_knots=200)
    assert isinstance(gen, GaussianCopulaGenerator)
    assert isinstance(gen.config, GaussianCopulaConfig) and gen.config.max_knots == 200
    with pytest.raises(ConfigError, match="max_knots"):
        sk.create("tabular/copula", max_knots=1)
    with pytest.raises(ConfigError, match="Options of GaussianCopulaGenerator"):
        sk.create("tabular/copula", knots=5)


def test_dtypes_bounds_and_decimals(wage, wage_model, wage_sample):
    assert wage_sample.schema == wage.schema
    for col in wage_model.schema_:
        if col.kind == sk.ColumnKind.NUMERICAL:
            s = wage_sample[col.name]
            assert s.min() >= col.min and s.max() <= col.max, col.name
    assert set(wage_sample["year"].unique()) <= set(wage["year"].unique())


def test_numerical_marginals_close(wage, wage_sample):
    from scipy.stats import ks_2samp

    for name in ("age", "wage", "logwage", "year"):
        stat = ks_2samp(wage[name].to_numpy(), wage_sample[name].to_numpy()).statistic
        assert stat < 0.05, f"{name}: KS {stat:.3f}"


def test_categorical_frequencies_close(wage, wage_sample):
    for name in ("maritl", "race", "education", "jobclass", "health", "health_ins"):
        real = wage[name].value_counts(normalize=True, name="p")
        fake = wage_sample[name].value_counts(normalize=True, name="q")
        both = real.join(fake, on=name, how="full", coalesce=True).fill_null(0.0)
        tv = 0.5 * float((both["p"] - both["q"]).abs().sum())
        assert tv < 0.04, f"{name}: total variation {tv:.3f}"


def test_correlations_preserved(wage, wage_sample):
    pairs = [("age", "wage"), ("logwage", "wage"), ("age", "logwage"), ("year", "wage")]
    for a, b in pairs:
        real = wage.select(pl.corr(a, b, method="spearman")).item()
        fake = wage_sample.select(pl.corr(a, b, method="spearman")).item()
        assert fake == pytest.approx(real, abs=0.06), (a, b)


def test_categorical_numerical_dependence(wage, wage_sample):
    """Mean wage per education level keeps its ordering and rough size."""
    real = wage.group_by("education").agg(pl.col("wage").mean()).sort("education")
    fake = wage_sample.group_by("education").agg(pl.col("wage").mean()).sort("education")
    assert real["education"].to_list() == fake["education"].to_list()
    assert np.corrcoef(real["wage"], fake["wage"])[0, 1] > 0.9
    np.testing.assert_allclose(fake["wage"], real["wage"], rtol=0.15)


def test_null_shares_preserved(credit):
    gen = sk.create("tabular/copula", seed=0).fit(credit)
    out = gen.sample(10_000, seed=4)
    for name in credit.columns:
        real = credit[name].null_count() / credit.height
        fake = out[name].null_count() / out.height
        assert fake == pytest.approx(real, abs=0.015), name
    # missingness keeps its link to the rest: freelancers leave their income out far more often
    def missing_income(frame: pl.DataFrame, job: str) -> float:
        return frame.filter(pl.col("Job") == job)["Income"].is_null().mean()

    assert missing_income(credit, "freelance") > 5 * missing_income(credit, "fixed")
    assert missing_income(out, "freelance") > 2 * missing_income(out, "fixed")


def test_zero_inflation_and_its_links(churn):
    schema = sk.infer_schema(churn).with_overrides({"voice_mail_plan": {"kind": "categorical"}})
    gen = sk.create("tabular/copula", seed=0).fit(churn, schema=schema)
    out = gen.sample(5_000, seed=0)
    real_zero = (churn["number_vmail_messages"] == 0).mean()
    assert (out["number_vmail_messages"] == 0).mean() == pytest.approx(real_zero, abs=0.02)
    agree = ((out["voice_mail_plan"] == "yes") == (out["number_vmail_messages"] > 0)).mean()
    assert agree > 0.9  # in the real data "yes" <=> messages > 0


def test_constant_columns_reproduced(wage_small):
    df = wage_small.with_columns(
        pl.lit(42).alias("answer"), pl.lit("same").alias("label"), pl.lit(2.5).alias("half")
    )
    out = sk.create("tabular/copula", seed=0).fit(df).sample(500, seed=0)
    assert out["answer"].unique().to_list() == [42]
    assert out["label"].unique().to_list() == ["same"]
    assert out["half"].unique().to_list() == [2.5]
    assert out["region"].n_unique() == 1  # region is constant in Wage too


def test_datetime_boolean_and_integer_category_kinds(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    base = dt.datetime(2020, 1, 1)
    hours = rng.integers(0, 10_000, n)
    df = pl.DataFrame(
        {
            "ts": [base + dt.timedelta(hours=int(h)) for h in hours],
            "day": [dt.date(2021, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365, n)],
            "when": [(base + dt.timedelta(days=int(h) // 24)).strftime("%Y-%m-%d") for h in hours],
            "flag": rng.random(n) > 0.3,
            "level": rng.integers(0, 3, n),
            "zoned": pl.Series([base + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 99_999, n)])
            .dt.replace_time_zone("Europe/Paris"),
        }
    )
    schema = sk.infer_schema(df).with_overrides({"level": {"kind": "categorical"}})
    assert schema["when"].datetime_format == "%Y-%m-%d"
    gen = sk.create("tabular/copula", seed=0).fit(df, schema=schema)
    out = gen.sample(1_000, seed=0)
    assert out.schema == df.schema
    assert (out["ts"].dt.minute() == 0).all()  # whole hours, like the data
    assert out["when"].str.strptime(pl.Date, "%Y-%m-%d").null_count() == 0
    assert out["ts"].min() >= df["ts"].min() and out["ts"].max() <= df["ts"].max()
    assert set(out["level"].unique()) <= {0, 1, 2}
    # the date string follows the timestamp it was made from
    days = (out["ts"].dt.date() - out["when"].str.to_date()).dt.total_days().abs()
    assert days.median() <= 7
    check_generator(gen, df, schema=schema, tmp_path=tmp_path)


def test_state_is_arrays_and_json(wage_model, tmp_path):
    path = wage_model.save(tmp_path / "m")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["conditions.json", "copula.json", "fillers.json", "manifest.json", "weights.safetensors"]
    json.loads((path / "copula.json").read_text())
    from safetensors.numpy import load_file

    arrays = load_file(path / "weights.safetensors")
    assert all(a.dtype.kind in "fiu" for a in arrays.values())
    corr = arrays["corr"]
    assert np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0)
    assert np.linalg.eigvalsh(corr).min() > 0
    assert max(a.size for k, a in arrays.items() if k.endswith(".knots")) <= 1_000


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pl.DataFrame({"a": [None] * 20, "b": list(range(20))}, schema={"a": pl.Float64, "b": pl.Int64}), "no values"),
        (pl.DataFrame({"a": [1.0, float("inf")] * 10, "b": list(range(20))}), "Infinite"),
        (pd.DataFrame({"a": [1, "x"] * 10, "b": range(20)}), "mixes value types"),
        (pl.DataFrame({"a": [1.0], "b": [2]}), "row"),
    ],
    ids=["all-null", "inf", "mixed-types", "single-row"],
)
def test_bad_data_raises_data_error(frame, match):
    with pytest.raises(DataError, match=match):
        sk.create("tabular/copula").fit(frame)


@pytest.mark.slow
def test_quality_at_least_sdv_gaussian_copula(wage):
    """SDMetrics QualityReport: ours >= SDV's GaussianCopulaSynthesizer on ISLR Wage."""
    from sdmetrics.reports.single_table import QualityReport

    schema = sk.infer_schema(wage)
    metadata = schema.to_sdv_dict()["tables"]["table"]

    def score(name: str) -> float:
        gen = sk.create(name, seed=0).fit(wage, schema=schema)
        report = QualityReport()
        report.generate(wage.to_pandas(), gen.sample(wage.height, seed=0).to_pandas(), metadata, verbose=False)
        return float(report.get_score())

    ours, theirs = score("tabular/copula"), score("sdv/GaussianCopulaSynthesizer")
    assert ours >= theirs, (ours, theirs)
