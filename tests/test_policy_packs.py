"""Built-in policy packs, extends:, data/fairness/labelling/approval rules, and refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fakes import FakeReport

import synthkit as sk
from synthkit.connectors import write, write_batches
from synthkit.connectors.labelling import PARQUET_KEY, sidecar_path
from synthkit.errors import GateRefusedError, PolicyError
from synthkit.policies import (
    AuditLog,
    Decision,
    gate,
    generate_keypair,
    list_packs,
    load_approval,
    load_policy,
    sign_approval,
)

BUILT_IN = ["default", "external-sharing", "internal-testing", "regulated-health", "research"]


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(wage: pl.DataFrame) -> dict:
    """ISLR Wage, split, a copula fit, its synthetic table and report (fairness on race)."""
    train, holdout = sk.split_holdout(wage, fraction=0.2, seed=0)
    gen = sk.create("tabular/copula", seed=0).fit(train)
    synthetic = gen.sample(train.height, seed=0)
    report = sk.evaluate(train, synthetic, gen.schema_, holdout=holdout, sdmetrics=False,
                         fairness={"protected": ["race"], "target": "health_ins", "positive": "1. Yes"})
    return {"train": train, "holdout": holdout, "gen": gen, "synthetic": synthetic, "report": report}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(root, name=name) for name in ("alice", "bob", "carol", "mallory")}


def _pack(tmp_path: Path, text: str, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _approvals_pack(tmp_path: Path, keys: dict, extra: str = "") -> Path:
    return _pack(tmp_path, f"""
name: team-release
version: "1.0"
extends: internal-testing
approvals:
  required: 2
  approvers:
    - {{name: alice, key_id: {keys["alice"].key_id}}}
    - {{name: bob, key_id: {keys["bob"].key_id}}}
    - {{name: carol, key_id: {keys["carol"].key_id}}}
{extra}""")


def _kv(path: Path) -> dict[str, str]:
    """The Parquet file's key-value metadata."""
    return {k.decode(): v.decode() for k, v in (pq.ParquetFile(path).metadata.metadata or {}).items()}


def _assert_writes_nothing(decision: Decision, data: pl.DataFrame, folder: Path) -> None:
    """The sink refuses: no data file, no sidecar, no temp file is left."""
    assert not decision.passed
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("out.parquet", "out.csv"):
        with pytest.raises(GateRefusedError):
            write(data, folder / name, decision=decision)
    assert list(folder.iterdir()) == []


# --- built-in packs -------------------------------------------------------------------------
def test_every_built_in_pack_loads_with_metadata() -> None:
    assert set(BUILT_IN) <= set(list_packs())
    hashes = set()
    for name in BUILT_IN:
        policy = load_policy(name)
        assert policy.name == name and policy.version and policy.description
        assert policy.hash.startswith("sha256:")
        hashes.add(policy.hash)
    assert len(hashes) == len(BUILT_IN)
    assert load_policy("default").version == "1.1.0" and load_policy("default").based_on == []
    assert load_policy("research").based_on == ["default 1.1.0"]


@pytest.mark.parametrize(
    ("pack", "purpose", "verdict"),
    [
        ("default", "software testing", "passed"),
        ("internal-testing", "software testing of the payroll system", "passed"),
        ("research", "research on wages", "passed"),
        ("external-sharing", "sharing with a partner", "failed"),  # not DP: fails closed
        ("regulated-health", "research on wages", "failed"),  # strict: no exact copies at all
    ],
)
def test_each_built_in_pack_gates_the_demo_data(demo: dict, pack: str, purpose: str, verdict: str) -> None:
    decision = gate(pack, demo["report"], purpose)
    assert decision.policy == pack and decision.policy_hash == load_policy(pack).hash
    assert decision.verdict == verdict, decision.summary()
    assert decision.data_fingerprint == demo["report"].synthetic_fingerprint


