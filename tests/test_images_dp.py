"""Differential privacy of the image families (image/vae, image/dcgan, image/ddpm, image/diffusers):
DP-SGD through Opacus on the networks that see real images, declared classes, honest reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.evaluate.images import memorisation
from synthkit.generators.image.dcgan import DCGANTrainingTask
from synthkit.generators.image.vae import ImageVAETrainingTask
from synthkit.images import ImageSet

CLASSES = list(range(10))
DP = {"epsilon": 3.0, "delta": 1e-5}
FAST = {
    "image/vae": {"base_channels": 8, "latent_dim": 8},
    "image/dcgan": {"generator_channels": 8, "discriminator_channels": 8, "monitor_samples": 50,
                    "monitor_reference": 50},
    "image/ddpm": {"base_channels": 8, "channel_mults": (1, 2), "timesteps": 50, "sampling_steps": 5},
}


def private(name: str, **extra):
    options = {"seed": 0, "epochs": 2, "batch_size": 50, "progress": False, "dp": DP, "classes": CLASSES}
    return sk.create(name, **{**options, **FAST[name], **extra})


@pytest.mark.parametrize("name", sorted(FAST))
def test_family_trains_privately_with_opacus_epsilon(name, small_digits, tmp_path):
    gen = private(name).fit(small_digits)
    privacy = gen.fit_report_["privacy"]
    sgd = privacy["sgd"]
    accountant = RDPAccountant()
    accountant.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(delta=sgd["delta"]), rel=1e-9)
    assert 0 < privacy["epsilon"] <= 3.0 + 1e-6 and privacy["delta"] == 1e-5
    assert sgd["steps"] == 2 * round(200 / 50) and sgd["sample_rate"] == pytest.approx(50 / 200)
    assert sgd["grad_sample_mode"] == "ghost" and "declared classes" in privacy["covers"]
    # nothing measured on real images beyond what DP covers: epsilon per epoch, no losses, no shares
    assert [set(h) for h in gen.fit_report_["training"]["history"]] == [{"epoch", "epsilon"}] * 2
    assert gen.class_shares_ == [] and gen.classes_ == CLASSES
    sevens = gen.sample(6, conditions={"label": 7}, seed=1)
    assert sevens.label_values() == [7] * 6 and sevens.shape == (16, 16, 1)
    path = gen.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["class_shares"] == [] and manifest["classes"] == CLASSES
    loaded = sk.load(path)
    assert loaded.sample(5, seed=2).fingerprint() == gen.sample(5, seed=2).fingerprint()
    assert loaded.fit_report_["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"])


def test_private_fit_needs_the_class_set_declared(small_digits):
    with pytest.raises(ConfigError, match="declared public") as info:
        sk.create("image/vae", epochs=1, progress=False, dp=DP, **FAST["image/vae"]).fit(small_digits)
    assert "classes=[...]" in info.value.hint
    with pytest.raises(DataError, match="not among the declared classes"):
        private("image/vae", classes=[0, 1, 2]).fit(small_digits)
    with pytest.raises(ValueError, match="distinct"):
        private("image/vae", classes=[1, 1])
    # unconditional: no class set to declare
    gen = sk.create("image/vae", seed=0, epochs=1, batch_size=50, progress=False, dp=DP, conditional=False,
                    **FAST["image/vae"]).fit(small_digits)
    assert gen.classes_ == [] and gen.sample(3, seed=0).labels is None
    # without dp, a declared set names the classes (a class missing from the data is allowed)
    declared = sk.create("image/vae", seed=0, epochs=1, progress=False, classes=[*CLASSES, 10],
                         **FAST["image/vae"]).fit(small_digits)
    assert declared.classes_ == [*CLASSES, 10] and len(declared.class_shares_) == 11


def test_private_model_samples_classes_uniformly_not_in_training_shares(digits):
    skewed = digits.subset(np.flatnonzero(np.isin(digits.labels.to_series().to_numpy(), [0, 1])))
    gen = private("image/vae", epochs=1, classes=[0, 1, 2, 3]).fit(skewed)
    labels = np.asarray(gen.sample(2000, seed=0).label_values())
    shares = np.bincount(labels, minlength=4) / len(labels)
    assert np.all(np.abs(shares - 0.25) < 0.04), shares  # the data holds only 0s and 1s


def test_private_dcgan_discriminator_and_fixed_generated_count(small_digits, private_steps):
    steps = private_steps(DCGANTrainingTask)
    gen = private("image/dcgan").fit(small_digits)
    assert len(steps()) == 8 and len({b for b, _, _ in steps()}) > 1  # Poisson batches vary in size
    # every discriminator step saw its real images plus a fixed number of generated ones
    assert all(handed == real + expected for real, expected, handed in steps())
    # no spectral norm (Opacus cannot clip through it), no monitor on real images
    assert "off" in gen.fit_report_["mode_collapse"] and "per_epoch" not in gen.fit_report_["mode_collapse"]
    _, disc = gen._nets()
    assert not any("parametrizations" in n for n, _ in disc.named_parameters())
    plain, disc_plain = sk.create("image/dcgan", **FAST["image/dcgan"]), None
    plain.image_shape_, plain.classes_ = gen.image_shape_, gen.classes_
    _, disc_plain = plain._nets()
    assert any("parametrizations" in n for n, _ in disc_plain.named_parameters())


def test_private_resume_continues_the_same_plan(small_digits, tmp_path, monkeypatch):
    opts = {"epochs": 3, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    original = ImageVAETrainingTask.on_epoch_end

    def interrupt(self, epoch, ctx):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, ctx)

    monkeypatch.setattr(ImageVAETrainingTask, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        private("image/vae", **opts).fit(small_digits)
    monkeypatch.undo()
    resumed = private("image/vae", **opts).fit(small_digits, resume=True)
    straight = private("image/vae", epochs=3).fit(small_digits)
    assert resumed.fit_report_["training"]["resumed_from"] == 1
    assert resumed.fit_report_["privacy"]["epsilon"] == pytest.approx(straight.fit_report_["privacy"]["epsilon"])
    assert resumed.sample(8, seed=3).fingerprint() == straight.sample(8, seed=3).fingerprint()
    with pytest.raises(ConfigError, match="privacy plan"):
        private("image/vae", **{**opts, "epochs": 6}).fit(small_digits, resume=True)


def test_dp_keeps_a_model_from_copying_its_ten_training_images(digits):
    """The VAE that the memorisation test overfits on ten images copies them; under DP it cannot."""
    ten = ImageSet.from_array(digits.images[:10], labels=CLASSES)
    settings = dict(seed=0, epochs=150, batch_size=10, progress=False, base_channels=8, latent_dim=4,
                    learning_rate=1e-2)
    overfit = sk.create("image/vae", **settings).fit(ten)
    dp = sk.create("image/vae", dp={"epsilon": 1.0}, classes=CLASSES, **settings).fit(ten)
    copied = memorisation(ten, overfit.sample(50, seed=0))["copy_share"]
    private_copies = memorisation(ten, dp.sample(50, seed=0))["copy_share"]
    assert copied > 0.5 and private_copies < 0.1, (copied, private_copies)


def test_image_diffusers_fine_tunes_privately(digits, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=10)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        str(tmp_path / "ckpt"), safe_serialization=True)
    gen = sk.create("image/diffusers", checkpoint=tmp_path / "ckpt", epochs=1, batch_size=16, seed=0,
                    sampling_steps=2, progress=False, dp={"epsilon": 5.0}, classes=CLASSES)
    gen.fit(digits.subset(slice(0, 64)))
    privacy = gen.fit_report_["privacy"]
    assert 0 < privacy["epsilon"] <= 5.0 and privacy["sgd"]["steps"] == 4
    assert gen.sample(2, conditions={"label": 3}, seed=0).label_values() == [3, 3]
