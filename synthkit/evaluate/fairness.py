"""Fairness: do protected groups keep their share, and their outcome rates, in the synthetic data?

For each protected attribute (a column such as sex or race) this measures the total variation
distance between its real and synthetic distributions, and, when a target column and its
positive value are declared, the largest absolute difference of the target's positive rate per
group, real vs synthetic. Numbers with many values are cut into bins at the real quantiles.
Per-group shares and rates are returned as evidence, so a policy finding can show which group
drifted. All work is done with polars group-bys, never per row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from synthkit.errors import ConfigError, SchemaError
from synthkit.evaluate.report import Metric

#: A numeric attribute with more distinct real values than this is binned.
MAX_GROUPS = 20
#: Quantile bins of a binned numeric attribute.
BINS = 10
#: Groups with fewer real rows than this are reported but left out of the largest rate gap.
MIN_GROUP_SIZE = 50
_MISSING = "<missing>"
_GROUP = "__synthkit_group"
_POSITIVE = "__synthkit_positive"


@dataclass(frozen=True)
class FairnessSpec:
    """What to measure: protected attributes and, optionally, a target column and positive value."""

    protected: tuple[str, ...]
    target: str | None = None
    positive: Any = None
    min_group_size: int = MIN_GROUP_SIZE

    @classmethod
    def of(cls, spec: Any) -> FairnessSpec:
        """From a FairnessSpec, a mapping, or any object with ``protected``/``target``/``positive``."""
        if isinstance(spec, FairnessSpec):
            return spec
        get = spec.get if isinstance(spec, Mapping) else lambda k, d=None: getattr(spec, k, d)
        protected = get("protected", ()) or ()
        if isinstance(protected, str):
            protected = [protected]
        out = cls(
            protected=tuple(str(p) for p in protected),
            target=get("target", None),
            positive=get("positive", None),
            min_group_size=int(get("min_group_size", MIN_GROUP_SIZE) or 0),
        )
        if (out.target is None) != (out.positive is None):
            raise ConfigError(
                "Fairness needs target and positive together.",
                hint="Declare both, e.g. fairness={'protected': ['race'], 'target': 'health_ins', "
                "'positive': '1. Yes'}, or neither.",
            )
        return out


def metric_name(kind: str, attribute: str) -> str:
    """``fairness.<kind>.<attribute>`` with the attribute made a valid dotted-name part."""
    return f"fairness.{kind}.{re.sub(r'[^A-Za-z0-9_]', '_', attribute) or '_'}"


def fairness_section(
    real: pl.DataFrame, synthetic: pl.DataFrame, spec: Any
) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Metrics ``fairness.distribution_shift.<attr>`` (and ``fairness.rate_gap.<attr>``) plus evidence.

    The evidence (JSON-able) holds, per attribute, every group's real and synthetic share and,
    with a target, positive rate: the report keeps it under ``settings["fairness"]``.
    """
    fs = FairnessSpec.of(spec)
    needed = [*fs.protected, *([fs.target] if fs.target else [])]
    for what, df in (("real data", real), ("synthetic data", synthetic)):
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise SchemaError(
                f"Fairness: the {what} lacks the declared column(s) {missing}.",
                hint=f"Declare protected attributes and the target among the columns: {df.columns}.",
            )
    if fs.target is not None:
        _check_positive(real.get_column(fs.target), fs.positive)
    metrics: dict[str, Metric] = {}
    attributes: dict[str, Any] = {}
    for attr in fs.protected:
        r, s = _grouped(real, synthetic, attr, fs)
        groups, tvd = _shares(r, s)
        shift = metric_name("distribution_shift", attr)
        metrics[shift] = Metric(
            name=shift, section="quality", value=round(tvd, 6),
            meaning=f"How far the share of each '{attr}' group moved from the real data, as "
            "total variation distance (0 = every group keeps its share, 1 = disjoint).",
            higher_is_better=False, threshold=0.1,
            note="Largest moves: " + _top(groups, "share_diff"),
        )
        entry: dict[str, Any] = {"distribution_shift": shift, "groups": groups}
        if fs.target is not None:
            gap, counted = _rates(r, s, groups, fs.min_group_size)
            name = metric_name("rate_gap", attr)
            metrics[name] = Metric(
                name=name, section="quality", value=None if gap is None else round(gap, 6),
                meaning=f"Largest difference, over '{attr}' groups, between the real and the "
                f"synthetic rate of {fs.target} = {fs.positive!r} (0 = every group keeps its rate).",
                higher_is_better=False, threshold=0.05,
                note=(f"{counted} group(s) with at least {fs.min_group_size} real rows compared; "
                      "largest gaps: " + _top(groups, "rate_gap")) if gap is not None
                else f"No group has at least {fs.min_group_size} real rows in both tables.",
            )
            entry["rate_gap"] = name
        attributes[attr] = entry
    details = {
        "protected": list(fs.protected), "target": fs.target, "positive": fs.positive,
        "min_group_size": fs.min_group_size, "attributes": attributes,
    }
    # keys sorted at every level: the report reads back from (sorted) JSON exactly as built
    return metrics, json.loads(json.dumps(details, sort_keys=True, default=str))


