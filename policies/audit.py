"""Signed, hash-chained audit log: one JSON line per Decision, append only.

Each line is the canonical JSON (sorted keys, no spaces) of an :class:`AuditRecord`. A record
carries ``record_hash`` (sha256 of its own canonical JSON without ``record_hash`` and
``signature``), an Ed25519 ``signature`` over the ASCII text of ``record_hash``, the ``key_id``
of the signing key, and ``prev_hash``: the sha256 of the previous line's bytes (all zeros for
the first record). So one changed byte anywhere breaks the record's hash or canonical form,
and a removed or reordered record breaks ``seq`` and the chain.

What a chain cannot show alone is records cut off at the end, so every append also writes a
signed head file beside the log (``LOG.head``, atomically): the record count and the sha256 of
the last line. :func:`verify_log` checks it, so a removed last record is caught too; keep a copy
of the head (or the ``head_hash`` that :func:`verify_log` returns) elsewhere to also catch a log
and head rolled back together. An empty file is a valid log of 0 records; a missing file is an
error.
"""

from __future__ import annotations

import base64
import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthkit.artifacts import canonical_json, sha256_bytes
from synthkit.errors import AuditError, IntegrityError, SignatureError
from synthkit.policies.keys import key_id, load_keyring, load_private_key, load_public_key
from synthkit.policies.model import Decision, utc_now

try:  # advisory lock so two processes appending at once cannot fork the chain
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

#: ``prev_hash`` of the first record.
GENESIS_HASH = "sha256:" + "0" * 64
#: Suffix of the signed head file written beside the log: ``audit.jsonl`` → ``audit.jsonl.head``.
HEAD_SUFFIX = ".head"
HEAD_FORMAT = "synthkit-audit-head/1"
_UNHASHED = ("record_hash", "signature")

PublicKeys = Ed25519PublicKey | Ed25519PrivateKey | str | Path


class AuditRecord(BaseModel):
    """One signed entry of the audit log: what data, what model, which policy, which metrics, who signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=0)
    record_id: str
    time: str
    synthkit_version: str
    decision: dict[str, Any]
    data_fingerprint: str
    real_fingerprint: str | None
    model_manifest_hash: str | None
    metrics: dict[str, float | None]
    extra: dict[str, Any]
    #: Signed approvals the Decision counted (synthkit.policies.approvals); absent in older records.
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    prev_hash: str
    record_hash: str
    key_id: str
    signature: str

    @property
    def passed(self) -> bool:
        """Whether the recorded Decision passed."""
        return bool(self.decision.get("passed"))

    def verify_signature(self, public_key: Ed25519PublicKey) -> None:
        """Raise SignatureError unless ``signature`` is ``public_key``'s signature of ``record_hash``."""
        if key_id(public_key) != self.key_id:
            raise SignatureError(f"Record {self.seq} was signed by key {self.key_id}, not {key_id(public_key)}.")
        if not _signature_ok(public_key, self.signature, self.record_hash):
            raise SignatureError(f"Record {self.seq}: the signature does not match its record_hash.")


@dataclass(frozen=True)
class AuditVerification:
    """The result of :func:`verify_log`: ``ok`` only when every record and link checks out."""

    ok: bool
    n_records: int
    first_bad: int | None
    problems: list[str] = field(default_factory=list)
    #: sha256 of the last line: store it elsewhere to detect records cut off the end later.
    head_hash: str = GENESIS_HASH
    #: Signature status per record index: "valid", "invalid", "unknown key" or "unchecked".
    signatures: dict[int, str] = field(default_factory=dict)
    #: The problems of each bad record, by index (the head file's findings under the index they name).
    record_problems: dict[int, list[str]] = field(default_factory=dict)
    #: The head file: "ok", "missing", "invalid", "mismatch", "behind" (log has newer records) or "skipped".
    head_status: str = "skipped"

    def raise_for_problems(self) -> None:
        """Raise IntegrityError naming the first problems when the log did not verify."""
        if not self.ok:
            shown = "; ".join(self.problems[:5]) + (" ..." if len(self.problems) > 5 else "")
            raise IntegrityError(f"The audit log failed verification at record {self.first_bad}: {shown}")


