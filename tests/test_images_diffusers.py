"""image/diffusers: a tiny random UNet2DModel + DDPMScheduler pipeline built from configs and
saved locally, then sampled and fine-tuned offline on scikit-learn digits (16×16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.images import ImageSet

diffusers = pytest.importorskip("diffusers")


def tiny_pipeline(path, *, classes: int | None = None, scheduler: str = "DDPMScheduler"):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=classes,
    )
    sched = getattr(diffusers, scheduler)(num_train_timesteps=100)
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(str(path), safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def digits16() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    return ImageSet.from_array(d.images[:64] / 16.0, labels=d.target[:64].tolist()).resized(16)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("ckpt") / "tiny-ddpm")


def test_sample_the_checkpoint_as_it_is(pipeline_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = sk.create("image/diffusers", checkpoint=pipeline_dir)  # registered by entry point
    assert type(gen).__name__ == "DiffusersImageGenerator"
    gen = type(gen).from_checkpoint(pipeline_dir, sampling_steps=4, seed=0)
    out = gen.sample(5, seed=1)
    assert isinstance(out, ImageSet) and out.shape == (16, 16, 1) and len(out) == 5 and out.labels is None
    assert gen.sample(5, seed=1).fingerprint() == out.fingerprint()
    assert gen.sample(5, seed=2).fingerprint() != out.fingerprint()
    # the same network as diffusers' own pipeline (same scheduler and steps, different noise draws)
    pipe = diffusers.DDPMPipeline.from_pretrained(str(pipeline_dir), local_files_only=True)
    assert sum(p.numel() for p in pipe.unet.parameters()) == sum(p.numel() for p in gen.unet_.parameters())
    ddim = type(gen).from_checkpoint(pipeline_dir, sampling_steps=3, sampler="ddim")
    assert type(ddim.scheduler()).__name__ == "DDIMScheduler" and len(ddim.sample(3, seed=0)) == 3


def test_fine_tune_one_step_save_load_and_export(pipeline_dir, digits16, tmp_path):
    gen = sk.create("image/diffusers", checkpoint=pipeline_dir, epochs=1, batch_size=64, seed=0,
                    sampling_steps=3, progress=False, learning_rate=1e-3)
    before = {k: v.clone() for k, v in type(gen).from_checkpoint(pipeline_dir).unet_.state_dict().items()}
    gen.fit(digits16)
    report = gen.fit_report_
    assert report["training"]["epochs_run"] == 1 and len(report["training"]["history"]) == 1
    assert "no class embeddings" in report["warnings"][-1] and gen.classes_ == []
    after = gen.unet_.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # one AdamW step changed it
    out = gen.sample(4, seed=0)
    path = gen.save(tmp_path / "model")
    state = json.loads((path / "image_diffusers.json").read_text())
    assert state["scheduler_class"] == "DDPMScheduler" and state["unet_config"]["block_out_channels"] == [16, 32]
    assert not list(path.glob("*.bin")) and (path / "weights.safetensors").is_file()
    loaded = sk.load(path)
    assert loaded.sample(4, seed=0).fingerprint() == out.fingerprint()
    exported = gen.export_pipeline(tmp_path / "exported")
    pipe = diffusers.DDPMPipeline.from_pretrained(str(exported), local_files_only=True)
    assert torch.equal(pipe.unet.state_dict()["conv_in.weight"], after["conv_in.weight"])


def test_class_conditional_checkpoint_and_resume(digits16, tmp_path):
    ckpt = tiny_pipeline(tmp_path / "cond", classes=10, scheduler="DDIMScheduler")
    opts = dict(checkpoint=ckpt, batch_size=32, seed=0, sampling_steps=2, progress=False,
                checkpoint_dir=tmp_path / "train", checkpoint_every=1)
    sk.create("image/diffusers", epochs=1, **opts).fit(digits16)
    gen = sk.create("image/diffusers", epochs=2, **opts).fit(digits16, resume=True)
    assert gen.fit_report_["training"]["resumed_from"] == 1
    assert gen.classes_ == list(range(10))
    sevens = gen.sample(3, conditions={"label": 7}, seed=0)
    assert sevens.label_values() == [7] * 3
    with pytest.raises(DataError, match="needs labelled images"):
        sk.create("image/diffusers", checkpoint=ckpt, progress=False).fit(ImageSet(digits16.images))


def test_bad_checkpoints_and_images_give_clear_errors(pipeline_dir, digits16, tmp_path):
    with pytest.raises(ConfigError, match="Hub id") as info:
        sk.create("image/diffusers", checkpoint="google/ddpm-cifar10-32").fit(digits16)
    assert "save_pretrained" in info.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="unet/config.json is missing"):
        sk.create("image/diffusers", checkpoint=tmp_path / "empty").fit(digits16)
    with pytest.raises(DataError, match="takes 16×16 images") as info:
        sk.create("image/diffusers", checkpoint=pipeline_dir, progress=False).fit(
            ImageSet.from_array(np.zeros((4, 8, 8), np.uint8)))
    assert "resized(16)" in info.value.hint
    pickled = tmp_path / "pickled"
    tiny_pipeline(pickled)
    for f in (pickled / "unet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ConfigError, match="no safetensors"):
        sk.create("image/diffusers", checkpoint=pickled).fit(digits16)
