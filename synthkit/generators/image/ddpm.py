"""image/ddpm: denoising diffusion (Ho et al., 2020) with a small U-Net, class-conditional.

* Model: :class:`UNetNet`, a small U-Net (one residual block per resolution, ``channel_mults``
  setting the widths, GroupNorm + SiLU) whose blocks add a sinusoidal timestep embedding
  (:func:`synthkit.nn.diffusion.timestep_embedding`) and, for a labelled set, a class embedding.
  It predicts the noise of ``x_t``.
* Schedule and samplers are the shared ones of :mod:`synthkit.nn.diffusion`: a
  :class:`~synthkit.nn.diffusion.GaussianSchedule` (cosine by default) over the flattened pixels,
  and :class:`~synthkit.nn.diffusion.AncestralSampler` (``sampler="ddpm"``),
  :class:`~synthkit.nn.diffusion.DDIMSampler` (``"ddim"``, the default: ``sampling_steps`` strided
  steps) or :class:`~synthkit.nn.diffusion.DPMSolverSampler` (``"dpm"``); the maths is the
  same as for tables, only the denoiser reshapes rows into images. Predicted clean images are
  clipped to [-1, 1].
* Conditions: with ``label_dropout > 0`` the class is hidden from a share of training images (a
  "no class" embedding), so the same network also learns the unconditional model, and sampling
  may use classifier-free guidance (``guidance_scale > 1``: ``eps_uncond + w (eps_cond -
  eps_uncond)``, two network calls per step; 1 is the plain conditional model).
* Training: MSE of the predicted noise, timesteps uniform, AdamW, an exponential moving average
  of the weights (with warm-up, so short runs are not dominated by the initial weights), which is
  what is saved and sampled.
* With ``dp=`` the U-Net is trained with DP-SGD (each image's loss clipped by Opacus' ghost
  clipping; GroupNorm mixes no images); the weight average of private weights is private too.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from synthkit.generators.image.base import (
    ImageConfig,
    ImageGenerator,
    labels_tensor,
    split_batch,
)
from synthkit.generators.neural import family_state
from synthkit.nn import (
    StepContext,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)
from synthkit.nn.diffusion import (
    AncestralSampler,
    DDIMSampler,
    DiffusionSampler,
    DPMSolverSampler,
    GaussianSchedule,
    timestep_embedding,
)

_STATE_FILE = "image_ddpm.json"
_STATE_VERSION = 1


class ImageDDPMConfig(ImageConfig):
    """Options of image/ddpm; sized so that a CPU trains small images in minutes."""

    epochs: int = Field(40, ge=1, description="Passes over the training images.")
    learning_rate: float = Field(1e-3, gt=0.0, description="AdamW learning rate.")
    base_channels: int = Field(32, ge=8, description="Channels of the U-Net's first level.")
    channel_mults: tuple[int, ...] = Field(
        (1, 2, 2), min_length=1, description="Width of each U-Net level, times base_channels; "
        "the image halves between levels (so it must divide by 2**(levels - 1))."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside residual blocks.")
    timesteps: int = Field(200, ge=2, description="Diffusion timesteps of the noise schedule.")
    schedule: Literal["cosine", "linear"] = Field("cosine", description="Beta schedule.")
    sampler: Literal["ddpm", "ddim", "dpm"] = Field(
        "ddim", description="'ddpm': every timestep; 'ddim': sampling_steps strided steps; "
        "'dpm': DPM-Solver++(2M)."
    )
    sampling_steps: int = Field(50, ge=1, description="Network calls per sample of 'ddim'/'dpm'.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="Noise of the DDIM steps (0: deterministic).")
    ema_decay: float | None = Field(
        0.995, ge=0.0, lt=1.0, description="Decay of the weight average that is saved and sampled."
    )
    label_dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of training images shown without their class "
        "(learns the unconditional model too, for classifier-free guidance)."
    )
    guidance_scale: float = Field(
        1.0, ge=0.0, description="Classifier-free guidance weight when sampling a class; 1: none."
    )


# --- network -----------------------------------------------------------------------------------
def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(torch.nn.functional.silu(self.norm2(h))))
        return h + self.skip(x)


class UNetNet(nn.Module):
    """``(x_t (B, C, H, W), t (B,), y (B,) | None) -> predicted noise``: a small U-Net.

    ``n_classes > 0`` adds a class embedding with one extra "no class" entry (index
    ``n_classes``), used for label dropout and unconditional calls.
    """

    def __init__(
        self, channels: int, *, base: int = 32, mults: tuple[int, ...] = (1, 2, 2),
        n_classes: int = 0, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.time_dim = base
        emb_dim = base * 4
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(n_classes + 1, emb_dim) if n_classes else None
        widths = [base * m for m in mults]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, emb_dim, dropout))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([_ResBlock(c, c, emb_dim, dropout), _ResBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(c + w, w, emb_dim, dropout))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv2d(c, widths[i - 1], 3, padding=1))
                c = widths[i - 1]
        self.out_norm = _norm(c)
        self.out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.n_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_emb(y)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, emb)
        for j, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = torch.nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
                h = self.upsample[j](h)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))


# --- training ----------------------------------------------------------------------------------
class ImageDDPMTrainingTask(TrainingTask):
    """Noise-prediction MSE at uniform timesteps; AdamW; weight EMA with warm-up."""

    def __init__(self, net: UNetNet, ema: UNetNet | None, gaussian: GaussianSchedule,
                 shape: tuple[int, int, int], *, learning_rate: float, ema_decay: float | None,
                 label_dropout: float) -> None:
        self.net, self.ema, self.gaussian, self.shape = net, ema, gaussian, shape
        self.ema_decay, self.label_dropout = ema_decay, label_dropout
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=0.0)
        self.updates = 0

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"unet": self.net}
        if self.ema is not None:
            out["ema"] = self.ema
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize each image's loss

    def private_modules(self) -> tuple[list[str], list[str]]:
        """The U-Net sees real images; its weight average only copies it (post-processing)."""
        return ["unet"], ["adamw"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x0, y = split_batch(batch, self.shape)
        rows = x0.shape[0]
        t = torch.randint(0, self.gaussian.timesteps, (rows,), generator=ctx.generator, device=ctx.device)
        noise = torch.randn(x0.shape, generator=ctx.generator, device=ctx.device)
        x_t = self.gaussian.q_sample(x0.reshape(rows, -1), t, noise.reshape(rows, -1)).reshape(x0.shape)
        labels = None
        if self.net.n_classes:
            hide = torch.rand((rows,), generator=ctx.generator, device=ctx.device) < self.label_dropout
            labels = torch.where(hide, torch.full_like(y, self.net.n_classes), y)
        with ctx.autocast():
            pred = self.net(x_t, t, labels)
        row_losses = (pred.float() - noise).square().flatten(1).mean(1)
        loss = row_losses.mean()
        ctx.optimize(loss, self.optimizer, rows=row_losses)
        self._update_ema()
        return {"loss": loss.detach()}

    def _update_ema(self) -> None:
        if self.ema is None or self.ema_decay is None:
            return
        self.updates += 1
        decay = min(self.ema_decay, (1.0 + self.updates) / (10.0 + self.updates))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                e.lerp_(p, 1.0 - decay)
            for e, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
                e.copy_(b)

    def extra_checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"ema_updates": self.updates}

    def load_extra_checkpoint_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.updates = int(meta.get("ema_updates", 0))


# --- the generator -----------------------------------------------------------------------------
class ImageDDPMGenerator(ImageGenerator):
    """DDPM for images: a small U-Net on the shared Gaussian schedule and samplers."""

    name = "image/ddpm"
    config_class = ImageDDPMConfig
    config: ImageDDPMConfig
    sample_chunk: ClassVar[int] = 256

    @property
    def levels(self) -> int:  # type: ignore[override]
        return len(self.config.channel_mults) - 1

    def _net(self) -> UNetNet:
        cfg = self.config
        return UNetNet(self.image_shape_[2], base=cfg.base_channels, mults=tuple(cfg.channel_mults),
                       n_classes=self.n_classes_, dropout=cfg.dropout)

    def _fit_images(self, matrix: np.ndarray, *, resume: bool) -> None:
        cfg = self.config
        trainer = self._trainer("image/ddpm")
        with seeded(cfg.seed):
            net = self._net()
        ema = None
        if cfg.ema_decay is not None:
            ema = self._net()
            ema.load_state_dict(net.state_dict())
            ema.requires_grad_(False)
        gaussian = GaussianSchedule.named(cfg.schedule, cfg.timesteps, trainer.device)
        task = ImageDDPMTrainingTask(
            net.to(trainer.device), None if ema is None else ema.to(trainer.device), gaussian,
            self.image_shape_, learning_rate=cfg.learning_rate, ema_decay=cfg.ema_decay,
            label_dropout=cfg.label_dropout if self.n_classes_ else 0.0,
        )
        self._run(trainer, task, matrix, resume=resume)
        self.unet_ = (ema if ema is not None else net).eval()
        self.fit_report_["ddpm"] = {"parameters": sum(p.numel() for p in net.parameters())}

    def sampler(self) -> DiffusionSampler:
        """The configured sampler (a swap: DDPM, DDIM or DPM-Solver on the same network)."""
        cfg = self.config
        if cfg.sampler == "ddpm":
            return AncestralSampler("small")
        if cfg.sampler == "dpm":
            return DPMSolverSampler(cfg.sampling_steps)
        return DDIMSampler(cfg.sampling_steps, eta=cfg.eta)

    def _sample_images(self, n: int, y: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        cfg = self.config
        device = self.device_
        h, w, c = self.image_shape_
        gaussian = GaussianSchedule.named(cfg.schedule, cfg.timesteps, device)
        labels = labels_tensor(y, device)
        guided = labels is not None and cfg.guidance_scale != 1.0
        net = self.unet_

        def denoise(x_num: torch.Tensor, x_cat: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = x_num.reshape(-1, c, h, w)
            tt = t.expand(x.shape[0])
            if guided:
                both = net(torch.cat([x, x]), torch.cat([tt, tt]),
                           torch.cat([labels, torch.full_like(labels, self.n_classes_)]))
                cond, uncond = both.chunk(2)
                eps = uncond + cfg.guidance_scale * (cond - uncond)
            else:
                eps = net(x, tt, labels)
            return eps.reshape(x.shape[0], -1), x_num.new_zeros((x.shape[0], 0))

        x, _ = self.sampler().sample(denoise, gaussian, None, n, n_numerical=h * w * c,
                                     generator=generator, clip=1.0)
        return x.reshape(n, c, h, w).clamp(-1, 1).cpu().numpy()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return module_state({"unet": self.unet_}), {_STATE_FILE: {"version": _STATE_VERSION}}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        family_state(files, _STATE_FILE, _STATE_VERSION)
        self.device_ = resolve_device(self.config.device, fallback=True)
        net = self._net()
        load_module_state({"unet": net}, tensors)
        self.unet_ = net.to(self.device_).eval()
