"""Differentially private training (DP-SGD) for the shared Trainer, through Opacus.

A family names the networks that touch real rows and their optimizers
(:meth:`TrainingTask.private_modules`); the Trainer then, for every step:

* draws the batch by **Poisson sampling** (each row in with probability ``sample_rate``), which
  is what the privacy accountant's subsampling analysis assumes;
* lets Opacus clip each row's gradient of those networks to ``max_grad_norm`` and add Gaussian
  noise, in one of two modes chosen per family (recorded as ``grad_sample_mode``):

  - ``"ghost"``: Opacus' ghost clipping (``GradSampleModuleFastGradientClipping``,
    ``DPOptimizerFastGradientClipping``). A first backward pass yields every row's gradient
    *norm* without materialising per-row gradients; a second one back-propagates the rows'
    losses weighted by their clipping factors, which is the sum of clipped per-row gradients.
    Needs the family to hand over per-row losses (``TrainingTask.dp_row_losses``) and no
    parameter tied between layers; a layer that runs twice in a step (an embedding read twice)
    gets Opacus' fast gradient clipping instead (its per-row gradients, summed, then normed);
  - ``"hooks"``: per-row gradients materialised by ``GradSampleModule`` and clipped by
    ``DPOptimizer`` (the reference path, for every other family);
* records the step with Opacus' **accountant**, so the epsilon spent is known at any point
  (with the RDP accountant the per-step RDP curve is computed once and scaled by the steps,
  which is exactly what Opacus computes).

The noise multiplier is chosen before training so that the planned number of steps spends the
SGD share of the budget exactly; a resumed run must keep that plan.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
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


def sgd_budget(dp: DPConfig | None, rows: int) -> SGDBudget | None:
    """The whole ``dp=`` budget for DP-SGD over ``rows`` training rows (None without dp): for
    families with no data-dependent preprocessing to pay for (text, images)."""
    if dp is None:
        return None
    return SGDBudget(epsilon=dp.epsilon, delta=dp.resolved_delta(rows), max_grad_norm=dp.max_grad_norm,
                     accountant=dp.accountant)


def sgd_privacy_report(sgd: SGDBudget, dp: DPConfig, training: dict[str, Any] | None, covers: str) -> dict[str, Any]:
    """The fit report's ``privacy`` entry of a run whose whole budget went to DP-SGD: spent
    epsilon, delta, the Trainer's DP-SGD record and what the guarantee covers."""
    training = training or {}
    return {
        "differential_privacy": True,
        "epsilon": float(training.get("epsilon", 0.0)),
        "delta": sgd.delta,
        "target_epsilon": dp.epsilon,
        "sgd": training,
        "covers": covers,
    }


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


GradSampleMode = Literal["ghost", "hooks"]


