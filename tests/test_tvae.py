"""TVAE: conformance, reproducibility, conditions, resume, bad input, report, quality."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular import tvae
from synthkit.generators.tabular.tvae import (
    TVAEConfig,
    TVAEDecoderNet,
    TVAEEncoderNet,
    TVAEGenerator,
    TVAETrainingTask,
)
from synthkit.nn.draws import gumbel_draws, normal_draws
from synthkit.testing import check_generator

#: Few epochs, small batches: every test here fits in about a second on a CPU.
FAST = {"seed": 0, "epochs": 3, "batch_size": 200, "progress": False}


@pytest.fixture(scope="module")
def fitted(wage_small):
    return TVAEGenerator(**FAST).fit(wage_small)


def test_conformance_wage(wage_small, tmp_path):
    passed = check_generator(TVAEGenerator(**FAST), wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "tampered_weights_raise" in passed


def test_conformance_credit_with_nulls(credit, tmp_path):
    check_generator(TVAEGenerator(**FAST), credit.head(1_000), tmp_path=tmp_path)


def test_conformance_quantile_encoding(wage_small, tmp_path):
    check_generator(TVAEGenerator(**FAST, numerical="quantile"), wage_small, tmp_path=tmp_path)


def test_config_defaults_and_validation():
    cfg = TVAEConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.embedding_dim) == (300, 500, 128)
    assert cfg.compress_dims == (128, 128) and cfg.decompress_dims == (128, 128)
    assert (cfg.l2scale, cfg.loss_factor, cfg.learning_rate) == (1e-5, 2.0, 1e-3)
    assert (cfg.numerical, cfg.max_modes, cfg.device, cfg.amp) == ("mode", 10, "auto", True)
    with pytest.raises(ConfigError, match="epochs"):
        TVAEGenerator(epochs=0)
    with pytest.raises(ConfigError, match="compress_dims"):
        TVAEGenerator(compress_dims=(128, 0))
    with pytest.raises(ConfigError, match="Options of TVAEGenerator"):
        TVAEGenerator(epoch=3)
    assert TVAEGenerator.supports_resume and not TVAEGenerator.supports_conditions


def test_create_by_name():
    gen = sk.create("tabular/tvae", epochs=5, embedding_dim=16)
    assert isinstance(gen, TVAEGenerator) and gen.config.embedding_dim == 16


def test_networks_shapes():
    enc = TVAEEncoderNet(10, (16, 8), 4)
    dec = TVAEDecoderNet(4, (8,), 10, n_alpha=3)
    mu, logvar = enc(torch.zeros(5, 10))
    assert mu.shape == logvar.shape == (5, 4)
    assert dec(mu).shape == (5, 10) and dec.sigma.shape == (3,)
    assert TVAEDecoderNet(4, (), 10, n_alpha=0)(mu).shape == (5, 10)


def test_save_load_same_rows_and_state_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = sk.load(path)
    assert isinstance(loaded, TVAEGenerator)
    assert loaded.sample(300, seed=5).equals(fitted.sample(300, seed=5))
    state = json.loads((path / "tvae.json").read_text())
    assert state["data_width"] == fitted.encoder_.width
    assert state["embedding_dim"] == 128 and state["decompress_dims"] == [128, 128]
    tensors, _ = fitted._state()
    assert all(k.startswith(("decoder.", "encoder.")) for k in tensors)
    assert "decoder.sigma" in tensors
    # only what sampling needs: no weights of the encoder network
    assert not any(k.startswith(("encoder.mu", "encoder.logvar", "encoder.seq")) for k in tensors)


def test_sampling_activation_is_tanh_plus_learned_noise_in_place(fitted):
    """Sampling turns alpha outputs into tanh + sigma * N(0, 1) (nn.draws) in place, whatever the layout of
    the raw outputs; category and null-flag logits get standard Gumbel noise (decoding's argmax
    then draws from each block's softmax), or stay as they are with argmax decoding; mode
    logits stay as they are."""
    layout, sigma = fitted.layout_, fitted.decoder_.sigma.detach()
    drawn = torch.tensor([p for a, b in layout.drawn_runs for p in range(a, b)])
    modes = [b for b in fitted.encoder_.blocks if b.role == "mode"]
    assert layout.n_alpha > 0 and modes and 0 < drawn.numel() < layout.slots.numel()
    assert not {p for b in modes for p in range(b.start, b.start + b.width)} & set(drawn.tolist())
    kept = torch.tensor(sorted(set(layout.slots.tolist()) - set(drawn.tolist())))
    raw = torch.randn(layout.width, 500).t()  # column-major, as the bf16 sampler returns
    for out in (raw, raw.contiguous()):
        for sample in (True, False):
            before = out.clone()
            got = layout.activate_(out, sigma, torch.Generator().manual_seed(3), sample=sample)
            assert got is out
            gen = torch.Generator().manual_seed(3)
            noise = normal_draws((layout.n_alpha, 500), gen, "cpu")
            want = torch.tanh(before[:, layout.alpha]) + noise.t() * sigma
            assert torch.allclose(got[:, layout.alpha], want, atol=1e-6)
            if not sample:
                assert torch.equal(got[:, layout.slots], before[:, layout.slots])
                continue
            gumbel = gumbel_draws((drawn.numel(), 500), gen, "cpu")
            assert torch.allclose(got[:, drawn], before[:, drawn] + gumbel.t(), atol=1e-5)
            assert torch.equal(got[:, kept], before[:, kept])
            out.copy_(before)


def test_sampled_decoding_draws_categories_in_their_learned_shares(wage_small):
    """The default decoding draws each block from the decoder's softmax: a category's share in
    a large sample follows the data (argmax decoding piles rows on the likeliest ones)."""
    gen = TVAEGenerator(**FAST).fit(wage_small)
    assert gen.config.decoding == "sample"
    real = wage_small["education"].value_counts(normalize=True).sort("education")
    shares = {}
    for decoding in ("sample", "argmax"):
        gen.config = gen.config.model_copy(update={"decoding": decoding})
        fake = gen.sample(20_000, seed=1)["education"].value_counts(normalize=True)
        joined = real.join(fake, on="education", how="left", suffix="_fake").fill_null(0.0)
        shares[decoding] = float((joined["proportion"] - joined["proportion_fake"]).abs().sum() / 2)
    assert shares["sample"] < shares["argmax"]
    with pytest.raises(ConfigError, match="decoding"):
        TVAEGenerator(decoding="mode")


def test_sample_in_chunks(fitted, monkeypatch):
    monkeypatch.setattr(tvae, "_CHUNK_ROWS", 64)
    out = fitted.sample(150, seed=2)
    assert out.height == 150 and out.columns == fitted.schema_.names
    assert out.equals(fitted.sample(150, seed=2))


def test_conditions_met_by_every_row(fitted):
    out = fitted.sample(50, conditions={"jobclass": "2. Information"}, seed=0)
    assert out.height == 50
    assert (out["jobclass"] == "2. Information").all()


def test_rebalance_shares(fitted):
    shares = {"1. Industrial": 0.25, "2. Information": 0.75}
    out = fitted.sample(400, rebalance={"jobclass": shares}, seed=0)
    counts = dict(out["jobclass"].value_counts().iter_rows())
    assert counts == {"1. Industrial": 100, "2. Information": 300}


def test_fit_report_has_loss_history(fitted):
    training = fitted.fit_report_["training"]
    assert training["epochs_run"] == 3 and training["resumed_from"] is None
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3]
    for record in training["history"]:
        assert {"loss", "reconstruction", "kl"} <= set(record)
        assert record["loss"] == pytest.approx(record["reconstruction"] + record["kl"], rel=1e-4)
        assert np.isfinite(record["loss"]) and record["kl"] >= 0
    assert training["device"] == "cpu" or training["device"].startswith("cuda")
    assert fitted.fit_report_["tvae"]["parameters"] > 0


def test_loss_decreases(wage_small):
    gen = TVAEGenerator(**{**FAST, "epochs": 10}).fit(wage_small)
    history = gen.fit_report_["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_validation_loss_recorded(wage_small):
    gen = TVAEGenerator(**FAST, validation_fraction=0.2, early_stopping_patience=5).fit(wage_small)
    history = gen.fit_report_["training"]["history"]
    assert all(np.isfinite(h["val_loss"]) for h in history)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make training raise KeyboardInterrupt at the end of ``epoch`` (0-based)."""
    original = TVAETrainingTask.on_epoch_end

    def on_epoch_end(self, e, ctx):
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e, ctx)

    monkeypatch.setattr(TVAETrainingTask, "on_epoch_end", on_epoch_end)


