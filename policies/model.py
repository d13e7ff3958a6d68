"""Policy packs as data: Policy, Rule, Finding, Decision (pydantic), and loading packs from YAML.

A Policy is validated when it is loaded (unknown fields are errors, never ignored), so a typo in
a pack cannot silently switch a rule off. A Decision is what ``gate`` returns: passed or not,
with one Finding per check holding the evidence, bound to the fingerprint of the data it judged.

Beside metric ``rules`` a pack may hold ``data`` rules (PII kinds absent, no exact copies,
k-anonymity), a ``fairness`` rule, a ``labelling`` requirement and ``approvals`` (M-of-N Ed25519
signatures). A pack may ``extends:`` another (a built-in name, or a path relative to the
extending file) and override its rules by id; the resolved pack is what gets hashed.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

from synthkit.artifacts import canonical_json, sha256_bytes
from synthkit.errors import PolicyError

Op = Literal[">=", ">", "<=", "<", "=="]
Severity = Literal["block", "warn"]

#: Dotted metric names, as the Report names them: ``quality.overall``, ``privacy.dcr_share``.
METRIC_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$"
_RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_PACKS = "packs"
#: Sections added after 1.1: left out of the hash while unset, so older packs hash as before.
_NEW_SECTIONS = ("data", "fairness", "labelling", "approvals", "based_on")
#: synthkit.schema.PIIKind values, as pack YAML names them.
PII_KINDS = (
    "email", "phone", "person_name", "first_name", "last_name", "address", "postcode",
    "national_id", "credit_card", "iban", "ip_address", "date_of_birth", "other",
)
FindingKind = Literal["purpose", "prohibited_use", "metric", "data", "fairness", "labelling", "approval"]


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a ``Z`` suffix: the form every record carries."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PurposeRule(_Strict):
    """Whether a purpose must be declared and, optionally, which purposes are allowed."""

    required: bool = True
    #: Allowed purposes (case-insensitive); one matches when the purpose equals or starts with it.
    allowed: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _allowed_not_blank(self) -> PurposeRule:
        if self.allowed is not None and any(not a.strip() for a in self.allowed):
            raise ValueError("allowed purposes must not be blank (a blank entry would allow any purpose)")
        return self


class ProhibitedUse(_Strict):
    """A use the data must never serve; a declared purpose naming one of its keywords is refused."""

    name: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _keywords_not_blank(self) -> ProhibitedUse:
        if any(not k.strip() for k in self.keywords):
            raise ValueError("keywords must not be blank")
        return self


class Rule(_Strict):
    """A threshold on one report metric: ``metric op threshold`` must hold."""

    id: str = Field(pattern=_RULE_ID)
    metric: str = Field(pattern=METRIC_NAME)
    op: Op
    threshold: FiniteFloat
    severity: Severity = "block"
    description: str = ""
    hint: str = ""


DataCheck = Literal["pii_absent", "no_exact_copies", "k_anonymity"]
Handling = Literal["drop", "fake", "hash", "generalise", "keep", "redact"]


class DataRule(_Strict):
    """A check on the output data itself, read from the report: PII, exact copies, k-anonymity.

    ``pii_absent``: no output column (or free-text span) of the listed PII ``kinds`` (default:
    every kind) unless its handling is in ``allow_handling``, and no real identifier verbatim
    (``privacy.pii_verbatim`` is 0). ``no_exact_copies``: ``privacy.exact_copy_rate`` at most
    ``max_rate``. ``k_anonymity``: ``privacy.k_anonymity`` at least ``k``.
    """

    id: str = Field(pattern=_RULE_ID)
    check: DataCheck
    kinds: list[Literal[PII_KINDS]] | None = Field(default=None, min_length=1)  # type: ignore[valid-type]
    allow_handling: list[Handling] = Field(default_factory=list)
    max_rate: float = Field(0.0, ge=0.0, le=1.0)
    k: int | None = Field(default=None, ge=2)
    severity: Severity = "block"
    description: str = ""
    hint: str = ""

    @model_validator(mode="after")
    def _fields_fit_check(self) -> DataRule:
        pii_only = self.kinds is not None or self.allow_handling
        if self.check != "pii_absent" and pii_only:
            raise ValueError(f"kinds/allow_handling apply to check pii_absent, not {self.check}")
        if self.check == "k_anonymity" and self.k is None:
            raise ValueError("check k_anonymity needs k (the smallest allowed class size), e.g. k: 5")
        if self.check != "k_anonymity" and self.k is not None:
            raise ValueError(f"k applies to check k_anonymity, not {self.check}")
        if self.check != "no_exact_copies" and self.max_rate != 0.0:
            raise ValueError(f"max_rate applies to check no_exact_copies, not {self.check}")
        return self


Positive = str | int | float | bool


class FairnessRule(_Strict):
    """Tolerances on protected attributes: distribution shift and, with a target, positive-rate gaps.

    For each protected attribute the report measures the total variation distance of its
    distribution, real vs synthetic (``fairness.distribution_shift.<attr>``), and, when
    ``target`` and ``positive`` are declared, the largest per-group difference of the target's
    positive rate, real vs synthetic (``fairness.rate_gap.<attr>``). Attributes the report was
    evaluated with (``evaluate(..., fairness=...)``) are judged too.
    """

    id: str = Field("fairness", pattern=_RULE_ID)
    protected: list[str] = Field(default_factory=list)
    target: str | None = None
    positive: Positive | None = None
    max_distribution_shift: float = Field(0.1, ge=0.0, le=1.0)
    max_rate_gap: float = Field(0.05, ge=0.0, le=1.0)
    #: Groups with fewer real rows are shown as evidence but not judged on their rate (too noisy).
    min_group_size: int = Field(50, ge=1)
    severity: Severity = "block"
    hint: str = ""

    @model_validator(mode="after")
    def _target_and_positive(self) -> FairnessRule:
        if (self.target is None) != (self.positive is None):
            raise ValueError("declare target and positive together (the column and its positive value)")
        if any(not p.strip() for p in self.protected) or len(set(self.protected)) != len(self.protected):
            raise ValueError("protected attributes must be distinct, non-blank column names")
        if self.target is not None and self.target in self.protected:
            raise ValueError(f"target {self.target!r} cannot also be a protected attribute")
        return self


class LabellingRule(_Strict):
    """How written output must say it is synthetic: Parquet metadata, a CSV/JSONL sidecar, a column."""

    parquet_metadata: bool = True
    csv_sidecar: bool = True
    column: str | None = Field(default=None, min_length=1)

    def describe(self) -> str:
        """The requirement in words, e.g. ``Parquet metadata, sidecar JSON, column 'is_synthetic'``."""
        parts = ["Parquet key-value metadata"] if self.parquet_metadata else []
        parts += ["a <file>.synthetic.json sidecar for CSV/JSON Lines"] if self.csv_sidecar else []
        parts += [f"a constant column {self.column!r}"] if self.column else []
        return ", ".join(parts) or "nothing (every label switched off)"


class Approver(_Strict):
    """Someone whose Ed25519 key may approve a Decision: a name and the key's id."""

    name: str = Field(min_length=1)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")


