"""tabular/ctgan: conformance, conditions, rebalance, resume, coverage monitor, bad input."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular import ctgan as ctgan_module
from synthkit.generators.tabular.ctgan import (
    CTGANConfig,
    CTGANDiscriminatorNet,
    CTGANGenerator,
    CTGANGeneratorNet,
)
from synthkit.testing import check_generator

#: Few epochs and small nets: the suite checks behaviour, not sample quality.
FAST = dict(
    epochs=3,
    batch_size=100,
    pac=10,
    embedding_dim=32,
    generator_dim=(64, 64),
    discriminator_dim=(64, 64),
    progress=False,
    seed=0,
)
ADVANCED = "5. Advanced Degree"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(wage_small):
    """The paper's mode-specific normalisation (numerical="mode"): the monitor covers modes too."""
    return CTGANGenerator(**FAST, numerical="mode").fit(wage_small)


def test_conformance_wage(wage_small, tmp_path):
    passed = check_generator(CTGANGenerator(**{**FAST, "epochs": 2}), wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "tampered_weights_raise" in passed


def test_config_defaults_follow_the_paper_but_for_the_quantile_encoding():
    cfg = CTGANConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.embedding_dim, cfg.pac) == (300, 500, 128, 10)
    assert cfg.generator_dim == (256, 256) and cfg.discriminator_dim == (256, 256)
    assert cfg.generator_learning_rate == cfg.discriminator_learning_rate == 2e-4
    assert cfg.generator_decay == cfg.discriminator_decay == 1e-6
    assert cfg.discriminator_steps == 1 and cfg.log_frequency
    assert cfg.numerical == "quantile" and cfg.discrete_numerical == 0  # measured better here
    assert isinstance(sk.create("tabular/ctgan", epochs=5), CTGANGenerator)


def test_batch_size_must_be_a_multiple_of_pac():
    with pytest.raises(ConfigError, match="multiple of pac"):
        CTGANGenerator(batch_size=105, pac=10)
    CTGANGenerator(batch_size=105, pac=5)


def test_early_stopping_is_rejected_with_a_reason():
    with pytest.raises(ConfigError, match="no validation loss"):
        CTGANGenerator(early_stopping_patience=5)


def test_nets_shapes():
    g = CTGANGeneratorNet(10, (16, 8), 7)
    assert g(torch.zeros(4, 10)).shape == (4, 7)
    d = CTGANDiscriminatorNet(7, (16,), pac=2).eval()
    assert d(torch.zeros(6, 7)).shape == (3, 1)


def test_samples_keep_schema_and_categories(wage_small, fitted):
    out = fitted.sample(500, seed=1)
    assert out.schema == wage_small.schema
    for name in ("maritl", "education", "jobclass"):
        assert set(out[name].unique()) <= set(wage_small[name].unique())
    col = fitted.schema_["age"]
    assert out["age"].min() >= col.min and out["age"].max() <= col.max