class AuditLog:
    """An append-only JSON-lines audit log at ``path``; records are chained by hash and signed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def append(
        self,
        decision: Decision,
        *,
        private_key: Ed25519PrivateKey | str | Path,
        report: Any = None,
        model_manifest_hash: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Sign ``decision`` and append it as the next record; refuses to extend a broken log."""
        from synthkit import __version__

        key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
        if report is not None:
            reported = getattr(report, "synthetic_fingerprint", None)
            if reported != decision.data_fingerprint:
                raise AuditError(
                    "The report and the decision are about different data "
                    f"({reported} vs {decision.data_fingerprint}).",
                    hint="Pass the Report that the Decision was gated on.",
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            fh.seek(0)
            lines, problems = _check_structure(fh.read())
            problems += _head_structure_problems(head_path(self.path), lines)
            if problems:
                raise AuditError(
                    f"The audit log {self.path} is broken ({problems[0][1]}); nothing was appended.",
                    hint="Never extend a broken chain: run `synthkit audit verify` on it, restore it "
                    "from a trusted copy, or start a new log file.",
                )
            body: dict[str, Any] = {
                "seq": len(lines),
                "record_id": str(uuid.uuid4()),
                "time": utc_now(),
                "synthkit_version": __version__,
                "decision": decision.to_dict(),
                "data_fingerprint": decision.data_fingerprint,
                "real_fingerprint": decision.real_fingerprint,
                "model_manifest_hash": model_manifest_hash,
                "metrics": _metrics(report, decision),
                "extra": dict(extra or {}),
                **({"approvals": list(decision.approvals)} if decision.approvals else {}),
                "prev_hash": sha256_bytes(lines[-1]) if lines else GENESIS_HASH,
                "key_id": key_id(key),
            }
            try:  # round trip through JSON: the record holds exactly what the line will hold
                body = json.loads(canonical_json(body))
                canonical_json(body).encode("utf-8")
            except (TypeError, ValueError) as exc:  # incl. UnicodeEncodeError (lone surrogates)
                raise AuditError(
                    f"The audit record cannot be written as JSON: {exc}",
                    hint="Pass only JSON values (str, int, finite float, bool, None, list, dict) in extra=.",
                ) from exc
            record_hash = _hash_body(body)
            signature = base64.b64encode(key.sign(record_hash.encode("ascii"))).decode("ascii")
            full = {**body, "record_hash": record_hash, "signature": signature}
            record = AuditRecord.model_validate(full)
            line = canonical_json(full).encode("utf-8")
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            write_head(self.path, n_records=len(lines) + 1, last_line=line, private_key=key)
        if created:
            _fsync_dir(self.path.parent)
        return record

    def records(self) -> list[AuditRecord]:
        """All records, after checking the chain's structure (not signatures); [] for a new log."""
        if not self.path.exists():
            return []
        lines, problems = _check_structure(self.path.read_bytes())
        if problems:
            raise AuditError(
                f"The audit log {self.path} is broken: {problems[0][1]}",
                hint="Run `synthkit audit verify` on it for the full list of problems.",
            )
        return [AuditRecord.model_validate_json(line) for line in lines]

    def verify(self, keys: PublicKeys | Sequence[PublicKeys]) -> AuditVerification:
        """Verify this log with ``keys``; see :func:`verify_log`."""
        return verify_log(self.path, keys)


def verify_log(
    path: str | Path, keys: PublicKeys | Sequence[PublicKeys], *, head: bool | None = None
) -> AuditVerification:
    """Check every line, ``seq``, hash link, record hash, key id and signature of the log at ``path``.

    ``keys`` are the public keys allowed to have signed: key objects, ``.pub`` paths, or key
    directories (every public key in them and in their ``keyring/``). ``head``: check the signed
    head file ``LOG.head`` when it exists (None), require it (True: a missing head is a problem,
    as records cut off the end could not be seen) or skip it (False). A missing log raises
    AuditError; an empty file is a valid log of 0 records.
    """
    p = Path(path)
    if not p.is_file():
        raise AuditError(
            f"No audit log at {p}.",
            hint="Check the path: the log is the file given as audit.log / --audit-log.",
        )
    known = _known_keys(keys)
    content = p.read_bytes()
    lines, problems = _check_structure(content)
    bad: set[int] = {i for i, _ in problems}
    signatures = {i: "unchecked" for i in range(len(lines))}
    for i, line in enumerate(lines):
        if i in bad:
            continue
        obj = json.loads(line)
        public = known.get(obj["key_id"])
        if public is None:
            signatures[i] = "unknown key"
            problems.append((i, f"record {i}: signed by unknown key {obj['key_id']}"))
        elif not _signature_ok(public, obj["signature"], obj["record_hash"]):
            signatures[i] = "invalid"
            problems.append((i, f"record {i}: signature is not valid for key {obj['key_id']}"))
        else:
            signatures[i] = "valid"
    head_status = "skipped"
    if head is not False:
        head_status, head_problems = _check_head(head_path(p), lines, known, required=bool(head))
        problems += head_problems
    record_problems: dict[int, list[str]] = {}
    for i, msg in problems:
        record_problems.setdefault(i, []).append(msg)
    first_bad = min(record_problems) if record_problems else None
    return AuditVerification(
        ok=not problems,
        n_records=len(lines),
        first_bad=first_bad,
        problems=[msg for _, msg in problems],
        head_hash=sha256_bytes(lines[-1]) if lines else GENESIS_HASH,
        signatures=signatures,
        record_problems=record_problems,
        head_status=head_status,
    )


# --- the head file --------------------------------------------------------------------------
def head_path(log: str | Path) -> Path:
    """Where the signed head of the log at ``log`` lives: ``LOG.head`` beside it."""
    p = Path(log)
    return p.with_name(p.name + HEAD_SUFFIX)


def write_head(
    log: str | Path, *, n_records: int, last_line: bytes, private_key: Ed25519PrivateKey
) -> Path:
    """Sign and atomically write ``LOG.head``: the record count and the sha256 of the last line."""
    p = Path(log)
    body = {
        "format": HEAD_FORMAT,
        "log": p.name,
        "n_records": n_records,
        "head_hash": sha256_bytes(last_line),
        "time": utc_now(),
        "key_id": key_id(private_key),
    }
    signature = base64.b64encode(private_key.sign(canonical_json(body).encode("utf-8"))).decode("ascii")
    target = head_path(p)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(canonical_json({**body, "signature": signature}).encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(p.parent)
    return target


def _read_head(path: Path) -> dict[str, Any] | None:
    """The head file's JSON object, or None when it is not one of ours (changed or corrupted)."""
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    fields = {"format", "log", "n_records", "head_hash", "time", "key_id", "signature"}
    if not isinstance(obj, dict) or set(obj) != fields or obj["format"] != HEAD_FORMAT:
        return None
    if not isinstance(obj["n_records"], int) or obj["n_records"] < 1:
        return None
    if not all(isinstance(obj[k], str) for k in fields - {"n_records"}):
        return None
    return obj


def _head_structure_problems(path: Path, lines: list[bytes]) -> list[tuple[int, str]]:
    """Records missing at the end per the head file (no signature check): for ``append``."""
    if not path.exists():
        return []
    obj = _read_head(path)
    if obj is None:
        return [(len(lines), f"the head file {path.name} is unreadable (changed or corrupted)")]
    n = obj["n_records"]
    if n > len(lines) or sha256_bytes(lines[n - 1]) != obj["head_hash"]:
        return [(min(n, len(lines)), f"the log does not match its head file {path.name} (records removed)")]
    return []


def _check_head(
    path: Path, lines: list[bytes], known: Mapping[str, Ed25519PublicKey], *, required: bool
) -> tuple[str, list[tuple[int, str]]]:
    """Check the signed head file against the log: a status and the problems, by record index."""
    n_lines = len(lines)
    if not path.exists():
        if required and n_lines:  # a log with no records and no head was never appended to
            return "missing", [(n_lines, f"no head file {path.name}: records cut off the end "
                                         "could not be detected")]
        return "missing", []
    obj = _read_head(path)
    if obj is None:
        return "invalid", [(n_lines, f"head file {path.name}: unreadable (changed or corrupted)")]
    public = known.get(obj["key_id"])
    body = {k: v for k, v in obj.items() if k != "signature"}
    if public is None:
        return "invalid", [(n_lines, f"head file {path.name}: signed by unknown key {obj['key_id']}")]
    try:
        raw = base64.b64decode(obj["signature"].encode("ascii"), validate=True)
        public.verify(raw, canonical_json(body).encode("utf-8"))
    except (ValueError, UnicodeEncodeError, InvalidSignature):
        return "invalid", [(n_lines, f"head file {path.name}: signature is not valid")]
    n = obj["n_records"]
    if n > n_lines:
        return "mismatch", [(n_lines, f"record {n_lines}: missing; the head file says the log had "
                                      f"{n} record(s), it has {n_lines} (records removed from the end)")]
    if sha256_bytes(lines[n - 1]) != obj["head_hash"]:
        return "mismatch", [(n - 1, f"record {n - 1}: does not match the head file's head_hash "
                                    "(records removed, reordered or replaced)")]
    return ("behind" if n < n_lines else "ok"), []


# --- internals ------------------------------------------------------------------------------
def _hash_body(obj: Mapping[str, Any]) -> str:
    body = {k: v for k, v in obj.items() if k not in _UNHASHED}
    return sha256_bytes(canonical_json(body).encode("utf-8"))


def _signature_ok(public: Ed25519PublicKey, signature: str, record_hash: str) -> bool:
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return False
    # base64 can carry the same bytes in more than one text: accept only the canonical one.
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != signature:
        return False
    try:
        public.verify(raw, record_hash.encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        return False
    return True


def _check_structure(content: bytes) -> tuple[list[bytes], list[tuple[int, str]]]:
    """Split ``content`` into lines and check all but signatures.

    Returns the lines (without newlines) and the problems as ``(index, message)``. Checks: each line is UTF-8 canonical JSON of a valid
    AuditRecord, ``seq`` counts from 0, ``prev_hash`` links to the previous line, and
    ``record_hash`` matches the record; the file ends with a newline.
    """
    problems: list[tuple[int, str]] = []
    if not content:
        return [], problems
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        problems.append((len(lines) - 1, f"record {len(lines) - 1}: no newline at the end (truncated)"))
    prev = GENESIS_HASH
    for i, line in enumerate(lines):
        problems += [(i, f"record {i}: {msg}") for msg in _line_problems(i, line, prev)]
        prev = sha256_bytes(line)
    problems.sort(key=lambda p: p[0])
    return lines, problems


def _line_problems(i: int, line: bytes, prev: str) -> list[str]:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ["not valid JSON (changed or truncated)"]
    try:
        canonical = canonical_json(obj).encode("utf-8")
    except (TypeError, ValueError):
        return ["holds values that are not valid JSON"]
    if canonical != line:
        return ["not in canonical form (changed after writing)"]
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    try:
        AuditRecord.model_validate(obj)
    except ValidationError as exc:
        return ["not a valid audit record: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )]
    out: list[str] = []
    if obj["seq"] != i:
        out.append(f"seq is {obj['seq']}, expected {i} (records removed or reordered)")
    if obj["prev_hash"] != prev:
        out.append("prev_hash does not match the previous record (records removed, reordered or changed)")
    if _hash_body(obj) != obj["record_hash"]:
        out.append("record_hash does not match the record (changed after signing)")
    return out


def _known_keys(keys: PublicKeys | Sequence[PublicKeys]) -> dict[str, Ed25519PublicKey]:
    items: Iterable[PublicKeys] = (
        [keys] if isinstance(keys, (Ed25519PublicKey, Ed25519PrivateKey, str, Path)) else keys
    )
    known: dict[str, Ed25519PublicKey] = {}
    for item in items:
        if isinstance(item, Ed25519PrivateKey):
            public = item.public_key()
        elif isinstance(item, Ed25519PublicKey):
            public = item
        elif Path(item).is_dir():  # a key directory: its public keys and its keyring
            known.update(load_keyring(item))
            continue
        else:
            public = load_public_key(item)
        known[key_id(public)] = public
    if not known:
        raise AuditError(
            "No public key given to verify the audit log with.",
            hint="Pass the public key(s) that signed it, e.g. --public-key keys/synthkit.pub, or "
            "the key directory (its keyring holds the keys retired by `synthkit keys rotate`).",
        )
    return known


def _metrics(report: Any, decision: Decision) -> dict[str, float | None]:
    """Every metric of the report, or the metric values the Decision saw when there is no report."""
    if report is not None and isinstance(getattr(report, "metrics", None), Mapping):
        return {str(name): _number(getattr(m, "value", m)) for name, m in report.metrics.items()}
    return {
        f.metric: _number(f.value) for f in decision.findings if f.kind == "metric" and f.metric
    }


def _number(value: Any) -> float | None:
    if isinstance(value, str) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
