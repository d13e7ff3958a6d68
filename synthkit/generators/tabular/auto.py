"""tabular/auto: picks a family and its training length from the data and a time budget.

The choice, in order, recorded with its reasons in ``fit_report_["auto"]``:

1. Tables with fewer than ``min_neural_rows`` rows get ``tabular/copula``: a neural model of so
   few rows learns little beyond them, and the copula needs no training time.
2. Without a time budget, the first of ``candidates`` (ordered by benchmark quality) trains with
   its own defaults.
3. With ``time_budget_s``, each candidate in turn is *probed*: a short fit (one epoch, or a few
   hundred steps for step-based families) is timed, and the training length that fits the rest
   of the budget (with a safety margin) is computed. The first candidate whose affordable length
   reaches its minimum useful length is trained with it (capped at its default). When none
   fits, the copula (fast, no training loop) is used, or, under ``dp=``, an error says so.

With ``dp=`` only families that can train privately are candidates, and the budget is passed
on unchanged. The chosen generator is saved inside the same model directory (its own weights
and JSON, plus ``auto.json`` naming it), so loading needs nothing but the directory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from synthkit.errors import ConfigError
from synthkit.generators.base import Generator, GeneratorConfig
from synthkit.nn.privacy import DPConfig
from synthkit.schema import Schema

_STATE_FILE = "auto.json"
_STATE_VERSION = 1
_COPULA = "tabular/copula"
#: family -> (option that sets its training length, probe length, least useful length)
_BUDGET_KNOBS: dict[str, tuple[str, int, int]] = {
    "tabular/argn": ("epochs", 1, 10),
    "tabular/ddpm": ("train_steps", 200, 1_000),
    "tabular/tvae": ("epochs", 1, 30),
    "tabular/ctgan": ("epochs", 1, 30),
}
#: Share of the remaining budget a chosen run may plan to use (the probe's timing is noisy).
_MARGIN = 0.8


class AutoConfig(GeneratorConfig):
    """Options of tabular/auto: a time budget and which families it may choose from."""

    time_budget_s: float | None = Field(
        None, gt=0, description="Seconds the whole fit may take (probes included); None: no limit."
    )
    candidates: tuple[str, ...] = Field(
        ("tabular/argn", "tabular/ddpm", "tabular/tvae"),
        min_length=1,
        description="Neural families to try, best first.",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options per candidate, e.g. {'tabular/tvae': {'batch_size': 1000}}; a "
        "training length given here caps what the budget may choose.",
    )
    min_neural_rows: int = Field(
        500, ge=1, description="Tables with fewer rows get the Gaussian copula."
    )
    device: str = Field("auto", description="Device for a neural family ('auto', 'cpu', 'cuda').")
    progress: bool = Field(False, description="Show the chosen family's progress line.")
    dp: DPConfig | None = Field(
        None, description="Differential privacy, passed to the chosen (private-capable) family."
    )


class AutoGenerator(Generator):
    """Chooses a generator family and training length for the table and budget, then trains it."""

    name = "tabular/auto"
    config_class = AutoConfig
    config: AutoConfig
    supports_conditions: ClassVar[bool] = True

    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        from synthkit.generators.registry import resolve

        cfg = self.config
        started = time.perf_counter()
        reasons: list[str] = []
        probes: dict[str, dict[str, float]] = {}
        candidates = [c for c in cfg.candidates if c != _COPULA]
        for name in candidates:
            if name not in _BUDGET_KNOBS:
                raise ConfigError(
                    f"tabular/auto cannot budget '{name}'.",
                    hint=f"Choose candidates among {sorted(_BUDGET_KNOBS)}.",
                )
        if cfg.dp is not None:
            candidates = [c for c in candidates if "dp" in resolve(c)[0].config_class.model_fields]
            reasons.append("dp= asked: only families that train privately are candidates")
        choice: tuple[str, dict[str, Any]] | None = None
        if df.height < cfg.min_neural_rows and cfg.dp is None:
            reasons.append(
                f"{df.height} rows < min_neural_rows ({cfg.min_neural_rows}): the copula, which "
                "needs no training loop, generalises better from so few rows"
            )
            choice = (_COPULA, {})
        elif cfg.time_budget_s is None:
            if not candidates:
                raise ConfigError("No candidate family can train with dp=.",
                                  hint="Add tabular/tvae or tabular/ctgan to candidates.")
            reasons.append(f"no time budget: {candidates[0]}, the best-ranked candidate, "
                           "with its default training length")
            choice = (candidates[0], {})
        else:
            choice = self._within_budget(df, schema, candidates, started, reasons, probes)
        name, options = choice
        cls = resolve(name)[0]
        fields = cls.config_class.model_fields
        shared = {"seed": cfg.seed, "device": cfg.device, "progress": cfg.progress, "dp": cfg.dp}
        config = (
            {k: v for k, v in shared.items() if k in fields and v is not None}
            | cfg.options.get(name, {})
            | options
        )
        self.inner_ = cls(**config).fit(df, schema=schema)
        self.condition_values_ = self.inner_.condition_values_
        self.fit_report_["auto"] = {
            "chosen": name,
            "config": self.inner_.config.model_dump(mode="json", exclude_defaults=True),
            "reasons": reasons,
            "probes": probes,
            "rows": df.height,
            "columns": df.width,
            "seconds": round(time.perf_counter() - started, 3),
        }
        for key, value in self.inner_.fit_report_.items():
            if key == "warnings":
                self.fit_report_["warnings"].extend(value)
            elif key != "fit_seconds":
                self.fit_report_[key] = value

    def _within_budget(
        self,
        df: pl.DataFrame,
        schema: Schema,
        candidates: list[str],
        started: float,
        reasons: list[str],
        probes: dict[str, dict[str, float]],
    ) -> tuple[str, dict[str, Any]]:
        from synthkit.generators.registry import resolve

        cfg = self.config
        budget = float(cfg.time_budget_s or 0.0)
        for name in candidates:
            knob, probe_units, least = _BUDGET_KNOBS[name]
            cls = resolve(name)[0]
            fields = cls.config_class.model_fields
            own = cfg.options.get(name, {})
            default = own.get(knob, fields[knob].default)
            default = int(default) if default is not None else least
            least = min(least, default)
            probe_extra: dict[str, Any] = {"epochs": None} if knob == "train_steps" else {}
            left = budget - (time.perf_counter() - started)
            if left <= 0:
                reasons.append(f"{name}: no budget left to probe it")
                continue
            shared = {"seed": cfg.seed, "device": cfg.device, "dp": cfg.dp, "progress": False}
            config = {k: v for k, v in shared.items() if k in fields and v is not None} | own
            t0 = time.perf_counter()
            cls(**{**config, **probe_extra, knob: probe_units}).fit(df, schema=schema)
            per_unit = (time.perf_counter() - t0) / probe_units
            left = budget - (time.perf_counter() - started)
            affordable = math.floor(max(left, 0.0) * _MARGIN / max(per_unit, 1e-9))
            units = int(min(default, affordable))
            probes[name] = {"seconds_per_" + knob.rstrip("s"): round(per_unit, 5),
                            "affordable": affordable}
            if units >= least:
                why = "its default" if units == default else f"what {left:.0f}s left affords"
                reasons.append(f"{name}: {knob}={units} ({why}; one {knob.rstrip('s')} takes "
                               f"~{per_unit:.3g}s)")
                return name, {**probe_extra, knob: units}
            reasons.append(f"{name}: only {affordable} {knob} fit the budget, under the "
                           f"{least} it needs")
        if cfg.dp is not None:
            raise ConfigError(
                f"No private family can train within time_budget_s={budget:g} on this table.",
                hint="Raise time_budget_s, or use fewer rows or columns.",
            )
        reasons.append("no neural candidate fits the budget: the copula, which trains in one pass")
        return _COPULA, {}

    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        return self.inner_._sample(n, rng=rng, conditions=conditions)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, files = self.inner_._state()
        if _STATE_FILE in files:
            raise ConfigError(f"The chosen family writes its own {_STATE_FILE}; cannot nest it.")
        files = {
            **files,
            _STATE_FILE: {
                "version": _STATE_VERSION,
                "chosen": self.inner_.registry_name,
                "config": self.inner_.config.model_dump(mode="json"),
                "schema": self.inner_.schema_.to_dict(),
            },
        }
        return tensors, files

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        from synthkit.generators.neural import family_state
        from synthkit.generators.registry import resolve

        state = family_state(files, _STATE_FILE, _STATE_VERSION)
        cls = resolve(state["chosen"])[0]
        inner = cls(**state["config"])
        inner.schema_ = Schema.from_dict(state["schema"])
        inner.data_fingerprint_ = self.data_fingerprint_
        inner.n_rows_ = self.n_rows_
        inner.fit_report_ = {}
        inner.fillers_ = {"version": 1, "columns": []}
        inner.condition_values_ = self.condition_values_
        inner._restore(tensors, {k: v for k, v in files.items() if k != _STATE_FILE},
                       trust_pickle=trust_pickle)
        self.inner_ = inner
