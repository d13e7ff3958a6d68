"""Class-conditional image generators draw the class asked for.

Conditional image/dcgan and image/ddpm are trained briefly on scikit-learn's digits (8×8, as
shipped: four times cheaper than 16×16) and asked for every class; a logistic regression trained
on the real digits must recognise the requested class far above chance (0.1).
"""

from __future__ import annotations

import numpy as np
import pytest

import synthkit as sk
from synthkit.images import ImageSet

#: The cheapest settings found that pass with a wide margin (2 shared CPU cores, seconds each).
SETTINGS = {
    "image/dcgan": {"epochs": 5, "batch_size": 32, "learning_rate": 1e-3, "generator_channels": 16,
                    "discriminator_channels": 16, "latent_dim": 16, "monitor_samples": 0},
    # classifier-free guidance (label dropout is on by default) and 10 DDIM steps
    "image/ddpm": {"epochs": 4, "batch_size": 64, "learning_rate": 2e-3, "base_channels": 16,
                   "channel_mults": (1, 2), "timesteps": 100, "sampling_steps": 10,
                   "guidance_scale": 3.0},
}


@pytest.fixture(scope="module")
def digits8() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    return ImageSet.from_array(d.images / 16.0, labels=d.target.tolist())


@pytest.fixture(scope="module")
def classifier(digits8):
    from sklearn.linear_model import LogisticRegression

    x = digits8.images.reshape(len(digits8), -1) / 255.0
    clf = LogisticRegression(max_iter=2000).fit(x, digits8.label_values())
    assert clf.score(x, digits8.label_values()) > 0.95
    return clf


def recognised(classifier, images: ImageSet, k: int) -> float:
    return float((classifier.predict(images.images.reshape(len(images), -1) / 255.0) == k).mean())


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_conditional_samples_are_the_requested_class(name, digits8, classifier):
    gen = sk.create(name, seed=0, progress=False, **SETTINGS[name]).fit(digits8)
    rates = []
    for k in range(10):
        out = gen.sample(30, conditions={"label": k}, seed=k)
        assert out.label_values() == [k] * 30
        rates.append(recognised(classifier, out, k))
    assert np.mean(rates) >= 0.6, rates  # chance is 0.1
    assert min(rates) >= 0.2, rates  # every class, not a few easy ones


def test_unconditional_fit_ignores_the_labels(digits8, classifier):
    # the same settings without conditioning: samples are not steered towards a class
    gen = sk.create("image/dcgan", seed=0, progress=False, conditional=False,
                    **{**SETTINGS["image/dcgan"], "epochs": 1}).fit(digits8)
    assert gen.classes_ == []
    out = gen.sample(60, seed=0)
    assert out.labels is None
    assert recognised(classifier, out, 3) < 0.6
