"""Augmentation: grow scarce classes with conditional synthetic rows, and measure if it helped.

:func:`augment` holds out a stratified share of the real rows as a test set, fits a generator
on the rest, samples extra rows for the scarce classes of ``target`` through conditional
sampling (every added row has the asked class), and trains the same gradient-boosting model
twice, on the real training rows alone and on them plus the synthetic rows, scoring both on
the held-out real rows. The effect is reported as it is, also when augmenting does not help.

The returned table is every real row plus the synthetic ones, with an indicator column
(``is_synthetic`` by default) so that no synthetic row passes for a real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError
from synthkit.frames import check_table, normalise_missing, to_polars
from synthkit.schema import ColumnKind, Schema, infer_schema

Strategy = str | Mapping[str, float] | Mapping[Any, int]


@dataclass
class AugmentResult:
    """The augmented table, the rows added per class, and the measured effect."""

    data: pl.DataFrame
    added: dict[str, int]
    counts_before: dict[str, int]
    effect: dict[str, Any] = field(default_factory=dict)
    generator: Any = None

    @property
    def synthetic(self) -> pl.DataFrame:
        """Only the added rows."""
        indicator = self.effect.get("indicator", "is_synthetic")
        return self.data.filter(pl.col(indicator)).drop(indicator)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "counts_before": self.counts_before, "effect": self.effect}

    def summary(self) -> str:
        """One paragraph: what was added and whether it helped, in plain words."""
        e = self.effect
        if not e.get("measured"):
            return f"Added {sum(self.added.values()):,} synthetic rows: {self.added}."
        deltas = ", ".join(f"{k} {v['real']:.3f} -> {v['augmented']:.3f} ({v['delta']:+.3f})"
                           for k, v in e["scores"].items())
        verdict = "helped" if e["helped"] else "did not help"
        return (f"Added {sum(self.added.values()):,} synthetic rows ({self.added}); on "
                f"{e['test_rows']:,} held-out real rows augmenting {verdict}: {deltas}.")


def rows_to_add(counts: Mapping[str, int], strategy: Strategy) -> dict[str, int]:
    """Synthetic rows per class for ``strategy`` ('balance', {'minority': f}, {class: n})."""
    if not counts:
        raise DataError("The target has no values to augment.")
    largest = max(counts.values())
    if strategy == "balance":
        return {c: largest - n for c, n in counts.items() if n < largest}
    if isinstance(strategy, Mapping) and set(strategy) == {"minority"}:
        factor = float(strategy["minority"])
        if factor <= 1.0:
            raise ConfigError(f"minority factor must be above 1, got {factor}.",
                              hint="{'minority': 2.0} doubles the smallest class.")
        smallest = min(counts, key=lambda c: counts[c])
        return {smallest: int(round((factor - 1.0) * counts[smallest]))}
    if isinstance(strategy, Mapping):
        unknown = [str(c) for c in strategy if str(c) not in counts]
        if unknown:
            raise ConfigError(f"strategy names classes the target lacks: {unknown}.",
                              hint=f"Classes: {sorted(counts)}.")
        out = {str(c): int(n) for c, n in strategy.items()}
        if any(n < 0 for n in out.values()):
            raise ConfigError("Rows to add per class must be 0 or more.")
        return {c: n for c, n in out.items() if n > 0}
    raise ConfigError(f"Unknown augmentation strategy {strategy!r}.",
                      hint="Use 'balance', {'minority': 2.0} or {class: rows to add}.")


def augment(
    data: Any,
    target: str,
    strategy: Strategy = "balance",
    generator: Any = "tabular/ctgan",
    *,
    schema: Schema | None = None,
    test_size: float = 0.25,
    indicator: str = "is_synthetic",
    seed: int = 0,
    generator_options: Mapping[str, Any] | None = None,
    measure: bool = True,
) -> AugmentResult:
    """Add synthetic rows of scarce ``target`` classes; measure the effect on held-out real rows.

    ``generator`` is a registry name (fitted here on the training share, with
    ``generator_options``) or a fitted synthkit generator (then ``measure`` needs it to have
    been fitted without the test rows, which only the caller knows: pass ``measure=False``
    otherwise).
    """
    df = normalise_missing(to_polars(data))
    check_table(df, min_rows=10, what="table to augment")
    if target not in df.columns:
        raise ConfigError(f"The target {target!r} is not a column.", hint=f"Columns: {df.columns}.")
    schema = schema or infer_schema(df)
    kind = schema[target].kind
    if kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        raise ConfigError(f"The target {target!r} is {kind.value}; augmentation grows classes of a "
                          "categorical or boolean column.",
                          hint="Mark it categorical in the schema if its values are classes.")
    if df.get_column(target).null_count() == df.height:
        raise DataError(f"The target {target!r} is missing in every row.")
    fitted_outside = not isinstance(generator, str)
    if measure and not 0.0 < test_size < 0.9:
        raise ConfigError(f"test_size must be in (0, 0.9), got {test_size}.")
    train, test = _stratified_split(df, target, test_size, seed) if measure else (df, None)
    counts = _class_counts(train, target)
    add = rows_to_add(counts, strategy)
    gen = generator
    if not fitted_outside:
        from synthkit.generators.registry import create

        gen = create(generator, seed=seed, **dict(generator_options or {}))
        gen.fit(train, schema=schema)
    values = {str(v): v for v in df.get_column(target).drop_nulls().unique().to_list()}
    parts = [gen.sample(n, conditions={target: values[c]}, seed=seed + 1 + i)
             for i, (c, n) in enumerate(sorted(add.items()))]
    synthetic = pl.concat(parts, how="vertical_relaxed") if parts else df.clear()
    synthetic = synthetic.select([pl.col(c).cast(df.schema[c], strict=False) for c in df.columns])
    augmented = pl.concat([df.with_columns(pl.lit(False).alias(indicator)),
                           synthetic.with_columns(pl.lit(True).alias(indicator))])
    effect: dict[str, Any] = {"indicator": indicator, "measured": False}
    if measure and test is not None and synthetic.height:
        effect |= measure_effect(train, synthetic, test, target, schema, seed=seed)
        if fitted_outside:
            effect["note"] = "the generator was fitted outside augment(): its fit must not have seen the test rows"
    return AugmentResult(augmented, add, _class_counts(df, target), effect, gen)


def measure_effect(train: pl.DataFrame, synthetic: pl.DataFrame, test: pl.DataFrame, target: str,
                   schema: Schema, *, seed: int = 0) -> dict[str, Any]:
    """The same model trained on real rows and on real plus synthetic, scored on ``test``."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    from synthkit.evaluate.quality import LEARNED_KINDS, canonical_frame
    from synthkit.evaluate.utility import _Coder, _model

    learned = [c for c in schema if c.kind in LEARNED_KINDS and c.name in train.columns]
    features = [c for c in learned if c.name != target]
    frames = [canonical_frame(f, learned) for f in (train, synthetic, test)]
    coder = _Coder(frames, features)
    y = [f.get_column(target).cast(pl.String).to_numpy() for f in frames]
    x = [coder.matrix(f) for f in frames]
    classes = np.unique(np.concatenate([v[v != None] for v in y]))  # noqa: E711
    minority = min(classes, key=lambda c: int((y[0] == c).sum()))
    scores: dict[str, dict[str, float]] = {}
    with threadpool_limits(limits=1):
        fitted = {
            "real": _model(coder, classify=True, seed=seed).fit(x[0], y[0]),
            "augmented": _model(coder, classify=True, seed=seed).fit(
                np.vstack([x[0], x[1]]), np.concatenate([y[0], y[1]])),
        }
        for name, model in fitted.items():
            predicted = model.predict(x[2])
            proba = model.predict_proba(x[2])
            if len(model.classes_) == 2:
                auc = roc_auc_score(y[2] == model.classes_[1], proba[:, 1])
            else:
                auc = roc_auc_score(y[2], proba, multi_class="ovr", labels=model.classes_)
            for metric, value in (
                ("roc_auc", auc),
                ("f1_macro", f1_score(y[2], predicted, average="macro", zero_division=0)),
                ("balanced_accuracy", balanced_accuracy_score(y[2], predicted)),
                (f"recall[{minority}]", recall_score(y[2], predicted, labels=[minority],
                                                     average="macro", zero_division=0)),
            ):
                scores.setdefault(metric, {})[name] = float(value)
    for v in scores.values():
        v["delta"] = v["augmented"] - v["real"]
    helped = scores["balanced_accuracy"]["delta"] > 0 and scores["roc_auc"]["delta"] >= -0.005
    return {"measured": True, "test_rows": len(y[2]), "train_rows": len(y[0]),
            "synthetic_rows": len(y[1]), "minority": str(minority), "scores": scores,
            "helped": bool(helped), "model": "HistGradientBoostingClassifier"}


def _class_counts(df: pl.DataFrame, target: str) -> dict[str, int]:
    counts = df.get_column(target).drop_nulls().cast(pl.String).value_counts()
    return {str(k): int(v) for k, v in zip(counts[target], counts["count"], strict=True)}


def _stratified_split(df: pl.DataFrame, target: str, test_size: float,
                      seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A seeded split that keeps each class's share in both parts (nulls go to training)."""
    rng = np.random.default_rng(seed)
    keys = df.get_column(target).cast(pl.String).fill_null("\x00null").to_numpy()
    test = np.zeros(df.height, dtype=bool)
    for value in np.unique(keys):
        rows = np.flatnonzero(keys == value)
        if value == "\x00null" or len(rows) < 2:
            continue
        k = max(1, int(round(test_size * len(rows))))
        test[rng.choice(rows, size=min(k, len(rows) - 1), replace=False)] = True
    return df.filter(pl.Series(~test)), df.filter(pl.Series(test))
