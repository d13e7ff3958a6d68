"""Hyper-parameter search: Optuna trials scored by quality.overall on a holdout."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import synthkit as sk
from synthkit.cli import main
from synthkit.errors import ConfigError
from synthkit.tuning import SPACES, space_for, tune

SPACE = {
    "max_knots": {"type": "int", "low": 2, "high": 400, "log": True},
    "max_fit_rows": {"type": "categorical", "choices": [100, 5000]},
}


def test_tune_finds_the_better_settings_and_saves_them(wage_small, tmp_path):
    result = tune(wage_small, "tabular/copula", trials=5, space=SPACE, seed=0)
    assert len(result.trials) == 5 and all(t.score is not None for t in result.trials)
    assert result.best_score == max(t.score for t in result.trials)
    best = next(t for t in result.trials if t.score == result.best_score)
    assert result.best_config == best.params
    # the search sees a real difference: 2 knots (a step function) scores below the best
    worst = tune(wage_small, "tabular/copula", trials=1, seed=0,
                 space={"max_knots": {"type": "int", "low": 2, "high": 2}})
    assert worst.best_score < result.best_score
    out = result.save(tmp_path / "t")
    assert json.loads((out / "best_config.json").read_text()) == result.best_config
    assert len(json.loads((out / "tuning.json").read_text())["trials"]) == 5
    # the best config trains a generator as is
    sk.create("tabular/copula", **result.best_config).fit(wage_small)


def test_failed_trials_are_recorded_not_fatal(wage_small):
    space = {"max_knots": {"type": "categorical", "choices": [1, 200]}}  # 1 is invalid (ge=2)
    result = tune(wage_small, "tabular/copula", trials=4, space=space, seed=1)
    failed = [t for t in result.trials if t.score is None]
    assert all("max_knots" in (t.error or "") for t in failed)
    assert result.best_config == {"max_knots": 200}


def test_bad_search_settings_are_refused(wage_small):
    with pytest.raises(ConfigError, match="search space"):
        space_for("tabular/unknown")
    with pytest.raises(ConfigError, match="Bad search-space"):
        tune(wage_small, "tabular/copula", trials=1, space={"max_knots": {"type": "int", "low": 5}})
    with pytest.raises(ConfigError, match="both fixed and searched"):
        tune(wage_small, "tabular/copula", trials=1, space=SPACE, fixed={"max_knots": 10})
    with pytest.raises(ConfigError, match="failed"):
        tune(wage_small, "tabular/copula", trials=2, space={"max_knots": {"type": "int", "low": 1, "high": 1}})


def test_every_builtin_space_names_real_options():
    from synthkit.generators.registry import resolve

    for name, space in SPACES.items():
        fields = set(resolve(name)[0].config_class.model_fields)
        assert set(space) <= fields, (name, set(space) - fields)


def test_cli_tune_then_train_with_the_best_config(wage_small, tmp_path):
    src = tmp_path / "wage.csv"
    wage_small.write_csv(src)
    space = tmp_path / "space.yaml"
    space.write_text("max_knots: {type: int, low: 10, high: 300, log: true}\n")
    runner = CliRunner()
    res = runner.invoke(main, ["tune", str(src), "-g", "tabular/copula", "--trials", "3",
                               "--space", str(space), "--out", str(tmp_path / "tuning"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["generator"] == "tabular/copula"
    res = runner.invoke(main, ["train", str(src), "--config", str(tmp_path / "tuning/best_config.json"),
                               "--out", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    best = json.loads((tmp_path / "tuning/best_config.json").read_text())
    assert sk.load(tmp_path / "model").config.max_knots == best["max_knots"]
