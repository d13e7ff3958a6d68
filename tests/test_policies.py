"""Policy packs (loading, validation, hashing) and the gate (purpose, prohibited uses, metrics)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fakes import FakeReport

from synthkit.errors import PolicyError, PurposeMissingError
from synthkit.policies import (
    Decision,
    Policy,
    gate,
    list_packs,
    load_policy,
    require_purpose,
)

GOOD = {
    "quality.overall": 0.85,
    "quality.column_shapes": 0.9,
    "quality.column_pair_trends": 0.8,
    "privacy.exact_copy_rate": 0.0,
    "privacy.dcr_share": 0.51,
    "privacy.mia_auc": 0.52,
}


def _report(**changes: float | None) -> FakeReport:
    values = dict(GOOD)
    for key, value in changes.items():
        values[key.replace("__", ".")] = value
    return FakeReport(values)


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CUSTOM = """
name: strict
version: "2.1"
purpose: {required: true, allowed: ["software testing", "Analytics"]}
prohibited_uses:
  - name: marketing
    keywords: [cold calling, spam]
rules:
  - {id: q, metric: quality.overall, op: ">=", threshold: 0.8}
  - {id: pairs, metric: quality.column_pair_trends, op: ">=", threshold: 0.95, severity: warn,
     hint: Model correlations better.}
