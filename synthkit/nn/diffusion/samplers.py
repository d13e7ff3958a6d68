"""Samplers: the reverse chains that turn noise into data, given a denoiser and the schedules.

A sampler only decides which timesteps to visit and how much fresh noise each step adds; the
step formulas come from the schedules and the predictions from a ``denoise`` callable, so the
same network samples with either sampler (a swap, not a rewrite):

* :class:`AncestralSampler`: DDPM's chain over every timestep (Gaussian posterior with its small
  or large variance; multinomial posterior draw).
* :class:`DDIMSampler`: a strided chain over ``steps`` timesteps (Song et al., 2021) for the
  Gaussian part, ``eta`` scaling its noise, with the matching strided multinomial posterior
  ``q(x_s | x_t, x_0)`` for the categorical part. With every timestep and ``eta = 1`` it is the
  ancestral chain with the small variance.
* :class:`DPMSolverSampler`: the same strided chain with DPM-Solver++(2M)'s second-order
  deterministic Gaussian step. With an exact denoiser it reaches a Gaussian's spread in fewer
  steps than DDIM; with trained tabular denoisers DDIM did as well or better in our benchmarks
  (the categorical part, the same in both, dominates), so tabular/ddpm defaults to DDIM.

All draw their randomness, in the same order, from one ``torch.Generator``: the same seed gives
the same rows. :class:`KnownValues` fixes parts of the data (conditions, inpainting): after every
step they are replaced by a draw of the forward process at the new time, and at the end by the
values themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from synthkit.errors import ConfigError
from synthkit.nn.diffusion.schedule import GaussianSchedule, MultinomialSchedule

Spacing = Literal["uniform", "quadratic"]
#: ``denoise(x_num, x_cat, t)`` -> (predicted Gaussian noise, logits of the clean categories);
#: ``t`` is a long tensor of shape ``(1,)`` (samplers step every row at once: the timestep, and
#: so its embedding, is shared) or ``(rows,)``.
Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class KnownValues:
    """Values the sample must end with: ``mask`` marks known entries (broadcast over rows).

    ``numerical``/``numerical_mask`` are for the Gaussian features, ``categorical``/
    ``categorical_mask`` for the one-hot slots (mask whole blocks; values one-hot).
    """

    numerical: torch.Tensor | None = None
    numerical_mask: torch.Tensor | None = None
    categorical: torch.Tensor | None = None
    categorical_mask: torch.Tensor | None = None


class DiffusionSampler(ABC):
    """A reverse chain: visits ``pairs(timesteps)`` and applies one step per pair."""

    @abstractmethod
    def pairs(self, timesteps: int) -> list[tuple[int, int]]:
        """The ``(t, s)`` steps the chain takes, from ``timesteps - 1`` down to ``s = -1``."""

    @abstractmethod
    def gaussian_step(
        self,
        schedule: GaussianSchedule,
        x_t: torch.Tensor,
        x0: torch.Tensor,
        eps: torch.Tensor,
        t: int,
        s: int,
        noise: torch.Tensor,
        memory: dict[str, Any],
    ) -> torch.Tensor:
        """``x_s`` from ``x_t`` and the (clipped) predictions ``x0`` and ``eps``.

        ``memory`` is a dict that lives for one ``sample`` call: multistep samplers keep their
        earlier predictions there (samplers themselves hold no state).
        """

    def sample(
        self,
        denoise: Denoise,
        gaussian: GaussianSchedule,
        multinomial: MultinomialSchedule | None,
        n: int,
        *,
        n_numerical: int,
        generator: torch.Generator,
        clip: float | torch.Tensor | None = None,
        known: KnownValues | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` rows: ``(x_num (n, n_numerical), x_cat (n, slots) one-hot)``.

        ``clip`` bounds the predicted clean Gaussian values (a scalar or one bound per feature);
        the noise estimate is recomputed from the clipped values, as DDPM implementations do.
        """
        device = gaussian.device
        n_slots = multinomial.blocks.n_slots if multinomial is not None else 0
        n_blocks = multinomial.blocks.n_blocks if multinomial is not None else 0
        if multinomial is not None and multinomial.timesteps != gaussian.timesteps:
            raise ConfigError("The Gaussian and multinomial schedules must have the same length.")
        x_num = torch.randn((n, n_numerical), generator=generator, device=device)
        uniform = torch.rand((n, n_blocks), generator=generator, device=device)
        x_cat = multinomial.prior_sample(uniform) if multinomial is not None else uniform
        bound = _bound(clip, device)
        first = gaussian.timesteps - 1
        x_num, x_cat = _impose(known, gaussian, multinomial, x_num, x_cat, first, generator)
        memory: dict[str, Any] = {}
        for t, s in self.pairs(gaussian.timesteps):
            eps, logits = denoise(x_num, x_cat, torch.full((1,), t, dtype=torch.long, device=device))
            noise = torch.randn((n, n_numerical), generator=generator, device=device)
            uniform = torch.rand((n, n_blocks), generator=generator, device=device)
            if n_numerical:
                x0 = gaussian.predict_x0(x_num, t, eps.float())
                if bound is not None:
                    x0 = torch.maximum(torch.minimum(x0, bound), -bound)
                    eps = gaussian.predict_eps(x_num, t, x0)
                x_num = self.gaussian_step(gaussian, x_num, x0, eps.float(), t, s, noise, memory)
            if multinomial is not None and n_slots:
                x0_probs = multinomial.blocks.softmax(logits.float())
                weights = multinomial.posterior_weights(x0_probs, x_cat, t, s)
                x_cat = multinomial.blocks.sample(weights, uniform)
            x_num, x_cat = _impose(known, gaussian, multinomial, x_num, x_cat, s, generator)
        return x_num, x_cat


