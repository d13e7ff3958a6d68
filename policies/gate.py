"""The gate: judge a Report and a declared purpose against a Policy, and say why.

``gate`` always returns a Decision, passing or not: a refusal is a decision too, and gets
audited like any other. It fails closed: a metric the report lacks, or one that is not a
number, fails its rule. The report is duck-typed (``value(name)``, ``synthetic_fingerprint``,
``real_fingerprint``; data rules also ``table_schema()``, fairness ``settings``) so policies do
not depend on how evaluation is implemented. Approvals are checked by
:mod:`synthkit.policies.approvals`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synthkit.errors import PolicyError, PurposeMissingError
from synthkit.policies.approvals import apply_approvals
from synthkit.policies.model import (
    PII_KINDS,
    DataRule,
    Decision,
    FairnessRule,
    Finding,
    LabellingRule,
    Op,
    Policy,
    ProhibitedUse,
    Rule,
    Severity,
    load_policy,
)

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


def gate(
    policy: Policy | str | Path,
    report: Any,
    purpose: str | None,
    *,
    approvals: Sequence[Any] | None = None,
) -> Decision:
    """Judge ``report`` and ``purpose`` against ``policy``; return the Decision (never raises on bad data).

    ``policy`` may be a Policy, a built-in pack name or a YAML path. The Decision is bound to
    ``report.synthetic_fingerprint``, so a sink can check it is for exactly the data it writes.
    ``approvals`` (Approval objects, dicts or JSON paths; see :mod:`synthkit.policies.approvals`)
    are verified when the policy requires them; too few valid ones block, and only they can
    override a failed rule the policy lets them override.
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
    findings += [data_finding(rule, report) for rule in pol.data]
    if pol.fairness is not None:
        findings += fairness_findings(pol.fairness, report)
    if pol.labelling is not None:
        findings.append(labelling_finding(pol.labelling))
    counted: list[dict[str, Any]] = []
    if pol.approvals is not None:
        findings, counted = apply_approvals(
            pol.approvals, findings, list(approvals or ()),
            data_fingerprint=data_fingerprint, policy_hash=pol.hash, purpose=declared,
        )
    passed = not any(not f.passed and f.severity == "block" and not f.overridden_by for f in findings)
    return Decision(
        passed=passed,
        policy=pol.name,
        policy_version=pol.version,
        policy_hash=pol.hash,
        purpose=declared,
        data_fingerprint=data_fingerprint,
        real_fingerprint=real_fingerprint if isinstance(real_fingerprint, str) else None,
        findings=findings,
        labelling=pol.labelling,
        approvals=counted,
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
    return threshold_finding(
        report, rule=rule.id, kind="metric", metric=rule.metric, op=rule.op, threshold=rule.threshold,
        severity=rule.severity, description=rule.description, hint=rule.hint,
    )


def threshold_finding(
    report: Any,
    *,
    rule: str,
    kind: str,
    metric: str,
    op: Op,
    threshold: float,
    severity: Severity = "block",
    description: str = "",
    hint: str = "",
    evidence: dict[str, Any] | None = None,
    missing_hint: str | None = None,
) -> Finding:
    """``metric op threshold`` on the report's value; missing or non-finite values fail."""
    common: dict[str, Any] = {
        "rule": rule, "kind": kind, "metric": metric, "op": op,
        "threshold": threshold, "severity": severity, "evidence": evidence,
    }
    try:
        raw = report.value(metric)
    except LookupError:
        raw = None
    if raw is None:
        return Finding(
            **common, value=None, passed=False,
            message=f"{metric} is missing from the report; required {op} {threshold:g}.",
            hint=missing_hint or (f"The report has no '{metric}', and a rule whose metric is missing fails. "
            "Evaluate with the section that computes it (privacy metrics need holdout rows: "
            "evaluate(..., holdout=...)), or use a policy without this rule."
            + (f" {hint}" if hint else "")),
        )
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return Finding(
            **common, value=str(raw), passed=False,
            message=f"{metric} is not a number ({raw!r}); required {op} {threshold:g}.",
            hint="The report's value for this metric is not numeric: re-run the evaluation.",
        )
    if not math.isfinite(value):
        return Finding(
            **common, value=str(value), passed=False,
            message=f"{metric} = {value} is not a finite number; required {op} {threshold:g}.",
            hint="The metric could not be computed on this data: check the report for why.",
        )
    ok = _OPS[op](value, threshold)
    verdict = "holds" if ok else "fails"
    label = f" ({description})" if description else ""
    return Finding(
        **common, value=value, passed=ok,
        message=f"{metric} = {value:.4g}, required {op} {threshold:g}: {verdict}{label}.",
        hint="" if ok else (hint or f"Improve {metric} until it is {op} {threshold:g}."),
    )


# --- data rules -----------------------------------------------------------------------------


def data_finding(rule: DataRule, report: Any) -> Finding:
    """One data rule: PII kinds absent from the output, no exact copies, or k-anonymity."""
    if rule.check == "no_exact_copies":
        return threshold_finding(
            report, rule=rule.id, kind="data", metric="privacy.exact_copy_rate", op="<=",
            threshold=rule.max_rate, severity=rule.severity,
            description=rule.description or "share of synthetic rows that copy a training row",
            hint=rule.hint or "The generator copies training rows: train for fewer epochs, on more "
            "rows, drop identifying columns, or train with differential privacy.",
        )
    if rule.check == "k_anonymity":
        assert rule.k is not None
        return threshold_finding(
            report, rule=rule.id, kind="data", metric="privacy.k_anonymity", op=">=",
            threshold=float(rule.k), severity=rule.severity,
            description=rule.description or "smallest class of quasi-identifier combinations",
            hint=rule.hint or "Some combination of quasi-identifiers is shared by too few synthetic "
            "rows: generalise those columns (pii handling generalise, coarser bins) or drop one.",
            missing_hint="The report has no privacy.k_anonymity: mark the quasi-identifier columns "
            "(schema column quasi_identifier: true) or evaluate(..., quasi_identifiers=[...]).",
        )
    return _pii_finding(rule, report)


def _pii_finding(rule: DataRule, report: Any) -> Finding:
    kinds = set(rule.kinds or PII_KINDS)
    common: dict[str, Any] = {"rule": rule.id, "kind": "data", "severity": rule.severity}
    schema = _report_schema(report)
    if schema is None:
        return Finding(
            **common, passed=False,
            message="The report carries no schema, so PII in the output cannot be checked.",
            hint="Gate the Report that synthkit.evaluate() returned (it records the schema).",
        )
    offending: list[dict[str, Any]] = []
    may_hold_pii = False
    for col in schema:
        kind_name = getattr(col.kind, "value", col.kind)
        handling = getattr(col.effective_pii_handling, "value", None)
        if kind_name == "pii":
            may_hold_pii = True
            pii = getattr(col.pii, "value", "other")
            if pii in kinds and handling != "drop" and handling not in rule.allow_handling:
                offending.append({"column": col.name, "pii": pii, "handling": handling})
        elif kind_name == "text":
            may_hold_pii = True
            spans = sorted(getattr(k, "value", k) for k, n in (col.pii_spans or {}).items() if n)
            found = [k for k in spans if k in kinds]
            if found and handling not in ("drop", "redact") and handling not in rule.allow_handling:
                offending.append({"column": col.name, "pii": ",".join(found), "handling": handling,
                                  "text": True})
    verbatim = report.value("privacy.pii_verbatim")
    evidence: dict[str, Any] = {"columns": offending, "pii_verbatim": verbatim,
                                "kinds": sorted(kinds), "allow_handling": list(rule.allow_handling)}
    problems = [
        f"{o['column']} ({o['pii']}{' spans' if o.get('text') else ''}, handling {o['handling']})"
        for o in offending
    ]
    if verbatim is None and may_hold_pii:
        problems.append("privacy.pii_verbatim is missing from the report")
    elif verbatim:
        problems.append(f"{verbatim:g} real identifier(s) appear verbatim in the output")
    if problems:
        allowed = ", ".join(["drop", *rule.allow_handling])
        return Finding(
            **common, passed=False, value=float(len(offending)), evidence=evidence,
            message="PII that this policy forbids is in the output: " + "; ".join(problems) + ".",
            hint=rule.hint or f"Set these columns' pii handling to one of: {allowed} (pipeline YAML "
            "pii: {columns: {<column>: drop}}), and evaluate with pii_reference= the raw data.",
        )
    label = f" ({rule.description})" if rule.description else ""
    return Finding(**common, passed=True, value=0.0, evidence=evidence,
                   message=f"No forbidden PII kind in the output and no real identifier verbatim{label}.")


def _report_schema(report: Any) -> Any:
    getter = getattr(report, "table_schema", None)
    if not callable(getter):
        return None
    try:
        return getter()
    except Exception:  # noqa: BLE001 - a report without a readable schema fails closed
        return None


# --- fairness -------------------------------------------------------------------------------
def fairness_findings(rule: FairnessRule, report: Any) -> list[Finding]:
    """Distribution shift (and rate gap) per protected attribute, with per-group evidence."""
    from synthkit.evaluate.fairness import metric_name

    measured = (getattr(report, "settings", None) or {}).get("fairness") or {}
    attributes = list(dict.fromkeys([*rule.protected, *measured.get("protected", [])]))
    if not attributes:
        return [Finding(rule=rule.id, kind="fairness", severity=rule.severity, passed=True,
                        message="No protected attribute declared (in the policy or the evaluation): "
                        "nothing to check for fairness.")]
    how = ("Evaluate with the policy's fairness declaration: synthkit.evaluate(..., "
           "fairness=policy.fairness) (pipelines do this for you).")
    target_mismatch = rule.target is not None and measured and (
        measured.get("target") != rule.target or str(measured.get("positive")) != str(rule.positive))
    out: list[Finding] = []
    for attr in attributes:
        groups = ((measured.get("attributes") or {}).get(attr) or {}).get("groups")
        shift_evidence = None if groups is None else {"attribute": attr, "groups": [
            {k: g.get(k) for k in ("group", "real_rows", "synthetic_rows", "real_share", "synthetic_share")}
            for g in groups]}
        out.append(threshold_finding(
            report, rule=f"{rule.id}:{attr}:distribution_shift", kind="fairness",
            metric=metric_name("distribution_shift", attr), op="<=",
            threshold=rule.max_distribution_shift, severity=rule.severity,
            description=f"drift of the '{attr}' group shares", evidence=shift_evidence,
            hint=rule.hint or f"The '{attr}' groups' shares drifted: rebalance the sample "
            f"(rebalance: {{{attr}: ...}}), train longer, or use a generator that keeps categories.",
            missing_hint=how,
        ))
        if rule.target is None:
            continue
        metric = metric_name("rate_gap", attr)
        if target_mismatch:
            out.append(Finding(
                rule=f"{rule.id}:{attr}:rate_gap", kind="fairness", metric=metric, op="<=",
                threshold=rule.max_rate_gap, severity=rule.severity, passed=False,
                message=f"The report measured rates of {measured.get('target')} = "
                f"{measured.get('positive')!r}, not {rule.target} = {rule.positive!r} as the policy declares.",
                hint=how))
            continue
        gap_evidence = None if groups is None else {
            "attribute": attr, "target": rule.target, "positive": rule.positive,
            "min_group_size": measured.get("min_group_size"), "groups": [
                {k: g.get(k) for k in ("group", "real_rows", "synthetic_rows", "real_rate",
                                       "synthetic_rate", "rate_gap")} for g in groups]}
        out.append(threshold_finding(
            report, rule=f"{rule.id}:{attr}:rate_gap", kind="fairness", metric=metric, op="<=",
            threshold=rule.max_rate_gap, severity=rule.severity,
            description=f"largest change of the {rule.target} rate within a '{attr}' group",
            evidence=gap_evidence,
            hint=rule.hint or f"The rate of {rule.target} = {rule.positive!r} changed within some "
            f"'{attr}' groups (see the evidence): train longer, or use a generator that models the "
            "relationship between these columns.",
            missing_hint=how,
        ))
    return out


# --- labelling ------------------------------------------------------------------------------
def labelling_finding(rule: LabellingRule) -> Finding:
    """Says that (and how) the output must be labelled; sinks apply it from the Decision."""
    return Finding(
        rule="labelling", kind="labelling", passed=True,
        evidence=rule.model_dump(mode="json"),
        message=f"Labelling required: the output must carry {rule.describe()}.",
        hint="File sinks label the output from the Decision; a sink that cannot label refuses.",
    )
