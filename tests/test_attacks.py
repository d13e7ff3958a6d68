"""Membership inference: both attacks separate copies and overfit models from generalising ones."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import logsumexp

import synthkit as sk
from synthkit.evaluate import Report, evaluate
from synthkit.evaluate.attacks import (
    MIN_DENSITY_HOLDOUT,
    kde_bandwidth,
    kernel_log_density,
    membership_inference,
    roc_auc,
)
from synthkit.evaluate.quality import LEARNED_KINDS, canonical_frame
from synthkit.schema import infer_schema


@pytest.fixture(scope="module")
def thirds(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = wage.sample(fraction=1.0, shuffle=True, seed=5)
    return rows[:1000], rows[1000:2000], rows[2000:]


def _canonical(*frames: pl.DataFrame):
    schema = infer_schema(frames[0])
    learned = [c for c in schema if c.kind in LEARNED_KINDS]
    return [canonical_frame(f, learned) for f in frames], learned


# --- building blocks ----------------------------------------------------------------------------
def test_roc_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    members = rng.integers(0, 5, 300).astype(float)  # many ties
    non_members = rng.integers(0, 4, 200).astype(float)
    labels = np.r_[np.ones(300), np.zeros(200)]
    expected = roc_auc_score(labels, np.r_[members, non_members])
    assert roc_auc(members, non_members) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        roc_auc(np.array([]), np.array([1.0]))


def test_kernel_log_density_matches_direct_formula() -> None:
    rng = np.random.default_rng(1)
    q, r = rng.random((40, 3), dtype=np.float32), rng.random((90, 3), dtype=np.float32)
    h = 0.2
    d2 = ((q[:, None, :].astype(np.float64) - r[None]) ** 2).sum(axis=2)
    expected = logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(r))
    np.testing.assert_allclose(kernel_log_density(q, r, h), expected, atol=1e-4)


def test_bandwidth_falls_back_on_twins() -> None:
    rng = np.random.default_rng(2)
    assert kde_bandwidth(np.zeros((10, 3), dtype=np.float32), rng) == 1.0
    twins = np.repeat(np.array([[0.0], [0.5], [2.0]], dtype=np.float32), [4, 4, 1], axis=0)
    assert kde_bandwidth(twins, rng) == pytest.approx(1.5)  # only the loner's distance is positive
    spread = np.arange(10, dtype=np.float32)[:, None] * 0.1
    assert kde_bandwidth(spread, rng) == pytest.approx(0.1, abs=1e-6)


# --- the attacks on real data -------------------------------------------------------------------
def test_independent_sample_is_a_coin_flip(thirds) -> None:
    (train, holdout, unseen), learned = _canonical(*thirds)
    mia = membership_inference(train, holdout, unseen, learned, seed=0)
    assert mia.distance_auc == pytest.approx(0.5, abs=0.06)
    assert mia.density_auc == pytest.approx(0.5, abs=0.06)
    assert (mia.n_members, mia.n_non_members, mia.n_density, mia.n_reference) == (1000, 1000, 500, 500)


def test_copy_of_train_is_recognised(thirds) -> None:
    (train, holdout, _), learned = _canonical(*thirds)
    mia = membership_inference(train, holdout, train, learned, seed=0)
    assert mia.distance_auc > 0.98
    assert mia.density_auc > 0.65
    assert mia.auc == max(mia.distance_auc, mia.density_auc)


def test_half_copied_sample_sits_between(thirds) -> None:
    (train, holdout, unseen), learned = _canonical(*thirds)
    half = pl.concat([train.sample(500, seed=1), unseen.sample(500, seed=2)])
    mia = membership_inference(train, holdout, half, learned, seed=0)
    assert 0.65 < mia.distance_auc < 0.85  # about half the members have a copy


def test_seeded_and_deterministic(thirds) -> None:
    (train, holdout, unseen), learned = _canonical(*thirds)
    a = membership_inference(train, holdout, unseen, learned, seed=3)
    b = membership_inference(train, holdout, unseen, learned, seed=3)
    assert a == b


def test_tiny_holdout_skips_only_the_density_attack(thirds) -> None:
    train, holdout, unseen = thirds
    small = holdout.head(MIN_DENSITY_HOLDOUT - 1)
    report = evaluate(train, unseen, holdout=small, sdmetrics=False)
    density = report.metrics["privacy.mia_density_auc"]
    assert density.value is None and "at least 4 holdout rows" in density.note
    assert report.value("privacy.mia_auc") == report.value("privacy.mia_distance_auc")


def test_report_metrics_and_no_holdout(thirds) -> None:
    train, holdout, unseen = thirds
    report = evaluate(train, unseen, holdout=holdout, sdmetrics=False)
    for name in ("privacy.mia_auc", "privacy.mia_distance_auc", "privacy.mia_density_auc"):
        metric = report.metrics[name]
        assert not metric.higher_is_better and metric.threshold == 0.6 and metric.meets_threshold()
    assert report.value("privacy.mia_auc") == max(
        report.value("privacy.mia_distance_auc"), report.value("privacy.mia_density_auc")
    )
    copied = evaluate(train, train, holdout=holdout, sdmetrics=False)
    assert copied.value("privacy.mia_auc") > 0.98
    assert copied.metrics["privacy.mia_auc"].meets_threshold() is False
    alone = evaluate(train, unseen, sdmetrics=False)
    assert not any(name.startswith("privacy.mia") for name in alone.metrics)
    assert any("privacy.mia_*" in note for note in alone.notes)


# --- overfit generator vs generalising ones -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_split(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """60 training rows, 1,000 holdout rows, 1,000 other real rows (a perfect generator's output)."""
    rows = wage.sample(fraction=1.0, shuffle=True, seed=21)
    return rows[:60], rows[60:1060], rows[1060:2060]


def _report(train: pl.DataFrame, holdout: pl.DataFrame, synthetic: pl.DataFrame) -> Report:
    return evaluate(train, synthetic, holdout=holdout, sdmetrics=False)


def _overfit_tvae(epochs: int, loss_factor: float):
    """TVAE with far too many passes over 60 rows: it learns the rows, not the population.
    Argmax decoding replays what it memorised (sampled categories blur the copies a little)."""
    return sk.create(
        "tabular/tvae", epochs=epochs, batch_size=60, loss_factor=loss_factor, seed=0,
        progress=False, decoding="argmax",
    )


def test_overfit_tvae_is_caught(tiny_split, wage: pl.DataFrame, one_torch_thread) -> None:
    """The overfit model's AUC stands clearly above a generalising generator's and a perfect one's."""
    train, holdout, unseen = tiny_split
    schema = infer_schema(wage)
    # A heavy reconstruction weight makes TVAE memorise in few epochs (about 3 s on a CPU).
    overfit = _overfit_tvae(1200, 20.0).fit(train, schema=schema)
    overfit_report = _report(train, holdout, overfit.sample(1000, seed=0))
    # The copula generalises when it has enough rows: trained on 600 other rows, same holdout.
    enough = wage.join(pl.concat([train, holdout, unseen]), on=wage.columns, how="anti").head(600)
    copula = sk.create("tabular/copula", seed=0).fit(enough, schema=schema)
    copula_auc = _report(enough, holdout, copula.sample(1000, seed=0)).value("privacy.mia_auc")
    independent_auc = _report(train, holdout, unseen).value("privacy.mia_auc")
    overfit_auc = overfit_report.value("privacy.mia_auc")
    assert copula_auc < 0.6 and independent_auc < 0.6
    assert overfit_auc > 0.7
    assert overfit_auc > copula_auc + 0.15
    assert overfit_auc > independent_auc + 0.2
    assert overfit_report.metrics["privacy.mia_auc"].meets_threshold() is False


@pytest.mark.slow
def test_overfit_tvae_beats_copula_on_the_same_rows(tiny_split, wage: pl.DataFrame, one_torch_thread) -> None:
    """On the same 60 rows, a TVAE trained 3,000 epochs leaks far more than the copula."""
    train, holdout, _ = tiny_split
    schema = infer_schema(wage)
    overfit = _overfit_tvae(3000, 2.0).fit(train, schema=schema)
    overfit_auc = _report(train, holdout, overfit.sample(1000, seed=0)).value("privacy.mia_auc")
    copula = sk.create("tabular/copula", seed=0).fit(train, schema=schema)
    copula_auc = _report(train, holdout, copula.sample(1000, seed=0)).value("privacy.mia_auc")
    assert overfit_auc > 0.9
    assert overfit_auc > copula_auc + 0.15
