"""The Generator base and registry: names, loading by manifest, artifact integrity, atomic saves."""

from __future__ import annotations

import json

import polars as pl
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
    with pytest.raises(ConfigError, match="never seen"):
        fitted.sample(5, conditions={"race": "9. Martian"})
    with pytest.raises(ConfigError, match="Conditionable columns"):
        fitted.sample(5, conditions={"age": 30})
    with pytest.raises(ArtifactError):
        sk.load(tmp_path / "does-not-exist")


def test_fit_report_and_repr(fitted):
    assert fitted.fit_report_["fit_seconds"] >= 0
    assert fitted.fit_report_["copula"]["dimensions"] >= len(fitted.schema_)
    assert repr(sk.create("tabular/copula", seed=3)) == "GaussianCopulaGenerator(seed=3)"
    assert fitted.sample(0).columns == fitted.schema_.names


def test_conditions_hold_for_every_row_of_any_generator(fitted):
    out = fitted.sample(300, conditions={"race": "3. Asian", "jobclass": "2. Information"}, seed=4)
    assert out.height == 300
    assert (out["race"] == "3. Asian").all() and (out["jobclass"] == "2. Information").all()
    again = fitted.sample(300, conditions={"race": "3. Asian", "jobclass": "2. Information"}, seed=4)
    assert out.equals(again)


def test_rebalance_sets_exact_shares(fitted):
    out = fitted.sample(1000, rebalance={"race": {"1. White": 0.5, "2. Black": 0.3, "4. Other": 0.2}}, seed=1)
    counts = dict(out.group_by("race").len().iter_rows())
    assert counts == {"1. White": 500, "2. Black": 300, "4. Other": 200}
    assert out.head(50)["race"].n_unique() > 1  # shuffled, not grouped
    with pytest.raises(ConfigError, match="one column"):
        fitted.sample(10, rebalance={"race": {"1. White": 1}, "jobclass": {"1. Industrial": 1}})
    with pytest.raises(ConfigError, match="non-negative"):
        fitted.sample(10, rebalance={"race": {"1. White": -1}})
    with pytest.raises(ConfigError, match="never seen"):
        fitted.sample(10, rebalance={"race": {"Nope": 1}})


def test_impossible_conditions_give_up_with_a_clear_error(fitted, monkeypatch):
    monkeypatch.setattr(type(fitted), "max_condition_attempts", 3)
    original = type(fitted)._sample

    def never(self, n, *, rng, conditions):
        return original(self, n, rng=rng, conditions=conditions).with_columns(
            pl.lit("1. White").alias("race"))

    monkeypatch.setattr(type(fitted), "_sample", never)
    with pytest.raises(ConfigError, match="met the conditions"):
        fitted.sample(10, conditions={"race": "3. Asian"})


def test_resume_is_refused_by_one_pass_generators(wage_small):
    with pytest.raises(ConfigError, match="resume"):
        sk.create("tabular/copula").fit(wage_small, resume=True)


def test_an_interrupted_fit_leaves_the_generator_unfitted(wage_small, monkeypatch):
    gen = sk.create("tabular/copula")

    def killed(self, df, schema, *, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(gen), "_fit", killed)
    with pytest.raises(KeyboardInterrupt):
        gen.fit(wage_small)
    assert not gen.is_fitted
    with pytest.raises(NotFittedError):
        gen.sample(3)