def test_resume_after_interrupt(wage_small, tmp_path, monkeypatch):
    cfg = {**FAST, "epochs": 4, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        TVAEGenerator(**cfg).fit(wage_small)
    monkeypatch.undo()
    gen = TVAEGenerator(**cfg).fit(wage_small, resume=True)
    training = gen.fit_report_["training"]
    assert training["resumed_from"] == 2 and training["epochs_run"] == 4
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3, 4]
    # a resumed run ends where an uninterrupted one does (the steps' noise pools, which hold
    # more than an epoch's draws here, are dropped at every epoch's start)
    straight = TVAEGenerator(**{**cfg, "checkpoint_dir": None}).fit(wage_small)
    assert [h["loss"] for h in training["history"]] == pytest.approx(
        [h["loss"] for h in straight.fit_report_["training"]["history"]], rel=1e-5
    )
    assert gen.sample(100, seed=3).equals(straight.sample(100, seed=3))


def test_resume_with_more_epochs_and_refuses_other_settings(wage_small, tmp_path):
    cfg = {**FAST, "epochs": 2, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    TVAEGenerator(**cfg).fit(wage_small)
    # more epochs, and CUDA graphs off (how steps run, not what they learn): still this run
    more = TVAEGenerator(**{**cfg, "epochs": 4, "cuda_graphs": False}).fit(wage_small, resume=True)
    assert more.fit_report_["training"]["resumed_from"] == 2
    assert more.fit_report_["training"]["epochs_run"] == 4
    with pytest.raises(ConfigError, match="another run"):
        TVAEGenerator(**{**cfg, "learning_rate": 1e-2}).fit(wage_small, resume=True)
    with pytest.raises(ConfigError, match="another run"):
        TVAEGenerator(**cfg).fit(wage_small.head(500), resume=True)


def test_resume_without_checkpoint_starts_fresh(wage_small, tmp_path):
    gen = TVAEGenerator(**FAST, checkpoint_dir=str(tmp_path / "none")).fit(wage_small, resume=True)
    assert gen.fit_report_["training"]["resumed_from"] is None
    assert gen.fit_report_["training"]["epochs_run"] == 3


def test_all_null_column_raises(wage_small):
    frame = wage_small.with_columns(pl.lit(None, dtype=pl.Float64).alias("empty"))
    with pytest.raises(DataError, match="no values"):
        TVAEGenerator(**FAST).fit(frame)


def test_one_category_column_works(wage_small):
    frame = wage_small.with_columns(pl.lit("only").alias("constant"))
    out = TVAEGenerator(**FAST).fit(frame).sample(40, seed=0)
    assert (out["constant"] == "only").all()


def test_single_row_raises(wage_small):
    with pytest.raises(DataError):
        TVAEGenerator(**FAST).fit(wage_small.head(1))


def test_nan_is_missing(wage_small):
    rng = np.random.default_rng(0)
    wage = wage_small["wage"].to_numpy().copy()
    wage[rng.random(wage.size) < 0.3] = np.nan
    gen = TVAEGenerator(**FAST).fit(wage_small.with_columns(pl.Series("wage", wage)))
    roles = {b.role for b in gen.encoder_.blocks if b.column == "wage"}
    assert "null" in roles  # learned as missing, through the column's null flag
    out = gen.sample(500, seed=0)
    assert out["wage"].dtype == pl.Float64 and out["wage"].is_nan().sum() == 0
    assert out["wage"].drop_nulls().min() >= np.nanmin(wage)


def test_inf_raises(wage_small):
    frame = wage_small.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(float("inf"))
        .otherwise(pl.col("wage"))
        .alias("wage")
    )
    with pytest.raises(DataError, match="Infinite"):
        TVAEGenerator(**FAST).fit(frame)