# --- internals ------------------------------------------------------------------------------
def _group_expr(real: pl.Series) -> pl.Expr:
    """The group label of each row: the value as text, or a quantile bin for many-valued numbers."""
    col = pl.col(real.name)
    if real.dtype.is_numeric() and real.n_unique() > MAX_GROUPS:
        qs = [real.quantile(i / BINS, interpolation="linear") for i in range(1, BINS)]
        breaks = sorted({float(q) for q in qs if q is not None})
        edges = [float("-inf"), *breaks, float("inf")]
        names = [f"({lo:g}, {hi:g}]" for lo, hi in zip(edges, edges[1:], strict=False)]
        index = pl.sum_horizontal([(col.cast(pl.Float64) > b).cast(pl.Int64) for b in breaks])
        label = (pl.when(col.is_null()).then(None).otherwise(index)
                 .replace_strict(list(range(len(names))), names, return_dtype=pl.String))
    elif real.dtype == pl.Boolean:
        label = col.cast(pl.String).str.to_lowercase()
    else:
        label = col.cast(pl.String)
    return label.fill_null(_MISSING).alias(_GROUP)


def _positive_expr(target: pl.Series, positive: Any) -> pl.Expr:
    col = pl.col(target.name)
    if target.dtype == pl.Boolean:
        flag = positive if isinstance(positive, bool) else str(positive).strip().lower() in {"true", "1", "yes"}
        hit = col == flag
    elif target.dtype.is_numeric() and isinstance(positive, (int, float)) and not isinstance(positive, bool):
        hit = col.cast(pl.Float64) == float(positive)
    else:
        hit = col.cast(pl.String) == str(positive)
    return hit.fill_null(False).cast(pl.Float64).alias(_POSITIVE)


def _check_positive(target: pl.Series, positive: Any) -> None:
    hits = target.to_frame().select(_positive_expr(target, positive)).get_column(_POSITIVE).sum()
    if not hits:
        values = target.drop_nulls().unique().sort().head(10).to_list()
        raise ConfigError(
            f"Fairness: the positive value {positive!r} never occurs in the real '{target.name}' column.",
            hint=f"Declare one of its values as positive, e.g. {values}.",
        )


def _grouped(real: pl.DataFrame, synthetic: pl.DataFrame, attr: str, fs: FairnessSpec
             ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per group: rows, share and (with a target) positive rate, for real and synthetic."""
    group = _group_expr(real.get_column(attr))
    aggs = [pl.len().alias("rows")]
    exprs = [group]
    if fs.target is not None:
        exprs.append(_positive_expr(real.get_column(fs.target), fs.positive))
        aggs.append(pl.col(_POSITIVE).mean().alias("rate"))

    def per_group(df: pl.DataFrame) -> pl.DataFrame:
        out = df.select(exprs).group_by(_GROUP).agg(aggs)
        return out.with_columns((pl.col("rows") / max(df.height, 1)).alias("share"))

    return per_group(real), per_group(synthetic)


def _shares(r: pl.DataFrame, s: pl.DataFrame) -> tuple[list[dict[str, Any]], float]:
    cols = [c for c in ("rows", "share", "rate") if c in r.columns]
    joined = (
        r.select(_GROUP, *[pl.col(c).alias(f"real_{c}") for c in cols])
        .join(s.select(_GROUP, *[pl.col(c).alias(f"synthetic_{c}") for c in cols]),
              on=_GROUP, how="full", coalesce=True)
        .with_columns(pl.col("real_rows", "synthetic_rows").fill_null(0),
                      pl.col("real_share", "synthetic_share").fill_null(0.0))
        .with_columns((pl.col("synthetic_share") - pl.col("real_share")).abs().alias("share_diff"))
        .sort("real_rows", descending=True)
    )
    tvd = 0.5 * float(joined.get_column("share_diff").sum())
    groups = [
        {"group": row[_GROUP], **{k: _round(v) for k, v in row.items() if k != _GROUP}}
        for row in joined.to_dicts()
    ]
    return groups, tvd


def _rates(r: pl.DataFrame, s: pl.DataFrame, groups: list[dict[str, Any]], min_rows: int
           ) -> tuple[float | None, int]:
    """Fill each group's ``rate_gap``; the largest over groups with ``min_rows`` real rows in both."""
    largest: float | None = None
    counted = 0
    for g in groups:
        rr, sr = g.get("real_rate"), g.get("synthetic_rate")
        g["rate_gap"] = None if rr is None or sr is None else _round(abs(sr - rr))
        if g["rate_gap"] is not None and g["real_rows"] >= min_rows and g["synthetic_rows"] > 0:
            counted += 1
            largest = g["rate_gap"] if largest is None else max(largest, g["rate_gap"])
    return largest, counted


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def _top(groups: Sequence[Mapping[str, Any]], key: str, n: int = 3) -> str:
    ranked = sorted((g for g in groups if g.get(key) is not None), key=lambda g: -g[key])[:n]
    if key == "share_diff":
        return "; ".join(f"{g['group']} {g['real_share']:.3f} → {g['synthetic_share']:.3f}"
                         for g in ranked) or "none"
    return "; ".join(f"{g['group']} {g['real_rate']:.3f} → {g['synthetic_rate']:.3f}"
                     for g in ranked) or "none"
