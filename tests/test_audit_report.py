"""Policy-audit reports (JSON, HTML, PDF, screenshot) and the tamper evidence `audit verify` relies on."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from fakes import FakeReport

from synthkit.cli import main
from synthkit.errors import AuditError, MissingDependencyError
from synthkit.policies import AuditLog, gate, generate_keypair, load_private_key, verify_log
from synthkit.policies.audit import head_path
from synthkit.policies.audit_report import build_audit_report, find_pdf_renderer, write_audit_report

MANIFEST = "sha256:" + "1" * 64
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(overall: float) -> FakeReport:
    return FakeReport({"quality.overall": overall, "quality.column_shapes": 0.9, "privacy.exact_copy_rate": 0.0,
                       "privacy.dcr_share": 0.5, "privacy.mia_auc": 0.5})


@pytest.fixture()
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-record log (pass, prohibited purpose, low quality) with its head file, and the key dir."""
    pair = generate_keypair(tmp_path / "keys")
    key = load_private_key(pair.private_path)
    log = AuditLog(tmp_path / "audit.jsonl")
    for overall, purpose in [(0.85, "software testing"), (0.85, "re-identify customers"), (0.4, "analytics")]:
        report = _report(overall)
        log.append(gate("default", report, purpose), private_key=key, report=report,
                   model_manifest_hash=MANIFEST, extra={"generator": "tabular/copula"})
    return log.path, tmp_path / "keys"


def _verify_cli(log: Path, keys: Path, *extra: str) -> Any:
    return CliRunner().invoke(main, ["audit", "verify", str(log), "--keys", str(keys), "--json", *extra])