def test_no_learned_columns_raises():
    frame = pl.DataFrame({"id": list(range(50))})
    schema = sk.infer_schema(frame)
    if any(c.kind in TVAEGenerator.learned_kinds for c in schema):
        pytest.skip("the schema inference learns this column")
    with pytest.raises(DataError, match="no column to learn"):
        TVAEGenerator(**FAST).fit(frame, schema=schema)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_amp(wage_small, tmp_path):
    gen = TVAEGenerator(**FAST, device="cuda", amp=True).fit(wage_small)
    assert gen.fit_report_["training"]["device"].startswith("cuda")
    loaded = sk.load(gen.save(tmp_path / "model"))
    assert loaded.sample(200, seed=1).equals(gen.sample(200, seed=1))


@pytest.mark.slow
def test_quality_on_wage(wage):
    """SDMetrics QualityReport on ISLR Wage at the default settings (300 epochs) is above 0.8.

    TVAE needs its epochs: 30 score about 0.69 here (SDV's TVAE about 0.66), 300 about 0.87.
    """
    from sdmetrics.reports.single_table import QualityReport

    schema = sk.infer_schema(wage)
    metadata = schema.to_sdv_dict()["tables"]["table"]
    gen = TVAEGenerator(seed=0, progress=False).fit(wage, schema=schema)
    report = QualityReport()
    report.generate(
        wage.to_pandas(), gen.sample(wage.height, seed=0).to_pandas(), metadata, verbose=False
    )
    assert report.get_score() > 0.8


