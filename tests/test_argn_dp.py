"""tabular/argn with differential privacy: the private tokenizer, DP-SGD, honest reports."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant

import synthkit as sk
from synthkit.errors import ConfigError
from synthkit.generators.tabular.argn import ARGNConfig, ARGNGenerator, ARGNTrainingTask
from synthkit.nn.argn import ARGNNet
from synthkit.prepare.tokens import TableTokenizer
from synthkit.schema import infer_schema
from synthkit.testing import check_generator

DP = {"epsilon": 8.0, "delta": 1e-5, "preprocessing_share": 0.5}
#: Few epochs and a small net: these tests check privacy and behaviour, not sample quality.
FAST = dict(
    epochs=2, batch_size=200, embedding_dim=32, feedforward_dim=64, progress=False, seed=0, dp=DP
)
ADVANCED = "5. Advanced Degree"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def private(wage_small: pl.DataFrame) -> ARGNGenerator:
    return ARGNGenerator(**FAST).fit(wage_small)


def _declared_schema(df: pl.DataFrame):
    """Every fact public: numerical bounds and category sets (domain knowledge, not data)."""
    bounds = {"year": (2000.0, 2012.0), "age": (15.0, 85.0), "logwage": (3.0, 6.0),
              "wage": (20.0, 330.0)}
    categories = {
        "maritl": ["1. Never Married", "2. Married", "3. Widowed", "4. Divorced", "5. Separated"],
        "race": ["1. White", "2. Black", "3. Asian", "4. Other"],
        "education": ["1. < HS Grad", "2. HS Grad", "3. Some College", "4. College Grad", ADVANCED],
        "region": ["2. Middle Atlantic"],
        "jobclass": ["1. Industrial", "2. Information"],
        "health": ["1. <=Good", "2. >=Very Good"],
        "health_ins": ["1. Yes", "2. No"],
    }
    columns = []
    for c in infer_schema(df):
        if c.name in bounds:
            lo, hi = bounds[c.name]
            c = c.model_copy(update={"min": lo, "max": hi, "public_bounds": True})
        elif c.name in categories:
            c = c.model_copy(update={"categories": categories[c.name]})
        columns.append(c)
    return infer_schema(df).model_copy(update={"columns": columns})


# --- conformance and config -------------------------------------------------------------------
def test_conformance_private(wage_small, tmp_path):
    passed = check_generator(ARGNGenerator(**{**FAST, "epochs": 1}), wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed and "tampered_weights_raise" in passed


def test_dp_turns_validation_off_and_refuses_it_when_asked():
    cfg = ARGNConfig(dp={"epsilon": 1.0})
    assert cfg.validation_fraction == 0.0 and cfg.early_stopping_patience is None
    assert ARGNConfig().validation_fraction == 0.1  # unchanged without dp
    with pytest.raises(ConfigError, match="validation"):
        ARGNGenerator(dp={"epsilon": 1.0}, validation_fraction=0.1)
    with pytest.raises(ConfigError, match="early stopping"):
        ARGNGenerator(dp={"epsilon": 1.0}, early_stopping_patience=3)


# --- the network: Opacus per-sample gradients -------------------------------------------------
def test_opacus_per_sample_gradients_of_the_net_are_exact():
    """Every parameter sits in a layer Opacus supports; its per-row gradients match row-by-row
    backward passes in a random (flexible) reading order."""
    torch.manual_seed(0)
    vocab = [3, 5, 1, 4]
    net = ARGNNet(vocab, dim=16, layers=2, heads=2, feedforward_dim=32, dropout=0.0,
                  ordinal=[None, [0.1, 0.3, 0.5, 0.7, 0.9], None, None])
    gsm = GradSampleModule(net, loss_reduction="mean")
    gen = torch.Generator().manual_seed(1)
    rows = 5
    tokens = torch.stack([torch.randint(v, (rows,), generator=gen) for v in vocab], dim=1)
    order = torch.stack([torch.randperm(len(vocab), generator=gen) for _ in range(rows)])
    net.nll(tokens, order).mean().backward()
    samples = {n: p.grad_sample.clone() for n, p in net.named_parameters()}
    gsm.disable_hooks()
    for i in range(rows):
        net.zero_grad(set_to_none=True)
        net.nll(tokens[i : i + 1], order[i : i + 1]).mean().backward()
        for name, p in net.named_parameters():
            expected = p.grad if p.grad is not None else torch.zeros_like(p)
            torch.testing.assert_close(samples[name][i], expected, atol=1e-5, rtol=1e-4)
    gsm._close()


# --- the fit ----------------------------------------------------------------------------------
def test_report_epsilon_is_opacus_accountant_epsilon(private, wage_small):
    privacy = private.fit_report_["privacy"]
    sgd = privacy["sgd"]
    accountant = RDPAccountant()
    accountant.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    assert sgd["epsilon"] == pytest.approx(accountant.get_epsilon(delta=sgd["delta"]), rel=1e-9)
    assert sgd["steps"] == 2 * round(600 / 200)
    # the split: preprocessing_share for the tokenizer, the rest for DP-SGD
    encoding = privacy["encoding"]
    assert encoding["share"] == 0.5
    assert encoding["epsilon"] == pytest.approx(0.5 * 8.0, rel=1e-6)
    assert sgd["target_epsilon"] == pytest.approx(4.0)
    assert privacy["epsilon"] == pytest.approx(encoding["epsilon"] + sgd["epsilon"])
    assert privacy["epsilon"] <= 8.0 + 1e-6 and privacy["delta"] <= 1e-5 + 1e-12
    history = private.fit_report_["training"]["history"]
    assert [set(h) for h in history] == [{"epoch", "epsilon"}] * 2  # no loss on real rows
    assert history[-1]["epsilon"] == pytest.approx(sgd["epsilon"], abs=1e-6)


def test_rare_categories_below_the_threshold_are_never_released(private, wage_small, tmp_path):
    encoding = private.fit_report_["privacy"]["encoding"]["columns"]
    rare = []
    for column in ("maritl", "race"):
        threshold = encoding[column]["threshold"]
        counts = wage_small[column].value_counts()
        rare += counts.filter(pl.col("count") < threshold)[column].to_list()
    assert {"3. Widowed", "5. Separated", "4. Other"} <= set(rare)
    out = private.sample(3_000, seed=0)
    assert not set(rare) & set(out["maritl"].to_list() + out["race"].to_list())
    assert "(other)" in set(out["maritl"].to_list())  # the protected token stands for them
    for column in ("logwage", "wage"):  # nor are the data's exact extremes (the schema's min/max)
        real = wage_small[column]
        assert not {real.min(), real.max()} & set(out[column].to_list())
    assert not set(rare) & {v for vs in private.condition_values_.values() for v in vs}
    with pytest.raises(ConfigError, match="protected"):
        private.sample(10, conditions={"maritl": "5. Separated"})
    path = private.save(tmp_path / "model")
    blob = b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())
    assert not any(value.encode() in blob for value in rare)


def test_undeclared_bounds_cost_budget_and_planted_extremes_are_not_read(wage_small):
    planted = wage_small.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(1e9).otherwise(pl.col("wage")).alias("wage")
    )
    gen = ARGNGenerator(**{**FAST, "epochs": 1}).fit(planted)
    encoding = gen.fit_report_["privacy"]["encoding"]
    assert encoding["columns"]["wage"]["bounds"] == "estimated"
    assert encoding["columns"]["wage"]["hi"] < 1e6 and encoding["epsilon"] > 0
    part = gen.tokenizer_.parts[gen.tokenizer_.columns.index("wage")]
    assert part.cell_hi.max() < 1e6 and part.knots.max() < 1e6
    assert gen.sample(2_000, seed=0)["wage"].max() < 1e6


def test_declared_public_facts_cost_nothing_and_read_nothing(wage_small):
    schema = _declared_schema(wage_small)
    assert not TableTokenizer.needs_private_facts(schema)
    # the tokenizer is the same whatever the rows: nothing in it comes from the data
    states = []
    for part in (wage_small.head(300), wage_small.tail(300)):
        tok = TableTokenizer()
        facts = tok.fit_private(part, schema, epsilon=1.0, delta=1e-6, rng=np.random.default_rng(0))
        assert facts.epsilon == 0.0
        states.append(tok.state())
    (a, meta_a), (b, meta_b) = states
    assert meta_a == meta_b and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # a fit with everything declared gives DP-SGD the whole budget
    gen = ARGNGenerator(**{**FAST, "epochs": 1}).fit(wage_small, schema=schema)
    privacy = gen.fit_report_["privacy"]
    assert privacy["encoding"]["epsilon"] == 0.0 and privacy["encoding"]["share"] == 0.0
    assert privacy["encoding"]["columns"]["age"] == {
        "bounds": "declared", "lo": 15.0, "hi": 85.0, "bins": 64}
    assert privacy["encoding"]["columns"]["race"] == {"categories": "declared"}
    assert privacy["sgd"]["target_epsilon"] == pytest.approx(8.0)
    assert 0 < privacy["epsilon"] <= 8.0 + 1e-6
    # integer columns bin on the integer grid: small ranges get a bin (exact value) each
    year = gen.tokenizer_.parts[gen.tokenizer_.columns.index("year")]
    assert year.integer and np.array_equal(year.cell_lo, np.arange(2000.0, 2013.0))
    assert np.array_equal(year.cell_lo, year.cell_hi)
    out = gen.sample(500, seed=0)
    assert set(out["year"].to_list()) <= set(range(2000, 2013))
    assert out["age"].min() >= 15 and out["age"].max() <= 85


def test_private_model_saves_loads_and_samples_the_same(private, wage_small, tmp_path):
    out = private.sample(300, seed=1)
    assert out.columns == wage_small.columns and out.height == 300
    assert out.equals(private.sample(300, seed=1))
    loaded = sk.load(private.save(tmp_path / "m"))
    assert loaded.sample(200, seed=2).equals(private.sample(200, seed=2))
    assert loaded.fit_report_["privacy"]["epsilon"] == pytest.approx(
        private.fit_report_["privacy"]["epsilon"]
    )
    assert loaded.tokenizer_.private
    out = loaded.sample(100, conditions={"education": ADVANCED}, seed=0)
    assert (out["education"] == ADVANCED).all()


def test_conditions_and_seeds_are_met_exactly(private, wage_small):
    out = private.sample(200, conditions={"education": ADVANCED, "jobclass": "2. Information"}, seed=0)
    assert out.height == 200
    assert (out["education"] == ADVANCED).all() and (out["jobclass"] == "2. Information").all()
    seed = wage_small.select("age", "education").head(50)
    seeded = private.sample_seeded(seed, seed=0)
    assert seeded.height == 50
    assert seeded["age"].equals(seed["age"]) and seeded["education"].equals(seed["education"])


def test_private_resume_continues_the_same_plan(wage_small, tmp_path, monkeypatch):
    cfg = {**FAST, "epochs": 3, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    original = ARGNTrainingTask.on_epoch_end

    def interrupt(self, epoch, ctx):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, ctx)

    monkeypatch.setattr(ARGNTrainingTask, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ARGNGenerator(**cfg).fit(wage_small)
    monkeypatch.undo()
    resumed = ARGNGenerator(**cfg).fit(wage_small, resume=True)
    straight = ARGNGenerator(**{**cfg, "checkpoint_dir": None}).fit(wage_small)
    assert resumed.fit_report_["training"]["resumed_from"] == 1
    assert resumed.fit_report_["privacy"]["sgd"]["steps"] == straight.fit_report_["privacy"]["sgd"]["steps"]
    assert resumed.fit_report_["privacy"]["epsilon"] == pytest.approx(
        straight.fit_report_["privacy"]["epsilon"]
    )
    assert resumed.sample(100, seed=3).equals(straight.sample(100, seed=3))
    with pytest.raises(ConfigError, match="privacy plan"):
        ARGNGenerator(**{**cfg, "epochs": 6}).fit(wage_small, resume=True)