def test_save_load_reproduces_samples(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = sk.load(path)
    assert isinstance(loaded, CTGANGenerator)
    assert loaded.sample(200, seed=5).equals(fitted.sample(200, seed=5))
    cond = {"education": ADVANCED}
    assert loaded.sample(50, conditions=cond, seed=6).equals(
        fitted.sample(50, conditions=cond, seed=6)
    )
    assert not any(name.startswith("discriminator.") for name in fitted._state()[0])


def test_conditions_are_met(fitted):
    out = fitted.sample(300, conditions={"education": ADVANCED}, seed=2)
    assert out.height == 300 and (out["education"] == ADVANCED).all()
    both = {"education": ADVANCED, "jobclass": "2. Information"}
    out = fitted.sample(100, conditions=both, seed=3)
    assert (out["education"] == ADVANCED).all() and (out["jobclass"] == "2. Information").all()


def test_condition_vector_biases_the_raw_output(wage_small):
    """Before the base's filter, conditioned rows hold far more of the category than training."""
    gen = CTGANGenerator(**{**FAST, "epochs": 8, "generator_learning_rate": 5e-3}).fit(wage_small)
    cond = gen._sample(2_000, rng=np.random.default_rng(0), conditions={"education": ADVANCED})
    free = gen._sample(2_000, rng=np.random.default_rng(0), conditions=None)
    share = float((cond["education"] == ADVANCED).mean())
    train_share = float((wage_small["education"] == ADVANCED).mean())
    assert share > 2 * train_share, (share, train_share)
    assert share > 2 * float((free["education"] == ADVANCED).mean())


def test_rebalance_shares(fitted):
    shares = {"1. Industrial": 0.3, "2. Information": 0.7}
    out = fitted.sample(1_000, rebalance={"jobclass": shares}, seed=4)
    got = out["jobclass"].value_counts(normalize=True, name="p")
    for value, want in shares.items():
        assert got.filter(pl.col("jobclass") == value)["p"].item() == pytest.approx(want, abs=0.02)


def test_resume_after_interrupt_matches_an_uninterrupted_run(wage_small, tmp_path, monkeypatch):
    config = {**FAST, "epochs": 4, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    step = ctgan_module._CTGANTask.train_step

    def interrupted(self, batch, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return step(self, batch, ctx)

    monkeypatch.setattr(ctgan_module._CTGANTask, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CTGANGenerator(**config).fit(wage_small)
    monkeypatch.setattr(ctgan_module._CTGANTask, "train_step", step)
    resumed = CTGANGenerator(**config).fit(wage_small, resume=True)
    training = resumed.fit_report_["training"]
    assert training["epochs_run"] == 4 and training["resumed_from"] == 2
    assert len(training["history"]) == 4
    straight = CTGANGenerator(**{**FAST, "epochs": 4}).fit(wage_small)
    assert resumed.sample(100, seed=9).equals(straight.sample(100, seed=9))


def test_resume_refuses_other_data(wage, wage_small, tmp_path):
    config = {**FAST, "epochs": 1, "checkpoint_dir": str(tmp_path / "ckpt")}
    CTGANGenerator(**config).fit(wage_small)
    with pytest.raises(ConfigError, match="another run"):
        CTGANGenerator(**config).fit(wage.slice(600, 300), resume=True)


def test_coverage_history_in_fit_report(fitted):
    history = fitted.fit_report_["training"]["history"]
    assert len(history) == FAST["epochs"]
    for record in history:
        assert 0.0 <= record["coverage_categories"] <= 1.0
        assert 0.0 <= record["coverage_modes"] <= 1.0
        assert math.isfinite(record["loss_d"]) and math.isfinite(record["loss_g"])


def test_coverage_warning_names_the_collapsed_column(fitted):
    encoder = fitted.encoder_
    matrix = encoder.transform(fitted.sample(600, seed=0).select(encoder.schema.names))
    probe = ctgan_module._CoverageProbe(matrix, encoder)
    collapsed = torch.as_tensor(matrix[:1]).repeat(50, 1)
    report = probe.measure(collapsed)
    assert "education" in report["warning"] and report["coverage_categories"] < 0.5
    healthy = probe.measure(torch.as_tensor(matrix))
    assert "warning" not in healthy and healthy["coverage_categories"] == 1.0


@pytest.mark.parametrize("numerical", ["mode", "quantile"])
def test_numerical_only_table(wage_small, numerical):
    data = wage_small.select("age", "wage", "year")
    gen = CTGANGenerator(**{**FAST, "epochs": 2, "numerical": numerical}).fit(data)
    out = gen.sample(100, seed=0)
    assert out.schema == data.schema and out.height == 100
    last = gen.fit_report_["training"]["history"][-1]
    assert ("coverage_modes" in last) == (numerical == "mode")


@pytest.mark.parametrize("spread", [True, False])
def test_repeated_values_are_spread_for_training(wage_small, monkeypatch, spread):
    """spread_ties (the default) trains on year and age spread over their quantile stretches;
    off, every copy of a value is one point."""
    seen = {}
    init = ctgan_module._CTGANTask.__init__

    def recording(self, cfg, encoder, matrix, *args, **kwargs):
        seen["matrix"], seen["encoder"] = matrix.copy(), encoder
        init(self, cfg, encoder, matrix, *args, **kwargs)

    monkeypatch.setattr(ctgan_module._CTGANTask, "__init__", recording)
    data = wage_small.select("year", "age", "wage", "jobclass")
    gen = CTGANGenerator(**{**FAST, "epochs": 1, "spread_ties": spread}).fit(data)
    assert CTGANConfig().spread_ties
    year = next(b.start for b in seen["encoder"].blocks if b.column == "year" and b.kind == "alpha")
    distinct = np.unique(seen["matrix"][:, year]).size
    assert (distinct > 500) if spread else (distinct == data["year"].n_unique())
    assert set(gen.sample(200, seed=0)["year"].to_list()) <= set(data["year"].to_list())


def test_nulls_and_booleans(credit):
    data = (
        credit.head(500)
        .select("Status", "Income", "Assets", "Home")
        .with_columns(flag=pl.col("Income").is_null())
    )
    gen = CTGANGenerator(**{**FAST, "epochs": 2}).fit(data)
    out = gen.sample(300, conditions={"flag": True}, seed=0)
    assert out.schema == data.schema and out["flag"].all()


def test_one_category_column_works(wage_small):
    data = wage_small.with_columns(constant=pl.lit("only"))
    out = CTGANGenerator(**{**FAST, "epochs": 2}).fit(data).sample(50, seed=0)
    assert (out["constant"] == "only").all() and (out["region"] == wage_small["region"][0]).all()


def test_bad_input_raises_data_error(wage_small):
    gen = CTGANGenerator(**FAST)
    with pytest.raises(DataError):
        gen.fit(wage_small.head(1))
    with pytest.raises(DataError):
        gen.fit(wage_small.with_columns(empty=pl.lit(None, dtype=pl.Float64)))
    bad = wage_small.with_columns(
        wage=pl.when(pl.int_range(pl.len()) == 3).then(float("inf")).otherwise(pl.col("wage"))
    )
    with pytest.raises(DataError):
        gen.fit(bad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_amp(wage_small, tmp_path):
    gen = sk.create("tabular/ctgan", **FAST, device="cuda", amp=True).fit(wage_small)
    assert gen.fit_report_["training"]["device"].startswith("cuda")
    loaded = sk.load(gen.save(tmp_path / "model"))
    assert loaded.sample(200, seed=1).equals(gen.sample(200, seed=1))
    conditioned = gen.sample(100, conditions={"jobclass": "2. Information"}, seed=2)
    assert (conditioned["jobclass"] == "2. Information").all()


def test_sampling_never_decodes_rare_modes(wage_small):
    """With mode-specific normalisation, modes of a few far outliers (wage's two largest values
    pushed to 100x) are out of sampling's reach even where the generator scores them highest;
    the quantile encoding has no modes to mask."""
    df = wage_small.with_columns(
        pl.when(pl.col("wage") >= pl.col("wage").sort(descending=True).get(1))
        .then(pl.col("wage") * 100).otherwise(pl.col("wage")).alias("wage"))
    gen = CTGANGenerator(**{**FAST, "epochs": 1}, numerical="mode").fit(df)
    rare = gen.encoder_.rare_mode_positions()
    assert rare
    activation = ctgan_module._Activation(gen.encoder_, torch.device("cpu"))
    assert activation.rare is not None and activation.rare.tolist() == rare
    raw = torch.zeros(50, gen.encoder_.width)
    raw[:, rare] = 100.0  # the generator's favourite
    out = activation.decodable(raw, torch.Generator().manual_seed(0))
    block = next(b for b in gen.encoder_.blocks if b.column == "wage" and b.role == "mode")
    picked = out[:, block.start : block.start + block.width].argmax(1) + block.start
    assert not any(int(p) in rare for p in picked)
    assert float(gen.sample(1_000, seed=1)["wage"].max()) < 2 * float(wage_small["wage"].max())
    quantile = CTGANGenerator(**{**FAST, "epochs": 1}).fit(df)
    assert quantile.encoder_.rare_mode_positions() == []
    assert ctgan_module._Activation(quantile.encoder_, torch.device("cpu")).rare is None
