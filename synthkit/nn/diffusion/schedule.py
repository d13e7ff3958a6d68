"""Noise schedules: the forward processes of Gaussian and multinomial diffusion, and their posteriors.

Only the mathematics of corrupting data and undoing one stretch of it lives here; the network
that predicts the clean data is in :mod:`~synthkit.nn.diffusion.denoiser` and the loops that
chain steps into samples are in :mod:`~synthkit.nn.diffusion.samplers` (the diffusers split:
model, schedule and sampler are separate, so a faster sampler is a swap, not a rewrite).

Time runs over ``0 .. timesteps - 1``; ``x_t`` has been noised ``t + 1`` times. The index ``-1``
stands for the clean data (``alpha_bar(-1) == 1``), so a step from ``t`` to ``s`` with
``s = -1`` ends a chain. Every step function takes ``(t, s)`` with any ``s < t``: a sampler that
strides over timesteps uses the same formulas as one that visits each.

* :class:`GaussianSchedule` (Ho et al., 2020; Song et al., 2021): ``q(x_t | x_0) =
  N(sqrt(ab_t) x_0, (1 - ab_t) I)``; the DDPM posterior, and the DDIM step whose ``eta`` sets the
  noise (``eta = 1`` over consecutive steps is the DDPM posterior with its small variance).
* :class:`MultinomialSchedule` (Hoogeboom et al., 2021, as in TabDDPM): each categorical block is
  kept with probability ``ab_t`` and otherwise redrawn uniformly over its ``K`` categories, so
  ``q(x_t | x_0) = Cat(ab_t x_0 + (1 - ab_t) / K)``; its posterior between any two times; and the
  per-row loss (KL of posteriors, the decoder's negative log-likelihood at ``t = 0``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from synthkit.errors import ConfigError
from synthkit.nn.blocks import OneHotBlocks

BetaScheduleKind = Literal["cosine", "linear"]
#: Probabilities are floored at this before their log, so no -inf reaches a loss or a gradient.
_LOG_FLOOR = 1e-30
#: Largest beta of the cosine schedule (Nichol & Dhariwal clip at 0.999 to avoid a singular end).
_MAX_BETA = 0.999


def beta_schedule(kind: BetaScheduleKind, timesteps: int) -> np.ndarray:
    """Per-step noise variances ``beta_t`` (float64) of a named schedule.

    ``"linear"``: Ho et al.'s 1e-4 .. 0.02 over 1,000 steps, rescaled for other lengths.
    ``"cosine"``: Nichol & Dhariwal's, ``ab(t) = cos^2(((t/T + 0.008) / 1.008) pi/2)``.
    """
    if int(timesteps) < 1:
        raise ConfigError(f"timesteps must be at least 1, got {timesteps}.")
    steps = int(timesteps)
    if kind == "linear":
        scale = 1000.0 / steps
        return np.linspace(scale * 1e-4, min(scale * 0.02, _MAX_BETA), steps, dtype=np.float64)
    if kind == "cosine":
        grid = np.arange(steps + 1, dtype=np.float64) / steps
        bar = np.cos((grid + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.clip(1.0 - bar[1:] / bar[:-1], 0.0, _MAX_BETA)
    raise ConfigError(
        f"Unknown beta schedule {kind!r}.", hint="Use 'cosine' (the default) or 'linear'."
    )


class NoiseSchedule:
    """Shared time bookkeeping: betas, ``alpha_bar`` with the clean-data entry at index -1."""

    def __init__(self, betas: np.ndarray, device: torch.device | str = "cpu") -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas < 1)).all():
            raise ConfigError("betas must be a non-empty 1-D array of values in (0, 1).")
        self.betas_np = betas
        self.device = torch.device(device)
        bar = np.concatenate([[1.0], np.cumprod(1.0 - betas)])  # bar[0] is t = -1 (clean)
        self._bar = torch.as_tensor(bar, dtype=torch.float64, device=self.device)
        self._betas = torch.as_tensor(np.concatenate([[0.0], betas]), dtype=torch.float64,
                                      device=self.device)

    @classmethod
    def named(
        cls, kind: BetaScheduleKind, timesteps: int, device: torch.device | str = "cpu"
    ) -> NoiseSchedule:
        """A schedule from :func:`beta_schedule` (``cls`` keeps subclasses' type)."""
        return cls(beta_schedule(kind, timesteps), device)

    @property
    def timesteps(self) -> int:
        return int(self.betas_np.size)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """``ab_t`` (float64) for time index ``t`` (``-1``: 1.0, the clean data)."""
        index = torch.as_tensor(t, device=self.device).long() + 1
        return self._bar[index]

    def log_snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """``lambda_t = log(sqrt(ab_t) / sqrt(1 - ab_t))`` (float64); +inf at ``t = -1``."""
        bar = self.alpha_bar(t)
        return 0.5 * (torch.log(bar) - torch.log1p(-bar))

    def beta(self, t: torch.Tensor | int) -> torch.Tensor:
        """``beta_t`` (float64); 0 at ``t = -1``."""
        index = torch.as_tensor(t, device=self.device).long() + 1
        return self._betas[index]

    def _col(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-row (or scalar) coefficients as a column broadcastable over ``like``'s features."""
        values = values.to(like.dtype)
        return values.view(-1, 1) if values.ndim == 1 else values


class GaussianSchedule(NoiseSchedule):
    """Gaussian diffusion over real-valued features (noise prediction parameterisation)."""

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise``."""
        bar = self._col(self.alpha_bar(t), x0)
        return bar.sqrt() * x0 + (1.0 - bar).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """The clean data that ``x_t`` and predicted noise ``eps`` imply."""
        bar = self._col(self.alpha_bar(t), x_t)
        return (x_t - (1.0 - bar).sqrt() * eps) / bar.sqrt()

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """The noise that takes ``x0`` to ``x_t`` (used after clipping a predicted ``x0``)."""
        bar = self._col(self.alpha_bar(t), x_t)
        return (x_t - bar.sqrt() * x0) / (1.0 - bar).sqrt()

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM's ``q(x_{t-1} | x_t, x_0)``: mean and (small, ``beta~_t``) variance.

        mean = beta_t sqrt(ab_{t-1}) / (1 - ab_t) x_0 + (1 - ab_{t-1}) sqrt(alpha_t) / (1 - ab_t) x_t,
        variance = beta_t (1 - ab_{t-1}) / (1 - ab_t); at ``t = 0`` the mean is ``x_0`` and the
        variance 0.
        """
        t = torch.as_tensor(t, device=self.device)
        bar, prev, beta = self.alpha_bar(t), self.alpha_bar(t - 1), self.beta(t)
        coef_x0 = beta * prev.sqrt() / (1.0 - bar)
        coef_xt = (1.0 - prev) * (1.0 - beta).sqrt() / (1.0 - bar)
        variance = beta * (1.0 - prev) / (1.0 - bar)
        mean = self._col(coef_x0, x0) * x0 + self._col(coef_xt, x_t) * x_t
        return mean, self._col(variance, x_t)

    def ddim_step(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        t: int,
        s: int,
        *,
        eta: float,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """DDIM's step from ``t`` to ``s < t``, given the predicted ``x0`` and ``eps``.

        ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma noise`` with
        ``sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)``: ``eta = 0`` is
        deterministic, ``eta = 1`` over ``s = t - 1`` is the DDPM posterior.
        """
        if not s < t:
            raise ConfigError(f"A step must go back in time, got t={t} -> s={s}.")
        bar_t, bar_s = self.alpha_bar(t), self.alpha_bar(s)
        var = (eta**2) * (1.0 - bar_s) / (1.0 - bar_t) * (1.0 - bar_t / bar_s)
        keep = (1.0 - bar_s - var).clamp_min(0.0).sqrt()
        out = bar_s.sqrt().to(x0.dtype) * x0 + keep.to(x0.dtype) * eps
        if eta > 0:
            out = out + var.sqrt().to(x0.dtype) * noise
        return out


class MultinomialSchedule(NoiseSchedule):
    """Multinomial diffusion over one-hot blocks (each block one categorical variable)."""

    def __init__(
        self, betas: np.ndarray, blocks: OneHotBlocks, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(betas, device)
        self.blocks = blocks.to(self.device)
        self._log_k = torch.log(self.blocks.slot_width).to(self.device)
        self._inv_k = 1.0 / self.blocks.slot_width.to(self.device)

    @classmethod
    def named(  # type: ignore[override]
        cls,
        kind: BetaScheduleKind,
        timesteps: int,
        blocks: OneHotBlocks,
        device: torch.device | str = "cpu",
    ) -> MultinomialSchedule:
        """A schedule from :func:`beta_schedule` over the given blocks."""
        return cls(beta_schedule(kind, timesteps), blocks, device)

    def _weights(self, probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep * probs + (1 - keep) / K`` per slot: a kept-or-redrawn mixture."""
        keep = self._col(keep, probs)
        return torch.addcmul((1.0 - keep) * self._inv_k.to(probs.dtype), keep, probs)

    def _mix(self, probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``log`` of :meth:`_weights`, floored (no -inf)."""
        return torch.log(self._weights(probs, keep).clamp_min(_LOG_FLOOR))

    def log_marginal(self, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``log q(x_t | x_0)`` per slot; ``x0`` may be one-hot or a distribution per block."""
        return self._mix(x0, self.alpha_bar(t))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A one-hot draw of ``x_t`` given ``x0`` (``uniform``: one per row and block)."""
        return self.blocks.sample(self._weights(x0, self.alpha_bar(t)), uniform)

    def prior_sample(self, uniform: torch.Tensor) -> torch.Tensor:
        """A draw from the chain's end: each block uniform over its categories."""
        weights = torch.ones((uniform.shape[0], self.blocks.n_slots), device=uniform.device)
        return self.blocks.sample(weights, uniform)

    def posterior_weights(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        s: torch.Tensor | int,
    ) -> torch.Tensor:
        """``q(x_s | x_t, x_0)`` per slot up to each block's normaliser (what a draw needs)."""
        bar_t, bar_s = self.alpha_bar(t), self.alpha_bar(s)
        return self._weights(x_t, bar_t / bar_s) * self._weights(x0, bar_s)

    def log_posterior(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        s: torch.Tensor | int,
    ) -> torch.Tensor:
        """``log q(x_s | x_t, x_0)`` per slot, normalised within each block, for any ``s < t``.

        ``q(x_s | x_t, x_0) ∝ [a x_t + (1 - a) / K] * [b x_0 + (1 - b) / K]`` with
        ``a = ab_t / ab_s`` and ``b = ab_s``; ``x0`` may be a predicted distribution (then this
        is the model's reverse step). With one-hot ``x_t`` and ``x0`` summing to 1 per block,
        the normaliser is ``a b x0[x_t] + (1 - a b) / K``: no per-block maximum is needed.
        """
        bar_t, bar_s = self.alpha_bar(t), self.alpha_bar(s)
        a, b = bar_t / bar_s, bar_s
        unnormed = self._mix(x_t, a) + self._mix(x0, b)
        ab = self._col(a * b, x0)
        current = self.blocks.block_sum(x_t * x0)  # probability x0 gives x_t's category
        inv_k = 1.0 / self.blocks.block_width.to(x0.dtype)
        normaliser = torch.log((ab * current + (1.0 - ab) * inv_k).clamp_min(_LOG_FLOOR))
        return unnormed - self.blocks.expand(normaliser)

    def kl(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """``KL(p || q)`` of each block, ``(rows, blocks)``, from per-slot log-probabilities."""
        p = torch.exp(log_p)
        return self.blocks.block_sum(torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)))

    def nll(self, x0: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        """``-log p(x_0)`` of each block, ``(rows, blocks)``, for one-hot ``x0``."""
        return -self.blocks.block_sum(x0 * log_probs)

    def loss(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        logits: torch.Tensor,
        *,
        log_x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The variational-bound term of each row and block, ``(rows, blocks)``.

        ``logits`` are the network's unnormalised predictions of ``x0`` (``log_x0``: their
        per-block log-softmax, when the caller has it already). For ``t > 0``: KL of the true
        posterior ``q(x_{t-1} | x_t, x_0)`` from the model's; for ``t = 0``: the model's negative
        log-likelihood of ``x_0``.
        """
        log_x0 = self.blocks.log_softmax(logits) if log_x0 is None else log_x0
        x0_hat = torch.exp(log_x0)
        log_model = self.log_posterior(x0_hat, x_t, t, t - 1)
        with torch.no_grad():
            log_true = self.log_posterior(x0, x_t, t, t - 1)
        kl = self.kl(log_true, log_model)
        nll = self.nll(x0, log_model)
        return torch.where((t == 0).view(-1, 1), nll, kl)