def _lines(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines(keepends=True)


# --- tamper evidence ------------------------------------------------------------------------
def test_intact_log_and_head_verify(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    head = json.loads(head_path(log).read_text())
    assert head["n_records"] == 3 and head["format"] == "synthkit-audit-head/1"
    result = _verify_cli(log, keys)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["ok"] and out["head"] == "ok" and out["head_hash"] == head["head_hash"]


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_one_changed_byte_names_the_record(signed: tuple[Path, Path], where: float) -> None:
    log, keys = signed
    data = bytearray(log.read_bytes())
    pos = int(len(data) * where)
    data[pos] ^= 0x01
    log.write_bytes(bytes(data))
    expected = log.read_bytes()[:pos].count(b"\n")
    result = _verify_cli(log, keys)
    assert result.exit_code == 1
    assert json.loads(result.output)["first_bad"] == expected


def test_reordered_records_are_detected(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    a, b, c = _lines(log)
    log.write_bytes(a + c + b)
    result = _verify_cli(log, keys)
    assert result.exit_code == 1 and json.loads(result.output)["first_bad"] == 1


def test_removed_middle_record_is_detected(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    a, _, c = _lines(log)
    log.write_bytes(a + c)
    result = _verify_cli(log, keys)
    assert result.exit_code == 1 and json.loads(result.output)["first_bad"] == 1


def test_removed_last_record_is_detected_by_the_head(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    a, b, _ = _lines(log)
    log.write_bytes(a + b)  # the chain alone is intact: only the signed head shows the cut
    result = _verify_cli(log, keys)
    out = json.loads(result.output)
    assert result.exit_code == 1 and out["first_bad"] == 2 and out["head"] == "mismatch"
    assert any("removed from the end" in p for p in out["problems"])
    text = CliRunner().invoke(main, ["audit", "verify", str(log), "-k", str(keys)])
    assert "record 2 is the first bad one" in " ".join(text.output.split())
    with pytest.raises(AuditError, match="broken"):  # and nothing is appended after the cut
        AuditLog(log).append(gate("default", _report(0.9), "testing"),
                             private_key=load_private_key(keys / "synthkit.key"))


def test_removed_last_record_and_head_is_detected(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    a, b, _ = _lines(log)
    log.write_bytes(a + b)
    head_path(log).unlink()
    result = _verify_cli(log, keys)
    assert result.exit_code == 1 and json.loads(result.output)["head"] == "missing"
    assert any("no head file" in p for p in json.loads(result.output)["problems"])
    assert _verify_cli(log, keys, "--no-head").exit_code == 0  # legacy logs: explicitly opted out


def test_forged_or_replaced_head_is_detected(signed: tuple[Path, Path], tmp_path: Path) -> None:
    log, keys = signed
    head = json.loads(head_path(log).read_text())
    head["n_records"] = 2
    head_path(log).write_text(json.dumps(head))
    assert json.loads(_verify_cli(log, keys).output)["head"] == "invalid"
    # a head signed by a stranger's key (valid signature, unknown key)
    stranger = load_private_key(generate_keypair(tmp_path / "stranger").private_path)
    other = AuditLog(tmp_path / "other.jsonl")
    other.append(gate("default", _report(0.9), "testing"), private_key=stranger)
    shutil.copy(head_path(other.path), head_path(log))
    out = json.loads(_verify_cli(log, keys).output)
    assert not out["ok"] and any("unknown key" in p for p in out["problems"])


def test_head_behind_the_log_is_not_an_error(signed: tuple[Path, Path]) -> None:
    """A crash between appending a record and writing the head leaves the head one behind."""
    log, keys = signed
    before = head_path(log).read_bytes()
    AuditLog(log).append(gate("default", _report(0.9), "testing"),
                         private_key=load_private_key(keys / "synthkit.key"))
    head_path(log).write_bytes(before)
    result = verify_log(log, keys, head=True)
    assert result.ok and result.head_status == "behind"


# --- the report -----------------------------------------------------------------------------
def test_json_report_has_every_decision_and_its_evidence(signed: tuple[Path, Path], tmp_path: Path) -> None:
    log, keys = signed
    result = CliRunner().invoke(main, ["audit", "report", str(log), "-k", str(keys), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    summary, records = data["summary"], data["records"]
    assert summary["n_records"] == 3 and summary["n_passed"] == 1 and summary["n_refused"] == 2
    assert summary["chain_ok"] and summary["first_bad"] is None and summary["head_status"] == "ok"
    assert summary["signatures"] == {"valid": 3} and list(summary["policies"].values()) == [3]
    first = records[0]
    assert first["verdict"] == "PASSED" and first["purpose"] == "software testing"
    assert first["data_fingerprint"].startswith("sha256:") and first["model_manifest_hash"] == MANIFEST
    assert first["policy"]["name"] == "default" and first["policy"]["hash"].startswith("sha256:")
    assert first["signature"] == "valid" and first["chain_ok"] and first["approvals"] == []
    quality = {f["rule"]: f for f in records[2]["findings"]}
    failed = [f for f in records[2]["findings"] if f["outcome"] == "fail"]
    assert failed and all({"rule", "value", "threshold", "passed", "hint"} <= set(f) for f in failed)
    assert any(f["metric"] == "quality.overall" and f["value"] == 0.4 for f in quality.values())
    assert records[1]["verdict"] == "REFUSED"
    written = write_audit_report(log, tmp_path / "r.json", keys)
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["n_records"] == written.summary["n_records"]


def test_html_report_is_self_contained(signed: tuple[Path, Path], tmp_path: Path) -> None:
    log, keys = signed
    out = tmp_path / "audit.html"
    result = CliRunner().invoke(main, ["audit", "report", str(log), "-k", str(keys), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('class="findings"') == 3 and "Verified: 3 record(s)" in page
    assert page.count('class="pill signature good">valid<') == 3
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "re-identify customers" in page and MANIFEST in page and "No approvals recorded" in page


def test_report_of_a_tampered_log_shows_where_it_breaks(signed: tuple[Path, Path], tmp_path: Path) -> None:
    log, keys = signed
    a, b, c = _lines(log)
    log.write_bytes(a + b.replace(b"re-identify", b"re-identifx") + c)
    out = tmp_path / "audit.html"
    result = CliRunner().invoke(main, ["audit", "report", str(log), "-k", str(keys), "--out", str(out)])
    assert result.exit_code == 1 and out.exists()
    report = build_audit_report(log, keys)
    assert not report.ok and report.summary["first_bad"] == 1
    assert report.records[1]["problems"] and not report.records[1]["chain_ok"]
    assert report.records[1]["signature"] == "unchecked" and report.records[0]["signature"] == "valid"
    assert "NOT VERIFIED: record 1 is the first bad" in " ".join(out.read_text().split())


def test_unreadable_lines_and_approvals_are_shown(signed: tuple[Path, Path]) -> None:
    log, keys = signed
    a, b, _ = _lines(log)
    record = json.loads(b)
    record["approvals"] = [{"approver": "dana@example.com", "role": "privacy officer",
                            "time": "2025-01-02T03:04:05Z", "comment": "ok for testing", "key_id": "abc"}]
    log.write_bytes(a + json.dumps(record).encode() + b"\n" + b"garbage\n")
    report = build_audit_report(log, keys, head=False)
    assert report.records[1]["approvals"] == [{"who": "dana@example.com", "role": "privacy officer",
                                               "when": "2025-01-02T03:04:05Z", "note": "ok for testing",
                                               "signature": "unsigned", "details": {"key_id": "abc"}}]
    assert not report.records[2]["readable"] and report.summary["n_unreadable"] == 1
    page = report.to_html()
    assert "dana@example.com" in page and "privacy officer" in page and "cannot be read" in page


def test_signed_approvals_show_their_status(signed: tuple[Path, Path], tmp_path: Path) -> None:
    approvals = pytest.importorskip("synthkit.policies.approvals")
    log, keys = signed
    lines = _lines(log)
    record = json.loads(lines[2])
    approver = generate_keypair(tmp_path / "approver")
    good = approvals.sign_approval(record["decision"], approver.private_path, approver="dana",
                                   overrides=["quality-overall"]).to_dict()
    elsewhere = {**record["decision"], "purpose": "something else"}
    other = approvals.sign_approval(elsewhere, approver.private_path, approver="eve").to_dict()
    forged = {**good, "approver": "mallory"}
    record["approvals"] = [good, other, forged]
    log.write_bytes(b"".join(lines[:2]) + json.dumps(record).encode() + b"\n")
    shown = build_audit_report(log, keys, head=False).records[2]["approvals"]
    assert [a["who"] for a in shown] == ["dana", "eve", "mallory"]
    assert shown[0]["signature"] == "valid" and shown[0]["note"] == "overrides quality-overall"
    assert shown[1]["signature"].startswith("invalid: about other data")
    assert shown[2]["signature"].startswith("invalid: the signature")
    assert "public_key" not in shown[0]["details"] and shown[0]["details"]["key_id"] == approver.key_id


def test_pdf_needs_chromium(signed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, keys = signed
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_pdf_renderer() is None
    with pytest.raises(MissingDependencyError, match="Chromium"):
        write_audit_report(log, tmp_path / "a.pdf", keys)
    result = CliRunner().invoke(main, ["audit", "report", str(log), "-k", str(keys), "--out", str(tmp_path / "a.pdf")])
    assert result.exit_code == 2 and "Chromium" in result.output and not (tmp_path / "a.pdf").exists()
    no_out = CliRunner().invoke(main, ["audit", "report", str(log), "-k", str(keys)])
    assert no_out.exit_code == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH")
def test_pdf_with_chromium(signed: tuple[Path, Path], tmp_path: Path) -> None:
    log, keys = signed
    write_audit_report(log, tmp_path / "a.pdf", keys)
    data = (tmp_path / "a.pdf").read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000


# --- screenshot of the demo's report --------------------------------------------------------
def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def demo_audit_log(directory: Path, wage: pl.DataFrame) -> tuple[Path, Path]:
    """Run the pipeline on ISLR Wage with the copula generator twice (one pass, one refusal)."""
    from synthkit.demo import DEMO_PURPOSE
    from synthkit.pipeline import Pipeline, PipelineConfig

    directory.mkdir(parents=True, exist_ok=True)
    wage.write_csv(directory / "wage.csv")
    generate_keypair(directory / "keys")
    for purpose, sink in [(DEMO_PURPOSE, "synthetic.parquet"), ("re-identify customers", "refused.parquet")]:
        config = PipelineConfig(
            source=str(directory / "wage.csv"), generator={"name": "tabular/copula"}, n=1000, holdout=0.2, seed=0,
            policy="default", purpose=purpose, sink=str(directory / sink), overwrite=True,
            model=str(directory / "model"),
            audit={"log": str(directory / "audit.jsonl"), "private_key": str(directory / "keys/synthkit.key")},
        )
        Pipeline(config).run(raise_on_refusal=False)
    return directory / "audit.jsonl", directory / "keys"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH")
def test_screenshot_of_the_demo_audit_report(tmp_path: Path, wage: pl.DataFrame) -> None:
    log, keys = demo_audit_log(tmp_path / "demo", wage)
    html = tmp_path / "audit.html"
    report = write_audit_report(log, html, keys, head=True)
    assert report.ok and report.summary["n_passed"] == 1 and report.summary["n_refused"] == 1
    page = html.read_text()
    assert 'class="findings"' in page and "quality.overall" in page
    assert 'class="pill signature good">valid<' in page and "signed head file matches" in page
    png = tmp_path / "audit.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
         "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'profile'}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    data = png.read_bytes()
    assert _png_size(data) == (1280, 2000)
    assert len(data) > 50_000  # a rendered page, not a blank one (blank is a few kB)


def test_report_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["audit", "report", "--help"])
    assert result.exit_code == 0 and "Example" in result.output
