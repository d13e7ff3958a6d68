"""Quality of a synthetic database: per-table reports, cardinality and referential integrity.

``evaluate_relational(real, synthetic)`` compares two :class:`~synthkit.relational.MultiTable`s
with the same tables and keys, however the synthetic one was made:

* ``quality``: each table's ``quality.overall`` from :func:`synthkit.evaluate` (key columns left
  out: synthetic keys are new values by design);
* ``cardinality``: per foreign key, 1 − the Kolmogorov–Smirnov statistic between the real and
  synthetic children-per-parent-row distributions (parents without children count as 0);
* ``integrity``: per foreign key, the share of synthetic non-null child keys found among the
  synthetic parent's keys (1.0 is referential integrity);
* ``key_uniqueness``: per table with a primary key, whether it is unique and non-null;
* ``sequences`` (for the tables named in ``sequences=``, e.g. a RelationalSynthesizer's
  ``sequences_``): per table, a :class:`SequenceReport` with sequence-length and inter-event-time
  similarity and the share of parents whose child rows' times increase.

``evaluate_sequences(real, synthetic, entity=..., order=...)`` compares two event tables
(per-entity sequences, e.g. from :class:`~synthkit.SequentialSynthesizer`): sequence-length and
inter-event-time similarity (1 − KS), the share of entities whose times increase, and the
event table's quality and privacy metrics from :func:`synthkit.evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, SchemaError
from synthkit.evaluate.report import Report
from synthkit.relational import ForeignKey, MultiTable

__all__ = [
    "RelationalReport", "SequenceReport", "cardinality_similarity", "evaluate_relational",
    "evaluate_sequences",
]


@dataclass
class RelationalReport:
    """What :func:`evaluate_relational` found; ``to_dict()`` for JSON."""

    tables: dict[str, Report] = field(default_factory=dict)
    quality: dict[str, float | None] = field(default_factory=dict)
    cardinality: dict[str, float] = field(default_factory=dict)
    integrity: dict[str, float] = field(default_factory=dict)
    key_uniqueness: dict[str, bool] = field(default_factory=dict)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    sequences: dict[str, SequenceReport] = field(default_factory=dict)

    @property
    def overall_quality(self) -> float | None:
        values = [v for v in self.quality.values() if v is not None]
        return float(np.mean(values)) if values else None

    @property
    def referential_integrity(self) -> float:
        """The lowest integrity share over all foreign keys (1.0 when there are none)."""
        return min(self.integrity.values(), default=1.0)

    def to_dict(self, *, reports: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "quality": dict(self.quality),
            "overall_quality": self.overall_quality,
            "cardinality": dict(self.cardinality),
            "integrity": dict(self.integrity),
            "referential_integrity": self.referential_integrity,
            "key_uniqueness": dict(self.key_uniqueness),
            "rows": {k: dict(v) for k, v in self.rows.items()},
        }
        if self.sequences:
            out["sequences"] = {
                n: {k: v for k, v in r.to_dict().items() if k not in ("quality", "privacy")}
                for n, r in self.sequences.items()
            }
        if reports:
            out["tables"] = {n: r.to_dict() for n, r in self.tables.items()}
        return out


def evaluate_relational(
    real: MultiTable, synthetic: MultiTable, *, seed: int = 0, sdmetrics: bool = False,
    detectability: bool = False, sequences: Mapping[str, Any] | None = None, **kwargs: Any,
) -> RelationalReport:
    """Compare ``synthetic`` with ``real`` table by table and across foreign keys.

    ``sequences`` (``{table: order column}`` or ``{table: {"entity": fk column, "order": ...}}``)
    adds per-parent sequence metrics for those child tables. Extra keyword arguments go to
    :func:`synthkit.evaluate` for every table.
    """
    from synthkit.evaluate import evaluate

    missing = sorted(set(real.names) - set(synthetic.names))
    if missing:
        raise SchemaError(f"The synthetic data lacks tables {missing}.", hint=f"Real tables: {real.names}")
    specs = _sequence_specs(real, sequences or {})
    out = RelationalReport()
    for name in real.names:
        keys = set(real.primary_keys.get(name, [])) | {c for fk in real.parents(name) for c in fk.child_columns}
        schema = real.schemas[name]
        cols = [c for c in schema.names if c not in keys]
        out.rows[name] = {"real": real[name].height, "synthetic": synthetic[name].height}
        if cols and real[name].height and synthetic[name].height:
            report = evaluate(
                real[name].select(cols), synthetic[name].select(cols), schema.select(cols),
                seed=seed, sdmetrics=sdmetrics, detectability=detectability, **kwargs,
            )
            out.tables[name] = report
            out.quality[name] = report.value("quality.overall")
        pk = real.primary_keys.get(name) or []
        if pk:
            keyframe = synthetic[name].select(pk)
            out.key_uniqueness[name] = bool(
                keyframe.null_count().sum_horizontal()[0] == 0
                and keyframe.unique().height == keyframe.height
            )
    for fk in real.foreign_keys:
        out.cardinality[str(fk)] = cardinality_similarity(
            _children_per_parent(real, fk), _children_per_parent(synthetic, fk)
        )
        out.integrity[str(fk)] = _integrity(synthetic, fk)
    for name, (entity, order) in specs.items():
        out.sequences[name] = _sequence_report(
            real[name], synthetic[name], entity, order, out.tables.get(name)
        )
    return out


def _sequence_specs(real: MultiTable, sequences: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{table: (entity column, order column)}``; the entity defaults to the only foreign key."""
    out: dict[str, tuple[str, str]] = {}
    for name, spec in sequences.items():
        if name not in real.names:
            raise SchemaError(f"sequences names a table '{name}' that is not in the data.",
                              hint=f"Tables: {real.names}")
        spec = {"order": spec} if isinstance(spec, str) else dict(spec)
        fk_columns = [fk.child_columns[0] for fk in real.parents(name)]
        entity = spec.get("entity")
        if not fk_columns:
            raise SchemaError(f"'{name}' has no foreign key to a parent table, so no sequences per "
                              "parent.", hint="Use evaluate_sequences on the table alone.")
        if entity is None:
            if len(fk_columns) != 1:
                raise ConfigError(
                    f"'{name}' has several foreign keys {fk_columns}: "
                    "say which one names its sequences' parent.",
                    hint=f"sequences={{'{name}': {{'entity': ..., 'order': '{spec.get('order')}'}}}}",
                )
            entity = fk_columns[0]
        order = spec.get("order")
        missing = [c for c in (entity, order) if c not in real[name].columns]
        if missing:
            raise SchemaError(f"The sequential table '{name}' lacks columns {missing}.",
                              hint=f"Columns: {real[name].columns}")
        out[name] = (entity, order)
    return out


