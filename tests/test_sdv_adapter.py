"""The sdv/* adapter: any SDV single-table synthesizer by name, pickle behind a trust flag."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError, UntrustedPickleError
from synthkit.generators.sdv import SDVGenerator, single_table_synthesizers
from synthkit.testing import check_generator


@pytest.fixture(scope="module")
def fitted(wage_small):
    return sk.create("sdv/GaussianCopulaSynthesizer", seed=0).fit(wage_small)


def test_module_import_does_not_import_sdv():
    code = "import sys, synthkit.generators.sdv; assert 'sdv' not in sys.modules, 'sdv imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_create_by_name_fits_and_samples(fitted, wage_small):
    assert isinstance(fitted, SDVGenerator)
    assert fitted.config.synthesizer == "GaussianCopulaSynthesizer"
    assert fitted.registry_name == "sdv/GaussianCopulaSynthesizer"
    out = fitted.sample(200, seed=1)
    assert out.height == 200 and out.schema == wage_small.schema
    assert set(out["maritl"].unique()) <= set(wage_small["maritl"].unique())


def test_seeded_sampling(fitted):
    a, b, c = fitted.sample(100, seed=5), fitted.sample(100, seed=5), fitted.sample(100, seed=6)
    assert a.equals(b)
    assert not a.equals(c)


def test_known_synthesizers_and_bad_config():
    known = single_table_synthesizers()
    assert {"GaussianCopulaSynthesizer", "CTGANSynthesizer", "TVAESynthesizer", "CopulaGANSynthesizer"} <= set(known)
    with pytest.raises(ConfigError, match="GaussianCopulaSynthesizer"):
        sk.create("sdv/NoSuchSynthesizer")
    with pytest.raises(ConfigError, match="epochz"):
        sk.create("sdv/CTGANSynthesizer", epochz=3)
    gen = sk.create("sdv/CTGANSynthesizer", epochs=1, batch_size=20)
    assert gen.config.params == {"epochs": 1, "batch_size": 20}
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        gen.config.epochs = 5


def test_parameters_pass_through(wage_small):
    gen = sk.create("sdv/GaussianCopulaSynthesizer", default_distribution="norm", seed=0).fit(wage_small)
    assert gen.synthesizer_.default_distribution == "norm"


def test_load_refuses_pickle_without_trust(fitted, tmp_path):
    path = fitted.save(tmp_path / "sdv-model")
    assert (path / "synthesizer.pkl").is_file()
    with pytest.raises(UntrustedPickleError, match="pickle") as info:
        sk.load(path)
    assert "trust_pickle=True" in str(info.value)
    loaded = sk.load(path, trust_pickle=True)
    assert isinstance(loaded, SDVGenerator)
    assert loaded.sample(50, seed=3).equals(fitted.sample(50, seed=3))


def test_conformance(wage_small, tmp_path):
    check_generator("sdv/GaussianCopulaSynthesizer", wage_small, tmp_path=tmp_path)


@pytest.mark.slow
def test_ctgan_runs(wage_small):
    gen = sk.create("sdv/CTGANSynthesizer", epochs=2, seed=0).fit(wage_small)
    out = gen.sample(30, seed=0)
    assert out.height == 30 and isinstance(out, pl.DataFrame)
    assert out.equals(gen.sample(30, seed=0))
