"""PII end to end, through the Pipeline and the CLI, on a real table with Faker-made PII.

ISLR Wage (real) gets realistic personal data made by Faker from a fixed seed: names, emails,
phones, SSNs, card numbers, IBANs, IPs, street addresses, postcodes, dates of birth, and free
text that mentions emails and phone numbers. Under the default handling none of the real
identifiers may appear verbatim in anything the run writes: the synthetic data, the model,
the report or the audit log; nor may the PII key.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from faker import Faker

from synthkit.cli import main
from synthkit.pipeline import Pipeline
from synthkit.policies import generate_keypair, load_public_key, verify_log
from synthkit.prepare.pii_detect import EMAIL_RE

ROOT = Path(__file__).resolve().parents[1]
N = 500
DIRECT = ("email", "phone", "ssn", "card_number", "iban", "ip", "address")
KEY_TEXT = "pii-key-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def people(wage: pl.DataFrame) -> pl.DataFrame:
    fake = Faker("en_US")
    fake.seed_instance(2024)
    emails = [fake.email() for _ in range(N)]
    phones = [fake.phone_number() for _ in range(N)]
    pii = pl.DataFrame({
        "full_name": [fake.name() for _ in range(N)],
        "email": emails,
        "phone": phones,
        "ssn": [fake.ssn() for _ in range(N)],
        "card_number": [fake.credit_card_number() for _ in range(N)],
        "iban": [fake.iban() for _ in range(N)],
        "ip": [fake.ipv4() for _ in range(N)],
        "address": [fake.address().replace("\n", ", ") for _ in range(N)],
        "postcode": [fake.postcode() for _ in range(N)],
        "dob": [fake.date_of_birth(minimum_age=18, maximum_age=80).isoformat() for _ in range(N)],
        "notes": [f"{fake.sentence()} Customer asked to be called on {p} or mailed at {e}."
                  for p, e in zip(phones, emails, strict=True)],
    })
    return wage.head(N).hstack(pii)


@pytest.fixture()
def workdir(tmp_path: Path, people: pl.DataFrame) -> Path:
    people.write_csv(tmp_path / "people.csv")
    generate_keypair(tmp_path / "keys")
    return tmp_path


def _pipeline(workdir: Path, **changes) -> Path:
    config = {
        "source": "people.csv",
        "generator": {"name": "tabular/copula"},
        "n": 400,
        "purpose": "software testing of the CRM",
        "sink": "out/synthetic.parquet",
        "report": "out/report.html",
        "model": "out/model",
        "audit": {"log": "out/audit.jsonl", "private_key": "keys/synthkit.key"},
    }
    config.update(changes)
    path = workdir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _identifiers(people: pl.DataFrame) -> set[str]:
    """Every real direct identifier (the notes mention the same emails and phone numbers)."""
    return {v for c in DIRECT for v in people[c].to_list()}


def _written_text(directory: Path) -> str:
    """Every file a run wrote, as text (Parquet read back as CSV)."""
    parts = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            parts.append(pl.read_parquet(path).write_csv())
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def _leaks(text: str, identifiers: set[str]) -> list[str]:
    """Identifiers that occur in ``text`` as whole tokens (not inside a longer fake)."""
    lines = pl.Series(text.splitlines())
    patterns = sorted(identifiers)
    hit_lines = lines.filter(lines.str.contains_any(patterns))  # Aho-Corasick: one pass
    found = []
    for value in patterns:
        for line in hit_lines.filter(hit_lines.str.contains(value, literal=True)).to_list():
            for match in re.finditer(re.escape(value), line):
                before = line[match.start() - 1] if match.start() else " "
                after = line[match.end()] if match.end() < len(line) else " "
                if not (before.isalnum() or before in "@._%+-") and not (after.isalnum() or after in "@_%+-"):
                    found.append(value)
                    break
    return sorted(set(found))


def test_default_handling_end_to_end_leaks_nothing(workdir: Path, people: pl.DataFrame) -> None:
    result = Pipeline.from_yaml(_pipeline(workdir)).run()
    assert result.passed and result.written == workdir / "out/synthetic.parquet"
    synthetic = pl.read_parquet(result.written)
    assert synthetic.columns == people.columns and synthetic.height == 400
    # nothing real, anywhere the run wrote: data, model, report, audit log
    written = _written_text(workdir / "out")
    assert len(_leaks(people.head(20).write_csv(), _identifiers(people))) >= 20  # the check works
    assert _leaks(written, _identifiers(people)) == []
    # Faker-made fakes can equal Faker-made real values by chance; the pipeline re-fakes those
    assert not set(synthetic["full_name"]) & set(people["full_name"])
    assert not set(synthetic["email"]) & set(people["email"])
    real_dates = set(people["dob"])
    assert synthetic["dob"].dtype == pl.Int64 and not set(synthetic["dob"].cast(pl.String)) & real_dates
    assert synthetic["dob"].is_between(1940, 2010).all()  # birth years, learned
    # postcodes: prefixes shared by >= 10 real rows, learned as categories
    assert synthetic["postcode"].drop_nulls().str.len_chars().max() <= 3
    assert not set(synthetic["notes"].str.extract_all(EMAIL_RE).explode().drop_nulls()) & set(people["email"])
    # the report measures it, and the audit records what was done
    assert result.report.value("privacy.pii_verbatim") == 0.0
    record = json.loads((workdir / "out/audit.jsonl").read_text().splitlines()[-1])
    handling = {c["column"]: (c["handling"], c["default"]) for c in record["extra"]["pii"]["columns"]}
    assert handling["email"] == ("fake", True) and handling["dob"] == ("generalise", True)
    assert handling["notes"] == ("fake", True) and record["extra"]["pii"]["kept"] == []
    assert record["extra"]["pii"]["scrubbed"] == result.pii.scrubbed
    notes = next(c for c in record["extra"]["pii"]["columns"] if c["column"] == "notes")
    assert notes["spans"]["email"] == N and notes["spans"]["phone"] >= 0.9 * N
    assert verify_log(workdir / "out/audit.jsonl", load_public_key(workdir / "keys/synthkit.pub")).ok


def test_declared_rules_key_from_env_and_keep_is_audited_and_caught(
    workdir: Path, people: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SK_PII_KEY", KEY_TEXT)
    pack = yaml.safe_load((ROOT / "policies/packs/default.yaml").read_text())
    pack["name"] = "default-plus-pii"
    pack["rules"].append({"id": "privacy-pii-verbatim", "metric": "privacy.pii_verbatim", "op": "<=",
                          "threshold": 0, "severity": "block",
                          "hint": "Real identifiers reached the output: do not keep them."})
    (workdir / "policy.yaml").write_text(yaml.safe_dump(pack))
    pii = {"key_env": "SK_PII_KEY",
           "columns": {"email": "hash", "ip": {"handling": "fake", "consistent": True},
                       "iban": "drop", "notes": "redact", "dob": {"handling": "generalise", "date_unit": "month"},
                       "ssn": "keep"}}
    config = _pipeline(workdir, pii=pii, policy=str(workdir / "policy.yaml"))
    result = Pipeline.from_yaml(config).run(raise_on_refusal=False)
    # keeping the SSNs lets the generator learn them: the metric finds them, the policy refuses
    assert result.pii.kept == ["ssn"]
    assert result.report.value("privacy.pii_verbatim") > 0
    assert not result.passed and result.written is None
    assert not (workdir / "out/synthetic.parquet").exists()
    record = json.loads((workdir / "out/audit.jsonl").read_text().splitlines()[-1])
    assert record["extra"]["pii"]["kept"] == ["ssn"] and record["extra"]["pii"]["dropped"] == ["iban"]
    assert record["extra"]["pii"]["key"]["source"] == "env:SK_PII_KEY"
    assert record["extra"]["pii"]["key"]["key_id"] == result.pii.key.key_id
    synthetic = result.synthetic
    assert "iban" not in synthetic.columns
    assert synthetic["dob"].str.contains(r"^\d{4}-\d{2}$").all()
    prepared = result.pii.frame
    assert prepared["notes"].str.contains("<EMAIL>", literal=True).all()
    # the key is never written, in any form
    written = _written_text(workdir / "out")
    assert KEY_TEXT not in written and KEY_TEXT.encode().hex() not in written


def test_cli_inspect_and_run(workdir: Path, people: pl.DataFrame) -> None:
    runner = CliRunner()
    found = runner.invoke(main, ["inspect", str(workdir / "people.csv"), "--pii", "--json"],
                          catch_exceptions=False)
    assert found.exit_code == 0
    findings = {f["column"]: f for f in json.loads(found.output)["findings"]}
    assert set(findings) >= {*DIRECT, "full_name", "postcode", "dob", "notes"}
    assert findings["email"]["matched"] == N and findings["email"]["handling"] == "fake"
    assert findings["notes"]["spans"]["email"] == N and findings["notes"]["rows_with_spans"] == N
    assert findings["dob"]["handling"] == "generalise" and findings["dob"]["source"] == "name"
    table = runner.invoke(main, ["inspect", str(workdir / "people.csv")], catch_exceptions=False)
    assert table.exit_code == 0 and "PII spans" in table.output and "→ fake" in table.output
    schema = json.loads(runner.invoke(main, ["inspect", str(workdir / "people.csv"), "--json"]).output)
    assert {c["name"]: c.get("pii") for c in schema["columns"]}["iban"] == "iban"

    # the data is what counts here; hashing without a declared key makes one for the run, and says so
    light = _pipeline(workdir, report=None, model=None, audit=None, pii={"columns": {"email": "hash"}})
    run = runner.invoke(main, ["run", str(light)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert "PII key" in run.output and "random one" in run.output
    assert _leaks(_written_text(workdir / "out"), _identifiers(people)) == []


def test_bad_pii_settings_fail_before_any_work(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown handling 'shred'"):
        Pipeline.from_yaml(_pipeline(workdir, pii={"columns": {"email": "shred"}}))
    with pytest.raises(ConfigError, match="the data lacks"):
        Pipeline.from_yaml(_pipeline(workdir, pii={"columns": {"e_mail": "hash"}})).run()
    monkeypatch.delenv("SK_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="SK_NO_SUCH_KEY"):
        Pipeline.from_yaml(_pipeline(workdir, pii={"key_env": "SK_NO_SUCH_KEY"})).run()
    assert not (workdir / "out").exists()


def test_readme_pii_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Personal data (PII)"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "notes: PII spans: email 500, phone" in result.stdout
