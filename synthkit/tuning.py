"""Hyper-parameter search for a generator with Optuna: the objective is synthkit's own quality.

Each trial fits the generator with settings drawn from a search space on the training rows,
samples as many rows as the holdout holds, and scores ``quality.overall`` of that sample
against the holdout (rows the generator never saw, so a copy of the training data gains
nothing). Optuna's TPE sampler (seeded) proposes the next settings; failed trials (e.g. an
out-of-memory network) are recorded and skipped. The result keeps every trial and the best
configuration, ready for ``sk.create(name, **best_config)``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthkit.errors import ConfigError, MissingDependencyError
from synthkit.schema import Schema

#: A search-space entry: {"type": "int"|"float"|"categorical", "low", "high", "log", "choices"}.
Space = dict[str, dict[str, Any]]

#: Built-in search spaces by registry name (ranges that stay sensible on a laptop).
SPACES: dict[str, Space] = {
    "tabular/copula": {
        "max_knots": {"type": "int", "low": 50, "high": 2000, "log": True},
    },
    "tabular/tvae": {
        "epochs": {"type": "int", "low": 50, "high": 500, "log": True},
        "batch_size": {"type": "categorical", "choices": [250, 500, 1000]},
        "embedding_dim": {"type": "categorical", "choices": [64, 128, 256]},
        "learning_rate": {"type": "float", "low": 2e-4, "high": 3e-3, "log": True},
        "loss_factor": {"type": "float", "low": 1.0, "high": 4.0},
    },
    "tabular/ctgan": {
        "epochs": {"type": "int", "low": 50, "high": 500, "log": True},
        "batch_size": {"type": "categorical", "choices": [200, 500, 1000]},
        "generator_learning_rate": {"type": "float", "low": 5e-5, "high": 1e-3, "log": True},
        "discriminator_learning_rate": {"type": "float", "low": 5e-5, "high": 1e-3, "log": True},
        "embedding_dim": {"type": "categorical", "choices": [64, 128, 256]},
    },
    "tabular/ddpm": {
        "train_steps": {"type": "int", "low": 1000, "high": 20000, "log": True},
        "batch_size": {"type": "categorical", "choices": [256, 512, 1024, 2048]},
        "learning_rate": {"type": "float", "low": 2e-4, "high": 3e-3, "log": True},
        "timesteps": {"type": "categorical", "choices": [100, 500, 1000]},
    },
    "tabular/argn": {
        "epochs": {"type": "int", "low": 20, "high": 300, "log": True},
        "embedding_dim": {"type": "categorical", "choices": [32, 64, 128]},
        "layers": {"type": "int", "low": 1, "high": 3},
        "learning_rate": {"type": "float", "low": 3e-4, "high": 5e-3, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.3},
    },
}


@dataclass
class Trial:
    """One trial: its settings, score (None when it failed) and seconds."""

    number: int
    params: dict[str, Any]
    score: float | None
    seconds: float
    error: str | None = None


@dataclass
class TuneResult:
    """Every trial and the best one; ``best_config`` is ready for ``sk.create``."""

    generator: str
    objective: str
    best_score: float
    best_config: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write ``tuning.json`` (all trials) and ``best_config.json`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, payload in (("tuning.json", self.to_dict()), ("best_config.json", self.best_config)):
            tmp = out / f".{name}.tmp"
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
            tmp.replace(out / name)
        return out


def space_for(name: str, space: Space | None = None) -> Space:
    """The search space of generator ``name``: the one given, else the built-in one."""
    if space is not None:
        _check_space(space)
        return space
    if name not in SPACES:
        raise ConfigError(
            f"No built-in search space for '{name}'.",
            hint=f"Pass space= (a YAML/JSON mapping of option -> range); built-in: {sorted(SPACES)}.",
        )
    return SPACES[name]


def _check_space(space: Space) -> None:
    for key, spec in space.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        ok = (
            kind in ("int", "float") and "low" in spec and "high" in spec and spec["low"] <= spec["high"]
        ) or (kind == "categorical" and isinstance(spec.get("choices"), list) and spec["choices"])
        if not ok:
            raise ConfigError(
                f"Bad search-space entry for '{key}': {spec!r}.",
                hint="Use {type: int|float, low: .., high: .., log: true|false} or "
                "{type: categorical, choices: [..]}.",
            )


def _suggest(trial: Any, space: Space) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec["type"] == "int":
            params[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        elif spec["type"] == "float":
            params[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        else:
            params[key] = trial.suggest_categorical(key, spec["choices"])
    return params


def tune(
    data: Any,
    generator: str,
    *,
    trials: int = 20,
    schema: Schema | None = None,
    space: Space | None = None,
    fixed: dict[str, Any] | None = None,
    holdout_fraction: float = 0.2,
    time_budget_s: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TuneResult:
    """Search ``generator``'s settings for the best ``quality.overall`` on a holdout.

    ``fixed`` options go to every trial unchanged (e.g. ``{"device": "cpu"}``); ``space``
    replaces the built-in search space. ``time_budget_s`` stops starting new trials once spent.
    """
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is a core dependency
        raise MissingDependencyError("Tuning needs the 'optuna' package.", hint="pip install optuna") from exc
    from synthkit.evaluate import evaluate
    from synthkit.frames import check_table, normalise_missing, to_polars
    from synthkit.generators.registry import create
    from synthkit.prepare.split import split_holdout
    from synthkit.schema import infer_schema

    if trials < 1:
        raise ConfigError(f"trials must be at least 1, got {trials}.")
    df = normalise_missing(to_polars(data))
    check_table(df, min_rows=20, what="tuning table")
    schema = schema if schema is not None else infer_schema(df)
    search = space_for(generator, space)
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(search))
    if clash:
        raise ConfigError(f"Options {clash} are both fixed and searched.", hint="Fix or search each option, not both.")
    train, holdout = split_holdout(df, fraction=holdout_fraction, seed=seed)
    if holdout is None or holdout.height < 10:
        raise ConfigError("Tuning needs a holdout of at least 10 rows.", hint="Raise holdout_fraction or use more rows.")
    create(generator, **fixed)  # fail fast on a bad name or fixed option
    quiet = {"progress": False} if "progress" in _fields(generator) else {}
    done: list[Trial] = []
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        params = _suggest(trial, search)
        t0 = time.perf_counter()
        try:
            gen = create(generator, **{**quiet, **fixed, **params, "seed": seed}).fit(train, schema=schema)
            synth = gen.sample(holdout.height, seed=seed + trial.number + 1)
            report = evaluate(holdout, synth, schema, seed=seed, sdmetrics=False)
            score = report.value("quality.overall")
        except Exception as exc:  # noqa: BLE001 - a failed trial is recorded, the search goes on
            done.append(Trial(trial.number, params, None, round(time.perf_counter() - t0, 3), f"{type(exc).__name__}: {exc}"))
            raise optuna.TrialPruned() from exc
        if score is None or not math.isfinite(score):
            done.append(Trial(trial.number, params, None, round(time.perf_counter() - t0, 3), "no quality score"))
            raise optuna.TrialPruned()
        done.append(Trial(trial.number, params, float(score), round(time.perf_counter() - t0, 3)))
        return float(score)

    def out_of_time(study: Any, _trial: Any) -> None:
        if time_budget_s is not None and time.perf_counter() - started >= time_budget_s:
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, callbacks=[out_of_time], show_progress_bar=progress)
    scored = [t for t in done if t.score is not None]
    if not scored:
        errors = "; ".join(sorted({t.error or "" for t in done}))[:500]
        raise ConfigError(f"Every tuning trial of {generator} failed: {errors}",
                          hint="Check the fixed options and the search space.")
    best = max(scored, key=lambda t: t.score)  # type: ignore[arg-type, return-value]
    return TuneResult(
        generator=generator,
        objective="quality.overall on a holdout",
        best_score=float(best.score),  # type: ignore[arg-type]
        best_config={**fixed, **best.params},
        trials=done,
    )


def _fields(name: str) -> set[str]:
    from synthkit.generators.registry import resolve

    return set(resolve(name)[0].config_class.model_fields)

