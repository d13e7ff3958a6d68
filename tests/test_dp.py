"""Differential privacy: DP-SGD through Opacus, private encoding facts, honest reports."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from opacus.accountants import RDPAccountant

import synthkit as sk
from synthkit.errors import ConfigError, DataError
from synthkit.generators.tabular.ctgan import CTGANGenerator, _CTGANTask
from synthkit.generators.tabular.tvae import TVAEGenerator
from synthkit.schema import infer_schema

DP = {"epsilon": 8.0, "delta": 1e-5, "preprocessing_share": 0.5}
FAST = {"epochs": 2, "batch_size": 200, "seed": 0, "progress": False, "dp": DP}


@pytest.fixture(scope="module")
def private_tvae(wage_small: pl.DataFrame) -> TVAEGenerator:
    return TVAEGenerator(**FAST).fit(wage_small)


def test_report_epsilon_is_opacus_accountant_epsilon(private_tvae):
    privacy = private_tvae.fit_report_["privacy"]
    sgd = privacy["sgd"]
    accountant = RDPAccountant()
    accountant.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    assert sgd["epsilon"] == pytest.approx(accountant.get_epsilon(delta=sgd["delta"]), rel=1e-9)
    # steps: epochs x round(n / batch_size), Poisson batches of expected size batch_size
    assert sgd["steps"] == 2 * round(600 / 200)
    assert sgd["sample_rate"] == pytest.approx(200 / 600)
    # the whole fit: encoding facts + DP-SGD, within the declared budget
    assert privacy["epsilon"] == pytest.approx(privacy["encoding"]["epsilon"] + sgd["epsilon"])
    assert privacy["encoding"]["epsilon"] == pytest.approx(0.5 * 8.0, rel=1e-6)
    assert privacy["epsilon"] <= 8.0 + 1e-6 and privacy["delta"] <= 1e-5 + 1e-12
    # the history keeps epsilon per epoch, never losses on real rows
    history = private_tvae.fit_report_["training"]["history"]
    assert [set(h) for h in history] == [{"epoch", "epsilon"}] * 2
    assert history[0]["epsilon"] < history[1]["epsilon"] == pytest.approx(sgd["epsilon"], abs=1e-6)


def test_private_model_samples_saves_and_loads(private_tvae, wage_small, tmp_path):
    out = private_tvae.sample(300, seed=1)
    assert out.columns == wage_small.columns and out.height == 300
    assert out.equals(private_tvae.sample(300, seed=1))
    loaded = sk.load(private_tvae.save(tmp_path / "m"))
    assert loaded.sample(50, seed=2).equals(private_tvae.sample(50, seed=2))
    assert loaded.fit_report_["privacy"]["epsilon"] == pytest.approx(
        private_tvae.fit_report_["privacy"]["epsilon"]
    )


def test_undeclared_bounds_are_estimated_never_read(wage_small):
    """A planted extreme value is not a bound: the private encoding estimated its range."""
    planted = wage_small.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(1e9).otherwise(pl.col("wage")).alias("wage")
    )
    gen = TVAEGenerator(**FAST).fit(planted)
    columns = gen.fit_report_["privacy"]["encoding"]["columns"]
    assert columns["wage"]["bounds"] == "estimated" and columns["wage"]["hi"] < 1e6
    assert gen.sample(2000, seed=0)["wage"].max() < 1e6
    # a non-private model reads the bounds from the data and can reach the planted value
    assert TVAEGenerator(**{**FAST, "dp": None}).fit(planted).encoder_.parts_[-1].bounds[1] == 1e9


def test_declared_public_bounds_and_categories_cost_nothing(wage_small):
    schema = infer_schema(wage_small)
    columns = []
    for c in schema:
        if c.name == "age":
            c = c.model_copy(update={"min": 18.0, "max": 80.0, "public_bounds": True})
        if c.name == "education":
            c = c.model_copy(update={"categories": sorted(wage_small["education"].unique())})
        columns.append(c)
    schema = schema.model_copy(update={"columns": columns})
    gen = TVAEGenerator(**FAST).fit(wage_small, schema=schema)
    report = gen.fit_report_["privacy"]["encoding"]["columns"]
    assert report["age"] == {"bounds": "declared", "lo": 18.0, "hi": 80.0}
    assert report["education"] == {"categories": "declared"}
    assert report["wage"]["bounds"] == "estimated"


def test_rare_categories_are_not_released(private_tvae, wage_small):
    gen = private_tvae
    counts = wage_small["race"].value_counts()
    rare = counts.filter(pl.col("count") < 15)["race"].to_list()
    assert rare, "Wage has rare race categories"
    assert not set(rare) & set(gen.sample(3000, seed=0)["race"].drop_nulls().to_list())
    assert not set(rare) & set(gen.condition_values_["race"])


def test_too_small_data_for_private_bounds_says_what_to_do(wage_small):
    with pytest.raises(DataError, match="public_bounds"):
        TVAEGenerator(**{**FAST, "dp": {"epsilon": 0.05}}).fit(wage_small.head(40))
    with pytest.raises(DataError, match="categories"):
        TVAEGenerator(**{**FAST, "dp": {"epsilon": 0.5}}).fit(
            wage_small.select("maritl", "race", "education")
        )


def test_families_without_private_training_refuse_dp():
    with pytest.raises(ConfigError, match="differential privacy"):
        sk.create("tabular/copula", dp={"epsilon": 1.0})
    with pytest.raises(ConfigError, match="differential privacy"):
        sk.create("sdv/GaussianCopulaSynthesizer", dp={"epsilon": 1.0})


def test_dp_refuses_validation_and_early_stopping(wage_small):
    with pytest.raises(ConfigError, match="validation"):
        TVAEGenerator(**FAST, validation_fraction=0.2).fit(wage_small)


def test_private_ctgan_trains_only_its_discriminator_privately(wage_small):
    assert CTGANGenerator(dp=DP).config.pac == 1
    with pytest.raises(ConfigError, match="pac=1"):
        CTGANGenerator(dp=DP, pac=10, batch_size=500)
    gen = CTGANGenerator(**FAST).fit(wage_small)
    privacy = gen.fit_report_["privacy"]
    assert 0 < privacy["sgd"]["epsilon"] <= 4.0 + 1e-6
    out = gen.sample(200, seed=0, conditions={"jobclass": "2. Information"})
    assert (out["jobclass"] == "2. Information").all()
    assert _CTGANTask.private_modules(None) == (["discriminator"], ["discriminator"])  # type: ignore[arg-type]


def test_private_ctgan_scores_a_fixed_number_of_generated_rows(wage_small, private_steps):
    """One real row's presence may change only its own clipped term: the generated rows in the
    critic step are as many as the plan's expected batch, whatever the Poisson batch held."""
    steps = private_steps(_CTGANTask)
    CTGANGenerator(**FAST).fit(wage_small)
    assert len(steps()) >= 5 and len({real for real, _, _ in steps()}) > 1
    assert all(handed == real + expected for real, expected, handed in steps())


