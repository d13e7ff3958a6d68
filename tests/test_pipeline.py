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


def test_sample_to_sink_streams_exactly_the_rows_it_judged(workdir: Path, wage: pl.DataFrame) -> None:
    import synthkit as sk
    from synthkit.pipeline import sample_to_sink
    from synthkit.policies import load_policy

    train, holdout = sk.split_holdout(wage, fraction=0.2, seed=0)
    gen = sk.create("tabular/copula", seed=0).fit(train)
    dest = workdir / "big.parquet"
    out = sample_to_sink(gen, 25_000, dest, real=train, holdout=holdout, policy=load_policy("default"),
                         purpose="load testing", seed=7, batch_size=4_000, eval_rows=5_000)
    assert out.decision.passed and out.written is not None
    written = pl.read_parquet(dest)
    assert written.height == 25_000
    assert written.equals(pl.concat(list(gen.sample_batches(25_000, batch_size=4_000, seed=7))))
    assert out.report.n_synthetic == 25_000 and out.decision.data_fingerprint == sk.fingerprint(written)
    assert any("uniform random sample of 5,000" in note for note in out.report.notes)


def test_sample_to_sink_refuses_rows_that_differ_from_the_judged_ones(workdir: Path, wage: pl.DataFrame) -> None:
    import synthkit as sk
    from synthkit.errors import GateRefusedError
    from synthkit.pipeline import sample_to_sink
    from synthkit.policies import load_policy

    train, holdout = sk.split_holdout(wage, fraction=0.2, seed=0)
    gen = sk.create("tabular/copula", seed=0).fit(train)
    calls = {"n": 0}
    original = gen.sample_batches

    def drifting(n, **kw):  # a generator whose second pass is not the first: must be refused
        calls["n"] += 1
        return original(n, **{**kw, "seed": kw["seed"] + calls["n"]})

    gen.sample_batches = drifting
    dest = workdir / "drift.parquet"
    with pytest.raises(GateRefusedError):
        sample_to_sink(gen, 2_000, dest, real=train, holdout=holdout, policy=load_policy("default"),
                       purpose="load testing", seed=1)
    assert not dest.exists()


def test_evaluation_section_adds_k_anonymity_and_anonymeter(workdir: Path) -> None:
    pytest.importorskip("anonymeter")
    evaluation = {"quasi_identifiers": ["age", "education"], "k": 3, "anonymeter": True,
                  "anonymeter_attacks": 30}
    result = Pipeline(_config(workdir, model=None, sink=None, audit=None,
                              evaluation=evaluation)).run(raise_on_refusal=False)
    assert result.report.value("privacy.k_anonymity") >= 1
    assert 0 <= result.report.value("privacy.linkability_risk") <= 1
    with pytest.raises(ConfigError, match="evaluation"):
        PipelineConfig.from_dict({**_config(workdir), "evaluation": {"k": 1}})
