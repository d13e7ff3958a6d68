"""Re-identification risks: k-anonymity of quasi-identifiers, and anonymeter's three attacks.

- k-anonymity: rows that share every quasi-identifier value form a class; a class smaller than
  k lets someone who knows those values narrow a person down to fewer than k rows. Measured on
  the synthetic output (what is shared), with the training data's figure as a reference.
- anonymeter (Giomi et al., 2023; the optional extra ``synthkit[anonymeter]``): singling out,
  linkability and attribute inference, each attack run against the training rows and against
  holdout rows the generator never saw; the risk is the attacker's excess success on training
  rows. anonymeter grants no patent rights and its method is patent-pending, so it is imported
  here lazily, only when asked for, and never by any core module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import MissingDependencyError
from synthkit.evaluate.quality import is_continuous
from synthkit.schema import Column

#: Rows of each table handed to anonymeter (a seeded sample beyond this): its searches are
#: brute force, and a few thousand rows give risks to about ±0.02 at 500 attacks.
ANONYMETER_MAX_ROWS = 5_000
#: Columns a multivariate singling-out query combines (anonymeter's default).
SINGLING_OUT_COLUMNS = 3
#: Query-generation attempts allowed per requested singling-out attack (bounds the run time).
SINGLING_OUT_ATTEMPTS_PER_ATTACK = 100
_MISSING = "<missing>"


# --- k-anonymity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class KAnonymity:
    """Equivalence classes of the quasi-identifiers in one table."""

    k: int
    min_class_size: int
    share_below_k: float
    n_classes: int
    n_rows: int


def k_anonymity(frame: pl.DataFrame, quasi_identifiers: Sequence[str], k: int) -> KAnonymity:
    """Smallest class size over ``quasi_identifiers`` and the share of rows in classes below ``k``.

    Rows are grouped on their exact values (a missing value is a value of its own); generalise
    the columns first (ages to bands, postcodes to districts) to measure a coarser release.
    """
    if not quasi_identifiers:
        raise ValueError("k-anonymity needs at least one quasi-identifier")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if frame.height == 0:
        return KAnonymity(k=k, min_class_size=0, share_below_k=0.0, n_classes=0, n_rows=0)
    sizes = frame.group_by(list(quasi_identifiers)).len(name="_size").get_column("_size").to_numpy()
    return KAnonymity(
        k=k,
        min_class_size=int(sizes.min()),
        share_below_k=float(sizes[sizes < k].sum() / frame.height),
        n_classes=len(sizes),
        n_rows=frame.height,
    )


# --- anonymeter -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackRisk:
    """One anonymeter risk with its 95% interval and the success rates behind it."""

    risk: float
    ci: tuple[float, float]
    attack_rate: float
    control_rate: float
    baseline_rate: float | None
    n_attacks: int
    detail: str
    warnings: tuple[str, ...] = field(default=())


def require_anonymeter() -> Any:
    """Import anonymeter's evaluators, or say which extra to install."""
    try:
        from anonymeter import evaluators
    except ImportError as exc:
        raise MissingDependencyError(
            "The singling-out, linkability and attribute-inference risks need the anonymeter "
            "package, which is not installed.",
            hint="pip install 'synthkit[anonymeter]', or evaluate without anonymeter=True.",
        ) from exc
    return evaluators


def anonymeter_risks(
    train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame,
    columns: Sequence[Column],
    *,
    n_attacks: int = 500,
    seed: int = 0,
    quasi_identifiers: Sequence[str] = (),
    max_rows: int = ANONYMETER_MAX_ROWS,
) -> dict[str, AttackRisk]:
    """Singling-out, linkability and attribute-inference risks (canonical frames in).

    Keys: ``singling_out`` (anonymeter's multivariate attack: queries on a few columns),
    ``linkability`` (the columns split in two halves the attacker tries to re-join; with
    quasi-identifiers declared, those against the rest) and ``attribute_inference`` (the
    worst column: an attacker knowing the quasi-identifiers, or every other column, guesses it).
    Seeded: the same inputs and seed give the same risks.
    """
    evaluators = require_anonymeter()
    if n_attacks < 1:
        raise ValueError(f"n_attacks must be at least 1, got {n_attacks}")
    names = [c.name for c in columns]
    ori, syn, control = (
        _for_anonymeter(df, columns, max_rows, seed + i)
        for i, df in enumerate((train, synthetic, holdout))
    )
    attacks = max(1, min(n_attacks, len(ori), len(control)))
    qis = [n for n in names if n in set(quasi_identifiers)]
    out: dict[str, AttackRisk] = {}
    with _seeded_global_numpy(seed), _collected_warnings() as caught:
        out["singling_out"] = _singling_out(evaluators, ori, syn, control, attacks, seed, caught)
        if len(names) >= 2:
            out["linkability"] = _linkability(evaluators, ori, syn, control, attacks, names, qis, caught)
            inference = _inference(evaluators, ori, syn, control, attacks, columns, qis, caught)
            if inference is not None:
                out["attribute_inference"] = inference
    return out


