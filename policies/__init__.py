"""synthkit.policies: policy packs, the gate, and the signed, hash-chained audit log.

    from synthkit.policies import gate, load_policy
    decision = gate(load_policy("default"), report, purpose="software testing")
    if decision.passed: ...

A Policy is data (YAML, validated on load); ``gate`` turns a Report and a declared purpose into
a Decision with one Finding per check; ``AuditLog.append`` signs the Decision with Ed25519 and
chains it by hash; ``verify_log`` checks a log end to end.
"""

from __future__ import annotations

from synthkit.policies.audit import AuditLog, AuditRecord, AuditVerification, verify_log
from synthkit.policies.gate import gate, require_purpose
from synthkit.policies.keys import (
    KeyPair,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
)
from synthkit.policies.model import (
    Decision,
    Finding,
    Policy,
    ProhibitedUse,
    PurposeRule,
    Rule,
    list_packs,
    load_policy,
)

__all__ = [
    "AuditLog",
    "AuditRecord",
    "AuditVerification",
    "Decision",
    "Finding",
    "KeyPair",
    "Policy",
    "ProhibitedUse",
    "PurposeRule",
    "Rule",
    "gate",
    "generate_keypair",
    "key_id",
    "list_packs",
    "load_policy",
    "load_private_key",
    "load_public_key",
    "require_purpose",
    "verify_log",
]
