"""The gate: judge a Report and a declared purpose against a Policy, and say why.

``gate`` always returns a Decision, passing or not: a refusal is a decision too, and gets
audited like any other. It fails closed: a metric the report lacks, or one that is not a
number, fails its rule. The report is duck-typed (``value(name)``, ``synthetic_fingerprint``,
``real_fingerprint``) so policies do not depend on how evaluation is implemented.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthkit.errors import PolicyError, PurposeMissingError
from synthkit.policies.model import Decision, Finding, Policy, ProhibitedUse, Rule, load_policy

#: Absolute tolerance of the ``==`` operator: metrics are floats, exact equality is brittle.
EQ_TOLERANCE = 1e-9

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": lambda a, b: math.isclose(a, b, rel_tol=0.0, abs_tol=EQ_TOLERANCE),
}
_WS = re.compile(r"\s+")
_PURPOSE_HINT = (
    "Declare what the synthetic data is for, e.g. --purpose 'software testing' "
    "(pipeline YAML: purpose: ...)."
)


def normalise_purpose(purpose: str | None) -> str | None:
    """Whitespace collapsed and trimmed; blank becomes None (no purpose declared)."""
    if purpose is None:
        return None
    text = _WS.sub(" ", str(purpose)).strip()
    return text or None


def require_purpose(policy: Policy, purpose: str | None) -> str | None:
    """Raise PurposeMissingError now when the policy needs a purpose and none was declared.

    Called by the pipeline and the CLI before any work, so a run without a purpose stops at
    once instead of after training. Returns the normalised purpose.
    """
    declared = normalise_purpose(purpose)
    if declared is None and policy.purpose.required:
        raise PurposeMissingError(
            f"Policy '{policy.name}' {policy.version} requires a declared purpose; none was given."
        )
    return declared


def gate(policy: Policy | str | Path, report: Any, purpose: str | None) -> Decision:
    """Judge ``report`` and ``purpose`` against ``policy``; return the Decision (never raises on bad data).

    ``policy`` may be a Policy, a built-in pack name or a YAML path. The Decision is bound to
    ``report.synthetic_fingerprint``, so a sink can check it is for exactly the data it writes.
    """
    pol = load_policy(policy)
    data_fingerprint = getattr(report, "synthetic_fingerprint", None)
    if not isinstance(data_fingerprint, str) or not data_fingerprint:
        raise PolicyError(
            "The report has no synthetic_fingerprint: a Decision must name the data it judged.",
            hint="Pass the Report that synthkit.evaluate() returned for the synthetic data.",
        )
    real_fingerprint = getattr(report, "real_fingerprint", None)
    declared = normalise_purpose(purpose)

    findings = [_purpose_finding(pol, declared)]
    findings += [_prohibited_finding(use, declared) for use in pol.prohibited_uses]
    findings += [_metric_finding(rule, report) for rule in pol.rules]
    passed = not any(not f.passed and f.severity == "block" for f in findings)
    return Decision(
        passed=passed,
        policy=pol.name,
        policy_version=pol.version,
        policy_hash=pol.hash,
        purpose=declared,
        data_fingerprint=data_fingerprint,
        real_fingerprint=real_fingerprint if isinstance(real_fingerprint, str) else None,
        findings=findings,
    )


# --- purpose --------------------------------------------------------------------------------
def _purpose_finding(policy: Policy, declared: str | None) -> Finding:
    rule = policy.purpose
    if declared is None:
        if rule.required:
            return Finding(
                rule="purpose", kind="purpose", passed=False,
                message="No purpose declared; this policy requires one.",
                hint=_PURPOSE_HINT + " Policies refuse data without a declared purpose.",
            )
        return Finding(rule="purpose", kind="purpose", passed=True,
                       message="No purpose declared; this policy does not require one.")
    if rule.allowed is not None:
        low = declared.lower()
        match = next((a for a in rule.allowed if low.startswith(_WS.sub(" ", a).strip().lower())), None)
        if match is None:
            return Finding(
                rule="purpose", kind="purpose", value=declared, passed=False,
                message=f"Purpose {declared!r} is not one this policy allows.",
                hint="Allowed purposes (a declared purpose must start with one): "
                + "; ".join(repr(a) for a in rule.allowed) + ".",
            )
        return Finding(rule="purpose", kind="purpose", value=declared, passed=True,
                       message=f"Purpose {declared!r} is allowed (matches {match!r}).")
    return Finding(rule="purpose", kind="purpose", value=declared, passed=True,
                   message=f"Purpose declared: {declared!r}.")


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """A case-insensitive whole-word/phrase match; inner whitespace matches any whitespace."""
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<![\w])" + r"\s+".join(words) + r"(?![\w])", re.IGNORECASE)


def _prohibited_finding(use: ProhibitedUse, declared: str | None) -> Finding:
    rule_id = f"prohibited_use:{use.name}"
    if declared is None:
        return Finding(rule=rule_id, kind="prohibited_use", passed=True,
                       message=f"No purpose declared to check against prohibited use '{use.name}'.")
    hit = next((k for k in use.keywords if _keyword_pattern(k).search(declared)), None)
    if hit is None:
        return Finding(rule=rule_id, kind="prohibited_use", value=declared, passed=True,
                       message=f"Purpose does not name prohibited use '{use.name}'.")
    return Finding(
        rule=rule_id, kind="prohibited_use", value=declared, passed=False,
        message=f"Purpose {declared!r} is prohibited use '{use.name}' (matched {hit!r}).",
        hint=(use.description + " " if use.description else "")
        + "Synthetic data must not be used for this. If the purpose was mis-described, "
        "declare the actual purpose.",
    )


# --- metrics --------------------------------------------------------------------------------
def _metric_finding(rule: Rule, report: Any) -> Finding:
    common: dict[str, Any] = {
        "rule": rule.id, "kind": "metric", "metric": rule.metric, "op": rule.op,
        "threshold": rule.threshold, "severity": rule.severity,
    }
    try:
        raw = report.value(rule.metric)
    except LookupError:
        raw = None
    if raw is None:
        return Finding(
            **common, value=None, passed=False,
            message=f"{rule.metric} is missing from the report; required {rule.op} {rule.threshold:g}.",
            hint=f"The report has no '{rule.metric}', and a rule whose metric is missing fails. "
            "Evaluate with the section that computes it (privacy metrics need holdout rows: "
            "evaluate(..., holdout=...)), or use a policy without this rule.",
        )
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return Finding(
            **common, value=str(raw), passed=False,
            message=f"{rule.metric} is not a number ({raw!r}); required {rule.op} {rule.threshold:g}.",
            hint="The report's value for this metric is not numeric: re-run the evaluation.",
        )
    if not math.isfinite(value):
        return Finding(
            **common, value=str(value), passed=False,
            message=f"{rule.metric} = {value} is not a finite number; required {rule.op} {rule.threshold:g}.",
            hint="The metric could not be computed on this data: check the report for why.",
        )
    ok = _OPS[rule.op](value, rule.threshold)
    verdict = "holds" if ok else "fails"
    label = f" ({rule.description})" if rule.description else ""
    return Finding(
        **common, value=value, passed=ok,
        message=f"{rule.metric} = {value:.4g}, required {rule.op} {rule.threshold:g}: {verdict}{label}.",
        hint="" if ok else (rule.hint or f"Improve {rule.metric} until it is {rule.op} {rule.threshold:g}."),
    )