class ApprovalRule(_Strict):
    """M-of-N signed approvals a Decision needs; ``may_override`` names rules they may override."""

    required: int = Field(ge=1)
    approvers: list[Approver] = Field(min_length=1)
    may_override: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalRule:
        ids = [a.key_id for a in self.approvers]
        if len(set(ids)) != len(ids):
            raise ValueError("approvers must have distinct key_id values")
        if self.required > len(self.approvers):
            raise ValueError(f"required is {self.required} but only {len(self.approvers)} approver(s) are listed")
        if any(r == "purpose" or r.startswith("prohibited_use:") for r in self.may_override):
            raise ValueError("purpose and prohibited-use findings can never be overridden")
        return self


class Policy(_Strict):
    """A versioned policy pack: purpose rule, prohibited uses, metric, data and fairness rules."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    purpose: PurposeRule = Field(default_factory=PurposeRule)
    prohibited_uses: list[ProhibitedUse] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    data: list[DataRule] = Field(default_factory=list)
    fairness: FairnessRule | None = None
    labelling: LabellingRule | None = None
    approvals: ApprovalRule | None = None
    #: The packs this one extends, nearest first (``"default 1.1.0"``); set by the loader.
    based_on: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        for what, names in (
            ("rule id", [r.id for r in self.rules] + [r.id for r in self.data]
             + ([self.fairness.id] if self.fairness else [])),
            ("prohibited use name", [u.name for u in self.prohibited_uses]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}(s): {', '.join(dupes)}")
        return self

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the (resolved) pack: pins exactly which rules judged the data."""
        dumped = self.model_dump(mode="json")
        for key in _NEW_SECTIONS:
            if dumped.get(key) in (None, []):
                dumped.pop(key, None)
        return sha256_bytes(canonical_json(dumped).encode("utf-8"))


