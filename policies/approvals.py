"""Signed approvals: M-of-N people vouch, with their Ed25519 keys, for one gated data set.

An :class:`Approval` is an approver's Ed25519 signature over the canonical JSON of what they
approve: the data fingerprint, the policy hash and the declared purpose of a Decision (plus the
rule ids they override, if any, and when they signed). It carries the raw public key, whose id
must be one the policy lists, so the gate can verify it without a key store. Approvals are the
only way to override a failed finding, and every counted one is recorded in the Decision and
its audit record.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthkit.artifacts import canonical_json
from synthkit.errors import PolicyError
from synthkit.policies.keys import key_id, load_private_key
from synthkit.policies.model import ApprovalRule, Decision, Finding, utc_now

#: File name suffix ``synthkit approve`` suggests.
APPROVAL_SUFFIX = ".approval.json"


class Approval(BaseModel):
    """One approver's signature over a Decision's data fingerprint, policy hash and purpose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approver: str = Field(min_length=1)
    key_id: str
    public_key: str = Field(description="Raw Ed25519 public key, base64.")
    data_fingerprint: str = Field(min_length=1)
    policy_hash: str = Field(min_length=1)
    purpose: str | None
    overrides: list[str] = Field(default_factory=list)
    signed_at: str
    signature: str

    def payload(self) -> bytes:
        """The bytes signed: canonical JSON of every field but the signature."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"})).encode("utf-8")

    def public(self) -> Ed25519PublicKey | None:
        """The embedded public key, or None when it is not 32 raw bytes of base64."""
        try:
            raw = base64.b64decode(self.public_key.encode("ascii"), validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, UnicodeEncodeError):
            return None

    def problem(self) -> str | None:
        """Why the signature does not hold (None when it does): bad key, other key id, bad signature."""
        public = self.public()
        if public is None:
            return "its public key is not a valid Ed25519 key"
        if key_id(public) != self.key_id:
            return f"its key_id {self.key_id} does not match its public key ({key_id(public)})"
        try:
            raw = base64.b64decode(self.signature.encode("ascii"), validate=True)
            public.verify(raw, self.payload())
        except (ValueError, UnicodeEncodeError, InvalidSignature):
            return "the signature does not match its content (changed, or signed with another key)"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the form Decisions and audit records hold)."""
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> Path:
        """Write the approval as JSON (sorted keys); never replaces an existing file."""
        p = Path(path)
        if p.exists():
            raise PolicyError(f"{p} already exists; the approval was not written.",
                              hint="Choose another --out path, or remove the old approval first.")
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "x", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n")
        return p


def sign_approval(
    decision: Decision | Mapping[str, Any] | str | Path,
    private_key: Ed25519PrivateKey | str | Path,
    *,
    approver: str,
    overrides: Sequence[str] = (),
    passphrase: str | bytes | None = None,
) -> Approval:
    """Sign an approval of ``decision`` (a Decision, its dict, or a JSON file) with ``private_key``.

    ``overrides`` names failed rule ids the approver accepts anyway; the policy must allow
    overriding them (``approvals.may_override``) and enough approvers must agree.
    """
    dec = _as_decision(decision)
    key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(
        private_key, passphrase=passphrase)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = {
        "approver": approver, "key_id": key_id(key), "public_key": base64.b64encode(raw).decode("ascii"),
        "data_fingerprint": dec.data_fingerprint, "policy_hash": dec.policy_hash,
        "purpose": dec.purpose, "overrides": sorted(set(overrides)), "signed_at": utc_now(),
    }
    unsigned = Approval.model_validate({**body, "signature": ""})
    signature = base64.b64encode(key.sign(unsigned.payload())).decode("ascii")
    return unsigned.model_copy(update={"signature": signature})


