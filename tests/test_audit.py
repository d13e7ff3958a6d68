"""The signed, hash-chained audit log: appending, reading, and catching every kind of tampering."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fakes import FINGERPRINT, FakeReport

from synthkit.artifacts import canonical_json, sha256_bytes
from synthkit.errors import AuditError, IntegrityError, SignatureError
from synthkit.policies import (
    AuditLog,
    AuditRecord,
    Decision,
    gate,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    verify_log,
)
from synthkit.policies.audit import GENESIS_HASH

MANIFEST = "sha256:" + "1" * 64


def _report(overall: float = 0.85) -> FakeReport:
    return FakeReport(
        {
            "quality.overall": overall,
            "quality.column_shapes": 0.9,
            "privacy.exact_copy_rate": 0.0,
            "privacy.dcr_share": 0.5,
            "privacy.mia_auc": 0.5,
        }
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ed25519PrivateKey, Ed25519PublicKey, Path]:
    pair = generate_keypair(tmp_path_factory.mktemp("keys"))
    return load_private_key(pair.private_path), load_public_key(pair.public_path), pair.public_path


def _append(log: AuditLog, key: Ed25519PrivateKey, overall: float, purpose: str | None) -> AuditRecord:
    report = _report(overall)
    decision = gate("default", report, purpose)
    return log.append(
        decision, private_key=key, report=report, model_manifest_hash=MANIFEST,
        extra={"generator": "tabular/copula", "note": "naïve ünïcode"},
    )


@pytest.fixture(scope="module")
def log_bytes(tmp_path_factory: pytest.TempPathFactory, keys: Any) -> bytes:
    """A 3-record log: a pass, a refusal for a prohibited purpose, a refusal for low quality."""
    log = AuditLog(tmp_path_factory.mktemp("audit") / "nested" / "audit.jsonl")
    _append(log, keys[0], 0.85, "software testing")
    _append(log, keys[0], 0.85, "re-identify customers")
    _append(log, keys[0], 0.40, "analytics")
    return log.path.read_bytes()


def _verify(tmp_path: Path, content: bytes, public: Any) -> Any:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    return verify_log(path, public)


# --- writing --------------------------------------------------------------------------------
def test_append_chains_signs_and_records_evidence(tmp_path: Path, keys: Any) -> None:
    private, public, _ = keys
    log = AuditLog(tmp_path / "deep" / "dir" / "audit.jsonl")
    assert log.records() == []
    first = _append(log, private, 0.85, "software testing")
    second = _append(log, private, 0.40, "software testing")
    assert (first.seq, second.seq) == (0, 1)
    assert first.prev_hash == GENESIS_HASH
    lines = log.path.read_bytes().splitlines()
    assert second.prev_hash == sha256_bytes(lines[0])
    assert first.passed and not second.passed
    assert first.key_id == key_id(public)
    assert first.data_fingerprint == FINGERPRINT and first.model_manifest_hash == MANIFEST
    assert first.metrics["quality.overall"] == 0.85
    assert first.decision["policy"] == "default" and first.decision["purpose"] == "software testing"
    assert first.extra["generator"] == "tabular/copula"
    assert first.record_id != second.record_id and first.time.endswith("Z")
    for line in lines:  # canonical JSON lines, sorted keys
        assert canonical_json(json.loads(line)).encode() == line
    assert log.records() == [first, second]
    first.verify_signature(public)
    result = verify_log(log.path, public)
    assert result.ok and result.n_records == 2 and result.first_bad is None
    assert result.head_hash == sha256_bytes(lines[-1])


def test_private_key_may_be_a_path(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys")
    log = AuditLog(tmp_path / "audit.jsonl")
    report = _report()
    log.append(gate("default", report, "testing"), private_key=pair.private_path)
    assert log.verify(pair.public_path).ok


def test_metrics_come_from_the_decision_without_a_report(tmp_path: Path, keys: Any) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    record = log.append(gate("default", _report(0.6), "testing"), private_key=keys[0])
    assert record.metrics["quality.overall"] == 0.6 and record.model_manifest_hash is None


def test_report_for_other_data_is_refused(tmp_path: Path, keys: Any) -> None:
    decision = gate("default", _report(), "testing")
    other = _report()
    other.synthetic_fingerprint = "sha256:" + "c" * 64
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(AuditError, match="different data"):
        log.append(decision, private_key=keys[0], report=other)
    assert not log.path.exists()


def test_non_json_extra_is_refused_before_writing(tmp_path: Path, keys: Any) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(AuditError, match="JSON"):
        log.append(gate("default", _report(), "testing"), private_key=keys[0], extra={"x": object()})
    assert log.path.read_bytes() == b""


@pytest.mark.parametrize("damage", ["garbage", "flip", "truncate"])
def test_never_appends_to_a_broken_log(tmp_path: Path, keys: Any, log_bytes: bytes, damage: str) -> None:
    path = tmp_path / "audit.jsonl"
    broken = {
        "garbage": log_bytes.replace(b"\n", b"\nnot json\n", 1),
        "flip": log_bytes.replace(b"re-identify", b"re-identifx", 1),
        "truncate": log_bytes[:-10],
    }[damage]
    path.write_bytes(broken)
    with pytest.raises(AuditError, match="broken") as info:
        _append(AuditLog(path), keys[0], 0.9, "testing")
    assert "verify" in info.value.hint
    assert path.read_bytes() == broken
    with pytest.raises(AuditError, match="broken"):
        AuditLog(path).records()


# --- verifying ------------------------------------------------------------------------------
def test_untouched_log_verifies(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    result = _verify(tmp_path, log_bytes, keys[2])  # a .pub path works too
    assert result.ok and result.n_records == 3 and result.problems == []
    result.raise_for_problems()


def _flip_positions(n: int, stride: int, tail: int) -> list[int]:
    """A stride over the whole log plus every byte of its start and of its last ``tail`` bytes."""
    return sorted(set(range(0, n, stride)) | set(range(120)) | set(range(n - tail, n)))


@pytest.mark.parametrize(("mask", "stride", "tail"), [(0x01, 29, 300), (0x20, 97, 150), (0x80, 97, 150)])
def test_any_changed_byte_is_rejected(
    tmp_path: Path, keys: Any, log_bytes: bytes, mask: int, stride: int, tail: int
) -> None:
    """The tail holds the last record's record_hash, signature and key id: no later link covers it."""
    accepted = []
    for pos in _flip_positions(len(log_bytes), stride, tail):
        tampered = bytearray(log_bytes)
        tampered[pos] ^= mask
        result = _verify(tmp_path, bytes(tampered), keys[1])
        if result.ok:
            accepted.append(pos)
        else:
            assert result.first_bad is not None and result.problems
    assert accepted == []