class AncestralSampler(DiffusionSampler):
    """DDPM's ancestral chain over every timestep.

    ``variance="small"`` uses the posterior variance ``beta~_t`` (the exact ``q(x_{t-1}|x_t,x_0)``),
    ``"large"`` uses ``beta_t`` (DDPM's other choice, TabDDPM's).
    """

    def __init__(self, variance: Literal["small", "large"] = "small") -> None:
        if variance not in ("small", "large"):
            raise ConfigError(f"variance must be 'small' or 'large', got {variance!r}.")
        self.variance = variance

    def __repr__(self) -> str:
        return f"AncestralSampler(variance={self.variance!r})"

    def pairs(self, timesteps: int) -> list[tuple[int, int]]:
        return [(t, t - 1) for t in range(timesteps - 1, -1, -1)]

    def gaussian_step(self, schedule, x_t, x0, eps, t, s, noise, memory):  # noqa: D102 - see base
        mean, variance = schedule.posterior_mean_variance(x0, x_t, t)
        if t == 0:
            return mean
        if self.variance == "large":
            variance = schedule.beta(t).to(x_t.dtype)
        return mean + variance.sqrt() * noise


class DDIMSampler(DiffusionSampler):
    """DDIM's strided chain: ``steps`` timesteps spread over the schedule by ``spacing``.

    ``eta = 0`` makes the Gaussian part deterministic given the start; ``eta = 1`` adds the
    posterior's noise. The categorical part always draws from the strided posterior.
    ``spacing="uniform"`` spreads the visited timesteps evenly in ``t``; ``"quadratic"`` puts
    more of them near the data end, where tabular detail is settled.
    """

    def __init__(self, steps: int = 50, eta: float = 0.0, spacing: Spacing = "uniform") -> None:
        if int(steps) < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"eta must lie in [0, 1], got {eta}.")
        if spacing not in ("uniform", "quadratic"):
            raise ConfigError(f"spacing must be 'uniform' or 'quadratic', got {spacing!r}.")
        self.steps = int(steps)
        self.eta = float(eta)
        self.spacing = spacing

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps}, eta={self.eta}, spacing={self.spacing!r})"

    def pairs(self, timesteps: int) -> list[tuple[int, int]]:
        return strided_pairs(timesteps, self.steps, self.spacing)

    def gaussian_step(self, schedule, x_t, x0, eps, t, s, noise, memory):  # noqa: D102 - see base
        return schedule.ddim_step(x0, eps, t, s, eta=self.eta, noise=noise)


