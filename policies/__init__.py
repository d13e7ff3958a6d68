"""synthkit.policies: policy packs, the gate, and the signed, hash-chained audit log.

    from synthkit.policies import gate, load_policy
    decision = gate(load_policy("default"), report, purpose="software testing")
    if decision.passed: ...

A Policy is data (YAML, validated on load; ``extends:`` another pack); ``gate`` turns a Report,
a declared purpose and any signed approvals into a Decision with one Finding per check;
``sign_approval`` signs an approval; ``AuditLog.append`` signs the Decision with Ed25519 and
chains it by hash; ``verify_log`` checks a log end to end.
"""

from __future__ import annotations

from synthkit.policies.approvals import (
    Approval,
    ApprovalCheck,
    check_approvals,
    load_approval,
    sign_approval,
)
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
    ApprovalRule,
    Approver,
    DataRule,
    Decision,
    FairnessRule,
    Finding,
    LabellingRule,
    Policy,
    ProhibitedUse,
    PurposeRule,
    Rule,
    list_packs,
    load_policy,
)

__all__ = [
    "Approval",
    "ApprovalCheck",
    "ApprovalRule",
    "Approver",
    "AuditLog",
    "AuditRecord",
    "AuditVerification",
    "DataRule",
    "Decision",
    "FairnessRule",
    "Finding",
    "KeyPair",
    "LabellingRule",
    "Policy",
    "ProhibitedUse",
    "PurposeRule",
    "Rule",
    "check_approvals",
    "gate",
    "generate_keypair",
    "key_id",
    "list_packs",
    "load_approval",
    "load_policy",
    "load_private_key",
    "load_public_key",
    "require_purpose",
    "sign_approval",
    "verify_log",
]