def test_external_sharing_needs_dp_epsilon_at_most_3(demo: dict) -> None:
    decision = gate("external-sharing", demo["report"], "sharing with a partner")
    dp = next(f for f in decision.failed if f.rule == "privacy-dp-epsilon")
    assert "missing" in dp.message and "differential privacy" in dp.hint

    from synthkit.pipeline import dp_epsilon

    private = sk.create("tabular/dpcopula", dp={"epsilon": 3.0}, seed=0).fit(demo["train"])
    assert dp_epsilon(private) == pytest.approx(3.0) and dp_epsilon(demo["gen"]) is None
    synthetic = private.sample(demo["train"].height, seed=0)
    report = sk.evaluate(demo["train"], synthetic, private.schema_, holdout=demo["holdout"],
                         sdmetrics=False, dp_epsilon=dp_epsilon(private))
    ok = gate("external-sharing", report, "sharing with a partner")
    assert next(f for f in ok.findings if f.rule == "privacy-dp-epsilon").passed
    report.metrics["privacy.dp_epsilon"] = report.metrics["privacy.dp_epsilon"].model_copy(update={"value": 8.0})
    too_much = gate("external-sharing", report, "sharing with a partner")
    assert any(f.rule == "privacy-dp-epsilon" for f in too_much.failed)


# --- refusals write nothing -----------------------------------------------------------------
def test_missing_purpose_blocks_and_writes_nothing(demo: dict, tmp_path: Path) -> None:
    decision = gate("internal-testing", demo["report"], None)
    assert [f.rule for f in decision.failed] == ["purpose"]
    _assert_writes_nothing(decision, demo["synthetic"], tmp_path / "out")


def test_purpose_outside_the_allowed_list_blocks(demo: dict, tmp_path: Path) -> None:
    decision = gate("internal-testing", demo["report"], "marketing analytics")
    assert [f.rule for f in decision.failed] == ["purpose"]
    _assert_writes_nothing(decision, demo["synthetic"], tmp_path / "out")


def test_prohibited_purpose_blocks_and_writes_nothing(demo: dict, tmp_path: Path) -> None:
    decision = gate("research", demo["report"], "research to re-identify individuals")
    assert "prohibited_use:re-identification" in [f.rule for f in decision.failed]
    health = gate("regulated-health", demo["report"], "research for underwriting")
    assert "prohibited_use:insurance-underwriting" in [f.rule for f in health.failed]
    _assert_writes_nothing(decision, demo["synthetic"], tmp_path / "out")


@pytest.fixture(scope="module")
def with_email(wage: pl.DataFrame) -> dict:
    """Wage with a real email column: the copula fills it with fakes (the default handling)."""
    data = wage.with_columns(pl.format("person{}@example.org", pl.int_range(pl.len())).alias("email"))
    train, holdout = sk.split_holdout(data, fraction=0.2, seed=0)
    schema = sk.infer_schema(data)
    gen = sk.create("tabular/copula", seed=0).fit(train, schema=schema)
    synthetic = gen.sample(train.height, seed=0)
    report = sk.evaluate(train, synthetic, schema, holdout=holdout, sdmetrics=False)
    return {"synthetic": synthetic, "report": report, "schema": schema, "train": train}


def test_pii_kind_in_the_output_blocks_and_writes_nothing(with_email: dict, tmp_path: Path) -> None:
    decision = gate("external-sharing", with_email["report"], "sharing with a partner")
    pii = next(f for f in decision.failed if f.rule == "no-pii-kinds")
    assert pii.kind == "data" and "email" in pii.message
    assert pii.evidence["columns"] == [{"column": "email", "pii": "email", "handling": "fake"}]
    health = gate("regulated-health", with_email["report"], "research")
    assert "hipaa-safe-harbor-identifiers" in [f.rule for f in health.failed]
    # inside the organisation fakes are fine: the same output passes the internal rule
    internal = gate("internal-testing", with_email["report"], "software testing")
    assert next(f for f in internal.findings if f.rule == "no-real-identifiers").passed
    _assert_writes_nothing(decision, with_email["synthetic"], tmp_path / "out")


def test_real_identifiers_verbatim_block(with_email: dict) -> None:
    leaked = with_email["synthetic"].with_columns(
        pl.Series("email", with_email["train"].get_column("email").head(with_email["synthetic"].height)))
    report = sk.evaluate(with_email["train"], leaked, with_email["schema"], sdmetrics=False)
    assert report.value("privacy.pii_verbatim") > 0
    finding = next(f for f in gate("internal-testing", report, "testing").failed
                   if f.rule == "no-real-identifiers")
    assert "verbatim" in finding.message


