"""The CLI end to end, as a user runs it: exit codes, files written or not, help texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from synthkit.cli import main


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def wage_csv(tmp_path: Path, wage: pl.DataFrame) -> Path:
    path = tmp_path / "wage.csv"
    wage.head(1500).write_csv(path)
    return path


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


COMMANDS = [[], ["inspect"], ["train"], ["sample"], ["evaluate"], ["run"], ["audit"], ["audit", "verify"],
            ["keys"], ["keys", "generate"], ["generators"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "synthkit")
def test_every_command_has_help_with_an_example(runner: CliRunner, command: list[str]) -> None:
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_help_does_not_import_torch_or_sdv() -> None:
    code = ("import sys; from click.testing import CliRunner; from synthkit.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'sdv', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inspect_table_and_json(runner: CliRunner, wage_csv: Path) -> None:
    result = invoke(runner, "inspect", wage_csv)
    assert result.exit_code == 0 and "maritl" in result.output and "categorical" in result.output
    result = invoke(runner, "inspect", wage_csv, "--json")
    assert json.loads(result.output)["columns"][0]["name"] == "year"


def test_bad_paths_exit_2_with_a_hint(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "inspect", tmp_path / "nope.csv")
    assert result.exit_code == 2 and "Hint" in result.output
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    assert invoke(runner, "inspect", tmp_path / "data.xlsx").exit_code == 2


def test_train_sample_gate_audit(runner: CliRunner, wage_csv: Path, tmp_path: Path) -> None:
    model, dest, log = tmp_path / "model", tmp_path / "synth.parquet", tmp_path / "audit.jsonl"
    assert invoke(runner, "keys", "generate", "--out", tmp_path / "keys").exit_code == 0
    assert invoke(runner, "train", wage_csv, "--generator", "tabular/copula", "--out", model).exit_code == 0
    common = ["-n", "800", "--out", dest, "--real", wage_csv, "--audit-log", log,
              "--key", tmp_path / "keys/synthkit.key", "--seed", "1"]

    no_purpose = invoke(runner, "sample", model, *common)
    assert no_purpose.exit_code == 2 and "purpose" in no_purpose.output.lower()
    assert not dest.exists()

    refused = invoke(runner, "sample", model, *common, "--purpose", "re-identification of patients")
    assert refused.exit_code == 1 and not dest.exists()

    ok = invoke(runner, "sample", model, *common, "--purpose", "load testing", "--report", tmp_path / "r.html")
    assert ok.exit_code == 0, ok.output
    assert pl.read_parquet(dest).height == 800 and (tmp_path / "r.html").exists()

    verify = invoke(runner, "audit", "verify", log, "--public-key", tmp_path / "keys/synthkit.pub")
    assert verify.exit_code == 0 and "2 record" in verify.output

    other = tmp_path / "other.csv"
    pl.read_csv(wage_csv).head(700).write_csv(other)
    mismatch = invoke(runner, "sample", model, *common[:-2], "--real", other, "--purpose", "testing",
                      "--overwrite")
    assert mismatch.exit_code == 2
    assert "not the data this model was trained on" in " ".join(mismatch.output.split())


def test_evaluate_command(runner: CliRunner, wage: pl.DataFrame, tmp_path: Path) -> None:
    wage.head(1500).write_csv(tmp_path / "a.csv")
    wage.tail(1500).write_parquet(tmp_path / "b.parquet")
    result = invoke(runner, "evaluate", tmp_path / "a.csv", tmp_path / "b.parquet", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["metrics"]["quality.overall"]["value"] > 0.85


def test_evaluate_quasi_identifiers_and_anonymeter(runner: CliRunner, wage: pl.DataFrame,
                                                   tmp_path: Path) -> None:
    pytest.importorskip("anonymeter")
    wage.head(1000).write_csv(tmp_path / "train.csv")
    wage.slice(1000, 500).write_csv(tmp_path / "holdout.csv")
    wage.tail(1000).write_parquet(tmp_path / "synth.parquet")
    result = invoke(runner, "evaluate", tmp_path / "train.csv", tmp_path / "synth.parquet",
                    "--holdout", tmp_path / "holdout.csv", "-q", "age", "-q", "education",
                    "--k", "3", "--anonymeter", "--anonymeter-attacks", "50", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    assert metrics["privacy.k_anonymity"]["value"] >= 1
    assert 0 <= metrics["privacy.k_anonymity_share_below_k"]["value"] <= 1
    assert 0 <= metrics["privacy.singling_out_risk"]["value"] <= 1
    plain = json.loads(invoke(runner, "evaluate", tmp_path / "train.csv",
                              tmp_path / "synth.parquet", "--json").output)["metrics"]
    assert "privacy.singling_out_risk" not in plain
    bad = invoke(runner, "evaluate", tmp_path / "train.csv", tmp_path / "synth.parquet",
                 "-q", "no_such_column")
    assert bad.exit_code != 0 and "no_such_column" in bad.output


def test_generators_lists_builtins(runner: CliRunner) -> None:
    result = invoke(runner, "generators", "--json")
    names = json.loads(result.output)
    assert "tabular/copula" in names and "sdv/*" in names


def test_demo_writes_everything_and_audit_detects_tampering(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = invoke(runner, "demo", "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("synthetic.parquet", "report.html", "audit.jsonl", "keys/synthkit.pub", "model/manifest.json"):
        assert (out / name).exists(), name
    log, pub = out / "audit.jsonl", out / "keys/synthkit.pub"
    assert invoke(runner, "audit", "verify", log, "--public-key", pub).exit_code == 0
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0x01
    log.write_bytes(bytes(data))
    assert invoke(runner, "audit", "verify", log, "--public-key", pub).exit_code == 1


def test_keys_with_a_prompted_passphrase(runner: CliRunner, tmp_path: Path) -> None:
    from synthkit.errors import AuditError
    from synthkit.policies import load_private_key

    result = runner.invoke(main, ["keys", "generate", "--out", str(tmp_path), "--ask-passphrase"],
                           input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "synthkit.key").stat().st_mode & 0o777 == 0o600
    load_private_key(tmp_path / "synthkit.key", passphrase="s3cret")
    with pytest.raises(AuditError):
        load_private_key(tmp_path / "synthkit.key")
    again = invoke(runner, "keys", "generate", "--out", tmp_path)
    assert again.exit_code == 2  # refuses to overwrite an existing pair


def test_sample_refuses_a_tampered_model(runner: CliRunner, wage_csv: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert invoke(runner, "train", wage_csv, "--out", model).exit_code == 0
    weights = model / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    result = invoke(runner, "sample", model, "-n", "10", "--out", tmp_path / "s.csv", "--real", wage_csv,
                    "--purpose", "testing")
    assert result.exit_code == 2 and "sha256" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_sample_with_conditions_and_rebalance(runner: CliRunner, wage_csv: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert invoke(runner, "train", wage_csv, "--out", model).exit_code == 0
    base = ["sample", model, "-n", "400", "--real", wage_csv, "--purpose", "testing", "--seed", "3"]
    result = invoke(runner, *base, "--out", tmp_path / "c.parquet", "--condition", "jobclass=2. Information")
    assert result.exit_code == 0, result.output
    assert (pl.read_parquet(tmp_path / "c.parquet")["jobclass"] == "2. Information").all()
    result = invoke(runner, *base, "--out", tmp_path / "r.parquet",
                    "--rebalance", "health_ins=1. Yes:0.25,2. No:0.75")
    assert result.exit_code == 0, result.output
    counts = dict(pl.read_parquet(tmp_path / "r.parquet").group_by("health_ins").len().iter_rows())
    assert counts == {"1. Yes": 100, "2. No": 300}
    bad = invoke(runner, *base, "--out", tmp_path / "x.parquet", "--condition", "jobclass=Nope")
    assert bad.exit_code == 2 and not (tmp_path / "x.parquet").exists()
    assert invoke(runner, "train", wage_csv, "--out", tmp_path / "m2", "--resume").exit_code == 2