def test_block_cross_entropy_matches_a_per_block_reference() -> None:
    import torch

    from synthkit.generators.tabular.tvae import _Layout, tvae_losses
    from synthkit.prepare.neural import OutputBlock

    blocks = [OutputBlock("a", "alpha", "value", 0, 1), OutputBlock("a", "softmax", "mode", 1, 3),
              OutputBlock("c", "softmax", "category", 4, 1000), OutputBlock("d", "softmax", "null", 1004, 2)]
    layout = _Layout.of(blocks, 1006, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(7, 1006, generator=gen)
    target = torch.zeros(7, 1006)
    target[:, 0] = torch.rand(7, generator=gen) * 2 - 1
    for b in blocks[1:]:
        hot = torch.randint(b.width, (7,), generator=gen)
        target[torch.arange(7), b.start + hot] = 1.0
    sigma = torch.full((1,), 0.3)
    zeros = torch.zeros(7, 4)
    recon, _ = tvae_losses(raw, target, sigma, zeros, zeros, layout, loss_factor=1.0)
    expected = ((target[:, 0] - torch.tanh(raw[:, 0])) ** 2 / (2 * 0.09)).sum() + torch.log(sigma).sum() * 7
    for b in blocks[1:]:
        part = slice(b.start, b.start + b.width)
        expected = expected - (target[:, part] * torch.log_softmax(raw[:, part], dim=1)).sum()
    assert torch.allclose(recon, expected / 7, rtol=1e-5)


def _autograd_and_written_out_grads(table, dims, dtype, native=False):
    """Gradients of one TVAE step by autograd (the reference) and by the written-out step (in
    Python, or with ``native`` the compiled one)."""
    from synthkit.generators.tabular.tvae import _Layout, tvae_losses
    from synthkit.generators.tabular.tvae_step import TVAEStep
    from synthkit.prepare.neural import NeuralTableEncoder

    encoding = NeuralTableEncoder(seed=0).fit(table, sk.infer_schema(table))
    # the written-out step reads rows alpha values first, as the generator trains on them
    order, layout = _Layout.alpha_first(encoding.blocks, encoding.width, torch.device("cpu"))
    batch = torch.as_tensor(encoding.transform(table)[:, order])
    torch.manual_seed(0)
    enc = TVAEEncoderNet(encoding.width, dims, 16)
    dec = TVAEDecoderNet(16, dims, encoding.width, layout.n_alpha)
    with torch.no_grad():
        dec.sigma.uniform_(0.05, 0.5)
    params = [*enc.parameters(), *dec.parameters()]
    eps = torch.randn(batch.shape[0], 16)
    mu, logvar = enc(batch)
    raw = dec(mu + eps * torch.exp(0.5 * logvar))
    recon, kl = tvae_losses(raw, batch, dec.sigma, mu, logvar, layout, 2.0)
    want = [torch.zeros_like(p) if w is None else w  # sigma of a table without alpha values
            for p, w in zip(params, torch.autograd.grad(recon + kl, params, allow_unused=True), strict=True)]
    step = TVAEStep(enc, dec, layout.n_alpha, layout.blocks, 2.0, native=native)
    got_recon, got_kl = step(batch, eps, dtype)
    assert step.ran_native == native
    assert torch.allclose(got_recon, recon.detach(), rtol=1e-3) and torch.allclose(got_kl, kl.detach(), rtol=1e-2)
    return want, [torch.zeros_like(p) if p.grad is None and p.numel() == 0 else p.grad for p in params]


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("dims", [(32, 24), (), (20,)])
def test_written_out_step_gives_autograds_gradients(wage_small, credit, dims, native, request):
    """The CPU step without autograd sets the gradients autograd computes, for tables with
    alpha values and one-hot blocks, nulls, and stacks of any depth (none included): in
    Python and natively (synthkit.nn.native)."""
    if native:
        request.getfixturevalue("native_built")
    for table in (wage_small.head(300), credit.head(300)):
        want, got = _autograd_and_written_out_grads(table, dims, torch.float32, native)
        for w, g in zip(want, got, strict=True):
            assert g is not None and g.shape == w.shape and g.dtype == torch.float32
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)
        # bf16 products: the same gradients within bf16 rounding
        want, got = _autograd_and_written_out_grads(table, dims, torch.bfloat16, native)
        for w, g in zip(want, got, strict=True):
            assert (g - w).norm() <= 0.1 * w.norm() + 1e-6