def test_generalised_or_dropped_pii_passes_the_safe_harbor_rule(with_email: dict) -> None:
    dropped = with_email["schema"].with_overrides({"email": {"pii_handling": "drop"}})
    report = FakeReport({"privacy.pii_verbatim": 0.0})
    report.table_schema = lambda: dropped  # type: ignore[attr-defined]
    finding = next(f for f in gate("regulated-health", report, "research").findings
                   if f.rule == "hipaa-safe-harbor-identifiers")
    assert finding.passed
    no_schema = next(f for f in gate("regulated-health", FakeReport({}), "research").findings
                     if f.rule == "hipaa-safe-harbor-identifiers")
    assert not no_schema.passed and "schema" in no_schema.message  # fails closed


def test_quality_below_the_floor_blocks_and_writes_nothing(demo: dict, tmp_path: Path) -> None:
    synthetic = demo["synthetic"]
    bad = synthetic.with_columns(pl.lit(20).alias("age"), pl.lit(50.0).alias("wage"),
                                 pl.lit(3.9).alias("logwage"), pl.lit("1. Never Married").alias("maritl"))
    report = sk.evaluate(demo["train"], bad, demo["gen"].schema_, holdout=demo["holdout"], sdmetrics=False)
    decision = gate("internal-testing", report, "software testing")
    assert "quality-overall" in [f.rule for f in decision.failed]
    _assert_writes_nothing(decision, bad, tmp_path / "out")


def test_exact_copies_and_k_anonymity_data_rules(demo: dict, tmp_path: Path) -> None:
    path = _pack(tmp_path, """
name: strict-data
version: "1"
purpose: {required: false}
data:
  - {id: copies, check: no_exact_copies, max_rate: 0.0}
  - {id: k5, check: k_anonymity, k: 5}
""")
    decision = gate(path, demo["report"], None)
    failed = {f.rule: f for f in decision.failed}
    assert demo["report"].value("privacy.exact_copy_rate") > 0 and "copies" in failed
    assert "quasi_identifiers" in failed["k5"].hint  # the report has no k-anonymity: fails closed
    report = FakeReport({"privacy.exact_copy_rate": 0.0, "privacy.k_anonymity": 7.0})
    assert gate(path, report, None).passed
    with pytest.raises(PolicyError, match="needs k"):
        load_policy(_pack(tmp_path, "name: x\nversion: '1'\ndata: [{id: k, check: k_anonymity}]\n", "bad.yaml"))


def test_fairness_drift_blocks_and_writes_nothing(demo: dict, tmp_path: Path) -> None:
    path = _pack(tmp_path, """
name: fair-research
version: "1.0"
extends: research
fairness: {protected: [race], target: health_ins, positive: "1. Yes", max_rate_gap: 0.2}
""")
    policy = load_policy(path)
    assert policy.fairness.max_distribution_shift == 0.10  # kept from research
    synthetic = demo["synthetic"]
    report = sk.evaluate(demo["train"], synthetic, demo["gen"].schema_, holdout=demo["holdout"],
                         sdmetrics=False, fairness=policy.fairness)
    assert gate(policy, report, "research").passed
    skewed = synthetic.filter(pl.col("race") == "1. White")
    report = sk.evaluate(demo["train"], skewed, demo["gen"].schema_, holdout=demo["holdout"],
                         sdmetrics=False, fairness=policy.fairness)
    decision = gate(policy, report, "research")
    shift = next(f for f in decision.failed if f.rule == "fairness:race:distribution_shift")
    groups = {g["group"]: g for g in shift.evidence["groups"]}
    assert groups["2. Black"]["synthetic_share"] == 0.0 and groups["2. Black"]["real_share"] > 0.05
    _assert_writes_nothing(decision, skewed, tmp_path / "out")


