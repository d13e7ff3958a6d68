"""DDP training of every torch tabular family on two CPU Ray Train workers (gloo).

Each fit is tiny (a few hundred Wage rows, one or two epochs, narrow networks): the point is that
the family's own TrainingTask trains under DistributedDataParallel, the ranks stay in sync, and
the model is saved in exactly the single-machine format. tabular/tvae's DDP fit is tested in
tests/test_distributed.py.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

ray = pytest.importorskip("ray")

import synthkit as sk  # noqa: E402
from synthkit.distributed_train import _shard_rows, fit_distributed  # noqa: E402
from synthkit.errors import ConfigError  # noqa: E402

TINY = {
    "tabular/ctgan": dict(epochs=2, batch_size=100, pac=10, embedding_dim=16, generator_dim=(32,),
                          discriminator_dim=(32,)),
    "tabular/ddpm": dict(epochs=2, batch_size=100, hidden_dims=(32,), timesteps=20,
                         sampling_steps=5),
    # argn keeps its held-out rows and early stopping: every rank validates the same rows
    "tabular/argn": dict(epochs=2, batch_size=100, embedding_dim=16, feedforward_dim=32, layers=1,
                         heads=2, validation_fraction=0.2, early_stopping_patience=1),
}
COLUMNS = ["year", "age", "maritl", "race", "education", "jobclass", "health", "wage"]


@pytest.fixture(scope="module")
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def table(wage: pl.DataFrame) -> pl.DataFrame:
    return wage.select(COLUMNS).sample(400, seed=0)


@pytest.mark.parametrize("family", list(TINY))
def test_two_worker_ddp_fit_samples_and_loads(ray_session, table, family, tmp_path) -> None:
    cfg = dict(TINY[family], seed=0, device="cpu", progress=False)
    gen = fit_distributed(family, table, workers=2, **cfg)
    info = gen.fit_report_["distributed"]
    assert info["workers"] == 2 and info["backend"] == "gloo" and info["ranks_in_sync"]
    assert info["global_batch_size"] == 100 and info["batch_size_per_rank"] == 50
    held_out = round(400 * cfg.get("validation_fraction", 0.0))
    assert info["rows_per_rank"] == (400 - held_out) // 2
    assert 1 <= gen.fit_report_["training"]["epochs_run"] <= 2
    path = gen.save(tmp_path / "ddp")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["generator"] == family and manifest["config"]["seed"] == 0
    loaded = sk.load(path)
    out = loaded.sample(60, seed=1)
    assert out.shape == (60, len(COLUMNS)) and out.columns == COLUMNS
    assert loaded.sample(60, seed=1).equals(out)
    assert gen.sample(60, seed=1).equals(out)  # the driver's generator is what was saved
    # the same files a single-machine fit writes (tabular/tvae: tests/test_distributed.py)
    single = sk.create(family, **dict(cfg, epochs=1)).fit(table).save(tmp_path / "single")
    assert {p.name for p in path.iterdir()} == {p.name for p in single.iterdir()}
    theirs = json.loads((single / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == theirs["data_fingerprint"]


def test_shards_are_equal_and_cover_every_row() -> None:
    shards = [_shard_rows(11, 3, r, seed=4) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set().union(*map(set, shards)) == set(range(11))
    assert (_shard_rows(11, 3, 1, seed=4) == shards[1]).all()


def test_refusals_are_clear(wage) -> None:
    with pytest.raises(ConfigError, match="dp="):
        fit_distributed("tabular/ctgan", wage.head(50), workers=2, dp={"epsilon": 3}, pac=1,
                        discriminator_steps=1)
    with pytest.raises(ConfigError, match="not tabular/copula"):
        fit_distributed("tabular/copula", wage.head(50), workers=2)
    with pytest.raises(ConfigError, match="workers"):
        fit_distributed("tabular/tvae", wage.head(50), workers=0)


def test_cli_train_engine_ray_reaches_fit_distributed(wage, tmp_path) -> None:
    from click.testing import CliRunner

    from synthkit.cli import main

    csv = tmp_path / "wage.csv"
    wage.head(200).write_csv(csv)
    runner = CliRunner()
    base = ["train", str(csv), "--out", str(tmp_path / "model"), "--engine", "ray", "--workers", "2"]
    wrong = runner.invoke(main, [*base, "-g", "tabular/copula"])
    assert wrong.exit_code != 0 and "Distributed training is implemented for" in wrong.output
    resumed = runner.invoke(main, [*base, "-g", "tabular/ddpm", "--resume"])
    assert resumed.exit_code == 2 and "cannot --resume" in resumed.output
    assert not (tmp_path / "model").exists()