def cardinality_similarity(real_counts: np.ndarray, synthetic_counts: np.ndarray) -> float:
    """1 − the two-sample Kolmogorov–Smirnov statistic between two count samples."""
    a = np.sort(np.asarray(real_counts, dtype=float))
    b = np.sort(np.asarray(synthetic_counts, dtype=float))
    if a.size == 0 or b.size == 0:
        return float(a.size == b.size)
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(1.0 - np.max(np.abs(cdf_a - cdf_b)))


def _children_per_parent(data: MultiTable, fk: ForeignKey) -> np.ndarray:
    parent = data[fk.parent].select(
        [pl.col(p).alias(c) for p, c in zip(fk.parent_columns, fk.child_columns, strict=True)]
    )
    counted = data[fk.child].select(fk.child_columns).drop_nulls().group_by(list(fk.child_columns)).len("n")
    joined = parent.join(counted, on=list(fk.child_columns), how="left")
    return joined.get_column("n").fill_null(0).to_numpy()


def _integrity(data: MultiTable, fk: ForeignKey) -> float:
    child = data[fk.child].select(fk.child_columns).drop_nulls()
    if child.height == 0:
        return 1.0
    orphans = data.orphans()[str(fk)]
    return float(1.0 - orphans / child.height)


# --- sequences (per-entity event tables) ---------------------------------------------------------
@dataclass
class SequenceReport:
    """What :func:`evaluate_sequences` found; ``to_dict()`` for JSON."""

    events: Report | None
    #: 1 − KS between real and synthetic events-per-entity.
    length_similarity: float
    #: 1 − KS between real and synthetic gaps between consecutive events of an entity.
    gap_similarity: float
    #: Share of synthetic entities whose order values strictly increase (row order kept).
    increasing_share: float
    #: Share of synthetic entities whose order values never decrease.
    non_decreasing_share: float
    entities: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def quality(self) -> float | None:
        """The event table's ``quality.overall``."""
        return self.events.value("quality.overall") if self.events is not None else None

    @property
    def privacy(self) -> dict[str, float | None]:
        """The event table's privacy metrics by name (``privacy.dcr_share``, ...)."""
        if self.events is None:
            return {}
        return {n: m.value for n, m in self.events.section("privacy").items()}

    def to_dict(self, *, report: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "length_similarity": self.length_similarity,
            "gap_similarity": self.gap_similarity,
            "increasing_share": self.increasing_share,
            "non_decreasing_share": self.non_decreasing_share,
            "quality": self.quality,
            "privacy": self.privacy,
            "entities": dict(self.entities),
            "rows": dict(self.rows),
        }
        if report and self.events is not None:
            out["events"] = self.events.to_dict()
        return out


