"""Distance-based privacy metrics: the shared nearest-neighbour search, DCR, NNDR and their report."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synthkit.evaluate import Report, distance, evaluate
from synthkit.evaluate.distance import (
    DistanceEncoder,
    leave_one_out_nearest,
    nearest_neighbours,
    squared_distance_blocks,
)
from synthkit.evaluate.privacy import closest_records, dcr_histogram, nn_distance_ratio
from synthkit.evaluate.quality import LEARNED_KINDS, canonical_frame
from synthkit.schema import infer_schema

NEW_PRIVACY = ("privacy.nndr_median", "privacy.mia_auc", "privacy.mia_distance_auc", "privacy.mia_density_auc")


@pytest.fixture(scope="module")
def thirds(wage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = wage.sample(fraction=1.0, shuffle=True, seed=11)
    return rows[:1000], rows[1000:2000], rows[2000:]


@pytest.fixture(scope="module")
def unseen_report(thirds) -> Report:
    train, holdout, unseen = thirds
    return evaluate(train, unseen, holdout=holdout, sdmetrics=False)


@pytest.fixture(scope="module")
def copied_report(thirds) -> Report:
    train, holdout, _ = thirds
    return evaluate(train, train, holdout=holdout, sdmetrics=False)


# --- nearest neighbours -------------------------------------------------------------------------
def _brute_force(q: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).sum(axis=2))
    return np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_nearest_neighbours_match_brute_force(k: int, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    q = rng.random((300, 7), dtype=np.float32)
    r = rng.random((200, 7), dtype=np.float32)
    monkeypatch.setattr(distance, "BATCH_ELEMENTS", 5_000)  # many small blocks
    d, idx = nearest_neighbours(q, r, k=k)
    assert d.shape == idx.shape == (300, k)
    np.testing.assert_allclose(d, _brute_force(q, r, k), rtol=1e-9, atol=1e-9)
    recomputed = np.sqrt(((q[:, None, :].astype(np.float64) - r[idx]) ** 2).sum(axis=2))
    np.testing.assert_allclose(d, recomputed, atol=1e-12)
    assert (np.diff(d, axis=1) >= 0).all()


def test_exact_copies_measure_zero_and_bad_k() -> None:
    r = np.random.default_rng(1).random((50, 4), dtype=np.float32)
    d, idx = nearest_neighbours(r[[3, 7]], r, k=1)
    assert d[:, 0].tolist() == [0.0, 0.0] and idx[:, 0].tolist() == [3, 7]
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(r, r[:2], k=3)


def test_blocks_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(distance, "BATCH_ELEMENTS", 10_000)
    q = np.zeros((5_000, 3), dtype=np.float32)
    r = np.zeros((700, 3), dtype=np.float32)
    sizes = [block.size for _, block in squared_distance_blocks(q, r)]
    assert max(sizes) <= 10_000 and sum(sizes) == 5_000 * 700


def test_leave_one_out_sees_twins_not_itself() -> None:
    rows = np.array([[0.0], [0.0], [1.0], [3.0]], dtype=np.float32)
    np.testing.assert_allclose(leave_one_out_nearest(rows), [0.0, 0.0, 1.0, 2.0])


def test_nndr_ratio_edge_cases() -> None:
    d = np.array([[0.0, 0.5], [0.2, 0.4], [0.0, 0.0], [0.3, 0.3]])
    np.testing.assert_allclose(nn_distance_ratio(d), [0.0, 0.5, 1.0, 1.0])


# --- DCR and NNDR in evaluate -------------------------------------------------------------------
def test_copy_of_train_fails_every_distance_metric(copied_report: Report, unseen_report: Report) -> None:
    assert copied_report.value("privacy.exact_copy_rate") == 1.0
    assert copied_report.value("privacy.dcr_share") > 0.95
    assert copied_report.value("privacy.dcr_median") == 0.0
    assert copied_report.value("privacy.nndr_median") == 0.0
    assert copied_report.metrics["privacy.nndr_median"].meets_threshold() is False
    assert unseen_report.value("privacy.exact_copy_rate") < 0.01
    assert 0.4 <= unseen_report.value("privacy.dcr_share") <= 0.6
    assert unseen_report.metrics["privacy.nndr_median"].meets_threshold() is True


def test_nndr_of_unseen_rows_matches_holdout_reference(unseen_report: Report) -> None:
    metric = unseen_report.metrics["privacy.nndr_median"]
    reference = float(metric.note.split("give ")[1].rstrip("."))
    assert metric.value == pytest.approx(reference, abs=0.05)
    assert metric.higher_is_better and metric.threshold == 0.5


def test_new_metrics_state_meaning_direction_and_bar(unseen_report: Report) -> None:
    for name in NEW_PRIVACY:
        metric = unseen_report.metrics[name]
        assert metric.section == "privacy" and metric.meaning and metric.note
        assert metric.threshold is not None and metric.value is not None
    assert list(unseen_report.section("privacy"))[:5] == [
        "privacy.exact_copy_rate",
        "privacy.dcr_share",
        "privacy.dcr_median",
        "privacy.dcr_holdout_median",
        "privacy.nndr_median",
    ]


def test_dcr_distribution_in_report(unseen_report: Report, copied_report: Report, thirds) -> None:
    dist = unseen_report.dcr_distribution
    assert dist is not None and len(dist["edges"]) == len(dist["train"]) + 1 == len(dist["holdout"]) + 1
    assert sum(dist["train"]) == pytest.approx(1.0) and sum(dist["holdout"]) == pytest.approx(1.0)
    assert dist["n"] == 1000 and dist["train_zero_share"] < 0.01
    assert dist["train_quantiles"]["p01"] <= dist["train_quantiles"]["p05"] <= dist["train_quantiles"]["p50"]
    copied = copied_report.dcr_distribution
    assert copied["train"][0] == 1.0 and copied["train_zero_share"] == 1.0  # all copies in the first bin
    train, _, unseen = thirds
    alone = evaluate(train, unseen, sdmetrics=False).dcr_distribution
    assert alone["holdout"] is None and alone["holdout_quantiles"] is None
    again = Report.from_json(unseen_report.to_json())
    assert again.dcr_distribution == dist


def test_histogram_puts_far_rows_in_last_bin() -> None:
    d = np.concatenate([np.linspace(0, 1, 999), [50.0]])
    hist = dcr_histogram(d, None)
    assert hist["train"][-1] > 0 and sum(hist["train"]) == pytest.approx(1.0)
    assert hist["edges"][-1] < 50.0


def test_closest_records_uses_one_training_row(wage: pl.DataFrame) -> None:
    schema = infer_schema(wage)
    learned = [c for c in schema if c.kind in LEARNED_KINDS]
    canon = canonical_frame(wage, learned)
    one = closest_records(canon.head(1), canon.slice(1, 50), None, learned, seed=0)
    assert one.nndr_median is None and one.median > 0


def test_mixed_type_distance_handles_nulls(credit: pl.DataFrame) -> None:
    schema = infer_schema(credit)
    learned = [c for c in schema if c.kind in LEARNED_KINDS]
    canon = canonical_frame(credit, learned)
    encoder = DistanceEncoder.fit(canon, [], learned)
    x = encoder.transform(canon)
    assert np.isfinite(x).all()
    report = evaluate(credit[:2000], credit[2000:3000], holdout=credit[3000:], sdmetrics=False)
    assert 0.35 <= report.value("privacy.dcr_share") <= 0.65
    assert report.value("privacy.mia_auc") < 0.6


def test_html_shows_dcr_plot_and_every_bar(unseen_report: Report, thirds) -> None:
    import json
    import re

    page = unseen_report.to_html()
    figures = json.loads(
        re.search(r'<script type="application/json" id="sk-figures">(.*?)</script>', page, re.S).group(1)
    )
    assert [t["name"] for t in figures["fig-dcr"]["data"]] == [
        "to the closest training row",
        "to the closest unseen (holdout) row",
    ]
    assert 'id="fig-dcr"' in page and "Distance to the closest record" in page
    for name in NEW_PRIVACY:
        metric = unseen_report.metrics[name]
        assert name in page and f"{metric.threshold:g}" in page
    train, _, unseen = thirds
    alone = evaluate(train, unseen, sdmetrics=False).to_html()
    one = json.loads(
        re.search(r'<script type="application/json" id="sk-figures">(.*?)</script>', alone, re.S).group(1)
    )
    assert len(one["fig-dcr"]["data"]) == 1


def test_readme_privacy_example_runs(tmp_path) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text[text.index("## Privacy report") :], re.S).group(1)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    for name in ("privacy.mia_auc", "privacy.nndr_median", "privacy.k_anonymity"):
        assert name in result.stdout