class Finding(_Strict):
    """The outcome of one check, with its evidence (value, threshold) and what to do if it failed."""

    rule: str
    kind: FindingKind
    metric: str | None = None
    value: float | str | None = None
    op: Op | None = None
    threshold: float | None = None
    severity: Severity = "block"
    passed: bool
    message: str
    hint: str = ""
    #: Structured evidence beyond value/threshold: per-group rates, offending columns, approvers.
    evidence: dict[str, Any] | None = None
    #: Approvers (names) whose signed approvals override this failed finding.
    overridden_by: list[str] | None = None


Verdict = Literal["passed", "passed_with_warnings", "failed"]


class Decision(_Strict):
    """What the gate decided for one synthetic table, one policy version and one purpose."""

    passed: bool
    policy: str
    policy_version: str
    policy_hash: str
    purpose: str | None
    data_fingerprint: str
    real_fingerprint: str | None = None
    findings: list[Finding]
    decided_at: str = Field(default_factory=utc_now)
    #: How sinks must label the output (from the policy); None when labelling is not required.
    labelling: LabellingRule | None = None
    #: The verified approvals (synthkit.policies.approvals.Approval as dicts) this Decision counted.
    approvals: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def failed(self) -> list[Finding]:
        """Failed findings that block and were not overridden: any one of them refuses the data."""
        return [f for f in self.findings if not f.passed and f.severity == "block" and not f.overridden_by]

    @property
    def warnings(self) -> list[Finding]:
        """Failed findings of severity ``warn``, and blocking ones overridden by approvals."""
        return [f for f in self.findings if not f.passed and (f.severity == "warn" or f.overridden_by)]

    @property
    def verdict(self) -> Verdict:
        """``passed``, ``passed_with_warnings`` or ``failed``."""
        if not self.passed:
            return "failed"
        return "passed_with_warnings" if self.warnings else "passed"

    def allows(self, data_fingerprint: str) -> bool:
        """True when this Decision passed for exactly the data with this fingerprint."""
        return self.passed and bool(data_fingerprint) and data_fingerprint == self.data_fingerprint

    def summary(self) -> str:
        """One line for logs and terminals: verdict, policy, purpose and what failed."""
        verdict = {"passed": "PASSED", "passed_with_warnings": "PASSED WITH WARNINGS",
                   "failed": "REFUSED"}[self.verdict]
        head = f"{verdict} by policy {self.policy} {self.policy_version}"
        head += f" for purpose {self.purpose!r}" if self.purpose else " (no purpose declared)"
        n_ok = sum(f.passed for f in self.findings)
        tail = f"{n_ok}/{len(self.findings)} checks passed"
        if self.failed:
            tail += "; failed: " + "; ".join(f.message.rstrip(".") for f in self.failed)
        if self.warnings:
            tail += f"; {len(self.warnings)} warning(s): " + "; ".join(
                f.message.rstrip(".") for f in self.warnings
            )
        return f"{head}: {tail}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the form audit records embed)."""
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = None) -> str:
        """JSON text with sorted keys; ``Decision.model_validate_json`` reads it back."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)


# --- loading --------------------------------------------------------------------------------
def list_packs() -> list[str]:
    """Names of the built-in policy packs (``policies/packs/<name>.yaml``)."""
    root = resources.files("synthkit.policies").joinpath(_PACKS)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_policy(name_or_path: str | Path | Policy) -> Policy:
    """Load a built-in pack by name (``"default"``) or a policy YAML file by path, validated.

    A bare name (no slash, no ``.yaml``/``.yml`` suffix) is a built-in pack; anything else is a
    path. A pack's ``extends:`` is resolved the same way, a path relative to the extending file.
    A Policy passed in is returned as is.
    """
    if isinstance(name_or_path, Policy):
        return name_or_path
    data, source, chain = _resolve(name_or_path, base=None, stack=())
    data["based_on"] = chain
    return _validate(data, source=source)


def _locate(ref: str | Path, base: Path | None) -> tuple[str, str, str]:
    """(identity for cycle checks, YAML text, source label) of a built-in name or a path."""
    text = str(ref)
    looks_like_path = (
        isinstance(ref, Path) or "/" in text or "\\" in text or text.lower().endswith((".yaml", ".yml"))
    )
    if looks_like_path:
        path = Path(text).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise PolicyError(
                f"No policy file at {path}.",
                hint=f"Check the path, or use a built-in pack: {', '.join(list_packs())}."
                + (" A relative extends: path is taken from the extending file's directory." if base else ""),
            )
        return f"file:{path.resolve()}", path.read_text(encoding="utf-8"), str(path)
    packs = list_packs()
    if text not in packs:
        raise PolicyError(
            f"Unknown policy pack '{text}'. Built-in packs: {', '.join(packs)}.",
            hint="Use one of the built-in packs, or pass the path to a policy YAML file.",
        )
    resource = resources.files("synthkit.policies").joinpath(_PACKS, f"{text}.yaml")
    return f"pack:{text}", resource.read_text(encoding="utf-8"), f"built-in pack '{text}'"


def _resolve(
    ref: str | Path, *, base: Path | None, stack: tuple[str, ...]
) -> tuple[dict[str, Any], str, list[str]]:
    """The pack's raw mapping with every ``extends:`` merged in, its source, and its ancestry."""
    identity, text, source = _locate(ref, base)
    if identity in stack:
        cycle = " -> ".join(s.split(":", 1)[1] for s in (*stack, identity))
        raise PolicyError(
            f"Policy packs extend each other in a cycle: {cycle}.",
            hint="Remove one of the extends: lines so the packs form a chain.",
        )
    data = _load_yaml(text, source=source)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, source, []
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise PolicyError(
            f"{source}: extends must be one built-in pack name or a path, got {parent_ref!r}.",
            hint="e.g. extends: default, or extends: ../base-policy.yaml",
        )
    here = Path(identity.split(":", 1)[1]).parent if identity.startswith("file:") else None
    parent, parent_source, chain = _resolve(parent_ref.strip(), base=here, stack=(*stack, identity))
    for key in ("name", "version"):
        if key not in data:
            raise PolicyError(
                f"{source}: a pack that extends another must give its own {key}.",
                hint=f"Add {key}: ... (the extended pack {parent_source} keeps its own).",
            )
    merged = _merge(parent, data, source=source)
    ancestry = [f"{parent.get('name')} {parent.get('version')}", *chain]
    return merged, source, ancestry