def evaluate_sequences(
    real: Any, synthetic: Any, *, entity: str, order: str, holdout: Any = None, seed: int = 0,
    sdmetrics: bool = False, detectability: bool = False, **kwargs: Any,
) -> SequenceReport:
    """Compare two event tables entity by entity: lengths, gaps, time order, events' quality
    and privacy. ``holdout`` (events of entities the model never saw) adds DCR share and
    membership inference; extra keyword arguments go to :func:`synthkit.evaluate`."""
    from synthkit.evaluate import evaluate
    from synthkit.frames import to_polars

    frames = {"real": to_polars(real), "synthetic": to_polars(synthetic)}
    for label, frame in frames.items():
        missing = [c for c in (entity, order) if c not in frame.columns]
        if missing:
            raise SchemaError(f"The {label} event table lacks columns {missing}.",
                              hint=f"Columns: {frame.columns}")
    real_df, syn_df = frames["real"], frames["synthetic"]
    events = None
    cols = [c for c in real_df.columns if c != entity and c in syn_df.columns]
    if cols and real_df.height and syn_df.height:
        hold = to_polars(holdout).select(cols) if holdout is not None else None
        events = evaluate(real_df.select(cols), syn_df.select(cols), holdout=hold, seed=seed,
                          sdmetrics=sdmetrics, detectability=detectability, **kwargs)
    return _sequence_report(real_df, syn_df, entity, order, events)


def _sequence_report(
    real_df: pl.DataFrame, syn_df: pl.DataFrame, entity: str, order: str, events: Report | None
) -> SequenceReport:
    """Length, gap and time-order metrics of two event tables, with ``events`` as their report."""
    frames = {"real": real_df, "synthetic": syn_df}
    lengths = {k: f.group_by(entity).len().get_column("len").to_numpy() for k, f in frames.items()}
    gaps = {k: _gaps(f, entity, order) for k, f in frames.items()}
    step = syn_df.select(
        pl.col(entity), _physical(order).diff().over(entity).alias("__d__")
    ).group_by(entity).agg(
        (pl.col("__d__").drop_nulls() > 0).all().alias("inc"),
        (pl.col("__d__").drop_nulls() >= 0).all().alias("nondec"),
    )
    n_syn = step.height
    return SequenceReport(
        events=events,
        length_similarity=cardinality_similarity(lengths["real"], lengths["synthetic"]),
        gap_similarity=cardinality_similarity(gaps["real"], gaps["synthetic"]),
        increasing_share=float(step.get_column("inc").sum() / n_syn) if n_syn else 1.0,
        non_decreasing_share=float(step.get_column("nondec").sum() / n_syn) if n_syn else 1.0,
        entities={k: int(v.size) for k, v in lengths.items()},
        rows={k: f.height for k, f in frames.items()},
    )


def _physical(order: str) -> pl.Expr:
    """Order values as float64 (temporal columns in their physical unit)."""
    return pl.col(order).to_physical().cast(pl.Float64)


def _gaps(frame: pl.DataFrame, entity: str, order: str) -> np.ndarray:
    """Differences between consecutive order values within each entity (sorted by time)."""
    return (
        frame.select(pl.col(entity), _physical(order).alias("__t__"))
        .sort([entity, "__t__"])
        .select(pl.col("__t__").diff().over(entity))
        .get_column("__t__").drop_nulls().to_numpy()
    )