# --- approvals ------------------------------------------------------------------------------
def test_missing_approvals_block_and_the_right_keys_unblock(demo: dict, keys: dict, tmp_path: Path) -> None:
    path = _approvals_pack(tmp_path, keys)
    purpose = "software testing"
    refused = gate(path, demo["report"], purpose)
    finding = next(f for f in refused.failed if f.rule == "approvals")
    assert finding.kind == "approval" and "2 required" in finding.message and "synthkit approve" in finding.hint
    _assert_writes_nothing(refused, demo["synthetic"], tmp_path / "refused")

    alice = sign_approval(refused, keys["alice"].private_path, approver="alice")
    bob = sign_approval(refused, keys["bob"].private_path, approver="bob")
    mallory = sign_approval(refused, keys["mallory"].private_path, approver="mallory")
    assert not gate(path, demo["report"], purpose, approvals=[alice]).passed
    assert not gate(path, demo["report"], purpose, approvals=[alice, alice]).passed  # one key counts once
    wrong = gate(path, demo["report"], purpose, approvals=[alice, mallory])
    assert not wrong.passed
    problems = next(f for f in wrong.findings if f.rule == "approvals").evidence["invalid"]
    assert "not one of this policy's approvers" in problems[0]["problem"]

    saved = bob.save(tmp_path / "bob.approval.json")
    approved = gate(path, demo["report"], purpose, approvals=[alice, saved])
    assert approved.passed and approved.verdict == "passed"
    assert sorted(a["approver"] for a in approved.approvals) == ["alice", "bob"]
    out = write(demo["synthetic"], tmp_path / "ok" / "out.parquet", decision=approved)
    assert out.exists()

    log = AuditLog(tmp_path / "audit.jsonl")
    record = log.append(approved, private_key=keys["alice"].private_path, report=demo["report"])
    assert [a["key_id"] for a in record.approvals] == [keys["alice"].key_id, keys["bob"].key_id]
    assert log.verify(keys["alice"].public_path).ok


def test_approvals_for_other_data_or_changed_ones_do_not_count(demo: dict, keys: dict, tmp_path: Path) -> None:
    path = _approvals_pack(tmp_path, keys)
    refused = gate(path, demo["report"], "software testing")
    other_purpose = sign_approval(refused.model_copy(update={"purpose": "testing"}),
                                  keys["alice"].private_path, approver="alice")
    bob = sign_approval(refused, keys["bob"].private_path, approver="bob")
    tampered = bob.model_copy(update={"overrides": ["quality-overall"]})
    decision = gate(path, demo["report"], "software testing", approvals=[other_purpose, tampered])
    invalid = next(f for f in decision.findings if f.rule == "approvals").evidence["invalid"]
    assert not decision.passed
    assert "another purpose" in invalid[0]["problem"] and "signature" in invalid[1]["problem"]


def test_only_signed_approvals_override_a_failed_rule(demo: dict, keys: dict, tmp_path: Path) -> None:
    path = _approvals_pack(tmp_path, keys, """
  may_override: [quality-overall]
rules:
  - {id: quality-overall, threshold: 0.999}
""")
    refused = gate(path, demo["report"], "software testing")
    assert [f.rule for f in refused.failed] == ["quality-overall", "approvals"]
    plain = [sign_approval(refused, keys[n].private_path, approver=n) for n in ("alice", "bob")]
    still = gate(path, demo["report"], "software testing", approvals=plain)
    assert [f.rule for f in still.failed] == ["quality-overall"]  # approving is not overriding
    overriding = [sign_approval(refused, keys[n].private_path, approver=n, overrides=["quality-overall"])
                  for n in ("alice", "carol")]
    decision = gate(path, demo["report"], "software testing", approvals=overriding)
    assert decision.passed and decision.verdict == "passed_with_warnings"
    overridden = next(f for f in decision.findings if f.rule == "quality-overall")
    assert not overridden.passed and overridden.overridden_by == ["alice", "carol"]
    assert "PASSED WITH WARNINGS" in decision.summary()
    with pytest.raises(PolicyError, match="never be overridden"):
        load_policy(_approvals_pack(tmp_path, keys, "  may_override: [purpose]\n"))


def test_cli_approve_signs_a_decision_file(demo: dict, keys: dict, tmp_path: Path) -> None:
    from synthkit.cli import main

    path = _approvals_pack(tmp_path, keys)
    refused = gate(path, demo["report"], "software testing")
    decision_file = tmp_path / "decision.json"
    decision_file.write_text(refused.to_json(indent=2), encoding="utf-8")
    runner = CliRunner()
    files = []
    for name in ("alice", "carol"):
        result = runner.invoke(main, ["approve", str(decision_file), "--key", str(keys[name].private_path),
                                      "--approver", name])
        assert result.exit_code == 0, result.output
        files.append(tmp_path / f"decision.{name}.approval.json")
        assert load_approval(files[-1]).key_id == keys[name].key_id
    again = runner.invoke(main, ["approve", str(decision_file), "--key", str(keys["alice"].private_path),
                                 "--approver", "alice"])
    assert again.exit_code == 2  # never replaces an approval
    assert gate(path, demo["report"], "software testing", approvals=files).passed


