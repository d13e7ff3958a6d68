"""image/dcgan: a deep convolutional GAN (Radford et al., 2016), class-conditional, with a
mode-collapse monitor.

* Generator net: a linear layer from the noise (concatenated with a class embedding) to a ``H/4 × W/4`` grid,
  two stride-2 transposed convolutions with BatchNorm and ReLU, ``tanh`` out.
* Discriminator net: two stride-2 convolutions with LeakyReLU and spectral normalisation
  (Miyato et al., 2018) on every layer, a linear score, and for a labelled set a projection term (Miyato & Koyama, 2018): the inner
  product of a class embedding with the features, so it judges "a real image of this class".
* Loss: the non-saturating GAN loss; Adam with beta1 = 0.5, as DCGAN.
* Mode-collapse monitor: after every epoch a fixed batch of noise (classes in turn) is generated
  and compared with a fixed subset of real images (pixels average-pooled to at most 16×16):
  ``coverage`` (Naeem et al., 2020: the share of real images with a generated one inside their
  5-nearest-neighbour radius), ``diversity`` (mean distance between generated images over the
  same among real ones), and for a labelled set ``class_coverage`` (share of classes that some
  generated image's nearest real image belongs to) and ``label_agreement`` (share of generated
  images whose nearest real image has the class asked for). These go into every epoch of the
  training history; a drop of coverage to under half its best, or diversity under 0.3, is a
  warning, and ``fit_report_["mode_collapse"]`` keeps the per-epoch figures and the verdict.
* With ``dp=`` only the discriminator sees real images, so only it is trained with DP-SGD (each
  image's loss clipped by Opacus' ghost clipping); the generator learns from its private
  judgements alone. Spectral normalisation is left out then (Opacus cannot clip through a weight
  parametrisation; the clipping bounds the updates instead), generated images in the
  discriminator step get classes drawn uniformly and come in a fixed number (the expected batch),
  so no real image changes more than its own term, and the monitor is off (it compares with real
  images, which a private run keeps none of).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from synthkit.generators.image.base import ImageConfig, ImageGenerator, labels_tensor, split_batch
from synthkit.generators.neural import family_state
from synthkit.nn import (
    StepContext,
    TrainingTask,
    load_module_state,
    module_state,
    resolve_device,
    seeded,
)

_STATE_FILE = "image_dcgan.json"
_STATE_VERSION = 2  # 2: the class embedding is concatenated to the noise
#: Seed of the monitor's fixed noise and of its choice of real images.
_MONITOR_SEED = 20_240_909
#: Neighbours that set a real image's radius in the coverage measure.
_COVERAGE_K = 5


class DCGANConfig(ImageConfig):
    """Options of image/dcgan; the defaults are DCGAN's (Adam 2e-4, beta1 0.5)."""

    epochs: int = Field(50, ge=1, description="Passes over the training images.")
    learning_rate: float = Field(2e-4, gt=0.0, description="Adam learning rate of both networks.")
    latent_dim: int = Field(64, ge=1, description="Size of the noise vector.")
    generator_channels: int = Field(64, ge=4, description="Channels of the generator's last hidden layer.")
    discriminator_channels: int = Field(64, ge=4, description="Channels of the discriminator's first layer.")
    monitor_samples: int = Field(
        200, ge=0, description="Images generated after every epoch for the mode-collapse monitor "
        "(0 turns it off)."
    )
    monitor_reference: int = Field(500, ge=10, description="Real images the monitor compares with.")


class DCGANGeneratorNet(nn.Module):
    """Noise (and class) -> image in [-1, 1]."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, channels: int, n_classes: int) -> None:
        super().__init__()
        h, w, c = shape
        self.latent_dim = latent_dim
        self.grid = (channels * 2, h // 4, w // 4)
        self.embed = nn.Embedding(n_classes, latent_dim) if n_classes else None
        inputs = latent_dim * 2 if n_classes else latent_dim
        self.fc = nn.Sequential(
            nn.Linear(inputs, int(np.prod(self.grid)), bias=False),
            nn.BatchNorm1d(int(np.prod(self.grid))), nn.ReLU(),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(channels * 2, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("A class-conditional DCGAN generator needs a class per image.")
            # concatenated, not multiplied: a gate on the noise left the class weak after short runs
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(self.fc(z).view(-1, *self.grid))


class DCGANDiscriminatorNet(nn.Module):
    """Image (and class) -> realness logit, with a class projection term."""

    def __init__(self, shape: tuple[int, int, int], channels: int, n_classes: int, *,
                 spectral_norm: bool = True) -> None:
        super().__init__()
        h, w, c = shape
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
        self.features = nn.Sequential(
            sn(nn.Conv2d(c, channels, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(channels, channels * 2, 4, 2, 1)), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        width = channels * 2 * (h // 4) * (w // 4)
        self.score = sn(nn.Linear(width, 1))
        self.embed = sn(nn.Embedding(n_classes, width)) if n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.score(h).squeeze(1)
        if self.embed is not None and y is not None:
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


def pool_features(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) -> flat pixels average-pooled to at most 16×16 (the monitor's space)."""
    h, w = x.shape[2:]
    if h > 16 or w > 16:
        x = torch.nn.functional.adaptive_avg_pool2d(x, (min(h, 16), min(w, 16)))
    return x.flatten(1).float()


