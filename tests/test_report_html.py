"""Report.to_html(): one self-contained, offline, escaped page."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from synthkit.evaluate import Report, evaluate
from synthkit.evaluate.html import MAX_DISTRIBUTION_PLOTS

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@pytest.fixture(scope="module")
def report(wage: pl.DataFrame) -> Report:
    rows = wage.sample(fraction=1.0, shuffle=True, seed=0).rename({"region": EVIL})
    return evaluate(rows[:1000], rows[2000:], holdout=rows[1000:2000], sdmetrics=False)


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return report.to_html()


def _figures(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="sk-figures">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_page_is_self_contained(page: str, plotly_js: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count(plotly_js) == 1  # plotly's JavaScript embedded once, not per figure
    assert "<script src=" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page
    # plotly.js itself holds two CDN URLs as defaults for map/geo traces we never draw;
    # everything else on the page must name no external address at all.
    own = page.replace(plotly_js, "")
    assert "https://cdn" not in own
    assert "http://" not in own and "https://" not in own


def test_page_escapes_column_names(page: str, plotly_js: str) -> None:
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text in the tables
    own = page.replace(plotly_js, "")
    assert own.count("<script") == 4  # figures JSON, template JSON, plotly.js, the loader
    figures = _figures(page)
    titles = [f["layout"]["title"]["text"] for k, f in figures.items() if k.startswith("fig-dist")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in titles  # plotly shows entities as text


def test_page_contents(page: str, report: Report) -> None:
    for name in report.metrics:
        assert name in page
    for meaning in (m.meaning for m in report.metrics.values()):
        assert meaning.split(",")[0].replace("'", "&#39;") in page
    for column in ("age", "wage", "maritl"):
        assert f"<code>{column}</code>" in page
    assert report.real_fingerprint in page and report.holdout_fingerprint in page
    assert report.created_at in page and report.synthkit_version in page
    assert "Column pairs with the weakest trends" in page
    figures = _figures(page)
    assert "fig-heatmap" in figures and 'id="fig-heatmap"' in page
    heatmap = figures["fig-heatmap"]
    assert [t["type"] for t in heatmap["data"]] == ["heatmap", "heatmap"]
    dist = {k: f for k, f in figures.items() if k.startswith("fig-dist")}
    assert len(dist) == len(report.columns)
    for fig_id, fig in dist.items():
        assert f'id="{fig_id}"' in page
        assert [t["name"] for t in fig["data"]] == ["real", "synthetic"]
        assert "template" not in fig["layout"]  # sent once for all figures


def test_wide_tables_cap_distribution_plots(wage: pl.DataFrame) -> None:
    base = wage.sample(fraction=1.0, shuffle=True, seed=3)
    wide = base.with_columns(
        (pl.col("wage") * (i + 1)).alias(f"wage_x{i}") for i in range(MAX_DISTRIBUTION_PLOTS)
    )
    report = evaluate(wide[:1500], wide[1500:], sdmetrics=False)
    page = report.to_html()
    dist = [k for k in _figures(page) if k.startswith("fig-dist")]
    assert len(dist) == MAX_DISTRIBUTION_PLOTS < len(report.columns)
    assert f"The {MAX_DISTRIBUTION_PLOTS} lowest-scoring of {len(report.columns)} columns" in page


def test_to_html_writes_atomically(report: Report, tmp_path) -> None:
    path = tmp_path / "reports" / "report.html"
    page = report.to_html(path)
    assert path.read_text(encoding="utf-8") == page
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left


def test_html_from_json_round_trip(report: Report, page: str) -> None:
    again = Report.from_json(report.to_json()).to_html()
    assert again == page
