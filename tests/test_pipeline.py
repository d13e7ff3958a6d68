"""The whole flow from code and from YAML: read, fit, sample, evaluate, gate, audit, write."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from synthkit.errors import ConfigError, GateRefusedError, PurposeMissingError
from synthkit.pipeline import Pipeline, PipelineConfig
from synthkit.policies import generate_keypair, load_public_key, verify_log


@pytest.fixture()
def workdir(tmp_path: Path, wage: pl.DataFrame) -> Path:
    wage.head(1500).write_csv(tmp_path / "wage.csv")
    generate_keypair(tmp_path / "keys")
    return tmp_path


def _config(workdir: Path, **changes) -> dict:
    config = {
        "source": "wage.csv",
        "generator": {"name": "tabular/copula"},
        "n": 1000,
        "purpose": "software testing",
        "sink": "out/synthetic.parquet",
        "report": "out/report.html",
        "model": "out/model",
        "audit": {"log": "out/audit.jsonl", "private_key": "keys/synthkit.key"},
        "base_dir": str(workdir),
    }
    config.update(changes)
    return config


def test_pipeline_end_to_end(workdir: Path) -> None:
    result = Pipeline(_config(workdir)).run()
    assert result.passed
    written = pl.read_parquet(workdir / "out/synthetic.parquet")
    assert written.shape == (1000, 11)
    assert written.equals(result.synthetic)
    assert (workdir / "out/report.html").stat().st_size > 10_000
    assert (workdir / "out/report.json").exists()
    assert (workdir / "out/model/manifest.json").exists()
    check = verify_log(workdir / "out/audit.jsonl", load_public_key(workdir / "keys/synthkit.pub"))
    assert check.ok and check.n_records == 1
    assert set(result.timings) >= {"read", "fit", "sample", "evaluate", "gate", "write"}


def test_pipeline_from_yaml_resolves_paths_next_to_the_file(workdir: Path) -> None:
    config = _config(workdir)
    del config["base_dir"]
    path = workdir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = Pipeline.from_yaml(path).run()
    assert result.written == workdir / "out/synthetic.parquet"


def test_missing_purpose_fails_before_any_work(workdir: Path) -> None:
    with pytest.raises(PurposeMissingError):
        Pipeline(_config(workdir, purpose=None)).run()
    assert not (workdir / "out").exists()


def test_refused_gate_writes_nothing_but_is_audited(workdir: Path, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({
        "name": "strict", "version": "1", "description": "impossible quality bar",
        "purpose": {"required": True},
        "rules": [{"id": "perfect", "metric": "quality.overall", "op": ">=", "threshold": 1.01,
                   "description": "perfect quality", "hint": "cannot be met"}],
    }))
    with pytest.raises(GateRefusedError, match="refused"):
        Pipeline(_config(workdir, policy=str(strict))).run()
    assert not (workdir / "out/synthetic.parquet").exists()
    check = verify_log(workdir / "out/audit.jsonl", load_public_key(workdir / "keys/synthkit.pub"))
    assert check.ok and check.n_records == 1
    result = Pipeline(_config(workdir, policy=str(strict), model=None)).run(raise_on_refusal=False)
    assert not result.passed and result.written is None


def test_prohibited_purpose_is_refused(workdir: Path) -> None:
    with pytest.raises(GateRefusedError):
        Pipeline(_config(workdir, purpose="re-identify customers in the loyalty data")).run()
    assert not (workdir / "out/synthetic.parquet").exists()


def test_bad_config_is_explained(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="generatr"):
        PipelineConfig.from_dict({**_config(workdir), "generatr": {}})
    with pytest.raises(ConfigError, match="not found"):
        PipelineConfig.from_yaml(workdir / "missing.yaml")
    (workdir / "bad.yaml").write_text("source: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        PipelineConfig.from_yaml(workdir / "bad.yaml")


def test_existing_sink_is_not_overwritten_unless_asked(workdir: Path) -> None:
    Pipeline(_config(workdir)).run()
    before = (workdir / "out/synthetic.parquet").read_bytes()
    from synthkit.errors import SinkExistsError

    with pytest.raises(SinkExistsError):
        Pipeline(_config(workdir, model=None, seed=5)).run()
    assert (workdir / "out/synthetic.parquet").read_bytes() == before
    Pipeline(_config(workdir, seed=5, overwrite=True)).run()
    assert (workdir / "out/synthetic.parquet").read_bytes() != before


def test_pipeline_conditions_and_rebalance(workdir: Path) -> None:
    result = Pipeline(_config(workdir, model=None, conditions={"race": "1. White"},
                              rebalance={"jobclass": {"1. Industrial": 0.5, "2. Information": 0.5}})).run(
        raise_on_refusal=False)
    out = result.synthetic
    assert (out["race"] == "1. White").all()
    assert dict(out.group_by("jobclass").len().iter_rows()) == {"1. Industrial": 500, "2. Information": 500}