# --- extends --------------------------------------------------------------------------------
def test_extends_overrides_rules_purpose_and_prohibited_uses_by_id(tmp_path: Path) -> None:
    base = _pack(tmp_path / "base", """
name: base
version: "1.0"
purpose: {required: true, allowed: [testing]}
prohibited_uses:
  - {name: spam, keywords: [spam]}
rules:
  - {id: q, metric: quality.overall, op: ">=", threshold: 0.8, hint: Be better.}
  - {id: copies, metric: privacy.exact_copy_rate, op: "<=", threshold: 0.01}
""", "base.yaml")
    (tmp_path / "team").mkdir()
    child = _pack(tmp_path / "team", """
name: child
version: "2.0"
extends: ../base/base.yaml
purpose: {allowed: [testing, research]}
prohibited_uses:
  - {name: spam, keywords: [spam, cold calling]}
rules:
  - {id: q, threshold: 0.6}
  - {id: copies, remove: true}
  - {id: pairs, metric: quality.column_pair_trends, op: ">=", threshold: 0.5}
""")
    policy = load_policy(child)
    assert (policy.name, policy.version, policy.based_on) == ("child", "2.0", ["base 1.0"])
    rules = {r.id: r for r in policy.rules}
    assert set(rules) == {"q", "pairs"} and rules["q"].threshold == 0.6 and rules["q"].hint == "Be better."
    assert policy.purpose.required and policy.purpose.allowed == ["testing", "research"]
    assert policy.prohibited_uses[0].keywords == ["spam", "cold calling"]
    before = policy.hash
    base.write_text(base.read_text().replace("Be better.", "Be much better."), encoding="utf-8")
    assert load_policy(child).hash != before  # the hash covers the resolved content
    report = FakeReport({"quality.overall": 0.7, "quality.column_pair_trends": 0.9})
    assert gate(child, report, "research").passed and not gate(base, report, "testing").passed


