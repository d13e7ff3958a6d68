"""Evaluation: score synthetic data against the real data it imitates (quality and privacy).

``evaluate(real, synthetic, schema, holdout=None)`` returns a :class:`Report` whose metrics
have stable dotted names (``quality.overall``, ``privacy.dcr_share``, ...) that policies
refer to. Nothing here knows how the synthetic data was made.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, SchemaError
from synthkit.evaluate import quality
from synthkit.evaluate.privacy_metrics import privacy_section
from synthkit.evaluate.report import Metric, Report
from synthkit.frames import check_table, fingerprint, normalise_missing, to_polars
from synthkit.schema import Column, ColumnKind, Schema, infer_schema

__all__ = ["Metric", "Report", "evaluate"]


def _excluded_reason(col: Column) -> str:
    """Why a column of kind id, pii or text is not compared."""
    if col.kind == ColumnKind.ID:
        return "id column: keys are generated, never learned, so not compared"
    if col.kind == ColumnKind.PII:
        subtype = col.pii.value if col.pii is not None else "other"
        return f"personal data ({subtype}): replaced by fakes, never learned, so not compared"
    return "free text: not comparable with tabular metrics (see the text metrics <name>.<column>)"


def evaluate(
    real: Any,
    synthetic: Any,
    schema: Schema | None = None,
    holdout: Any = None,
    *,
    seed: int = 0,
    sdmetrics: bool = True,
    max_rows: int = 50_000,
    synthetic_of: tuple[str, int] | None = None,
    quasi_identifiers: Sequence[str] | None = None,
    anonymity_k: int = 5,
    anonymeter: bool = False,
    anonymeter_attacks: int = 500,
    pii_reference: Any = None,
    pii_schema: Schema | None = None,
    fairness: Any = None,
    dp_epsilon: float | None = None,
    target: str | None = None,
    detectability: bool = True,
) -> Report:
    """Compare ``synthetic`` with ``real`` (the training data) and return a :class:`Report`.

    ``holdout`` is real data the generator never saw; with it the report adds the DCR share
    (are synthetic rows closer to training rows than to unseen ones?) and membership-inference
    attacks (can training rows be told from unseen ones?). Columns of kind id,
    pii and text are left out and listed in ``report.excluded``; each text column gets the lexical
    text metrics of :mod:`synthkit.evaluate.text` instead, named ``<metric>.<column>``
    (``quality.text_vocabulary_jsd.review``), on at most 500 documents per side. Pairwise and
    privacy parts use at most ``max_rows`` rows per table (a seeded sample); ``sdmetrics=False`` skips the
    SDMetrics cross-check score.

    ``synthetic`` may also be a directory of Parquet partitions or a polars LazyFrame: it is then
    evaluated by streaming (:mod:`synthkit.evaluate.streaming`): exact counts over every row, the
    other metrics on a seeded sample of ``max_rows`` rows, as the report's notes state.

    ``synthetic_of=(fingerprint, n_rows)`` says that ``synthetic`` is a uniform random sample of
    a larger synthetic table (streamed, too large to hold): the report then speaks for, and a
    policy Decision binds to, that whole table.

    ``quasi_identifiers`` (added to the columns the schema marks ``quasi_identifier``) adds
    k-anonymity of the synthetic output over those columns, with ``anonymity_k`` as the k.
    ``anonymeter=True`` (needs a holdout and the ``synthkit[anonymeter]`` extra; slow) adds
    anonymeter's singling-out, linkability and attribute-inference risks, ``anonymeter_attacks``
    attacks each.

    ``privacy.pii_verbatim`` counts the real identifiers (emails, phone and card numbers, ...)
    found verbatim in the synthetic data. They are taken from ``pii_reference`` with
    ``pii_schema`` (the data and schema *before* PII handling; default ``real`` and ``schema``).

    ``fairness`` (a mapping or object with ``protected``, and optionally ``target`` and
    ``positive``, e.g. a policy's ``fairness`` rule) adds ``fairness.distribution_shift.<attr>``
    and ``fairness.rate_gap.<attr>``, with per-group evidence in ``settings["fairness"]``.
    ``dp_epsilon`` (the epsilon a differentially private fit spent) adds ``privacy.dp_epsilon``.

    ``target`` (a learned column; needs ``holdout``) adds ML utility: train-synthetic-test-real
    against train-real-test-real with gradient boosting (``utility.tstr_ratio`` and the AUC/F1
    or R²/RMSE behind it). ``detectability`` (on by default) adds ``utility.detectability_auc``,
    how well a classifier tells real rows from synthetic ones (0.5 ideal).
    """
    if max_rows < 2:
        raise ConfigError(f"max_rows must be at least 2, got {max_rows}.", hint="Use e.g. 50_000.")
    from synthkit.evaluate.streaming import evaluate_streaming, is_streaming_source

    if is_streaming_source(synthetic) and synthetic_of is None:  # larger than memory: stream it
        return evaluate_streaming(
            real, synthetic, schema, holdout, sample_rows=max_rows, seed=seed, sdmetrics=sdmetrics,
            quasi_identifiers=quasi_identifiers, anonymity_k=anonymity_k, anonymeter=anonymeter,
            anonymeter_attacks=anonymeter_attacks, pii_reference=pii_reference,
            pii_schema=pii_schema, fairness=fairness, dp_epsilon=dp_epsilon, target=target,
            detectability=detectability)
    _check_privacy_options(holdout, anonymity_k, anonymeter, anonymeter_attacks)
    real_raw = _as_table(real, "real data")
    synth_raw = _as_table(synthetic, "synthetic data")
    hold_raw = _as_table(holdout, "holdout data") if holdout is not None else None
    if schema is None:
        schema = infer_schema(real_raw)

    learned = [c for c in schema if c.kind in quality.LEARNED_KINDS]
    excluded = {c.name: _excluded_reason(c) for c in schema if c.kind not in quality.LEARNED_KINDS}
    excluded |= {n: "not in the schema" for n in real_raw.columns if n not in schema}
    if not learned:
        raise SchemaError(
            "No column to evaluate: every schema column is of kind id, pii or text.",
            hint="Mark the columns to compare as numerical, categorical, boolean or datetime "
            "(schema.with_overrides({...})).",
        )
    frames = {"real data": real_raw, "synthetic data": synth_raw}
    if hold_raw is not None:
        frames["holdout data"] = hold_raw
    for what, df in frames.items():
        _check_columns(df, learned, what)
    qis, qi_notes = _quasi_identifiers(schema, learned, quasi_identifiers)

    real_c = quality.canonical_frame(normalise_missing(real_raw), learned)
    synth_c = quality.canonical_frame(normalise_missing(synth_raw), learned)
    hold_c = (
        quality.canonical_frame(normalise_missing(hold_raw), learned)
        if hold_raw is not None
        else None
    )
    notes: list[str] = []
    real_s, synth_s = _sample(real_c, max_rows, seed), _sample(synth_c, max_rows, seed + 1)
    hold_s = _sample(hold_c, max_rows, seed + 2) if hold_c is not None else None
    if any(df is not None and df.height > max_rows for df in (real_c, synth_c, hold_c)):
        notes.append(
            f"Column pairs and privacy distances use a seeded sample of at most {max_rows:,} "
            "rows per table; column shapes and exact copies use every row."
        )

    columns = quality.column_shapes(real_c, synth_c, learned)
    pairs, correlations = quality.pair_trends(real_s, synth_s, learned)
    metrics = _quality_metrics(columns, pairs)
    metrics["quality.sdmetrics_score"] = _sdmetrics_metric(
        real_raw, synth_raw, schema, learned, enabled=sdmetrics, max_rows=max_rows, seed=seed
    )
    private = privacy_section(
        real_c,
        synth_c,
        hold_c,
        real_s,
        synth_s,
        hold_s,
        learned,
        seed=seed,
        quasi_identifiers=qis,
        anonymity_k=anonymity_k,
        anonymeter_attacks=anonymeter_attacks if anonymeter else None,
    )
    metrics |= private.metrics
    from synthkit.evaluate.pii_leaks import pii_leak_metrics

    metrics |= pii_leak_metrics(
        _as_table(pii_reference, "PII reference data") if pii_reference is not None else real_raw,
        pii_schema if pii_schema is not None else schema, synth_raw, max_rows=max_rows, seed=seed,
    )
    metrics |= _text_column_metrics(real_raw, synth_raw, hold_raw, schema, seed=seed)
    fairness_details: dict[str, Any] = {}
    if fairness is not None:
        from synthkit.evaluate.fairness import fairness_section

        fair_metrics, fairness_details = fairness_section(
            normalise_missing(real_raw), normalise_missing(synth_raw), fairness
        )
        metrics |= fair_metrics
    from synthkit.evaluate.utility import utility_section

    useful = utility_section(real_s, synth_s, hold_s, learned, target=target,
                             detectability=detectability and min(real_s.height, synth_s.height) >= 20,
                             seed=seed)
    metrics |= useful.metrics
    if target is not None and hold_raw is None:
        notes.append("No holdout given: the ML utility of the target (utility.tstr_*) is absent.")
    if dp_epsilon is not None:
        metrics["privacy.dp_epsilon"] = Metric(
            name="privacy.dp_epsilon", section="privacy", value=float(dp_epsilon),
            meaning="The differential-privacy budget epsilon the generator's fit spent (smaller "
            "is more private); absent when it was not trained with differential privacy.",
            higher_is_better=False, threshold=None,
        )
    notes += qi_notes + private.notes
    if hold_raw is None:
        notes.append(
            "No holdout given: privacy.dcr_share, privacy.dcr_holdout_median and the "
            "membership-inference AUCs (privacy.mia_*) are absent."
        )
    synth_fp, n_synth = fingerprint(synth_raw), synth_raw.height
    if synthetic_of is not None:
        synth_fp, n_synth = synthetic_of
        notes.append(
            f"The synthetic table has {n_synth:,} rows; every metric was measured on a uniform "
            f"random sample of {synth_raw.height:,} of them."
        )

    return Report(
        metrics=metrics,
        columns=columns,
        pairs=pairs,
        excluded=excluded,
        real_fingerprint=fingerprint(real_raw),
        synthetic_fingerprint=synth_fp,
        holdout_fingerprint=fingerprint(hold_raw) if hold_raw is not None else None,
        n_real=real_raw.height,
        n_synthetic=n_synth,
        n_holdout=hold_raw.height if hold_raw is not None else None,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        synthkit_version=_synthkit_version(),
        schema=schema.to_dict(),
        distributions=quality.distributions(real_c, synth_c, learned),
        correlations=correlations,
        dcr_distribution=private.dcr_distribution,
        settings={"seed": seed, "max_rows": max_rows, "sdmetrics": sdmetrics}
        | ({"quasi_identifiers": qis, "anonymity_k": anonymity_k} if qis else {})
        | ({"anonymeter_attacks": anonymeter_attacks} if anonymeter else {})
        | ({"fairness": fairness_details} if fairness_details else {})
        | ({"utility": useful.details} if useful.details else {}),
        notes=notes,
    )


#: Documents per side the text metrics of a table's text column compare (a seeded sample).
TEXT_DOCUMENTS = 500


def _text_column_metrics(real: pl.DataFrame, synthetic: pl.DataFrame, holdout: pl.DataFrame | None,
                         schema: Schema, *, seed: int) -> dict[str, Metric]:
    """The lexical text metrics (synthkit.evaluate.text) of each text column, ``<metric>.<column>``."""
    from synthkit.evaluate.text import text_metrics

    def docs(df: pl.DataFrame | None, name: str) -> pl.Series | None:
        if df is None or name not in df.columns:
            return None
        s = df.get_column(name).drop_nulls().cast(pl.String)
        s = s.filter(s.str.strip_chars().str.len_chars() > 0)
        return s if s.len() else None

    out: dict[str, Metric] = {}
    for col in schema.of_kind(ColumnKind.TEXT):
        real_docs, syn_docs = docs(real, col.name), docs(synthetic, col.name)
        if real_docs is None or syn_docs is None:
            continue
        found = text_metrics(real_docs, syn_docs, holdout=docs(holdout, col.name),
                             max_documents=TEXT_DOCUMENTS, seed=seed, embeddings=False)
        for key, metric in found.items():
            name = f"{key}.{col.name}"
            out[name] = metric.model_copy(update={"name": name, "meaning": f"'{col.name}': {metric.meaning}"})
    return out


def _synthkit_version() -> str:
    # The parent package is always loaded before this one. Importing it by name would give
    # import-linter a path evaluate -> synthkit -> synthkit.generators (its lazy re-exports).
    return str(sys.modules["synthkit"].__version__)


# --- inputs ---------------------------------------------------------------------------------
def _as_table(data: Any, what: str) -> pl.DataFrame:
    df = to_polars(data)
    check_table(df, what=what)
    return df


def _check_columns(df: pl.DataFrame, learned: list[Column], what: str) -> None:
    missing = [c.name for c in learned if c.name not in df.columns]
    if missing:
        raise SchemaError(
            f"The {what} lacks columns the schema names: {missing}.",
            hint="Evaluate frames with the same columns, or pass a schema without those columns "
            "(schema.select([...])).",
        )


def _check_privacy_options(holdout: Any, k: int, anonymeter: bool, attacks: int) -> None:
    if k < 2:
        raise ConfigError(f"anonymity_k must be at least 2, got {k}.", hint="Use e.g. 5 or 10.")
    if attacks < 1:
        raise ConfigError(
            f"anonymeter_attacks must be at least 1, got {attacks}.", hint="Use e.g. 500."
        )
    if anonymeter:
        if holdout is None:
            raise ConfigError(
                "anonymeter's risks need holdout rows: each attack on the training rows is "
                "compared with the same attack on real rows the generator never saw.",
                hint="Pass holdout=... (real rows kept out of training), or anonymeter=False.",
            )
        from synthkit.evaluate.anonymity import require_anonymeter

        require_anonymeter()


def _quasi_identifiers(
    schema: Schema, learned: list[Column], extra: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The quasi-identifiers to measure (schema-marked plus ``extra``) and notes on skipped ones."""
    if isinstance(extra, str):
        extra = [extra]
    unknown = [n for n in extra or () if n not in schema]
    if unknown:
        raise SchemaError(
            f"quasi_identifiers names columns the schema lacks: {unknown}.",
            hint=f"Name columns of the schema: {schema.names}.",
        )
    learned_names = {c.name for c in learned}
    not_learned = [n for n in extra or () if n not in learned_names]
    if not_learned:
        raise SchemaError(
            f"quasi_identifiers names columns that are not compared: {not_learned}.",
            hint="Quasi-identifiers must be numerical, categorical, boolean or datetime columns; "
            "id, pii and text columns are generated fresh, never learned.",
        )
    wanted = set(schema.quasi_identifiers) | set(extra or ())
    skipped = [n for n in schema.quasi_identifiers if n not in learned_names]
    notes = (
        [
            f"Quasi-identifier column(s) {skipped} are not compared (id, pii or text: generated "
            "fresh, never learned) and are left out of k-anonymity."
        ]
        if skipped
        else []
    )
    return [c.name for c in learned if c.name in wanted], notes


def _sample(df: pl.DataFrame | None, n: int, seed: int) -> pl.DataFrame | None:
    if df is None or df.height <= n:
        return df
    return df.sample(n, seed=seed)


# --- metrics --------------------------------------------------------------------------------
#: A pair's real association counts as strong from here on (SDMetrics' defaults).
STRONG_CORRELATION = 0.5
STRONG_CRAMERS_V = 0.3


def _is_strong(pair: dict) -> bool:
    real = pair.get("real")
    if real is None or not np.isfinite(real):
        return False
    if pair["metric"] == "correlation_similarity":
        return abs(real) >= STRONG_CORRELATION
    return real >= STRONG_CRAMERS_V


def _quality_metrics(columns: list[dict], pairs: list[dict]) -> dict[str, Metric]:
    shapes = quality.mean_score(columns)
    trends = quality.mean_score(pairs)
    strong = [p for p in pairs if _is_strong(p)]
    strong_trends = quality.mean_score(strong)
    parts = [v for v in (shapes, trends) if v is not None]
    overall = round(float(np.mean(parts)), 6) if parts else None
    undefined = sum(p.get("score") is None for p in pairs)
    return {
        "quality.overall": Metric(
            name="quality.overall",
            section="quality",
            value=overall,
            meaning="How closely the synthetic data matches the real data overall, from 0 to 1 "
            "(mean of column shapes and column pair trends).",
            higher_is_better=True,
            threshold=0.8,
            note=None if trends is not None else "Only one column: overall equals column shapes.",
        ),
        "quality.column_shapes": Metric(
            name="quality.column_shapes",
            section="quality",
            value=shapes,
            meaning="How closely each column's spread of values matches the real column, "
            "averaged over columns (1 = identical).",
            higher_is_better=True,
            threshold=0.8,
            note="1 - KS statistic on non-missing values for numbers and dates; 1 - total "
            "variation distance for categories and booleans, with missing as its own category.",
        ),
        "quality.column_pair_trends": Metric(
            name="quality.column_pair_trends",
            section="quality",
            value=trends,
            meaning="How well relationships between pairs of columns are kept, averaged over "
            "pairs (1 = identical).",
            higher_is_better=True,
            threshold=0.8,
            note="1 - |r_real - r_synthetic| / 2 (Pearson) for number pairs; 1 - total variation "
            "distance of the joint table otherwise, numbers cut into 10 bins at the real "
            "quantiles."
            + (f" {undefined} pair(s) left out: correlation undefined." if undefined else ""),
        ),
        "quality.strong_pair_trends": Metric(
            name="quality.strong_pair_trends",
            section="quality",
            value=strong_trends,
            meaning="Pair trends over only the pairs that are strongly related in the real data, "
            "where a lost relationship matters most (1 = identical).",
            higher_is_better=True,
            threshold=0.8,
            note=f"{len(strong)} of {len(pairs)} pairs: real |Pearson r| >= {STRONG_CORRELATION} "
            f"or Cramér's V >= {STRONG_CRAMERS_V}. On wide tables most pairs are unrelated and "
            "easy to match, so this is the stricter view."
            if strong
            else "No pair is strongly related in the real data.",
        ),
    }


def _sdmetrics_metric(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    schema: Schema,
    learned: list[Column],
    *,
    enabled: bool,
    max_rows: int,
    seed: int,
) -> Metric:
    names = [c.name for c in learned]
    if enabled:
        table = schema.select(names).to_sdv_dict()["tables"]["table"]
        value, note = quality.sdmetrics_score(
            _sample(normalise_missing(real.select(names)), max_rows, seed),
            _sample(normalise_missing(synthetic.select(names)), max_rows, seed + 1),
            table,
        )
    else:
        value, note = None, "Not computed (sdmetrics=False)."
    return Metric(
        name="quality.sdmetrics_score",
        section="quality",
        value=value,
        meaning="The same kind of overall quality score computed by SDMetrics, the SDV "
        "project's library, as an independent cross-check.",
        higher_is_better=True,
        threshold=0.8,
        note=note,
    )


class _CallablePackage(types.ModuleType):
    """Once this package is imported, Python binds it (not the function) to ``synthkit.evaluate``;
    calling it still runs :func:`evaluate`, so ``sk.evaluate(...)`` works in every import order."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