def _for_anonymeter(
    df: pl.DataFrame, columns: Sequence[Column], max_rows: int, seed: int
) -> Any:
    """A pandas frame anonymeter reads: numbers as floats (NaN missing), the rest as strings."""
    if df.height > max_rows:
        df = df.sample(max_rows, seed=seed)
    exprs = [
        pl.col(c.name) if is_continuous(c) else pl.col(c.name).cast(pl.String).fill_null(_MISSING)
        for c in columns
    ]
    return df.select(exprs).to_pandas().reset_index(drop=True)


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """anonymeter draws targets with pandas' global generator: seed it, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@contextlib.contextmanager
def _collected_warnings() -> Iterator[list[str]]:
    """anonymeter's warnings and warning logs, collected for the report instead of printed."""
    messages: list[str] = []
    logger = logging.getLogger("anonymeter")
    handler, propagate = _ListHandler(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *args, **kwargs: messages.append(str(message))
            yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _risk(
    evaluator: Any,
    n_attacks: int,
    detail: str,
    caught: list[str],
    since: int,
    *,
    own_baseline: bool = True,
    baseline_rate: float | None = None,
) -> AttackRisk:
    """The evaluator's risk and rates.

    The risk uses only the attack and control rates. With ``own_baseline=False`` anonymeter's
    random-guessing baseline (drawn from unseeded or order-unstable generators, so not
    reproducible) is replaced by ``baseline_rate`` (None: not reported), and so is its warning.
    """
    results = evaluator.results(confidence_level=0.95)
    risk = results.risk()
    control = results.control_rate
    messages = list(dict.fromkeys(caught[since:]))
    if own_baseline:
        baseline_rate = float(results.baseline_rate.value)
    else:
        messages = [m for m in messages if "baseline" not in m]
        if baseline_rate is not None and results.attack_rate.value <= baseline_rate:
            messages.append("The attack does no better than random guessing.")
    return AttackRisk(
        risk=float(risk.value),
        ci=(float(risk.ci[0]), float(risk.ci[1])),
        attack_rate=float(results.attack_rate.value),
        control_rate=float(control.value) if control is not None else math.nan,
        baseline_rate=baseline_rate,
        n_attacks=n_attacks,
        detail=detail,
        warnings=tuple(messages),
    )


def _singling_out(
    evaluators: Any, ori: Any, syn: Any, control: Any, n_attacks: int, seed: int, caught: list[str]
) -> AttackRisk:
    # Multivariate only: anonymeter's univariate queries follow polars group_by order, which
    # varies run to run, so they would not reproduce under a seed.
    n_cols = min(SINGLING_OUT_COLUMNS, ori.shape[1])
    since = len(caught)
    evaluator = evaluators.SinglingOutEvaluator(
        ori=ori,
        syn=syn,
        control=control,
        n_attacks=n_attacks,
        n_cols=n_cols,
        max_attempts=SINGLING_OUT_ATTEMPTS_PER_ATTACK * n_attacks,
        seed=seed,
    ).evaluate(mode="multivariate")
    detail = f"queries combining {n_cols} column(s), built from synthetic rows"
    return _risk(evaluator, n_attacks, detail, caught, since, own_baseline=False)


def _linkability(
    evaluators: Any,
    ori: Any,
    syn: Any,
    control: Any,
    n_attacks: int,
    names: list[str],
    qis: list[str],
    caught: list[str],
) -> AttackRisk:
    rest = [n for n in names if n not in qis]
    if qis and rest:
        halves = (qis, rest)
    else:
        cut = (len(names) + 1) // 2
        halves = (names[:cut], names[cut:])
    since = len(caught)
    evaluator = evaluators.LinkabilityEvaluator(
        ori=ori, syn=syn, control=control, aux_cols=halves, n_attacks=n_attacks, n_neighbors=1
    ).evaluate(n_jobs=1)
    detail = f"re-joining {halves[0]} with {halves[1]} through the nearest synthetic row"
    # anonymeter draws its random-linking baseline from an unseeded generator; the risk does
    # not use it, and its expected value is exact: two random picks agree once in len(syn).
    return _risk(
        evaluator, n_attacks, detail, caught, since, own_baseline=False, baseline_rate=1.0 / len(syn)
    )


def _inference(
    evaluators: Any,
    ori: Any,
    syn: Any,
    control: Any,
    n_attacks: int,
    columns: Sequence[Column],
    qis: list[str],
    caught: list[str],
) -> AttackRisk | None:
    names = [c.name for c in columns]
    secrets = [c for c in columns if c.name not in qis] if qis else list(columns)
    worst: AttackRisk | None = None
    for secret in secrets:
        aux = qis if qis else [n for n in names if n != secret.name]
        since = len(caught)
        evaluator = evaluators.InferenceEvaluator(
            ori=ori,
            syn=syn,
            control=control,
            aux_cols=aux,
            secret=secret.name,
            regression=is_continuous(secret),
            n_attacks=n_attacks,
        ).evaluate(n_jobs=1)
        known = "the quasi-identifiers" if qis else "every other column"
        detail = f"guessing '{secret.name}' from {known}"
        risk = _risk(evaluator, n_attacks, detail, caught, since)
        if worst is None or risk.risk > worst.risk:
            worst = risk
    return worst