def test_extends_a_built_in_pack_and_errors_are_clear(tmp_path: Path) -> None:
    ok = load_policy(_pack(tmp_path, "name: mine\nversion: '1'\nextends: external-sharing\n"))
    assert ok.based_on == ["external-sharing 1.0.0", "default 1.1.0"]
    assert {r.id for r in ok.rules} >= {"privacy-dp-epsilon", "quality-overall"}
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: a\nversion: '1'\nextends: b.yaml\n", encoding="utf-8")
    b.write_text("name: b\nversion: '1'\nextends: ./a.yaml\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="cycle"):
        load_policy(a)
    with pytest.raises(PolicyError, match="own name"):
        load_policy(_pack(tmp_path, "version: '1'\nextends: default\n", "noname.yaml"))
    with pytest.raises(PolicyError, match="Unknown policy pack 'nope'"):
        load_policy(_pack(tmp_path, "name: x\nversion: '1'\nextends: nope\n", "unknown.yaml"))
    with pytest.raises(PolicyError, match="cannot remove"):
        load_policy(_pack(tmp_path, "name: x\nversion: '1'\nextends: default\nrules: [{id: zz, remove: true}]\n",
                          "remove.yaml"))


# --- labelling ------------------------------------------------------------------------------
def test_labelling_is_required_and_written_into_parquet_metadata(demo: dict, tmp_path: Path) -> None:
    decision = gate("internal-testing", demo["report"], "software testing")
    label = next(f for f in decision.findings if f.kind == "labelling")
    assert label.passed and "Labelling required" in label.message
    out = write(demo["synthetic"], tmp_path / "synth.parquet", decision=decision,
                provenance={"generator": "tabular/copula"})
    meta = _kv(out)
    assert meta[PARQUET_KEY] == "true"
    assert meta["synthkit.policy"] == "internal-testing" and meta["synthkit.policy_hash"] == decision.policy_hash
    assert meta["synthkit.generator"] == "tabular/copula"
    assert meta["synthkit.data_fingerprint"] == decision.data_fingerprint
    assert pl.read_parquet(out).equals(demo["synthetic"])  # no label column asked for
    assert not sidecar_path(out).exists()
    assert not any(f.kind == "labelling" for f in gate("default", demo["report"], "testing").findings)


def test_csv_gets_a_sidecar_and_a_label_column_when_asked(demo: dict, tmp_path: Path) -> None:
    decision = gate("regulated-health", demo["report"], "research")
    passing = decision.model_copy(update={"passed": True})  # labelling only: pretend it passed
    out = write(demo["synthetic"], tmp_path / "synth.csv", decision=passing)
    sidecar = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert sidecar["synthetic"] is True and sidecar["file"] == "synth.csv"
    assert sidecar["policy"] == "regulated-health" and sidecar["label_column"] == "is_synthetic"
    assert sidecar["data_fingerprint"] == decision.data_fingerprint
    written = pl.read_csv(out)
    assert written.get_column("is_synthetic").all() and written.width == demo["synthetic"].width + 1
    batches = demo["synthetic"].iter_slices(1000)
    streamed = write_batches(batches, tmp_path / "stream.parquet", decision=passing)
    assert pl.read_parquet(streamed).get_column("is_synthetic").all()
    assert _kv(streamed)[PARQUET_KEY] == "true"


def test_a_label_that_cannot_be_applied_refuses_the_write(demo: dict, tmp_path: Path) -> None:
    path = _pack(tmp_path / "p", """
name: parquet-only
version: "1"
extends: internal-testing
labelling: {csv_sidecar: false}
""")
    decision = gate(path, demo["report"], "software testing")
    assert decision.passed
    with pytest.raises(GateRefusedError, match="none of its labels"):
        write(demo["synthetic"], tmp_path / "out" / "synth.csv", decision=decision)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    existing = tmp_path / "exists.csv"
    sidecar_path(existing).write_text("{}", encoding="utf-8")
    with pytest.raises(Exception, match="already exists"):
        write(demo["synthetic"], existing, decision=gate("internal-testing", demo["report"], "testing"))
    assert not existing.exists()


def test_database_tables_carry_the_label_column_or_are_refused(demo: dict, tmp_path: Path) -> None:
    import sqlalchemy as sa

    uri = f"sqlite:///{tmp_path / 'out.db'}"
    decision = gate("regulated-health", demo["report"], "research")
    passing = decision.model_copy(update={"passed": True})  # labelling only: pretend it passed
    write(demo["synthetic"], uri, decision=passing, table="synth")
    write_batches(demo["synthetic"].iter_slices(700), uri, decision=passing, table="streamed")
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        for table in ("synth", "streamed"):
            labels = conn.execute(sa.text(f"SELECT DISTINCT is_synthetic FROM {table}")).all()
            assert labels == [(1,)]
    other = demo["synthetic"].head(100)
    with pytest.raises(GateRefusedError, match="differs"):
        write_batches(other.iter_slices(50), uri, decision=passing, table="other")
    parquet_only = gate("internal-testing", demo["report"], "software testing")
    with pytest.raises(GateRefusedError, match="database tables"):
        write(demo["synthetic"], uri, decision=parquet_only, table="unlabelled")
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert tables == {"synth", "streamed"}


# --- the pipeline ---------------------------------------------------------------------------
def test_pipeline_with_approvals_refuses_then_writes_labelled(wage: pl.DataFrame, keys: dict,
                                                              tmp_path: Path) -> None:
    from synthkit.pipeline import Pipeline

    wage.head(1200).write_csv(tmp_path / "wage.csv")
    _approvals_pack(tmp_path, keys)
    config = {"source": "wage.csv", "policy": "team.yaml", "purpose": "software testing",
              "sink": "out/synthetic.parquet", "base_dir": str(tmp_path),
              "generator": {"name": "tabular/copula"}}
    refused = Pipeline(config).run(raise_on_refusal=False)
    assert not refused.passed and refused.written is None and not (tmp_path / "out").exists()
    files = []
    for name in ("bob", "carol"):
        files.append(str(sign_approval(refused.decision, keys[name].private_path, approver=name)
                         .save(tmp_path / f"{name}.json")))
    result = Pipeline({**config, "approvals": files}).run()
    assert result.passed and result.written.exists()
    meta = _kv(result.written)
    assert meta[PARQUET_KEY] == "true" and meta["synthkit.generator"] == "tabular/copula"