def load_approval(source: Approval | Mapping[str, Any] | str | Path) -> Approval:
    """An Approval from itself, a dict, or a JSON file written by :meth:`Approval.save`."""
    if isinstance(source, Approval):
        return source
    where = "approval"
    try:
        if isinstance(source, Mapping):
            return Approval.model_validate(dict(source))
        p = Path(source)
        where = str(p)
        if not p.is_file():
            raise PolicyError(f"No approval file at {p}.",
                              hint="Pass the JSON file that `synthkit approve` wrote.")
        return Approval.model_validate_json(p.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise PolicyError(
            f"{where} is not a valid approval: {exc.errors()[0]['msg']} "
            f"({'.'.join(map(str, exc.errors()[0]['loc']))}).",
            hint="Pass the JSON file that `synthkit approve` wrote, unchanged.",
        ) from exc


@dataclass(frozen=True)
class ApprovalCheck:
    """Which approvals count (valid, by a listed approver, for this data) and why others do not."""

    required: int
    valid: list[Approval] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # key id -> approver name from the policy
    invalid: list[dict[str, str]] = field(default_factory=list)

    @property
    def approvers(self) -> list[str]:
        """Names (from the policy) of the approvers whose approvals count."""
        return [self.names[a.key_id] for a in self.valid]

    @property
    def enough(self) -> bool:
        return len(self.valid) >= self.required

    def overriders(self, rule_id: str) -> list[str]:
        """Approvers who signed an override of ``rule_id``."""
        return [self.names[a.key_id] for a in self.valid if rule_id in a.overrides]


def check_approvals(
    rule: ApprovalRule,
    approvals: Iterable[Approval | Mapping[str, Any] | str | Path],
    *,
    data_fingerprint: str,
    policy_hash: str,
    purpose: str | None,
) -> ApprovalCheck:
    """Verify each approval: a listed approver's key, a valid signature, for exactly this decision."""
    names = {a.key_id: a.name for a in rule.approvers}
    valid: dict[str, Approval] = {}
    invalid: list[dict[str, str]] = []
    for item in approvals:
        a = load_approval(item)
        problem = a.problem()
        if problem is None and a.key_id not in names:
            problem = f"key {a.key_id} is not one of this policy's approvers"
        if problem is None:
            mismatch = [what for what, mine, theirs in (
                ("data fingerprint", data_fingerprint, a.data_fingerprint),
                ("policy hash", policy_hash, a.policy_hash),
                ("purpose", purpose, a.purpose),
            ) if mine != theirs]
            if mismatch:
                problem = "it approves another " + ", ".join(mismatch)
        if problem is None and a.key_id in valid:
            problem = "a second approval by the same key counts once"
        if problem is None:
            valid[a.key_id] = a
        else:
            invalid.append({"approver": a.approver, "key_id": a.key_id, "problem": problem})
    return ApprovalCheck(required=rule.required, valid=list(valid.values()), names=names, invalid=invalid)


def _as_decision(decision: Decision | Mapping[str, Any] | str | Path) -> Decision:
    if isinstance(decision, Decision):
        return decision
    try:
        if isinstance(decision, Mapping):
            data = dict(decision)
        else:
            p = Path(decision)
            if not p.is_file():
                raise PolicyError(f"No decision file at {p}.",
                                  hint="Save the decision with `synthkit sample ... --json > decision.json`.")
            data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data.get("decision"), Mapping):  # an audit record: approve its decision
            data = dict(data["decision"])
        return Decision.model_validate(data)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise PolicyError(
            f"Not a policy Decision: {exc}",
            hint="Pass the JSON that `synthkit sample/run --json` printed, or an audit record line.",
        ) from exc


def apply_approvals(
    rule: ApprovalRule,
    findings: list[Finding],
    approvals: Sequence[Approval | Mapping[str, Any] | str | Path],
    *,
    data_fingerprint: str,
    policy_hash: str,
    purpose: str | None,
) -> tuple[list[Finding], list[dict[str, Any]]]:
    """The findings with an ``approvals`` finding added and permitted overrides applied; the counted approvals."""
    check = check_approvals(rule, approvals, data_fingerprint=data_fingerprint,
                            policy_hash=policy_hash, purpose=purpose)
    out: list[Finding] = []
    for f in findings:
        if f.passed or f.severity != "block" or f.rule not in rule.may_override:
            out.append(f)
            continue
        by = check.overriders(f.rule)
        out.append(f.model_copy(update={"overridden_by": by}) if len(by) >= rule.required else f)
    listed = ", ".join(f"{a.name} ({a.key_id})" for a in rule.approvers)
    evidence = {"required": rule.required, "approved_by": check.approvers, "invalid": check.invalid}
    rejected = "; ".join(f"{i['approver']} ({i['key_id']}): {i['problem']}" for i in check.invalid)
    if check.enough:
        message = (f"Approved by {len(check.valid)} of the {rule.required} required approver(s): "
                   f"{', '.join(check.approvers)}.")
        hint = f"Not counted: {rejected}." if rejected else ""
    else:
        message = (f"{len(check.valid)} valid approval(s), {rule.required} required"
                   + (f"; not counted: {rejected}" if rejected else "") + ".")
        hint = (f"Have {rule.required - len(check.valid)} more of the approvers ({listed}) sign this "
                "decision: `synthkit approve decision.json --key <their .key> --approver <name>`, "
                "then gate the same data again (same seed) with --approval <file> for each.")
    out.append(Finding(rule="approvals", kind="approval", passed=check.enough, value=float(len(check.valid)),
                       threshold=float(rule.required), op=">=", message=message, hint=hint,
                       evidence=evidence))
    return out, [a.to_dict() for a in check.valid]