class CoverageMonitor:
    """Per-epoch coverage, diversity and class coverage of a fixed generated batch (see module doc)."""

    def __init__(self, real: torch.Tensor, real_labels: torch.Tensor | None, n_classes: int,
                 samples: int, latent_dim: int) -> None:
        self.real = pool_features(real)
        self.real_labels = real_labels
        self.n_classes = n_classes
        d = torch.cdist(self.real, self.real)
        k = min(_COVERAGE_K, self.real.shape[0] - 1)
        self.radius = d.topk(k + 1, largest=False).values[:, -1]
        off = d[~torch.eye(d.shape[0], dtype=torch.bool, device=d.device)]
        self.real_spread = float(off.mean()) if off.numel() else 1.0
        gen = torch.Generator(device=real.device).manual_seed(_MONITOR_SEED)
        self.noise = torch.randn((samples, latent_dim), generator=gen, device=real.device)
        self.labels = (torch.arange(samples, device=real.device) % n_classes) if n_classes else None
        self.best_coverage = 0.0

    def measure(self, fake: torch.Tensor) -> dict[str, Any]:
        f = pool_features(fake)
        d = torch.cdist(self.real, f)  # (real, fake)
        coverage = float((d.min(dim=1).values <= self.radius).float().mean())
        pairwise = torch.cdist(f, f)
        m = f.shape[0]
        diversity = float(pairwise.sum() / max(m * (m - 1), 1)) / max(self.real_spread, 1e-12)
        out: dict[str, Any] = {"coverage": round(coverage, 4), "diversity": round(diversity, 4)}
        if self.real_labels is not None and self.labels is not None:
            nearest = self.real_labels[d.argmin(dim=0)]
            out["class_coverage"] = round(len(torch.unique(nearest)) / self.n_classes, 4)
            out["label_agreement"] = round(float((nearest == self.labels).float().mean()), 4)
        warning = None
        if coverage < 0.5 * self.best_coverage:
            warning = (f"possible mode collapse: coverage {coverage:.2f} fell below half its best "
                       f"({self.best_coverage:.2f})")
        elif diversity < 0.3:
            warning = f"possible mode collapse: generated images are alike (diversity {diversity:.2f})"
        self.best_coverage = max(self.best_coverage, coverage)
        if warning:
            out["warning"] = warning
        return out