"""


# --- packs ----------------------------------------------------------------------------------
def test_default_pack_loads_with_expected_rules() -> None:
    assert "default" in list_packs()
    policy = load_policy("default")
    assert (policy.name, policy.version) == ("default", "1.1.0")
    assert policy.purpose.required and policy.purpose.allowed is None
    rules = {r.metric: (r.op, r.threshold, r.severity) for r in policy.rules}
    assert rules == {
        "quality.overall": (">=", 0.70, "block"),
        "quality.column_shapes": (">=", 0.70, "block"),
        "privacy.exact_copy_rate": ("<=", 0.01, "block"),
        "privacy.dcr_share": ("<=", 0.60, "block"),
        "privacy.mia_auc": ("<=", 0.60, "block"),
    }
    assert all(r.description and r.hint for r in policy.rules)
    names = {u.name for u in policy.prohibited_uses}
    assert {"re-identification", "decisions-about-real-individuals", "surveillance"} <= names


def test_policy_hash_is_stable_and_tracks_content() -> None:
    a, b = load_policy("default"), load_policy("default")
    assert a.hash == b.hash and a.hash.startswith("sha256:")
    data = a.model_dump()
    data["rules"][0]["threshold"] = 0.71
    assert Policy.model_validate(data).hash != a.hash


def test_custom_policy_from_path(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, CUSTOM))
    assert policy.name == "strict" and policy.version == "2.1"
    assert [r.id for r in policy.rules] == ["q", "pairs"]
    assert load_policy(str(tmp_path / "policy.yaml")) == policy


def test_unknown_pack_lists_builtins() -> None:
    with pytest.raises(PolicyError, match="default"):
        load_policy("no-such-pack")


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="No policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nrules: [\n  - id: q\n", "broken.yaml")
    with pytest.raises(PolicyError, match="broken.yaml.*not valid YAML"):
        load_policy(path)


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    text = CUSTOM.replace("threshold: 0.8}", "threshold: 0.8, treshold: 1}")
    path = _write(tmp_path, text, "typo.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "typo.yaml" in message and "rules[0](id=q).treshold" in message


@pytest.mark.parametrize(
    ("old", "new", "field_name"),
    [
        ('op: ">="', 'op: "=>"', "rules[0](id=q).op"),
        ("threshold: 0.8}", "threshold: high}", "rules[0](id=q).threshold"),
        ("metric: quality.overall", "metric: overall", "rules[0](id=q).metric"),
        ('version: "2.1"', "version: []", "version"),
        ("id: pairs", "id: q", "<policy>"),
    ],
)
def test_bad_field_values_are_named(tmp_path: Path, old: str, new: str, field_name: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(_write(tmp_path, CUSTOM.replace(old, new, 1)))
    assert field_name in str(info.value)


def test_policy_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="mapping"):
        load_policy(_write(tmp_path, "- just\n- a list\n"))


# --- gate: purpose ----------------------------------------------------------------------------
def test_gate_passes_good_report_and_binds_fingerprints() -> None:
    report = _report()
    decision = gate(load_policy("default"), report, "software testing of the payroll system")
    assert decision.passed, decision.summary()
    assert decision.failed == [] and decision.warnings == []
    assert decision.data_fingerprint == report.synthetic_fingerprint
    assert decision.real_fingerprint == report.real_fingerprint
    assert decision.allows(report.synthetic_fingerprint)
    assert not decision.allows("sha256:" + "c" * 64)
    assert decision.policy_hash == load_policy("default").hash
    assert decision.decided_at.endswith("Z")
    assert decision.summary().startswith("PASSED by policy default 1.1.0")


@pytest.mark.parametrize("purpose", [None, "", "   \n "])
def test_missing_purpose_fails_with_hint(purpose: str | None) -> None:
    decision = gate("default", _report(), purpose)
    assert not decision.passed
    [finding] = decision.failed
    assert finding.kind == "purpose" and "--purpose" in finding.hint
    assert decision.purpose is None


def test_require_purpose_raises_early() -> None:
    policy = load_policy("default")
    with pytest.raises(PurposeMissingError):
        require_purpose(policy, "  ")
    assert require_purpose(policy, "  data  science ") == "data science"
    optional = policy.model_copy(update={"purpose": policy.purpose.model_copy(update={"required": False})})
    assert require_purpose(optional, None) is None
    assert gate(optional, _report(), None).passed


@pytest.mark.parametrize(
    ("purpose", "use"),
    [
        ("Re-identify patients in the hospital data", "re-identification"),
        ("deanonymize the survey", "re-identification"),
        ("make a credit decision about applicants", "decisions-about-real-individuals"),
        ("MONITOR   EMPLOYEES productivity", "surveillance"),
    ],
)
def test_prohibited_purpose_fails_naming_the_use(purpose: str, use: str) -> None:
    decision = gate("default", _report(), purpose)
    assert not decision.passed
    [finding] = decision.failed
    assert finding.kind == "prohibited_use" and use in finding.message
    assert finding.rule == f"prohibited_use:{use}"


def test_keywords_match_whole_words_only() -> None:
    # "surveil" must not match inside an unrelated longer word, nor "link back" inside "linkbacks".
    assert gate("default", _report(), "testing surveilx parser and linkbacks").passed


def test_allowed_purposes_match_case_insensitive_prefix(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, CUSTOM))
    good = _report(quality__column_pair_trends=0.99)
    assert gate(policy, good, "Software Testing of billing").passed
    assert gate(policy, good, "analytics").passed
    refused = gate(policy, good, "marketing analytics")
    assert not refused.passed and refused.failed[0].kind == "purpose"
    assert "software testing" in refused.failed[0].hint


# --- gate: metrics ----------------------------------------------------------------------------
def test_metric_below_threshold_fails_with_evidence() -> None:
    decision = gate("default", _report(quality__overall=0.55), "testing")
    assert not decision.passed
    [finding] = decision.failed
    assert finding.rule == "quality-overall" and finding.metric == "quality.overall"
    assert (finding.value, finding.op, finding.threshold) == (0.55, ">=", 0.70)
    assert "0.55" in finding.message and "0.7" in finding.message
    assert finding.hint
    assert "quality.overall" in decision.summary()


def test_privacy_rule_upper_bound() -> None:
    decision = gate("default", _report(privacy__exact_copy_rate=0.2), "testing")
    assert [f.rule for f in decision.failed] == ["privacy-exact-copies"]


def test_missing_metric_fails_closed() -> None:
    report = _report()
    del report.metrics["privacy.dcr_share"]
    decision = gate("default", report, "testing")
    assert not decision.passed
    [finding] = decision.failed
    assert finding.metric == "privacy.dcr_share" and finding.value is None
    assert "missing" in finding.message and "holdout" in finding.hint


def test_none_nan_and_lookup_errors_fail_closed() -> None:
    class Raising(FakeReport):
        def value(self, name: str) -> float | None:
            raise KeyError(name)

    assert len(gate("default", Raising(dict(GOOD)), "testing").failed) == 5
    decision = gate("default", _report(quality__overall=None), "testing")
    assert [f.rule for f in decision.failed] == ["quality-overall"]
    decision = gate("default", _report(quality__overall=math.nan), "testing")
    assert [f.value for f in decision.failed] == ["nan"]
    json.loads(decision.to_json())  # stays valid JSON


def test_warn_severity_does_not_block(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, CUSTOM))
    decision = gate(policy, _report(quality__column_pair_trends=0.5), "analytics")
    assert decision.passed
    [warning] = decision.warnings
    assert warning.rule == "pairs" and warning.severity == "warn" and not warning.passed
    assert warning.hint == "Model correlations better."
    assert "warning" in decision.summary()


def test_equality_operator_uses_tolerance(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, CUSTOM.replace('op: ">=", threshold: 0.8', 'op: "==", threshold: 0.3')))
    assert gate(policy, _report(quality__overall=0.1 + 0.2), "analytics").passed
    assert not gate(policy, _report(quality__overall=0.31), "analytics").passed


def test_decision_round_trips_through_json() -> None:
    decision = gate("default", _report(quality__overall=0.2), "testing")
    again = Decision.model_validate_json(decision.to_json())
    assert again == decision
    assert again.to_dict()["findings"][0]["kind"] == "purpose"


def test_report_without_fingerprint_is_a_usage_error() -> None:
    class NoFingerprint:
        def value(self, name: str) -> float | None:
            return GOOD.get(name)

    with pytest.raises(PolicyError, match="synthetic_fingerprint"):
        gate("default", NoFingerprint(), "testing")


def test_blank_allowed_purpose_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="purpose.*blank"):
        load_policy(_write(tmp_path, CUSTOM.replace('"Analytics"', '"  "')))