@lru_cache(maxsize=256)
def _noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Opacus' noise multiplier for the plan, cached: its search costs seconds and a benchmark
    asks for the same plan once per family."""
    get_noise_multiplier = _opacus()[3]
    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=steps, accountant=accountant))


@lru_cache(maxsize=1)
def _ghost_module_class() -> type:
    """Opacus' ghost-clipping module, with layers that run more than once in a step (an
    embedding read twice) moved to its fast-gradient-clipping path instead of refused."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.utils.module_utils import trainable_parameters

    class GhostClippingModule(GradSampleModuleFastGradientClipping):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._reused: set[int] = set()
            super().__init__(*args, **kwargs)

        def _per_layer(self, module: torch.nn.Module, hook: Any, *args: Any) -> Any:
            if id(module) not in self._reused:
                return hook(module, *args)
            self.use_ghost_clipping = False  # this layer: per-row gradients, summed, then norms
            try:
                return hook(module, *args)
            finally:
                self.use_ghost_clipping = True

        def capture_activations_hook(self, module: torch.nn.Module, *args: Any) -> Any:
            if (type(module) in self.NORM_SAMPLERS and self.hooks_enabled and module.training
                    and torch.is_grad_enabled()
                    and any(getattr(p, "_forward_counter", 0) > 0
                            for _, p in trainable_parameters(module))):
                self._reused.add(id(module))  # its earlier call's backward comes later: in time
            if isinstance(module, torch.nn.Embedding):  # Opacus' embedding norm views its input
                args = (tuple(t.contiguous() for t in args[0]), *args[1:])
            return self._per_layer(module, super().capture_activations_hook, *args)

        def capture_backprops_hook(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            return self._per_layer(
                module, lambda m, *a: super(GhostClippingModule, self).capture_backprops_hook(
                    m, *a, **kwargs), *args)

    return GhostClippingModule


def ghost_blockers(modules: list[torch.nn.Module]) -> list[str]:
    """Why ghost clipping cannot serve these networks (empty when it can): a parameter shared
    by two layers or networks would need its per-row gradients summed before their norm."""
    seen: dict[int, str] = {}
    reasons = []
    for index, module in enumerate(modules):
        for name, param in module.named_parameters(remove_duplicate=False):
            if not param.requires_grad:
                continue
            key = f"{index}.{name}"
            if id(param) in seen:
                reasons.append(f"parameter {key} is tied to {seen[id(param)]}")
            seen[id(param)] = key
    return reasons


class PrivateTraining:
    """DP-SGD state of one run: the plan, the wrapped networks, Poisson batches, the accountant."""

    def __init__(self, budget: SGDBudget, *, n_rows: int, batch_size: int, epochs: int) -> None:
        create_accountant = _opacus()[2]
        if n_rows < 2:
            raise ConfigError("Differential privacy needs at least 2 training rows.")
        self.budget = budget
        self.n_rows = n_rows
        self.sample_rate = min(1.0, batch_size / n_rows)
        self.steps_per_epoch = max(1, round(1.0 / self.sample_rate))
        self.planned_steps = self.steps_per_epoch * epochs
        self.expected_batch = max(1, round(self.sample_rate * n_rows))
        self.noise_multiplier = _noise_multiplier(
            budget.epsilon, budget.delta, self.sample_rate, self.planned_steps, budget.accountant
        )
        self.accountant = create_accountant(budget.accountant)
        self.steps = 0
        self.grad_sample_mode: GradSampleMode = "hooks"
        self._wrapped: list[Any] = []
        self._optimizers: dict[int, Any] = {}
        self._ghost_modules: dict[int, list[Any]] = {}  # DP optimizer id -> its wrapped networks
        self._unit_rdp: Any = None

    # --- wiring --------------------------------------------------------------------------
    def attach(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        private: tuple[list[str], list[str]],
        generator: torch.Generator,
        *,
        row_losses: bool = False,
        mode: Literal["auto", "ghost", "hooks"] = "auto",
    ) -> None:
        """Hook per-sample gradients (or their norms) into the named networks and wrap their
        optimizers; ``mode="auto"`` takes ghost clipping when the family hands over per-row
        losses (``row_losses``) and no parameter is shared, the reference hooks otherwise."""
        GradSampleModule, DPOptimizer, _, _ = _opacus()
        from opacus.optimizers import DPOptimizerFastGradientClipping

        module_names, optimizer_names = private
        blockers = ghost_blockers([modules[name] for name in module_names])
        if mode == "ghost" and (blockers or not row_losses):
            raise ConfigError(
                "Ghost clipping cannot train these networks: "
                + ("; ".join(blockers) or "the family does not hand over per-row losses") + ".",
                hint="Use grad_sample mode 'auto' or 'hooks'.",
            )
        ghost = mode == "ghost" or (mode == "auto" and row_losses and not blockers)
        self.grad_sample_mode = "ghost" if ghost else "hooks"
        for name in module_names:
            try:
                if ghost:
                    wrapped = _ghost_module_class()(
                        modules[name],
                        loss_reduction="mean",
                        max_grad_norm=self.budget.max_grad_norm,
                        use_ghost_clipping=True,
                    )
                else:
                    wrapped = GradSampleModule(modules[name], loss_reduction="mean")
                self._wrapped.append(wrapped)
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
            wrapper = DPOptimizerFastGradientClipping if ghost else DPOptimizer
            self._optimizers[id(opt)] = wrapper(
                opt,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.budget.max_grad_norm,
                expected_batch_size=self.expected_batch,
                loss_reduction="mean",
                generator=generator,
            )
            if ghost:
                params = {id(p) for group in opt.param_groups for p in group["params"]}
                self._ghost_modules[id(self._optimizers[id(opt)])] = [
                    gsm for gsm in self._wrapped
                    if any(id(p) in params for p in gsm.trainable_parameters)
                ]

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

    def backward(
        self, loss: torch.Tensor, optimizer: Any, rows: torch.Tensor | None, *, retain_graph: bool
    ) -> None:
        """Fill ``optimizer``'s gradients for its step: plain backward, or ghost clipping's two
        passes (row norms, then the rows' losses weighted by their clipping factors).

        ``rows`` are the per-row losses whose mean is ``loss``, one per row the private networks
        saw (in the order they saw them)."""
        gsms = self._ghost_modules.get(id(optimizer))
        if gsms is None:
            loss.backward(retain_graph=retain_graph)
            return
        if rows is None or rows.ndim != 1:
            raise ConfigError(
                "Ghost clipping needs the step's per-row losses, a vector whose mean is the loss.",
                hint="Pass rows= to ctx.optimize for the private optimizer, or set the task's "
                "dp_row_losses to False.",
            )
        params = [p for gsm in gsms for p in gsm.trainable_parameters]
        for p in params:  # a parameter unused in this step has a zero gradient, not a stale norm
            if hasattr(p, "_norm_sample"):
                del p._norm_sample
        rows.mean().backward(retain_graph=True)
        norms = [p._norm_sample for p in params if hasattr(p, "_norm_sample")]
        if norms and norms[0].shape[0] != rows.shape[0]:
            raise ConfigError(
                f"The private network saw {norms[0].shape[0]} rows but the step handed over "
                f"{rows.shape[0]} row losses.",
                hint="rows= must hold one loss per row the private networks saw, in their order.",
            )
        norm = torch.stack(norms).norm(2, dim=0) if norms else rows.new_zeros(rows.shape)
        coef = (self.budget.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)  # as Opacus clips
        for p in params:
            p.grad = None
        for gsm in gsms:
            gsm.disable_hooks()
        try:
            (coef.detach().to(rows.dtype) * rows).sum().backward(retain_graph=retain_graph)
        finally:
            for gsm in gsms:
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
        if self.budget.accountant != "rdp" or len(self.accountant.history) != 1:
            return float(self.accountant.get_epsilon(delta=self.budget.delta))
        from opacus.accountants.analysis import rdp as analysis

        noise, rate, steps = self.accountant.history[0]
        if self._unit_rdp is None or self._unit_rdp[0] != (noise, rate):
            # Opacus computes compute_rdp(steps=k) as the one-step curve times k: the same numbers
            self._unit_rdp = ((noise, rate), analysis.compute_rdp(
                q=rate, noise_multiplier=noise, steps=1, orders=self.accountant.DEFAULT_ALPHAS))
        eps, _ = analysis.get_privacy_spent(
            orders=self.accountant.DEFAULT_ALPHAS, rdp=self._unit_rdp[1] * steps,
            delta=self.budget.delta,
        )
        return float(eps)

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
            "grad_sample_mode": self.grad_sample_mode,
            "history": [list(h) for h in self.accountant.history],
        }
