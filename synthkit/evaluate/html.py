"""HTML rendering of a Report: one self-contained page that works offline.

Jinja2 with autoescape renders the page; plotly's JavaScript is embedded once, and each figure
travels as HTML-safe JSON drawn by ``Plotly.newPlot``. Every user-supplied string (column
names, category labels) is escaped for HTML and again for plotly's own markup.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from synthkit.evaluate.report import Metric, Report

#: Distribution plots drawn: the lowest-scoring columns first.
MAX_DISTRIBUTION_PLOTS = 30
#: Rows in the table of worst column pairs.
MAX_WORST_PAIRS = 20
_REAL_COLOUR, _SYNTH_COLOUR = "#1f5fa8", "#e4572e"
_TEMPLATE = "plotly_white"
_TEMPLATES_DIR = Path(__file__).parent / "templates"


def render_html(report: Report) -> str:
    """The report as one HTML page with no external scripts, styles or fonts."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined
    from plotly.offline import get_plotlyjs

    env = Environment(
        loader=FileSystemLoader(str(_TEMPLATES_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    figures, distribution_ids = _distribution_figures(report)
    heatmap = _heatmap_figure(report.correlations)
    if heatmap is not None:
        figures["fig-heatmap"] = heatmap
    dcr = _dcr_figure(report.dcr_distribution)
    if dcr is not None:
        figures["fig-dcr"] = dcr
    return env.get_template("report.html.j2").render(
        report=report,
        cards=[_card(m) for m in report.metrics.values()],
        columns=report.columns,
        worst_pairs=_worst_pairs(report.pairs),
        n_pairs=len(report.pairs),
        distribution_ids=distribution_ids,
        has_heatmap=heatmap is not None,
        dcr=report.dcr_distribution if dcr is not None else None,
        figures=figures,
        plotly_template=_template_json(),
        plotly_js=get_plotlyjs(),
    )


# --- cards and tables -----------------------------------------------------------------------
def _card(m: Metric) -> dict[str, Any]:
    ok = m.meets_threshold()
    return {
        "name": m.name,
        "section": m.section,
        "value": m.formatted(),
        "meaning": m.meaning,
        "direction": "higher is better" if m.higher_is_better else "lower is better",
        "threshold": None
        if m.threshold is None
        else ("≥ " if m.higher_is_better else "≤ ") + f"{m.threshold:g}",
        "status": "none" if ok is None else ("good" if ok else "bad"),
        "note": m.note,
    }


def _worst_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scored = [p for p in pairs if p.get("score") is not None]
    return sorted(scored, key=lambda p: p["score"])[:MAX_WORST_PAIRS]


# --- figures --------------------------------------------------------------------------------
def _distribution_figures(report: Report) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    scores = {c["name"]: c.get("score") for c in report.columns}
    names = [n for n in scores if n in report.distributions]  # column order, not JSON order
    worst = sorted(names, key=lambda n: (scores[n] is not None, scores[n] or 0.0))
    chosen = set(worst[:MAX_DISTRIBUTION_PLOTS])
    figures, ids = {}, []
    for i, name in enumerate(n for n in names if n in chosen):
        fig_id = f"fig-dist-{i}"
        figures[fig_id] = _figure_json(_distribution_figure(name, report.distributions[name]))
        ids.append({"id": fig_id, "name": name, "score": scores[name]})
    return figures, ids


def _distribution_figure(name: str, dist: dict[str, Any]) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    if dist["type"] == "histogram":
        edges = dist["edges"]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        if dist.get("datetime"):
            centres = [_iso(us) for us in centres]
            widths = [w / 1000.0 for w in widths]  # plotly date axes measure in milliseconds
        for label, colour in (("real", _REAL_COLOUR), ("synthetic", _SYNTH_COLOUR)):
            fig.add_bar(
                x=centres,
                y=dist[label],
                width=widths,
                name=label,
                marker_color=colour,
                opacity=0.55,
            )
        fig.update_layout(barmode="overlay", bargap=0)
    else:
        cats = [_plotly_text(c) for c in dist["categories"]]
        for label, colour in (("real", _REAL_COLOUR), ("synthetic", _SYNTH_COLOUR)):
            fig.add_bar(x=cats, y=dist[label], name=label, marker_color=colour)
        fig.update_layout(barmode="group")
        fig.update_xaxes(type="category")
    fig.update_layout(
        title={"text": _plotly_text(name), "font": {"size": 14}},
        height=300,
        margin={"l": 50, "r": 10, "t": 40, "b": 60},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        yaxis={"title": {"text": "share of rows"}, "tickformat": ".0%"},
    )
    return fig


def _heatmap_figure(correlations: dict[str, Any] | None) -> dict[str, Any] | None:
    if not correlations or len(correlations.get("columns", [])) < 2:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [_plotly_text(c) for c in correlations["columns"]]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Real", "Synthetic"), horizontal_spacing=0.12
    )
    for col, key in ((1, "real"), (2, "synthetic")):
        fig.add_trace(
            go.Heatmap(
                z=correlations[key],
                x=labels,
                y=labels,
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                reversescale=True,
                showscale=col == 2,
                hovertemplate="%{y} × %{x}: %{z:.2f}<extra>" + key + "</extra>",
            ),
            row=1,
            col=col,
        )
    size = max(420, min(900, 18 * len(labels) + 200))
    fig.update_layout(height=size, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-60)
    return _figure_json(fig)


def _dcr_figure(dist: dict[str, Any] | None) -> dict[str, Any] | None:
    """Histogram of distances to the closest training (and holdout) row, one bar set each."""
    if not dist or "train" not in dist:
        return None
    import plotly.graph_objects as go

    edges = dist["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    width = edges[1] - edges[0]
    fig = go.Figure()
    traces = (("train", "to the closest training row", _REAL_COLOUR),
              ("holdout", "to the closest unseen (holdout) row", _SYNTH_COLOUR))
    for key, label, colour in traces:
        if dist.get(key) is None:
            continue
        fig.add_bar(
            x=centres, y=dist[key], width=width, name=label, marker_color=colour, opacity=0.55,
            hovertemplate="distance %{x:.3f}: %{y:.1%} of synthetic rows<extra></extra>",
        )
    fig.update_layout(
        barmode="overlay",
        bargap=0,
        height=320,
        margin={"l": 50, "r": 10, "t": 30, "b": 50},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        xaxis={"title": {"text": "distance from a synthetic row (last bin: this far or more)"}},
        yaxis={"title": {"text": "share of synthetic rows"}, "tickformat": ".0%"},
    )
    return _figure_json(fig)


def _figure_json(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON data, its (shared) template left out to be added once."""
    data = json.loads(fig.to_json())
    data.get("layout", {}).pop("template", None)
    return {"data": data.get("data", []), "layout": data.get("layout", {})}


@lru_cache(maxsize=1)
def _template_json() -> dict[str, Any]:
    import plotly.graph_objects as go

    return json.loads(go.Figure(layout={"template": _TEMPLATE}).to_json())["layout"]["template"]


def _plotly_text(value: Any) -> str:
    """Text for plotly labels: plotly reads a little HTML in labels, so escape it."""
    return html.escape(str(value), quote=False)


def _iso(epoch_us: float) -> str:
    return datetime.fromtimestamp(epoch_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