def test_written_out_step_trains_its_seated_parameters_as_per_parameter_adam_would(wage_small):
    """The step seats both networks' parameters in one buffer and Adam updates it in one call:
    the same weights, step for step, as Adam's own per-parameter update, in fp32 and bf16."""
    from synthkit.generators.neural import adam
    from synthkit.generators.tabular.tvae import _Layout
    from synthkit.generators.tabular.tvae_step import TVAEStep
    from synthkit.nn.optim import adam_step
    from synthkit.prepare.neural import NeuralTableEncoder

    table = wage_small.head(300)
    encoding = NeuralTableEncoder(seed=0).fit(table, sk.infer_schema(table))
    order, layout = _Layout.alpha_first(encoding.blocks, encoding.width, torch.device("cpu"))
    data = torch.as_tensor(encoding.transform(table)[:, order])
    for dtype in (torch.float32, torch.bfloat16):
        nets = []
        for one_call in (True, False):
            torch.manual_seed(0)
            enc = TVAEEncoderNet(encoding.width, (32, 24), 16)
            dec = TVAEDecoderNet(16, (24, 32), encoding.width, layout.n_alpha)
            opt = adam([*enc.parameters(), *dec.parameters()], lr=1e-3, weight_decay=1e-5)
            step = TVAEStep(enc, dec, layout.n_alpha, layout.blocks, 2.0)
            gen = torch.Generator().manual_seed(1)
            for _ in range(6):
                batch = data[torch.randperm(data.shape[0], generator=gen)[:100]]
                step(batch, torch.randn(100, 16, generator=gen), dtype)
                adam_step(opt, step.flat if one_call else None)
            assert step.flat is not None and step.flat.intact()
            assert (step.flat.adam is not None) == one_call  # the one-call update ran
            nets.append((enc, dec))
        for a, b in zip(nets[0], nets[1], strict=True):
            for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
                assert torch.equal(p, q), name


def test_training_rows_go_alpha_first_and_the_decoder_comes_back_in_encoded_order(wage_small):
    """Training reorders the encoded row (alpha values, then one-hot slots block by block); the
    decoder's output rows return to the encoded order that sampling reads, and a layout not in
    that order keeps the task off the written-out step, which needs it."""
    from synthkit.generators.tabular.tvae import _Layout, _restore_row_order
    from synthkit.prepare.neural import NeuralTableEncoder

    encoding = NeuralTableEncoder(seed=0).fit(wage_small, sk.infer_schema(wage_small))
    encoded = _Layout.of(encoding.blocks, encoding.width, torch.device("cpu"))
    order, layout = _Layout.alpha_first(encoding.blocks, encoding.width, torch.device("cpu"))
    assert not encoded.is_alpha_first and layout.is_alpha_first  # wage interleaves them
    assert sorted(order.tolist()) == list(range(encoding.width))
    assert order[: layout.n_alpha].tolist() == encoded.alpha.tolist()
    assert order[layout.n_alpha :].tolist() == encoded.slots.tolist()
    assert layout.blocks.widths == encoded.blocks.widths

    dec = TVAEDecoderNet(8, (12,), encoding.width, encoded.n_alpha)
    out = dec.seq[-1]
    weight, bias = out.weight.detach().clone(), out.bias.detach().clone()
    with torch.no_grad():  # as trained: row j is the encoded row's column order[j]
        out.weight.copy_(weight[order])
        out.bias.copy_(bias[order])
    _restore_row_order(dec, order)
    assert torch.equal(out.weight, weight) and torch.equal(out.bias, bias)

    enc = TVAEEncoderNet(encoding.width, (12,), 8)
    args = {"learning_rate": 1e-3, "l2scale": 0.0, "loss_factor": 2.0}
    assert TVAETrainingTask(enc, dec, layout, **args).use_written_out
    assert not TVAETrainingTask(enc, dec, encoded, **args).use_written_out