#: List sections merged entry by entry, keyed by this field.
_KEYED = {"rules": "id", "data": "id", "prohibited_uses": "name"}


def _merge(parent: dict[str, Any], child: dict[str, Any], *, source: str) -> dict[str, Any]:
    """``child`` over ``parent``: keyed lists by id/name (``remove: true`` drops one), mappings by key."""
    out = {k: v for k, v in parent.items() if k != "based_on"}
    for key, value in child.items():
        if key in _KEYED and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_keyed(out[key], value, _KEYED[key], f"{source}: {key}")
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _merge_keyed(parent: list[Any], child: list[Any], key: str, where: str) -> list[Any]:
    merged: dict[Any, Any] = {}
    for item in parent:
        merged[item.get(key) if isinstance(item, dict) else id(item)] = item
    for item in child:
        if not isinstance(item, dict) or key not in item:
            merged[id(item)] = item  # validation reports what is wrong with it
            continue
        name = item[key]
        if item.get("remove") is True:
            if name not in merged:
                raise PolicyError(
                    f"{where}: cannot remove {key} {name!r}: the extended pack has no such entry.",
                    hint=f"Entries there: {', '.join(str(k) for k in merged if isinstance(k, str))}.",
                )
            del merged[name]
            continue
        base = merged.get(name)
        merged[name] = {**base, **item} if isinstance(base, dict) else item
    return list(merged.values())


def _load_yaml(text: str, *, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(
            f"{source}: not valid YAML: {exc}",
            hint="Fix the YAML syntax at the line and column shown (indentation, quotes, colons).",
        ) from exc
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: a policy must be a YAML mapping, got {type(data).__name__}.",
            hint="Start from the built-in pack: policies/packs/default.yaml.",
        )
    return data


def _validate(data: dict[str, Any], *, source: str) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{_field(e['loc'], data)}': {e['msg']}" for e in exc.errors()
        )
        raise PolicyError(
            f"{source}: invalid policy: {problems}",
            hint="Valid top-level fields: extends, " + ", ".join(Policy.model_fields)
            + "; rule fields: " + ", ".join(Rule.model_fields)
            + "; data rule fields: " + ", ".join(DataRule.model_fields) + ".",
        ) from exc


def _field(loc: tuple[Any, ...], data: Any) -> str:
    """``('rules', 0, 'op')`` → ``rules[0].op``, naming the rule id when there is one."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f"(id={node['id']})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "<policy>"

