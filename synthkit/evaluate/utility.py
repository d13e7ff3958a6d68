"""ML utility and detectability: do models trained on synthetic rows work on real ones?

* **TSTR** (train synthetic, test real) against **TRTR** (train real, test real): a gradient
  boosting model (scikit-learn's HistGradientBoosting, categorical columns native) is fitted on
  the synthetic rows and, separately, on the real training rows, and both are scored on the
  held-out real rows. Classification: ROC AUC (one-vs-rest, macro, for several classes) and
  macro F1; regression: R² and RMSE. ``utility.tstr_ratio`` = TSTR score / TRTR score (AUC or
  R²): 1.0 means the synthetic data trains models as good as the real data.
* **Detectability** (a classifier two-sample test, C2ST): the same kind of model learns to tell
  real rows from synthetic ones on a balanced sample; its ROC AUC on rows it did not see is
  ``utility.detectability_auc``: 0.5 means indistinguishable, 1.0 means every row gives itself
  away.

Inputs are the report's canonical frames (Float64 numbers and datetimes, String categories and
booleans); categories are coded with one dictionary over every frame, so codes agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError
from synthkit.evaluate.report import Metric
from synthkit.schema import Column, ColumnKind

#: Rows per side used to fit the utility and detectability models (seeded samples beyond it).
MAX_FIT_ROWS = 20_000
#: Rows per side of the detectability test: enough for a stable AUC, cheap enough to be on.
DETECTABILITY_ROWS = 5_000
#: A target with at most this many distinct values (or of a categorical kind) is classified.
MAX_CLASSES = 50
_MAX_ITER = 100


@dataclass
class UtilityResult:
    """The utility metrics and the evidence behind them (task, scores, rows used)."""

    metrics: dict[str, Metric]
    details: dict[str, Any]


def utility_section(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame | None,
    columns: Sequence[Column],
    *,
    target: str | None,
    detectability: bool = True,
    seed: int = 0,
) -> UtilityResult:
    """TSTR/TRTR for ``target`` (needs ``holdout``) and the C2ST detectability AUC."""
    from threadpoolctl import threadpool_limits

    # One thread: these models are small, and OpenMP's spinning threads on a busy machine
    # made a 0.1 s fit take 10 s or more.
    with threadpool_limits(limits=1):
        result = _utility_section(real, synthetic, holdout, columns, target=target,
                                  detectability=detectability, seed=seed)
    result.details = _sorted(result.details)  # JSON round trips keep the order
    return result


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    return obj


def _utility_section(real: pl.DataFrame, synthetic: pl.DataFrame, holdout: pl.DataFrame | None,
                     columns: Sequence[Column], *, target: str | None, detectability: bool,
                     seed: int) -> UtilityResult:
    metrics: dict[str, Metric] = {}
    details: dict[str, Any] = {}
    if target is not None:
        col = next((c for c in columns if c.name == target), None)
        if col is None:
            raise ConfigError(
                f"The utility target {target!r} is not a learned column of the schema.",
                hint=f"Pick one of {[c.name for c in columns]}.",
            )
        if holdout is None:
            details["tstr"] = "skipped: no holdout (real rows the generator never saw) to test on"
        else:
            found, evidence = tstr(real, synthetic, holdout, columns, col, seed=seed)
            metrics |= found
            details["tstr"] = evidence
    if detectability:
        auc, evidence = detectability_auc(real, synthetic, columns, seed=seed)
        metrics["utility.detectability_auc"] = Metric(
            name="utility.detectability_auc", section="utility", value=auc,
            meaning="How well a classifier tells real rows from synthetic ones (ROC AUC on unseen "
            "rows): 0.5 means indistinguishable, 1.0 means every synthetic row gives itself away.",
            higher_is_better=False, threshold=0.75,
        )
        details["detectability"] = evidence
    return UtilityResult(metrics, details)


# --- TSTR --------------------------------------------------------------------------------------
def tstr(real: pl.DataFrame, synthetic: pl.DataFrame, test: pl.DataFrame, columns: Sequence[Column],
         target: Column, *, seed: int = 0) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Train on synthetic and on real, test both on ``test``; metrics and evidence."""
    features = [c for c in columns if c.name != target.name]
    if not features:
        raise ConfigError("TSTR needs at least one column besides the target.")
    coder = _Coder([real, synthetic, test], features)
    classify = _is_classification(real.get_column(target.name), target)
    real_xy = _xy(real, coder, target, classify, seed)
    synth_xy = _xy(synthetic, coder, target, classify, seed + 1)
    test_xy = _xy(test, coder, target, classify, seed + 2, cap=None)
    if test_xy is None or real_xy is None:
        raise ConfigError(f"TSTR: the target {target.name!r} is missing in every real row.")
    evidence: dict[str, Any] = {"target": target.name, "task": "classification" if classify else "regression",
                                "rows_real": len(real_xy[1]), "rows_test": len(test_xy[1])}
    if classify:
        classes = np.unique(np.concatenate([real_xy[1], test_xy[1]]))
        evidence["classes"] = [str(c) for c in classes[:20]]
        if len(np.unique(test_xy[1])) < 2:
            evidence["skipped"] = "the test rows hold one class only"
            return {}, evidence
        real_scores = _classify(real_xy, test_xy, coder, classes, seed)
        synth_scores = (_classify(synth_xy, test_xy, coder, classes, seed)
                        if synth_xy is not None else {"auc": 0.5, "f1": 0.0})
        evidence |= {"trtr": real_scores, "tstr": synth_scores}
        ratio = synth_scores["auc"] / real_scores["auc"] if real_scores["auc"] > 0 else None
        return {
            "utility.tstr_ratio": _ratio_metric(ratio, "ROC AUC"),
            "utility.tstr_auc": Metric(
                name="utility.tstr_auc", section="utility", value=synth_scores["auc"],
                meaning=f"ROC AUC on held-out real rows of a model predicting {target.name} that "
                "was trained on the synthetic rows (0.5 is guessing).",
                higher_is_better=True, threshold=None),
            "utility.trtr_auc": Metric(
                name="utility.trtr_auc", section="utility", value=real_scores["auc"],
                meaning="The same, trained on the real training rows: the bar TSTR is held to.",
                higher_is_better=True, threshold=None),
            "utility.tstr_f1": Metric(
                name="utility.tstr_f1", section="utility", value=synth_scores["f1"],
                meaning="Macro F1 on held-out real rows of the model trained on synthetic rows.",
                higher_is_better=True, threshold=None),
        }, evidence
    real_scores = _regress(real_xy, test_xy, coder, seed)
    synth_scores = (_regress(synth_xy, test_xy, coder, seed) if synth_xy is not None
                    else {"r2": 0.0, "rmse": float("nan")})
    evidence |= {"trtr": real_scores, "tstr": synth_scores}
    ratio = max(synth_scores["r2"], 0.0) / real_scores["r2"] if real_scores["r2"] > 0 else None
    return {
        "utility.tstr_ratio": _ratio_metric(ratio, "R²"),
        "utility.tstr_r2": Metric(
            name="utility.tstr_r2", section="utility", value=synth_scores["r2"],
            meaning=f"R² on held-out real rows of a model predicting {target.name} that was "
            "trained on the synthetic rows (0 is predicting the mean).",
            higher_is_better=True, threshold=None),
        "utility.trtr_r2": Metric(
            name="utility.trtr_r2", section="utility", value=real_scores["r2"],
            meaning="The same, trained on the real training rows: the bar TSTR is held to.",
            higher_is_better=True, threshold=None),
        "utility.tstr_rmse": Metric(
            name="utility.tstr_rmse", section="utility", value=synth_scores["rmse"],
            meaning=f"Root mean squared error (in {target.name}'s units) of the model trained "
            "on synthetic rows, on held-out real rows.",
            higher_is_better=False, threshold=None),
    }, evidence


