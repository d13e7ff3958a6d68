"""Differentially private training (DP-SGD) for the shared Trainer, through Opacus.

A family names the networks that touch real rows and their optimizers
(:meth:`TrainingTask.private_modules`); the Trainer then, for every step:

* draws the batch by **Poisson sampling** (each row in with probability ``sample_rate``), which
  is what the privacy accountant's subsampling analysis assumes;
* lets Opacus compute **per-sample gradients** of those networks (``GradSampleModule``), clip
  each to ``max_grad_norm`` and add Gaussian noise (``DPOptimizer``);
* records the step with Opacus' **accountant**, so the epsilon spent is known at any point.

The noise multiplier is chosen before training so that the planned number of steps spends the
SGD share of the budget exactly; a resumed run must keep that plan.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from synthkit.errors import ConfigError, MissingDependencyError

# Opacus hooks the first layer of a network whose input needs no gradient; torch then warns at
# every backward pass that the hook sees only output gradients, which is all Opacus needs.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)


class DPConfig(BaseModel):
    """Differential privacy of a whole fit: ``(epsilon, delta)`` for everything learned.

    ``preprocessing_share`` of the budget pays for the encoding's private facts (bounds,
    quantiles, category sets) that the schema does not declare public; the rest pays DP-SGD.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(gt=0, description="Total privacy budget epsilon of the fit.")
    delta: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Total delta; default min(1e-5, 1 / (10 n)) for n training rows.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Per-sample gradient clipping bound.")
    preprocessing_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of epsilon (and delta) for private encoding facts; unused when the "
        "schema declares every bound and category set.",
    )
    accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="Opacus accountant: Renyi DP (standard) or PRV (tighter)."
    )

    def resolved_delta(self, n_rows: int) -> float:
        """The delta to use for ``n_rows`` training rows."""
        return self.delta if self.delta is not None else min(1e-5, 1.0 / (10.0 * max(n_rows, 1)))


@dataclass(frozen=True)
class SGDBudget:
    """What DP-SGD may spend: its share of (epsilon, delta), and the clipping bound."""

    epsilon: float
    delta: float
    max_grad_norm: float
    accountant: str = "rdp"


def _opacus() -> Any:
    try:
        import opacus  # noqa: F401
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
    except ImportError as exc:  # pragma: no cover - opacus is a core dependency
        raise MissingDependencyError(
            "Differential privacy needs the 'opacus' package.", hint="pip install opacus"
        ) from exc
    return GradSampleModule, DPOptimizer, create_accountant, get_noise_multiplier


class PrivateTraining:
    """DP-SGD state of one run: the plan, the wrapped networks, Poisson batches, the accountant."""

    def __init__(self, budget: SGDBudget, *, n_rows: int, batch_size: int, epochs: int) -> None:
        _, _, create_accountant, get_noise_multiplier = _opacus()
        if n_rows < 2:
            raise ConfigError("Differential privacy needs at least 2 training rows.")
        self.budget = budget
        self.n_rows = n_rows
        self.sample_rate = min(1.0, batch_size / n_rows)
        self.steps_per_epoch = max(1, round(1.0 / self.sample_rate))
        self.planned_steps = self.steps_per_epoch * epochs
        self.expected_batch = max(1, round(self.sample_rate * n_rows))
        self.noise_multiplier = float(
            get_noise_multiplier(
                target_epsilon=budget.epsilon,
                target_delta=budget.delta,
                sample_rate=self.sample_rate,
                steps=self.planned_steps,
                accountant=budget.accountant,
            )
        )
        self.accountant = create_accountant(budget.accountant)
        self.steps = 0
        self._wrapped: list[Any] = []
        self._optimizers: dict[int, Any] = {}

    # --- wiring --------------------------------------------------------------------------
    def attach(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        private: tuple[list[str], list[str]],
        generator: torch.Generator,
    ) -> None:
        """Hook per-sample gradients into the named networks and wrap their optimizers."""
        GradSampleModule, DPOptimizer, _, _ = _opacus()
        module_names, optimizer_names = private
        for name in module_names:
            try:
                self._wrapped.append(GradSampleModule(modules[name], loss_reduction="mean"))
            except Exception as exc:  # noqa: BLE001 - Opacus names the offending layer
                raise ConfigError(
                    f"Network '{name}' cannot be trained with DP-SGD: {exc}",
                    hint="Layers that mix rows (BatchNorm) or keep state cannot give per-sample "
                    "gradients; this family needs a DP-compatible architecture.",
                ) from exc
        self._noise = generator
        self._noise_base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        for name in optimizer_names:
            opt = optimizers[name]
            self._optimizers[id(opt)] = DPOptimizer(
                opt,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.budget.max_grad_norm,
                expected_batch_size=self.expected_batch,
                loss_reduction="mean",
                generator=generator,
            )

    def optimizer_for(self, optimizer: torch.optim.Optimizer) -> Any:
        """The DP wrapper of ``optimizer``, or ``optimizer`` itself when it is not private."""
        return self._optimizers.get(id(optimizer), optimizer)

    @contextmanager
    def hooks_paused(self) -> Iterator[None]:
        """Per-sample gradient capture off: for passes through a private network that train
        another one (a GAN's generator step through its discriminator)."""
        for gsm in self._wrapped:
            gsm.disable_hooks()
        try:
            yield
        finally:
            for gsm in self._wrapped:
                gsm.enable_hooks()

    def detach(self) -> None:
        """Remove Opacus' hooks: the networks are plain modules again."""
        for gsm in self._wrapped:
            gsm._close()
        self._wrapped.clear()

    # --- steps ---------------------------------------------------------------------------
    def batches(self, n: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of Poisson-sampled row indices (some may be empty), a step at a time."""
        for _ in range(self.steps_per_epoch):
            index = torch.nonzero(torch.rand(n, generator=generator) < self.sample_rate).squeeze(1)
            # the noise of step k depends only on k: a resumed run adds the same noise
            self._noise.manual_seed(self._noise_base + self.steps)
            yield index

    def step(self) -> None:
        """Account for one noisy step (taken, or skipped on an empty batch: the same release)."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1

    def restore(self, steps: int, noise_multiplier: float) -> None:
        """Continue a checkpointed run: the same plan, ``steps`` already accounted."""
        if not math.isclose(noise_multiplier, self.noise_multiplier, rel_tol=1e-9):
            raise ConfigError(
                "The checkpoint was trained under another privacy plan (noise multiplier "
                f"{noise_multiplier:.4f}, now {self.noise_multiplier:.4f}).",
                hint="Resume with the same epochs, batch_size and dp settings; a private run "
                "cannot be extended past the budget it was planned for.",
            )
        if steps:
            self.accountant.history = [(self.noise_multiplier, self.sample_rate, int(steps))]
        self.steps = int(steps)

    def epsilon(self) -> float:
        """Epsilon spent so far by DP-SGD at the budget's delta."""
        if not self.steps:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.budget.delta))

    def report(self) -> dict[str, Any]:
        """What the fit report records about DP-SGD."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.budget.delta,
            "target_epsilon": self.budget.epsilon,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.budget.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "accountant": self.budget.accountant,
            "history": [list(h) for h in self.accountant.history],
        }
