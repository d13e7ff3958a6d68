"""Encryption at rest for model directories: AES-256-GCM, keys from a file or SYNTHKIT_MODEL_KEY."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import synthkit as sk
from synthkit.artifacts import (
    MODEL_KEY_ENV,
    generate_model_key,
    manifest_hash,
    model_key_id,
    read_manifest,
    write_model_key,
)
from synthkit.cli import main
from synthkit.errors import ArtifactError, IntegrityError, SinkExistsError


@pytest.fixture(scope="module")
def fitted(wage_small: pl.DataFrame) -> sk.Generator:
    return sk.create("tabular/copula", seed=0).fit(wage_small)


@pytest.fixture(scope="module")
def key() -> bytes:
    return generate_model_key()


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory, fitted: sk.Generator, key: bytes) -> Path:
    return fitted.save(tmp_path_factory.mktemp("enc") / "model", key=key)


def test_round_trip_with_the_key(fitted: sk.Generator, encrypted: Path, key: bytes) -> None:
    loaded = sk.load(encrypted, key=key)
    assert loaded.registry_name == "tabular/copula"
    assert loaded.schema_ == fitted.schema_ and loaded.data_fingerprint_ == fitted.data_fingerprint_
    assert loaded.sample(50, seed=3).equals(fitted.sample(50, seed=3))
    manifest = read_manifest(encrypted)
    assert manifest["encryption"] == {"algorithm": "AES-256-GCM", "key_id": model_key_id(key)}
    assert manifest_hash(encrypted).startswith("sha256:")  # the audit's model id works without the key


def test_no_plaintext_on_disk(tmp_path: Path, fitted: sk.Generator, encrypted: Path, key: bytes) -> None:
    plain = fitted.save(tmp_path / "plain")
    assert not (encrypted / "weights.safetensors").exists()
    names = sorted(p.name for p in encrypted.iterdir())
    assert all(n == "manifest.json" or n.endswith(".enc") for n in names), names
    secrets = [b"maritl", b"education", b"Married", b"n_rows", b"__metadata__"]
    for blob in (p.read_bytes() for p in plain.iterdir() if p.name != "manifest.json"):
        if len(blob) >= 64:  # every 32-byte window of the plaintext files, sampled
            secrets += [blob[i : i + 32] for i in range(0, len(blob) - 32, max(1, len(blob) // 50))]
    for path in encrypted.iterdir():
        data = path.read_bytes()
        leaked = [s[:20] for s in secrets if s in data]
        assert leaked == [], (path.name, leaked)
    assert key not in b"".join(p.read_bytes() for p in encrypted.iterdir())
    assert base64.b64encode(key) not in b"".join(p.read_bytes() for p in encrypted.iterdir())
    assert "config" not in read_manifest(encrypted) and "schema" not in read_manifest(encrypted)


def test_without_a_key_or_with_a_wrong_one_fails_clearly(
    encrypted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_KEY_ENV, raising=False)
    with pytest.raises(ArtifactError, match="is encrypted .* no key was given") as info:
        sk.load(encrypted)
    assert "--key-file" in info.value.hint and MODEL_KEY_ENV in info.value.hint
    with pytest.raises(ArtifactError, match="Wrong model key"):
        sk.load(encrypted, key=generate_model_key())
    with pytest.raises(ArtifactError, match="does not hold a model key"):
        sk.load(encrypted, key="not base64 at all")
    with pytest.raises(ArtifactError, match="32 bytes"):
        sk.load(encrypted, key=b"short")


def test_key_from_environment_and_key_file(
    tmp_path: Path, fitted: sk.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_KEY_ENV, raising=False)
    with pytest.raises(ArtifactError, match="no model key was given"):
        fitted.save(tmp_path / "nokey", encrypt=True)
    assert not (tmp_path / "nokey").exists()
    key_path, kid = write_model_key(tmp_path / "keys" / "model.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    with pytest.raises(SinkExistsError):
        write_model_key(key_path)
    monkeypatch.setenv(MODEL_KEY_ENV, key_path.read_text())
    saved = fitted.save(tmp_path / "m", encrypt=True)
    assert read_manifest(saved)["encryption"]["key_id"] == kid
    assert sk.load(saved).n_rows_ == fitted.n_rows_  # key from the environment
    monkeypatch.delenv(MODEL_KEY_ENV)
    assert sk.load(saved, key=key_path).n_rows_ == fitted.n_rows_  # a Path
    assert sk.load(saved, key=str(key_path)).n_rows_ == fitted.n_rows_  # a path as text
    assert type(fitted).load(saved, key=key_path.read_text()).n_rows_ == fitted.n_rows_  # base64 text


def test_changed_ciphertext_is_caught(tmp_path: Path, fitted: sk.Generator, key: bytes) -> None:
    saved = fitted.save(tmp_path / "m", key=key)
    weights = saved / "weights.safetensors.enc"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        sk.load(saved, key=key)


def test_cli_train_encrypt_and_sample_with_key_file(
    tmp_path: Path, wage_small: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_KEY_ENV, raising=False)
    runner = CliRunner()
    csv = tmp_path / "wage.csv"
    wage_small.write_csv(csv)

    def invoke(*args: object):  # noqa: ANN202
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    made = invoke("keys", "generate-model-key", "--out", tmp_path / "model.key")
    assert made.exit_code == 0, made.output
    assert invoke("keys", "generate-model-key", "--out", tmp_path / "model.key").exit_code == 2
    model = tmp_path / "model"
    trained = invoke("train", csv, "--out", model, "--key-file", tmp_path / "model.key")
    assert trained.exit_code == 0, trained.output
    assert "encryption" in json.loads((model / "manifest.json").read_text())
    common = ["-n", "200", "--out", tmp_path / "s.parquet", "--real", csv, "--purpose", "load testing",
              "--seed", 0]  # a fixed sample: the default policy judges 200 rows
    no_key = invoke("sample", model, *common)
    assert no_key.exit_code == 2 and "encrypted" in no_key.output
    ok = invoke("sample", model, *common, "--key-file", tmp_path / "model.key")
    assert ok.exit_code == 0, ok.output
    assert pl.read_parquet(tmp_path / "s.parquet").height == 200
    assert invoke("train", csv, "--out", tmp_path / "m2", "--encrypt").exit_code == 2  # no key anywhere


def test_generate_model_key_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["keys", "generate-model-key", "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_pipeline_saves_an_encrypted_model(tmp_path: Path, wage_small: pl.DataFrame) -> None:
    from synthkit.pipeline import Pipeline

    wage_small.write_csv(tmp_path / "wage.csv")
    key_path, kid = write_model_key(tmp_path / "model.key")
    config = {"source": "wage.csv", "generator": {"name": "tabular/copula"}, "n": 200,
              "purpose": "software testing", "model": "out/model", "model_key_file": "model.key",
              "base_dir": str(tmp_path)}
    result = Pipeline(config).run(raise_on_refusal=False)
    assert read_manifest(result.model_path)["encryption"]["key_id"] == kid
    with pytest.raises(ArtifactError):
        sk.load(result.model_path)
    assert sk.load(result.model_path, key=key_path).n_rows_ == result.generator.n_rows_