def test_private_critic_runs_through_its_modules_for_dp_sgd(wage_small, monkeypatch):
    """DP-SGD computes per-row gradients from hooks on the critic's Linear modules: every
    private critic step must call them as modules (a functional shortcut would leave the rows'
    gradients unclipped)."""
    from synthkit.generators.tabular import ctgan as ctgan_module

    calls = {"layers": 0, "steps": 0}
    init = ctgan_module.CTGANDiscriminatorNet.__init__

    def hooked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for layer in (*self.hidden, self.out):
            layer.register_forward_hook(lambda *_: calls.__setitem__("layers", calls["layers"] + 1))

    step = _CTGANTask._private_step

    def counted(self, batch, ctx):
        calls["steps"] += 1
        return step(self, batch, ctx)

    monkeypatch.setattr(ctgan_module.CTGANDiscriminatorNet, "__init__", hooked)
    monkeypatch.setattr(_CTGANTask, "_private_step", counted)
    gen = CTGANGenerator(**FAST).fit(wage_small)
    assert calls["steps"] >= 5
    # three layers, scored in the critic step and again (hooks paused) in the generator step
    assert calls["layers"] == 2 * 3 * calls["steps"]
    assert gen.fit_report_["privacy"]["sgd"]["grad_sample_mode"] == "ghost"


