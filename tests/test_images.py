"""Images: ImageSet, the image connector (folder/.npy, gated sinks), the image families
(image/ddpm, image/vae, image/dcgan) and image evaluation, on scikit-learn's digits at 16×16."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import synthkit as sk
from synthkit.connectors.images import read_images, write_images
from synthkit.errors import (
    ConfigError,
    DataError,
    EmptyDataError,
    GateRefusedError,
    SinkExistsError,
    SourceNotFoundError,
    UnsupportedFormatError,
)
from synthkit.evaluate.images import (
    DomainCNNFeatures,
    TorchModuleFeatures,
    evaluate_images,
    frechet_distance,
    memorisation,
)
from synthkit.images import ImageSet, decode_png, encode_png

#: Small, fast settings per family (two shared CPU cores).
FAST = {
    "image/ddpm": {"base_channels": 8, "channel_mults": (1, 2), "timesteps": 50, "sampling_steps": 5},
    "image/vae": {"base_channels": 8, "latent_dim": 8},
    "image/dcgan": {"generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16,
                    "monitor_samples": 50, "monitor_reference": 100},
}


@dataclass
class FakeDecision:
    passed: bool
    data_fingerprint: str


def approve(images: ImageSet) -> FakeDecision:
    return FakeDecision(passed=True, data_fingerprint=images.fingerprint())


@pytest.fixture(scope="module")
def classifier(digits):
    from sklearn.neighbors import KNeighborsClassifier

    x = digits.images.reshape(len(digits), -1) / 255.0
    return KNeighborsClassifier(5).fit(x, digits.label_values())


def class_rate(classifier, images: ImageSet, k: int) -> float:
    return float((classifier.predict(images.images.reshape(len(images), -1) / 255.0) == k).mean())


# --- ImageSet and PNG --------------------------------------------------------------------------
def test_imageset_from_array_fingerprint_and_views(digits):
    assert digits.shape == (16, 16, 1) and len(digits) == 1797 and digits.classes == list(range(10))
    same = ImageSet.from_array(digits.images.copy(), labels=digits.label_values())
    assert same.fingerprint() == digits.fingerprint()
    changed = digits.images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert ImageSet.from_array(changed, labels=digits.label_values()).fingerprint() != digits.fingerprint()
    relabelled = ImageSet.from_array(digits.images, labels=[0] * len(digits))
    assert relabelled.fingerprint() != digits.fingerprint()
    x = digits.to_float()
    assert x.shape == (1797, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(ImageSet.from_float(x).images, digits.images)
    with pytest.raises(DataError, match="uint8"):
        ImageSet(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(DataError, match="label rows"):
        ImageSet.from_array(np.zeros((2, 4, 4), np.uint8), labels=[1])
    with pytest.raises(DataError, match="below 0"):
        ImageSet.from_array(np.full((2, 4, 4), -0.5))


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (6, 3, 2), (4, 9, 3), (3, 3, 4)])
def test_png_codec_round_trips(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = decode_png(encode_png(pixels))
    assert np.array_equal(out.reshape(pixels.shape), pixels)


# --- connector ---------------------------------------------------------------------------------
def test_folder_round_trip_keeps_classes(small_digits, tmp_path):
    dest = write_images(small_digits, tmp_path / "out", decision=approve(small_digits))
    assert sorted(p.name for p in dest.iterdir()) == [str(k) for k in range(10)]
    back = read_images(dest)
    assert back.shape == small_digits.shape and len(back) == len(small_digits)
    # classes come back as folder names; images of each class are the same
    for k in range(10):
        want = small_digits.images[np.asarray(small_digits.label_values()) == k]
        got = back.images[np.asarray(back.label_values()) == str(k)]
        assert np.array_equal(want, got)
    unlabelled = read_images(dest, labels=False)
    assert unlabelled.labels is None


def test_npy_round_trip_and_array_source(small_digits, tmp_path):
    path = write_images(small_digits, tmp_path / "digits.npy", decision=approve(small_digits))
    back = read_images(path)
    assert back.fingerprint() == small_digits.fingerprint()
    assert read_images(path, labels=False).labels is None
    from_array = read_images(small_digits.images[..., 0], labels=small_digits.label_values())
    assert from_array.fingerprint() == small_digits.fingerprint()
    resized = read_images(path, size=(8, 8))
    assert resized.shape == (8, 8, 1)
    rgb = read_images(path, channels=3)
    assert rgb.shape == (16, 16, 3) and np.array_equal(rgb.images[..., 1], small_digits.images[..., 0])


def test_sink_refuses_without_a_passing_decision_for_these_images(small_digits, tmp_path):
    other = small_digits.subset(slice(0, 10))
    cases = [
        (None, "No policy Decision"),
        (FakeDecision(False, small_digits.fingerprint()), "did not pass"),
        (approve(other), "differs from what was gated"),
    ]
    for decision, message in cases:
        for dest in (tmp_path / "folder", tmp_path / "x.npy"):
            with pytest.raises(GateRefusedError, match=message):
                write_images(small_digits, dest, decision=decision)
            assert not dest.exists()
    assert not list(tmp_path.iterdir())  # no temp folder or file left behind
    write_images(small_digits, tmp_path / "folder", decision=approve(small_digits))
    with pytest.raises(SinkExistsError):
        write_images(small_digits, tmp_path / "folder", decision=approve(small_digits))
    write_images(other, tmp_path / "folder", decision=approve(other), overwrite=True)
    assert len(read_images(tmp_path / "folder")) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_bad_input_gives_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyDataError, match="holds no images"):
        read_images(empty)
    with pytest.raises(SourceNotFoundError, match="No such file"):
        read_images(tmp_path / "nope")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    (mixed / "b.png").write_bytes(encode_png(np.zeros((10, 6), np.uint8)))
    with pytest.raises(DataError, match="differ in size") as info:
        read_images(mixed)
    assert "size=" in info.value.hint
    assert read_images(mixed, size=8).shape == (8, 8, 1)
    (mixed / "c.txt").write_text("not an image")
    assert len(read_images(mixed, size=8)) == 2
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    with pytest.raises(DataError, match="PNG"):
        read_images(tmp_path / "broken.png")
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(UnsupportedFormatError, match="Cannot read images"):
        read_images(tmp_path / "c.csv")


# --- generators --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAST))
def test_family_fits_samples_and_round_trips(name, small_digits, tmp_path):
    gen = sk.create(name, seed=0, epochs=1, batch_size=50, progress=False, **FAST[name])
    assert gen.fit(small_digits) is gen
    report = gen.fit_report_
    assert report["training"]["epochs_run"] == 1 and report["images"]["classes"] == 10
    out = gen.sample(12, seed=3)
    assert isinstance(out, ImageSet) and out.shape == small_digits.shape and len(out) == 12
    assert set(out.label_values()) <= set(range(10))
    assert gen.sample(12, seed=3).fingerprint() == out.fingerprint()
    assert gen.sample(12, seed=4).fingerprint() != out.fingerprint()
    sevens = gen.sample(5, conditions={"label": 7}, seed=1)
    assert sevens.label_values() == [7] * 5
    path = gen.save(tmp_path / "model")
    loaded = sk.load(path)
    assert type(loaded) is type(gen) and loaded.classes_ == gen.classes_
    assert loaded.sample(12, seed=3).fingerprint() == out.fingerprint()
    with pytest.raises(ConfigError, match="never seen"):
        gen.sample(2, conditions={"label": 11})
    with pytest.raises(ConfigError, match="'label' only"):
        gen.sample(2, conditions={"colour": 1})


def test_unlabelled_fit_and_bad_fit_input(small_digits):
    gen = sk.create("image/vae", seed=0, epochs=1, progress=False, **FAST["image/vae"])
    gen.fit(ImageSet(small_digits.images))
    assert gen.classes_ == [] and gen.sample(3, seed=0).labels is None
    with pytest.raises(ConfigError, match="not class-conditional"):
        gen.sample(2, conditions={"label": 1})
    with pytest.raises(DataError, match="divide by 4"):
        sk.create("image/dcgan", progress=False).fit(ImageSet.from_array(np.zeros((4, 10, 10), np.uint8)))
    with pytest.raises(DataError, match="ImageSet"):
        sk.create("image/vae", progress=False).fit([[1, 2]])
    with pytest.raises(ConfigError, match="class set must be declared"):  # DP: tests/test_images_dp.py
        sk.create("image/ddpm", dp={"epsilon": 1.0}, progress=False, **FAST["image/ddpm"]).fit(small_digits)


def test_resume_continues_from_the_checkpoint(small_digits, tmp_path):
    opts = dict(seed=0, batch_size=50, progress=False, checkpoint_dir=tmp_path / "ckpt",
                checkpoint_every=1, **FAST["image/vae"])
    sk.create("image/vae", epochs=1, **opts).fit(small_digits)
    resumed = sk.create("image/vae", epochs=2, **opts).fit(small_digits, resume=True)
    training = resumed.fit_report_["training"]
    assert training["resumed_from"] == 1 and training["epochs_run"] == 2


def test_dcgan_records_mode_collapse_monitor(small_digits):
    gen = sk.create("image/dcgan", seed=0, epochs=2, batch_size=50, progress=False, **FAST["image/dcgan"])
    gen.fit(small_digits)
    monitor = gen.fit_report_["mode_collapse"]
    assert [r["epoch"] for r in monitor["per_epoch"]] == [1, 2]
    final = monitor["final"]
    assert {"coverage", "diversity", "class_coverage", "label_agreement"} <= set(final)
    assert 0 <= final["coverage"] <= 1 and isinstance(monitor["suspected"], bool)
    assert "coverage" in gen.fit_report_["training"]["history"][-1]


def test_conditional_vae_produces_the_requested_class(digits, classifier):
    gen = sk.create("image/vae", seed=0, epochs=3, batch_size=64, progress=False,
                    base_channels=16, latent_dim=8).fit(digits)
    rates = [class_rate(classifier, gen.sample(40, conditions={"label": k}, seed=k), k) for k in (1, 3, 7)]
    assert np.mean(rates) > 0.3, rates  # chance is 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_image_ddpm_trains_on_gpu(small_digits):
    gen = sk.create("image/ddpm", seed=0, epochs=1, device="cuda", progress=False, **FAST["image/ddpm"])
    gen.fit(small_digits)
    assert gen.fit_report_["training"]["device"].startswith("cuda")
    assert len(gen.sample(4, seed=0)) == 4


# --- evaluation --------------------------------------------------------------------------------
def test_metrics_rank_real_halves_above_noise(digits):
    net = DomainCNNFeatures(epochs=3).fit(digits)
    a, b = digits.subset(slice(0, 800)), digits.subset(slice(800, 1600))
    noise = ImageSet.from_array(np.random.default_rng(0).integers(0, 256, (800, 16, 16), dtype=np.uint8))
    fa = net.features(a)
    assert frechet_distance(fa, net.features(b)) < frechet_distance(fa, net.features(noise))
    assert net.train_accuracy_ > 0.8


def test_evaluate_images_report_json_and_html(digits, tmp_path):
    real, synthetic = digits.subset(slice(0, 600)), digits.subset(slice(600, 1200))
    report = evaluate_images(real, synthetic, features=DomainCNNFeatures(epochs=6), max_images=600)
    names = {"quality.fid", "quality.kid", "quality.precision", "quality.recall",
             "quality.inception_score", "privacy.image_nn_ratio_median", "privacy.image_copy_share"}
    assert names == set(report.metrics)
    assert report.features == "domain CNN" and "features: domain CNN" in report.notes
    assert report.value("quality.inception_score") > 1.5
    assert report.value("quality.precision") > 0.5 and report.value("quality.recall") > 0.5
    assert report.value("privacy.image_copy_share") < 0.05  # other real digits are no copies
    text = report.to_json(tmp_path / "r.json")
    assert '"quality.fid"' in text and (tmp_path / "r.json").is_file()
    page = report.to_html(tmp_path / "r.html")
    assert page.count("data:image/png;base64,") == 3 and "quality.fid" in page


def test_memorisation_flags_a_model_overfit_on_ten_images(digits):
    # one class per image: a conditional model that can only learn to redraw each training image
    ten = ImageSet.from_array(digits.images[:10], labels=list(range(10)))
    gen = sk.create("image/vae", seed=0, epochs=150, batch_size=10, progress=False,
                    base_channels=8, latent_dim=4, learning_rate=1e-2).fit(ten)
    out = gen.sample(50, seed=0)
    mem = memorisation(ten, out)
    assert mem["copy_share"] > 0.5, mem["nn_ratio_median"]
    fresh = ImageSet.from_array(digits.images[100:150], labels=[0] * 50)
    assert memorisation(ten, fresh)["copy_share"] == 0.0
    report = evaluate_images(ten, out, features=DomainCNNFeatures(epochs=1), grids=False)
    assert report.value("privacy.image_copy_share") > 0.5
    assert report.closest_pairs[0]["flagged"]


def test_pluggable_torch_module_features(digits, tmp_path):
    from safetensors.torch import save_file

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16 * 3, 8))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16 * 3, 8))
    feats = TorchModuleFeatures(other, weights_path=tmp_path / "w.safetensors", channels=3, name="tiny")
    feats.fit(digits)
    assert torch.equal(other[1].weight, net[1].weight)
    assert feats.features(digits.subset(slice(0, 5))).shape == (5, 8)
    assert feats.probabilities(digits.subset(slice(0, 5))) is None
    report = evaluate_images(digits.subset(slice(0, 100)), digits.subset(slice(100, 200)), features=feats,
                             grids=False)
    assert report.features == "tiny" and report.value("quality.inception_score") is None
    with pytest.raises(DataError, match="not found"):
        TorchModuleFeatures(other, weights_path=tmp_path / "missing.pt").fit(digits)