@pytest.mark.slow
def test_every_single_byte_flip_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    for pos in range(len(log_bytes)):
        tampered = bytearray(log_bytes)
        tampered[pos] ^= 0x01
        assert not _verify(tmp_path, bytes(tampered), keys[1]).ok, pos


def test_reordered_records_are_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    a, b, c = log_bytes.splitlines(keepends=True)
    result = _verify(tmp_path, a + c + b, keys[1])
    assert not result.ok and result.first_bad == 1
    assert any("seq" in p for p in result.problems)


def test_removed_middle_record_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    a, _, c = log_bytes.splitlines(keepends=True)
    result = _verify(tmp_path, a + c, keys[1])
    assert not result.ok and result.first_bad == 1
    assert any("prev_hash" in p for p in result.problems)


def test_removed_first_record_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    _, b, c = log_bytes.splitlines(keepends=True)
    result = _verify(tmp_path, b + c, keys[1])
    assert not result.ok and result.first_bad == 0


@pytest.mark.parametrize("cut", [1, 2, 50, 300])
def test_truncated_last_line_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes, cut: int) -> None:
    result = _verify(tmp_path, log_bytes[:-cut], keys[1])
    assert not result.ok and result.first_bad == 2 and result.n_records == 3
    with pytest.raises(IntegrityError, match="record 2"):
        result.raise_for_problems()


def test_extra_whitespace_or_blank_line_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    assert not _verify(tmp_path, log_bytes + b"\n", keys[1]).ok
    assert not _verify(tmp_path, log_bytes.replace(b'{"data', b'{ "data', 1), keys[1]).ok
    assert not _verify(tmp_path, log_bytes.replace(b"\n", b"\r\n", 1), keys[1]).ok


def test_resigned_forgery_with_another_key_is_rejected(tmp_path: Path, keys: Any, log_bytes: bytes) -> None:
    """Change a record, recompute its hash and sign it with another key under the real key id."""
    lines = log_bytes.splitlines()
    record = json.loads(lines[2])
    record["metrics"]["quality.overall"] = 0.99
    record["decision"]["passed"] = True
    body = {k: v for k, v in record.items() if k not in ("record_hash", "signature")}
    record["record_hash"] = sha256_bytes(canonical_json(body).encode())
    forger = Ed25519PrivateKey.generate()
    record["signature"] = base64.b64encode(forger.sign(record["record_hash"].encode())).decode()
    lines[2] = canonical_json(record).encode()
    result = _verify(tmp_path, b"\n".join(lines) + b"\n", keys[1])
    assert not result.ok and result.first_bad == 2
    assert any("signature" in p for p in result.problems)
    with pytest.raises(SignatureError):
        AuditRecord.model_validate(record).verify_signature(keys[1])


def test_unknown_key_is_rejected_and_rotation_accepted(tmp_path: Path, keys: Any) -> None:
    other = generate_keypair(tmp_path / "other")
    other_key = load_private_key(other.private_path)
    log = AuditLog(tmp_path / "audit.jsonl")
    _append(log, keys[0], 0.9, "testing")
    _append(log, other_key, 0.9, "testing")  # key rotated: one log, two signers
    only_first = verify_log(log.path, keys[1])
    assert not only_first.ok and only_first.first_bad == 1
    assert any("unknown key" in p for p in only_first.problems)
    assert verify_log(log.path, [keys[1], other.public_path]).ok


def test_empty_log_is_valid_and_missing_log_is_an_error(tmp_path: Path, keys: Any) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = verify_log(empty, keys[1])
    assert result.ok and result.n_records == 0 and result.head_hash == GENESIS_HASH
    with pytest.raises(AuditError, match="No audit log"):
        verify_log(tmp_path / "absent.jsonl", keys[1])
    with pytest.raises(AuditError, match="No public key"):
        verify_log(empty, [])


def test_decision_embedded_in_record_round_trips(tmp_path: Path, keys: Any) -> None:
    decision = gate("default", _report(0.3), "testing")
    record = AuditLog(tmp_path / "audit.jsonl").append(decision, private_key=keys[0])
    assert Decision.model_validate(record.decision) == decision


def test_unencodable_text_in_extra_is_refused(tmp_path: Path, keys: Any) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(AuditError, match="JSON"):
        log.append(gate("default", _report(), "testing"), private_key=keys[0], extra={"x": "\ud800"})
    assert log.path.read_bytes() == b""