def test_private_resume_continues_the_same_plan(wage_small, tmp_path, monkeypatch):
    cfg = {**FAST, "epochs": 3, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 1}
    from synthkit.generators.tabular.tvae import TVAETrainingTask

    original = TVAETrainingTask.on_epoch_end

    def interrupt(self, epoch, ctx):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, ctx)

    monkeypatch.setattr(TVAETrainingTask, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        TVAEGenerator(**cfg).fit(wage_small)
    monkeypatch.undo()
    resumed = TVAEGenerator(**cfg).fit(wage_small, resume=True)
    straight = TVAEGenerator(**{**cfg, "checkpoint_dir": None}).fit(wage_small)
    assert resumed.fit_report_["training"]["resumed_from"] == 1
    assert resumed.fit_report_["privacy"]["sgd"]["steps"] == straight.fit_report_["privacy"]["sgd"]["steps"]
    assert resumed.fit_report_["privacy"]["epsilon"] == pytest.approx(
        straight.fit_report_["privacy"]["epsilon"]
    )
    assert resumed.sample(100, seed=3).equals(straight.sample(100, seed=3))
    # more epochs would need more noise than the checkpoint was trained with
    with pytest.raises(ConfigError, match="privacy plan"):
        TVAEGenerator(**{**cfg, "epochs": 6}).fit(wage_small, resume=True)


def test_private_fillers_read_nothing_from_the_data(wage_small):
    df = wage_small.with_columns(
        pl.format("EMP-{}", pl.int_range(pl.len())).alias("employee_id"),
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.lit("x")).alias("note"),
    )
    schema = infer_schema(df)
    gen = TVAEGenerator(**FAST).fit(df, schema=schema)
    specs = {s["name"]: s for s in gen.fillers_["columns"]}
    assert all(s["null_share"] == 0.0 for s in specs.values())
    assert "EMP" not in str(specs)


def test_dp_settings_are_validated():
    with pytest.raises(ConfigError):
        TVAEGenerator(dp={"epsilon": -1})
    with pytest.raises(ConfigError):
        TVAEGenerator(dp={"epsilon": 1, "preprocessing_share": 1.5})
    assert np.isclose(TVAEGenerator(dp={"epsilon": 1}).config.dp.resolved_delta(1000), 1e-5)


def test_cli_trains_a_private_model(wage_small, tmp_path):
    from click.testing import CliRunner

    from synthkit.cli import main

    src = tmp_path / "wage.csv"
    wage_small.write_csv(src)
    result = CliRunner().invoke(main, [
        "train", str(src), "-g", "tabular/tvae", "--out", str(tmp_path / "model"), "--holdout", "0",
        "--set", "epochs=1", "--set", "batch_size=200", "--set", "progress=false",
        "--set", "dp={epsilon: 8, delta: 1.0e-5, preprocessing_share: 0.5}",
    ])
    assert result.exit_code == 0, result.output
    privacy = sk.load(tmp_path / "model").fit_report_["privacy"]
    assert privacy["differential_privacy"] and 0 < privacy["epsilon"] <= 8.0


def test_membership_inference_catches_an_overfit_model_not_a_private_one(wage):
    """Same 60 rows, same network: the overfit model leaks membership, the DP one does not."""
    import torch

    from synthkit.evaluate import evaluate

    rows = wage.sample(fraction=1.0, shuffle=True, seed=21)
    train, holdout = rows[:60], rows[60:1060]
    # public domain knowledge: category sets and value ranges (no budget spent on them)
    columns = []
    for c in infer_schema(wage):
        if c.kind.value == "categorical":
            c = c.model_copy(update={"categories": sorted(wage[c.name].drop_nulls().unique())})
        elif c.kind.value == "numerical":
            c = c.model_copy(update={"public_bounds": True})
        columns.append(c)
    schema = infer_schema(wage).model_copy(update={"columns": columns})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overfit = TVAEGenerator(epochs=1200, batch_size=60, loss_factor=20.0, seed=0, progress=False)
        overfit.fit(train, schema=schema)
        private = TVAEGenerator(epochs=60, batch_size=30, loss_factor=20.0, seed=0, progress=False,
                                dp={"epsilon": 3.0, "delta": 1e-3})
        private.fit(train, schema=schema)
    finally:
        torch.set_num_threads(before)

    def auc(gen: TVAEGenerator) -> float:
        report = evaluate(train, gen.sample(1000, seed=0), schema, holdout, sdmetrics=False)
        return float(report.value("privacy.mia_auc"))

    overfit_auc, private_auc = auc(overfit), auc(private)
    assert overfit_auc > 0.7
    assert private_auc < 0.65
    assert overfit_auc > private_auc + 0.15
    assert private.fit_report_["privacy"]["epsilon"] <= 3.0 + 1e-6
