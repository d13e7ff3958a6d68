"""image/vae: a convolutional variational autoencoder (Kingma & Welling, 2014), class-conditional.

The encoder (two stride-2 convolutions, then two linear heads) maps an image to the mean and
log-variance of a latent code; the decoder (a linear layer, then two stride-2 transposed
convolutions) maps a code to per-pixel logits. The loss per image is the Bernoulli
cross-entropy of the pixels (intensities in [0, 1] as soft targets) plus ``kl_weight`` times the
KL divergence from the standard normal prior. For a labelled set both networks also see a class
embedding (a conditional VAE), so ``sample(conditions={"label": k})`` decodes codes for class k.
Sampling decodes standard normal codes to the pixels' expected intensities.

With ``dp=`` both networks see real images, so both are trained with DP-SGD (each image's loss
clipped by Opacus' ghost clipping).
"""

from __future__ import annotations

from typing import Any

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

_STATE_FILE = "image_vae.json"
_STATE_VERSION = 1


class ImageVAEConfig(ImageConfig):
    """Options of image/vae."""

    latent_dim: int = Field(32, ge=1, description="Size of the latent code.")
    base_channels: int = Field(32, ge=4, description="Channels of the first convolution.")
    kl_weight: float = Field(1.0, gt=0.0, description="Weight of the KL term (beta-VAE's beta).")


class _Conditioning(nn.Module):
    """A class embedding (or nothing, for an unlabelled set)."""

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_classes, dim) if n_classes else None
        self.dim = dim if n_classes else 0

    def forward(self, y: torch.Tensor | None, rows: int, like: torch.Tensor) -> torch.Tensor:
        if self.table is None or y is None:
            return like.new_zeros((rows, self.dim))
        return self.table(y)


class VAEEncoderNet(nn.Module):
    """Image (and class) -> mean and log-variance of its latent code."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, base: int, n_classes: int) -> None:
        super().__init__()
        h, w, c = shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, base, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(base, base * 2, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
        )
        self.cond = _Conditioning(n_classes, 16)
        hidden = base * 2 * (h // 4) * (w // 4) + self.cond.dim
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        h = torch.cat([h, self.cond(y, x.shape[0], h)], dim=1)
        return self.mu(h), self.logvar(h)


class VAEDecoderNet(nn.Module):
    """Latent code (and class) -> per-pixel logits ``(B, C, H, W)``."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, base: int, n_classes: int) -> None:
        super().__init__()
        h, w, c = shape
        self.latent_dim = latent_dim
        self.grid = (base * 2, h // 4, w // 4)
        self.cond = _Conditioning(n_classes, 16)
        self.fc = nn.Sequential(nn.Linear(latent_dim + self.cond.dim, int(np.prod(self.grid))), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(base * 2, base, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(base, c, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.cond(y, z.shape[0], z)], dim=1))
        return self.deconv(h.view(-1, *self.grid))


class ImageVAETrainingTask(TrainingTask):
    """ELBO of the convolutional VAE: pixel cross-entropy + weighted KL, one Adam."""

    def __init__(self, encoder: VAEEncoderNet, decoder: VAEDecoderNet, shape: tuple[int, int, int],
                 *, learning_rate: float, kl_weight: float, conditional: bool) -> None:
        self.encoder, self.decoder, self.shape = encoder, decoder, shape
        self.kl_weight, self.conditional = kl_weight, conditional
        params = list(encoder.parameters()) + list(decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=learning_rate)

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize each image's loss

    def private_modules(self) -> tuple[list[str], list[str]]:
        """Both networks see real images (the decoder reconstructs them): both are private."""
        return ["encoder", "decoder"], ["adam"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x, y = split_batch(batch, self.shape)
        y = y if self.conditional else None
        with ctx.autocast():
            mu, logvar = self.encoder(x, y)
        mu, logvar = mu.float(), logvar.float()
        eps = torch.randn(mu.shape, generator=ctx.generator, device=ctx.device)
        with ctx.autocast():
            logits = self.decoder(mu + eps * torch.exp(0.5 * logvar), y)
        target = (x + 1.0) / 2.0
        reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), target, reduction="none").flatten(1).sum(1)
        kl = -0.5 * torch.sum(1.0 + logvar - mu.square() - logvar.exp(), dim=1)
        row_losses = reconstruction + self.kl_weight * kl
        loss = row_losses.mean()
        ctx.optimize(loss, self.optimizer, rows=row_losses)
        return {"loss": loss.detach(), "reconstruction": reconstruction.mean().detach(),
                "kl": kl.mean().detach()}


class ImageVAEGenerator(ImageGenerator):
    """A convolutional (conditional) VAE for images."""

    name = "image/vae"
    config_class = ImageVAEConfig
    config: ImageVAEConfig

    def _nets(self) -> tuple[VAEEncoderNet, VAEDecoderNet]:
        cfg = self.config
        args = (self.image_shape_, cfg.latent_dim, cfg.base_channels, self.n_classes_)
        return VAEEncoderNet(*args), VAEDecoderNet(*args)

    def _fit_images(self, matrix: np.ndarray, *, resume: bool) -> None:
        cfg = self.config
        trainer = self._trainer("image/vae")
        with seeded(cfg.seed):
            encoder, decoder = self._nets()
        task = ImageVAETrainingTask(
            encoder.to(trainer.device), decoder.to(trainer.device), self.image_shape_,
            learning_rate=cfg.learning_rate, kl_weight=cfg.kl_weight, conditional=self.n_classes_ > 0,
        )
        self._run(trainer, task, matrix, resume=resume)
        self.decoder_ = decoder.eval()
        self.fit_report_["vae"] = {
            "parameters": sum(p.numel() for p in (*encoder.parameters(), *decoder.parameters()))
        }

    def _sample_images(self, n: int, y: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=self.device_)
        logits = self.decoder_(z, labels_tensor(y, self.device_))
        return (torch.sigmoid(logits.float()) * 2.0 - 1.0).cpu().numpy()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return module_state({"decoder": self.decoder_}), {_STATE_FILE: {"version": _STATE_VERSION}}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        family_state(files, _STATE_FILE, _STATE_VERSION)
        self.device_ = resolve_device(self.config.device, fallback=True)
        _, decoder = self._nets()
        load_module_state({"decoder": decoder}, tensors)
        self.decoder_ = decoder.to(self.device_).eval()