class DCGANTrainingTask(TrainingTask):
    """Non-saturating GAN loss: one discriminator step, then one generator step, per batch."""

    def __init__(self, gen: DCGANGeneratorNet, disc: DCGANDiscriminatorNet, shape: tuple[int, int, int],
                 *, learning_rate: float, conditional: bool, monitor: CoverageMonitor | None,
                 n_classes: int = 0) -> None:
        self.gen, self.disc, self.shape = gen, disc, shape
        self.conditional, self.monitor, self.n_classes = conditional, monitor, n_classes
        self.opt_g = torch.optim.Adam(gen.parameters(), lr=learning_rate, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=learning_rate, betas=(0.5, 0.999))
        self.coverage: list[dict[str, Any]] = []

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.gen, "discriminator": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    dp_row_losses = True  # the private discriminator step hands ctx.optimize its per-image losses

    def private_modules(self) -> tuple[list[str], list[str]]:
        """Only the discriminator sees real images: DP-SGD privatises it."""
        return ["discriminator"], ["discriminator"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.private is not None:
            return self._private_step(batch, ctx)
        real, y = split_batch(batch, self.shape)
        y = y if self.conditional else None
        rows = real.shape[0]
        z = torch.randn((rows, self.gen.latent_dim), generator=ctx.generator, device=ctx.device)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        with ctx.autocast():
            fake = self.gen(z, y)
            d_real = self.disc(real, y).float()
            d_fake = self.disc(fake.detach(), y).float()
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.optimize(loss_d, self.opt_d)
        with ctx.autocast():
            d_gen = self.disc(fake, y).float()
        loss_g = bce(d_gen, torch.ones_like(d_gen))
        ctx.optimize(loss_g, self.opt_g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def _private_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One DP-SGD discriminator step on a Poisson batch of real images, then one generator step.

        Real and generated images go through the discriminator in one pass, so every image's
        gradient is clipped alike. The generated images are as many as the plan's expected batch
        with classes drawn uniformly from the declared set: neither depends on the real batch.
        """
        assert ctx.private is not None
        real, y = split_batch(batch, self.shape)
        y = y if self.conditional else None
        rows, n = real.shape[0], max(ctx.private.expected_batch, 2)  # the generator's BatchNorm: 2+
        fake_y = None
        if y is not None:
            fake_y = torch.randint(0, self.n_classes, (n,), generator=ctx.generator, device=ctx.device)
        z = torch.randn((n, self.gen.latent_dim), generator=ctx.generator, device=ctx.device)
        softplus = torch.nn.functional.softplus
        with ctx.autocast():
            with torch.no_grad():
                fake = self.gen(z, fake_y)
            both_y = None if y is None else torch.cat([y, fake_y])
            scores = self.disc(torch.cat([real, fake.to(real.dtype)]), both_y).float()
        # per-image losses whose mean is the usual mean(real) + mean(fake) loss
        total = rows + n
        row_losses = torch.cat([softplus(-scores[:rows]) * (total / rows), softplus(scores[rows:]) * (total / n)])
        loss_d = row_losses.mean()
        ctx.optimize(loss_d, self.opt_d, rows=row_losses)
        self.disc.requires_grad_(False)
        try:
            z = torch.randn((n, self.gen.latent_dim), generator=ctx.generator, device=ctx.device)
            with ctx.outside_privacy(), ctx.autocast():
                loss_g = softplus(-self.disc(self.gen(z, fake_y), fake_y).float()).mean()
                ctx.optimize(loss_g, self.opt_g)
        finally:
            self.disc.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> dict[str, Any]:
        if self.monitor is None:
            return {}
        self.gen.eval()
        with torch.no_grad():
            fake = self.gen(self.monitor.noise, self.monitor.labels if self.conditional else None)
        self.gen.train()
        record = self.monitor.measure(fake)
        self.coverage.append({"epoch": epoch + 1, **record})
        return record


class DCGANGenerator(ImageGenerator):
    """DCGAN for images, class-conditional when the images have labels."""

    name = "image/dcgan"
    config_class = DCGANConfig
    config: DCGANConfig
    levels: ClassVar[int] = 2

    def _nets(self) -> tuple[DCGANGeneratorNet, DCGANDiscriminatorNet]:
        cfg = self.config
        return (
            DCGANGeneratorNet(self.image_shape_, cfg.latent_dim, cfg.generator_channels, self.n_classes_),
            DCGANDiscriminatorNet(self.image_shape_, cfg.discriminator_channels, self.n_classes_,
                                  spectral_norm=cfg.dp is None),
        )

    def _fit_images(self, matrix: np.ndarray, *, resume: bool) -> None:
        cfg = self.config
        trainer = self._trainer("image/dcgan")
        with seeded(cfg.seed):
            gen, disc = self._nets()
        monitor = None
        if cfg.monitor_samples and cfg.dp is not None:
            self.fit_report_["mode_collapse"] = {
                "off": "the monitor compares generated with real images; a private fit keeps none"}
        elif cfg.monitor_samples:
            pick = np.random.default_rng(_MONITOR_SEED).permutation(matrix.shape[0])[: cfg.monitor_reference]
            ref = torch.as_tensor(matrix[np.sort(pick)], device=trainer.device)
            real, labels = split_batch(ref, self.image_shape_)
            monitor = CoverageMonitor(real, labels if self.n_classes_ else None, self.n_classes_,
                                      cfg.monitor_samples, cfg.latent_dim)
        task = DCGANTrainingTask(
            gen.to(trainer.device), disc.to(trainer.device), self.image_shape_,
            learning_rate=cfg.learning_rate, conditional=self.n_classes_ > 0, monitor=monitor,
            n_classes=self.n_classes_,
        )
        result = self._run(trainer, task, matrix, resume=resume)
        self.generator_ = gen.eval()
        keys = ("coverage", "diversity", "class_coverage", "label_agreement", "warning")
        per_epoch = [{"epoch": r["epoch"], **{k: r[k] for k in keys if k in r}} for r in result.history]
        if monitor is not None:
            final = {k: v for k, v in per_epoch[-1].items() if k not in ("epoch", "warning")}
            collapsed = bool(per_epoch[-1].get("warning"))
            self.fit_report_["mode_collapse"] = {
                "per_epoch": per_epoch, "final": final, "suspected": collapsed,
                "measured_on": f"{monitor.noise.shape[0]} generated vs {monitor.real.shape[0]} real "
                               "images, pixels pooled to at most 16×16",
            }
        self.fit_report_["dcgan"] = {
            "parameters": sum(p.numel() for p in (*gen.parameters(), *disc.parameters()))
        }

    def _sample_images(self, n: int, y: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=self.device_)
        return self.generator_(z, labels_tensor(y, self.device_)).float().cpu().numpy()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return module_state({"generator": self.generator_}), {_STATE_FILE: {"version": _STATE_VERSION}}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        family_state(files, _STATE_FILE, _STATE_VERSION)
        self.device_ = resolve_device(self.config.device, fallback=True)
        gen, _ = self._nets()
        load_module_state({"generator": gen}, tensors)
        self.generator_ = gen.to(self.device_).eval()
