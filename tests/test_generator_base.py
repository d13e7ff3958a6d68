"""The Generator base and registry: names, loading by manifest, artifact integrity, atomic saves."""

from __future__ import annotations

import json

import pytest

import synthkit as sk
from synthkit.errors import (
    ArtifactError,
    ConfigError,
    GeneratorNotFoundError,
    IntegrityError,
    NotFittedError,
    SinkExistsError,
)
from synthkit.generators.base import Generator
from synthkit.generators.registry import available, resolve
from synthkit.generators.sdv import SDVGenerator
from synthkit.generators.tabular.copula import GaussianCopulaGenerator


@pytest.fixture(scope="module")
def fitted(wage_small):
    return sk.create("tabular/copula", seed=0).fit(wage_small)


@pytest.fixture
def saved(fitted, tmp_path):
    return fitted.save(tmp_path / "model")


def test_registry_lists_and_creates_builtins():
    names = available()
    assert names["tabular/copula"].endswith(":GaussianCopulaGenerator")
    assert "sdv/*" in names
    assert isinstance(sk.create("tabular/copula"), GaussianCopulaGenerator)
    cls, implied = resolve("sdv/TVAESynthesizer")
    assert cls is SDVGenerator and implied == {"synthesizer": "TVAESynthesizer"}


def test_unknown_name_lists_registered_ones():
    with pytest.raises(GeneratorNotFoundError) as info:
        sk.create("tabular/nope")
    message = str(info.value)
    assert "tabular/nope" in message
    assert "tabular/copula" in message and "sdv/*" in message


def test_load_picks_the_class_from_the_manifest(fitted, saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["generator"] == "tabular/copula"
    assert manifest["config"]["seed"] == 0
    loaded = sk.load(saved)
    assert type(loaded) is GaussianCopulaGenerator
    assert Generator.load(saved).registry_name == "tabular/copula"
    assert GaussianCopulaGenerator.load(saved).sample(20, seed=1).equals(fitted.sample(20, seed=1))
    with pytest.raises(ArtifactError, match="tabular/copula"):
        SDVGenerator.load(saved)


def test_tampered_manifest_raises(saved):
    path = saved / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["n_rows"] += 1
    path.write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")))
    with pytest.raises(IntegrityError):
        sk.load(saved)


def test_manifest_naming_another_generator_raises(saved):
    path = saved / "manifest.json"
    path.write_text(path.read_text().replace('"tabular/copula"', '"sdv/CTGANSynthesizer"'))
    with pytest.raises(IntegrityError):
        sk.load(saved)


@pytest.mark.parametrize("name", ["weights.safetensors", "copula.json", "fillers.json"])
def test_tampered_files_raise(saved, name):
    path = saved / name
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        sk.load(saved)


def test_missing_file_raises(saved):
    (saved / "weights.safetensors").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        sk.load(saved)


def test_save_is_atomic_and_refuses_existing(fitted, saved):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(SinkExistsError):
        fitted.save(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".tmp")]
    fitted.save(saved, overwrite=True)
    assert sk.load(saved).sample(5, seed=0).equals(fitted.sample(5, seed=0))


def test_bad_calls_raise_typed_errors(fitted, tmp_path):
    fresh = sk.create("tabular/copula")
    with pytest.raises(NotFittedError):
        fresh.sample(3)
    with pytest.raises(NotFittedError):
        fresh.save(tmp_path / "never")
    for n in (-1, 1.5, "3", True):
        with pytest.raises(ConfigError):
            fitted.sample(n)
    with pytest.raises(ConfigError, match="batch_size"):
        list(fitted.sample_batches(10, batch_size=-5))
    with pytest.raises(ConfigError, match="conditional"):
        fitted.sample(5, conditions={"race": "1. White"})
    with pytest.raises(ArtifactError):
        sk.load(tmp_path / "does-not-exist")


def test_fit_report_and_repr(fitted):
    assert fitted.fit_report_["fit_seconds"] >= 0
    assert fitted.fit_report_["copula"]["dimensions"] >= len(fitted.schema_)
    assert repr(sk.create("tabular/copula", seed=3)) == "GaussianCopulaGenerator(seed=3)"
    assert fitted.sample(0).columns == fitted.schema_.names