def test_sampling_never_decodes_rare_modes(wage_small, tmp_path):
    """Modes of a few far outliers (here wage's two largest values pushed to 100x) encode
    exactly but are out of sampling's reach: their slots go to -inf before decoding's argmax,
    even where the decoder scores them highest; the positions survive saving."""
    df = wage_small.with_columns(
        pl.when(pl.col("wage") >= pl.col("wage").sort(descending=True).get(1))
        .then(pl.col("wage") * 100).otherwise(pl.col("wage")).alias("wage"))
    gen = sk.create("tabular/tvae", **FAST).fit(df)
    enc, layout = gen.encoder_, gen.layout_
    rare = enc.rare_mode_positions()
    assert len(rare) >= 1 and layout.rare is not None and layout.rare.tolist() == rare
    mode_block = next(b for b in enc.blocks if b.column == "wage" and b.role == "mode")
    assert all(mode_block.start <= p < mode_block.start + mode_block.width for p in rare)
    raw = torch.zeros(50, enc.width)
    raw[:, rare] = 100.0  # the decoder's favourite
    out = layout.activate_(raw.clone(), gen.decoder_.sigma.detach(), torch.Generator().manual_seed(0))
    block = out[:, mode_block.start : mode_block.start + mode_block.width]
    picked = block.argmax(1) + mode_block.start
    assert not any(int(p) in rare for p in picked)
    top = float(wage_small["wage"].max())
    assert float(gen.sample(2_000, seed=1)["wage"].max()) < 2 * top  # no 100x values
    loaded = sk.load(gen.save(tmp_path / "m"))
    assert loaded.layout_.rare is not None and loaded.layout_.rare.tolist() == rare


def test_written_out_step_with_only_categories_or_only_numbers(wage_small):
    """No alpha value (categories only) and no one-hot block (quantile numbers without nulls)."""
    cats = wage_small.select(pl.col(pl.String)).head(200)
    _autograd_and_written_out_grads(cats, (16,), torch.float32)
    nums = wage_small.select("age", "wage").head(200)
    gen = TVAEGenerator(**FAST, numerical="quantile").fit(nums)
    assert gen.layout_.n_blocks == 0 and gen.sample(50, seed=0).height == 50


def test_cpu_fit_uses_the_written_out_step_in_the_precision_asked(wage_small, monkeypatch):
    """A CPU fit takes the written-out step, with bf16 products under the default "auto"
    where bf16 is fast and fp32 with "float32"; the fp32 step's losses are autograd's."""
    import synthkit.nn.trainer as trainer_module
    from synthkit.generators.tabular import tvae_step

    seen: list[torch.dtype] = []
    original = tvae_step.TVAEStep.__call__

    def spy(self, batch, eps, dtype=torch.float32):
        seen.append(dtype)
        return original(self, batch, eps, dtype)

    monkeypatch.setattr(tvae_step.TVAEStep, "__call__", spy)
    monkeypatch.setattr(trainer_module, "fast_bf16", lambda device: True)
    assert TVAEConfig().train_precision == "auto"
    low = TVAEGenerator(**FAST).fit(wage_small)
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    written = TVAEGenerator(**FAST, train_precision="float32").fit(wage_small)
    assert set(seen) == {torch.float32}
    task_init = TVAETrainingTask.__init__
    monkeypatch.setattr(TVAETrainingTask, "__init__",  # the autograd step, as under compile=True
                        lambda self, *a, **k: task_init(self, *a, **{**k, "written_out": False}))
    seen.clear()
    plain = TVAEGenerator(**FAST, train_precision="float32").fit(wage_small)
    assert not seen
    loss = [[r["loss"] for r in g.fit_report_["training"]["history"]] for g in (written, plain, low)]
    assert np.allclose(loss[0], loss[1], rtol=1e-4)
    assert np.allclose(loss[2], loss[1], rtol=0.05) and np.isfinite(loss[2]).all()
    assert low.sample(100, seed=0).height == 100


def test_compiled_networks_keep_the_autograd_step(wage_small, monkeypatch):
    """compile=True keeps autograd's step (the written-out one would bypass the compiled
    forward); the default uses the written-out step."""
    import synthkit.nn.trainer as trainer_module

    tasks = []

    class Stop(Exception):
        pass

    def capture(self, task, *args, **kwargs):
        tasks.append(task)
        raise Stop

    monkeypatch.setattr(trainer_module.Trainer, "fit", capture)
    for options in ({"compile": True}, {}):
        with pytest.raises(Stop):
            TVAEGenerator(**FAST, **options).fit(wage_small)
    assert [t.use_written_out for t in tasks] == [False, True]