class DPMSolverSampler(DDIMSampler):
    """DPM-Solver++(2M) (Lu et al., 2022) for the Gaussian part: DDIM's deterministic step
    corrected by the previous step's prediction, second order in the log-SNR step size, so few
    steps go further; the categorical part draws from the strided posterior as DDIM's does.

    The first step, and the last (onto the data), are first order: plain DDIM with ``eta = 0``.
    """

    def __init__(self, steps: int = 25, spacing: Spacing = "uniform") -> None:
        super().__init__(steps=steps, eta=0.0, spacing=spacing)

    def __repr__(self) -> str:
        return f"DPMSolverSampler(steps={self.steps}, spacing={self.spacing!r})"

    def gaussian_step(self, schedule, x_t, x0, eps, t, s, noise, memory):  # noqa: D102 - see base
        previous = memory.get("previous")  # (lambda, x0) of the step before
        lam_t = schedule.log_snr(t)
        memory["previous"] = (lam_t, x0)
        if previous is None or s < 0:
            return schedule.ddim_step(x0, eps, t, s, eta=0.0, noise=noise)
        lam_prev, x0_prev = previous
        lam_s = schedule.log_snr(s)
        h, h_prev = lam_s - lam_t, lam_t - lam_prev
        r = float(h_prev / h)
        d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        bar_t, bar_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
        keep = ((1.0 - bar_s) / (1.0 - bar_t)).sqrt()
        alpha_s = bar_s.sqrt() * (1.0 - torch.exp(-h))
        return keep.to(x_t.dtype) * x_t + alpha_s.to(x_t.dtype) * d


def strided_pairs(timesteps: int, steps: int, spacing: Spacing = "uniform") -> list[tuple[int, int]]:
    """``(t, s)`` pairs visiting at most ``steps`` timesteps from ``timesteps - 1`` down to 0,
    then onto the data (``s = -1``)."""
    count = min(int(steps), timesteps)
    grid = np.linspace(0.0, 1.0, count)
    if spacing == "quadratic":
        grid = grid**2
    visit = np.unique(np.round(grid * (timesteps - 1)).astype(np.int64))
    times = [int(v) for v in visit[::-1]]
    return list(zip(times, [*times[1:], -1], strict=True))


def _bound(clip: float | torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    if clip is None:
        return None
    return torch.as_tensor(clip, dtype=torch.float32, device=device)


def _impose(
    known: KnownValues | None,
    gaussian: GaussianSchedule,
    multinomial: MultinomialSchedule | None,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    s: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the known entries by a forward-process draw at time ``s`` (the values at -1)."""
    if known is None:
        return x_num, x_cat
    n, device = x_num.shape[0], x_num.device
    if known.numerical is not None and known.numerical_mask is not None and x_num.shape[1]:
        values = known.numerical.to(device).expand_as(x_num)
        if s >= 0:
            noise = torch.randn(x_num.shape, generator=generator, device=device)
            values = gaussian.q_sample(values, torch.full((n,), s, device=device), noise)
        x_num = torch.where(known.numerical_mask.to(device).expand_as(x_num), values, x_num)
    if (
        multinomial is not None
        and known.categorical is not None
        and known.categorical_mask is not None
        and x_cat.shape[1]
    ):
        values = known.categorical.to(device).expand_as(x_cat)
        if s >= 0:
            uniform = torch.rand((n, multinomial.blocks.n_blocks), generator=generator, device=device)
            values = multinomial.q_sample(values, torch.full((n,), s, device=device), uniform)
        x_cat = torch.where(known.categorical_mask.to(device).expand_as(x_cat), values, x_cat)
    return x_num, x_cat