def _ratio_metric(ratio: float | None, score: str) -> Metric:
    return Metric(
        name="utility.tstr_ratio", section="utility",
        value=None if ratio is None else float(ratio),
        meaning=f"{score} of a model trained on synthetic rows over that of one trained on real "
        "rows, both tested on held-out real rows: 1.0 means the synthetic data is as useful.",
        higher_is_better=True, threshold=0.9,
    )


def _is_classification(y: pl.Series, target: Column) -> bool:
    if target.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        return True
    return y.n_unique() <= min(MAX_CLASSES, 10) and target.kind == ColumnKind.NUMERICAL and \
        bool((y.drop_nulls() == y.drop_nulls().round(0)).all())


def _xy(df: pl.DataFrame, coder: _Coder, target: Column, classify: bool, seed: int,
        cap: int | None = MAX_FIT_ROWS) -> tuple[np.ndarray, np.ndarray] | None:
    df = df.filter(pl.col(target.name).is_not_null())
    if df.height == 0:
        return None
    if cap is not None and df.height > cap:
        df = df.sample(cap, seed=seed)
    y = df.get_column(target.name)
    y = y.cast(pl.String).to_numpy() if classify else y.cast(pl.Float64).to_numpy()
    return coder.matrix(df), y


def _classify(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
              coder: _Coder, classes: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    x, y = train
    if len(np.unique(y)) < 2:  # one class: every prediction is that class
        proba = np.tile((classes == y[0]).astype(float), (len(test[1]), 1))
        predicted = np.full(len(test[1]), y[0])
    else:
        model = _model(coder, classify=True, seed=seed).fit(x, y)
        proba = np.zeros((len(test[1]), len(classes)))
        proba[:, np.searchsorted(classes, model.classes_)] = model.predict_proba(test[0])
        predicted = model.predict(test[0])
    y_test = test[1]
    present = np.isin(classes, y_test)
    if len(classes) == 2:
        auc = roc_auc_score(y_test == classes[1], proba[:, 1])
    else:
        sub = proba[:, present]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        auc = roc_auc_score(y_test, sub, multi_class="ovr", average="macro", labels=classes[present])
    f1 = f1_score(y_test, predicted, average="macro", zero_division=0)
    return {"auc": float(auc), "f1": float(f1)}


def _regress(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             coder: _Coder, seed: int) -> dict[str, float]:
    from sklearn.metrics import mean_squared_error, r2_score

    model = _model(coder, classify=False, seed=seed).fit(*train)
    predicted = model.predict(test[0])
    return {"r2": float(r2_score(test[1], predicted)),
            "rmse": float(np.sqrt(mean_squared_error(test[1], predicted)))}


# --- detectability -----------------------------------------------------------------------------
def detectability_auc(real: pl.DataFrame, synthetic: pl.DataFrame, columns: Sequence[Column], *,
                      seed: int = 0, max_rows: int = DETECTABILITY_ROWS) -> tuple[float, dict[str, Any]]:
    """C2ST: ROC AUC of a classifier telling real from synthetic on held-out rows (0.5 ideal)."""
    from sklearn.metrics import roc_auc_score

    n = min(real.height, synthetic.height, max_rows)
    if n < 20:
        raise ConfigError(f"Detectability needs at least 20 real and synthetic rows, got {n}.")
    coder = _Coder([real, synthetic], columns)
    rng = np.random.default_rng(seed)
    x = np.vstack([coder.matrix(real.sample(n, seed=seed)),
                   coder.matrix(synthetic.sample(n, seed=seed + 1))])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    order = rng.permutation(2 * n)
    cut = int(0.7 * len(order))
    fit, test = order[:cut], order[cut:]
    model = _model(coder, classify=True, seed=seed).fit(x[fit], y[fit])
    auc = float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    # an AUC below 0.5 is chance too (a classifier that cannot tell, mis-ranking at random)
    return max(auc, 0.5), {"rows_per_side": n, "test_rows": len(test), "raw_auc": auc}


# --- features ---------------------------------------------------------------------------------
class _Coder:
    """One numeric matrix layout for several frames: categories coded by a shared dictionary."""

    def __init__(self, frames: Sequence[pl.DataFrame], columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self.categorical = [c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) for c in self.columns]
        self.codes: dict[str, pl.Series] = {}
        for c, is_cat in zip(self.columns, self.categorical, strict=True):
            if is_cat:
                values = pl.concat([f.get_column(c.name).cast(pl.String) for f in frames])
                self.codes[c.name] = values.drop_nulls().unique().sort()

    def matrix(self, df: pl.DataFrame) -> np.ndarray:
        parts = []
        for c, is_cat in zip(self.columns, self.categorical, strict=True):
            s = df.get_column(c.name)
            if is_cat:
                vocab = self.codes[c.name]
                codes = s.cast(pl.String).replace_strict(
                    vocab, pl.int_range(len(vocab), eager=True), default=None, return_dtype=pl.Float64)
                parts.append(codes.to_numpy())
            else:
                parts.append(s.cast(pl.Float64).to_numpy())
        return np.column_stack(parts).astype(np.float64) if parts else np.zeros((df.height, 0))

    def categorical_mask(self) -> list[bool]:
        # HistGradientBoosting takes at most 255 categories per native categorical feature
        return [is_cat and len(self.codes[c.name]) <= 255 for c, is_cat in zip(self.columns, self.categorical, strict=True)]


def _model(coder: _Coder, *, classify: bool, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    mask = coder.categorical_mask()
    return cls(max_iter=_MAX_ITER, early_stopping=True, random_state=seed,
               categorical_features=mask if any(mask) else None)
