"""Policy-audit reports: every decision in an audit log, with its evidence and its signature status.

One report per log, as JSON, as a self-contained HTML page (inline CSS, no scripts, nothing
fetched) or as PDF printed by headless Chromium. Per record: what data (fingerprint), what model
(manifest hash), which policy (name, version, hash), the declared purpose, every finding (rule,
value, threshold, pass/fail, hint), who approved, who signed and whether the signature holds;
on top, a summary with the chain's status and the first bad record. The log is read line by
line, so a tampered log still gets a report that shows where it breaks.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synthkit.errors import AuditError, MissingDependencyError
from synthkit.policies.audit import PublicKeys, head_path, verify_log
from synthkit.policies.model import utc_now

ReportFormat = Literal["html", "json", "pdf"]
FORMATS: tuple[str, ...] = ("html", "json", "pdf")
#: Browsers that can print the HTML page to PDF, looked up on PATH in this order.
PDF_RENDERERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_TEMPLATE = "audit_report.html.j2"
_OPS = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}
_WHO = ("approver", "approved_by", "by", "who", "name", "user", "email")
_WHEN = ("signed_at", "time", "approved_at", "at", "timestamp")
#: Approval fields the report leaves out of "details": shown elsewhere, or key material.
_HIDDEN = ("public_key", "signature", "data_fingerprint", "policy_hash", "purpose", "overrides")
_NOTE = ("comment", "note", "reason", "statement")


@dataclass(frozen=True)
class AuditReport:
    """What an audit log holds and whether it verifies: ``summary`` on top, one entry per record."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """True when every record, hash link, signature and the head file checked out."""
        return bool(self.summary["chain_ok"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"summary": ..., "records": [...]}``."""
        return {"summary": self.summary, "records": self.records}

    def to_json(self) -> str:
        """JSON text with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)

    def to_html(self) -> str:
        """One self-contained HTML page: inline CSS, no scripts, nothing loaded from a network."""
        from jinja2 import Environment, PackageLoader, StrictUndefined

        env = Environment(
            loader=PackageLoader("synthkit.policies", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        return env.get_template(_TEMPLATE).render(summary=self.summary, records=self.records)

    def write(self, path: str | Path, *, format: ReportFormat | None = None) -> Path:
        """Write the report atomically; the format comes from ``format`` or the file's suffix."""
        dest = Path(path)
        fmt = format or format_for(dest)
        if fmt == "json":
            _write_atomic(dest, (self.to_json() + "\n").encode("utf-8"))
        elif fmt == "html":
            _write_atomic(dest, self.to_html().encode("utf-8"))
        elif fmt == "pdf":
            _write_atomic(dest, html_to_pdf(self.to_html()))
        else:
            raise AuditError(f"Unknown report format {fmt!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
        return dest


def format_for(path: str | Path) -> ReportFormat:
    """The report format a file name implies: ``.json``, ``.pdf``, else HTML."""
    suffix = Path(path).suffix.lower()
    return "json" if suffix == ".json" else "pdf" if suffix == ".pdf" else "html"


def build_audit_report(
    log: str | Path, keys: PublicKeys | Sequence[PublicKeys], *, head: bool | None = None
) -> AuditReport:
    """Read the log at ``log``, verify it with ``keys`` and gather every record's evidence.

    ``keys`` and ``head`` are as for :func:`synthkit.policies.verify_log` (keys may be key
    directories with a keyring; ``head=True`` requires the signed head file).
    """
    path = Path(log)
    check = verify_log(path, keys, head=head)
    content = path.read_bytes()
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    records = [
        _record(i, line, check.signatures.get(i, "unchecked"), check.record_problems.get(i, []))
        for i, line in enumerate(lines)
    ]
    readable = [r for r in records if r["readable"]]
    policies = Counter(
        f"{r['policy']['name']} {r['policy']['version']}" for r in readable if r["policy"]["name"]
    )
    signers = Counter(r["key_id"] for r in readable if r["key_id"])
    times = sorted(r["time"] for r in readable if r["time"])
    summary: dict[str, Any] = {
        "log": str(path),
        "generated_at": utc_now(),
        "n_records": check.n_records,
        "n_passed": sum(1 for r in readable if r["passed"]),
        "n_refused": sum(1 for r in readable if not r["passed"]),
        "n_unreadable": len(records) - len(readable),
        "n_approved": sum(1 for r in readable if r["approvals"]),
        "chain_ok": check.ok,
        "first_bad": check.first_bad,
        "problems": list(check.problems),
        "head_file": str(head_path(path)),
        "head_status": check.head_status,
        "head_hash": check.head_hash,
        "signatures": dict(Counter(check.signatures.values())),
        "signers": dict(signers),
        "policies": dict(policies),
        "first_time": times[0] if times else None,
        "last_time": times[-1] if times else None,
        "trailing_problems": check.record_problems.get(check.n_records, []),
    }
    return AuditReport(summary=summary, records=records)


def write_audit_report(
    log: str | Path,
    out: str | Path,
    keys: PublicKeys | Sequence[PublicKeys],
    *,
    format: ReportFormat | None = None,
    head: bool | None = None,
) -> AuditReport:
    """Build the report of the log at ``log`` and write it to ``out``; returns the report."""
    report = build_audit_report(log, keys, head=head)
    report.write(out, format=format)
    return report


# --- one record -----------------------------------------------------------------------------
def _record(index: int, line: bytes, signature: str, problems: list[str]) -> dict[str, Any]:
    """One log line as the report shows it, however damaged the line is."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        obj = None
    base: dict[str, Any] = {
        "index": index,
        "signature": signature,
        "chain_ok": not problems,
        "problems": problems,
    }
    if not isinstance(obj, dict) or not isinstance(obj.get("decision"), dict):
        return {**base, **_empty_record(), "readable": False}
    decision: dict[str, Any] = obj["decision"]
    extra: dict[str, Any] = obj["extra"] if isinstance(obj.get("extra"), dict) else {}
    findings = decision.get("findings") if isinstance(decision.get("findings"), list) else []
    return {
        **base,
        "readable": True,
        "seq": obj.get("seq"),
        "record_id": obj.get("record_id"),
        "time": obj.get("time"),
        "synthkit_version": obj.get("synthkit_version"),
        "passed": bool(decision.get("passed")),
        "verdict": "PASSED" if decision.get("passed") else "REFUSED",
        "purpose": decision.get("purpose"),
        "policy": {
            "name": decision.get("policy"),
            "version": decision.get("policy_version"),
            "hash": decision.get("policy_hash"),
        },
        "decided_at": decision.get("decided_at"),
        "data_fingerprint": obj.get("data_fingerprint"),
        "real_fingerprint": obj.get("real_fingerprint"),
        "model_manifest_hash": obj.get("model_manifest_hash"),
        "findings": [_finding(f) for f in findings if isinstance(f, dict)],
        "approvals": [_approval(a, decision) for a in _list(obj.get("approvals"))],
        "key_id": obj.get("key_id"),
        "extra": extra,
        "extra_text": {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()},
    }


def _empty_record() -> dict[str, Any]:
    return {
        "seq": None, "record_id": None, "time": None, "synthkit_version": None, "passed": False,
        "verdict": "UNREADABLE", "purpose": None,
        "policy": {"name": None, "version": None, "hash": None}, "decided_at": None,
        "data_fingerprint": None, "real_fingerprint": None, "model_manifest_hash": None,
        "findings": [], "approvals": [], "key_id": None, "extra": {}, "extra_text": {},
    }


def _finding(f: dict[str, Any]) -> dict[str, Any]:
    """A finding with its outcome as one word: pass, fail (blocks) or warn (reported only)."""
    passed = bool(f.get("passed"))
    severity = f.get("severity") or "block"
    op, threshold = f.get("op"), f.get("threshold")
    return {
        "rule": f.get("rule"),
        "kind": f.get("kind"),
        "metric": f.get("metric"),
        "value": f.get("value"),
        "value_text": _number_text(f.get("value")),
        "op": op,
        "threshold": threshold,
        "threshold_text": "" if threshold is None else f"{_OPS.get(op, op or '')} {_number_text(threshold)}".strip(),
        "severity": severity,
        "passed": passed,
        "outcome": "pass" if passed else ("warn" if severity == "warn" else "fail"),
        "message": f.get("message") or "",
        "hint": f.get("hint") or "",
    }


def _list(value: Any) -> list[Any]:
    return [v for v in value if v is not None] if isinstance(value, list) else []


def _approval(a: Any, decision: dict[str, Any]) -> dict[str, Any]:
    """An approval as who / role / when / note and its signature status, whatever its fields."""
    if hasattr(a, "model_dump"):
        a = a.model_dump(mode="json")
    if not isinstance(a, dict):
        return {"who": str(a), "role": "", "when": "", "note": "", "signature": "unchecked", "details": {}}
    pick = lambda names: next((str(a[n]) for n in names if a.get(n) not in (None, "")), "")  # noqa: E731
    used = {*_WHO, *_WHEN, *_NOTE, *_HIDDEN, "role"}
    overrides = ", ".join(map(str, _list(a.get("overrides"))))
    note = "; ".join(x for x in (pick(_NOTE), f"overrides {overrides}" if overrides else "") if x)
    return {
        "who": pick(_WHO) or (f"key {a['key_id']}" if a.get("key_id") else "unknown"),
        "role": str(a.get("role") or ""),
        "when": pick(_WHEN),
        "note": note,
        "signature": _approval_status(a, decision),
        "details": {k: v for k, v in sorted(a.items()) if k not in used},
    }


def _approval_status(a: dict[str, Any], decision: dict[str, Any]) -> str:
    """"valid" when the approval's own signature holds and it is about this decision's data, policy and purpose."""
    if "signature" not in a:
        return "unsigned"
    try:
        from synthkit.policies.approvals import Approval
    except ImportError:  # pragma: no cover - approvals not available in this build
        return "unchecked"
    try:
        approval = Approval.model_validate(a)
    except ValueError:
        return "invalid: not a valid approval"
    problem = approval.problem()
    if problem:
        return f"invalid: {problem}"
    bound = (approval.data_fingerprint, approval.policy_hash, approval.purpose)
    if bound != (decision.get("data_fingerprint"), decision.get("policy_hash"), decision.get("purpose")):
        return "invalid: about other data, another policy or another purpose"
    return "valid"


def _number_text(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}"


# --- output ---------------------------------------------------------------------------------
def find_pdf_renderer() -> str | None:
    """The path of a Chromium-family browser on PATH, or None."""
    for name in PDF_RENDERERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(page: str, *, timeout: float = 120.0) -> bytes:
    """Print an HTML page to PDF with headless Chromium; a clear error when none is installed."""
    browser = find_pdf_renderer()
    if browser is None:
        raise MissingDependencyError(
            "PDF output needs Chromium, and none was found on PATH "
            f"(looked for {', '.join(PDF_RENDERERS)}).",
            hint="Install Chromium (e.g. apt install chromium), or write HTML (--format html) "
            "and print it from a browser.",
        )
    with tempfile.TemporaryDirectory(prefix="synthkit-pdf-") as tmp:
        html_path, pdf_path = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        html_path.write_text(page, encoding="utf-8")
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
            f"--user-data-dir={Path(tmp) / 'profile'}", f"--print-to-pdf={pdf_path}",
            html_path.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AuditError(
                f"{browser} did not finish printing the PDF within {timeout:.0f}s.",
                hint="Write HTML instead (--format html) and print it from a browser.",
            ) from exc
        if not pdf_path.is_file() or pdf_path.stat().st_size == 0:
            raise AuditError(
                f"{browser} did not write a PDF (exit code {done.returncode}): {done.stderr.strip()[-500:]}",
                hint="Write HTML instead (--format html) and print it from a browser.",
            )
        return pdf_path.read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` via a temporary file in the same directory and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
