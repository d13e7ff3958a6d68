"""Policy packs as data: Policy, Rule, Finding, Decision (pydantic), and loading packs from YAML.

A Policy is validated when it is loaded (unknown fields are errors, never ignored), so a typo in
a pack cannot silently switch a rule off. A Decision is what ``gate`` returns: passed or not,
with one Finding per check holding the evidence, bound to the fingerprint of the data it judged.
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


class Policy(_Strict):
    """A versioned policy pack: purpose rule, prohibited uses and metric rules."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    purpose: PurposeRule = Field(default_factory=PurposeRule)
    prohibited_uses: list[ProhibitedUse] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        for what, names in (
            ("rule id", [r.id for r in self.rules]),
            ("prohibited use name", [u.name for u in self.prohibited_uses]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}(s): {', '.join(dupes)}")
        return self

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the pack: pins exactly which rules judged the data."""
        return sha256_bytes(canonical_json(self.model_dump(mode="json")).encode("utf-8"))


class Finding(_Strict):
    """The outcome of one check, with its evidence (value, threshold) and what to do if it failed."""

    rule: str
    kind: Literal["purpose", "prohibited_use", "metric"]
    metric: str | None = None
    value: float | str | None = None
    op: Op | None = None
    threshold: float | None = None
    severity: Severity = "block"
    passed: bool
    message: str
    hint: str = ""


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

    @property
    def failed(self) -> list[Finding]:
        """Failed findings that block: any one of them refuses the data."""
        return [f for f in self.findings if not f.passed and f.severity == "block"]

    @property
    def warnings(self) -> list[Finding]:
        """Failed findings of severity ``warn``: reported, not blocking."""
        return [f for f in self.findings if not f.passed and f.severity == "warn"]

    def allows(self, data_fingerprint: str) -> bool:
        """True when this Decision passed for exactly the data with this fingerprint."""
        return self.passed and bool(data_fingerprint) and data_fingerprint == self.data_fingerprint

    def summary(self) -> str:
        """One line for logs and terminals: verdict, policy, purpose and what failed."""
        verdict = "PASSED" if self.passed else "REFUSED"
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
    path. A Policy passed in is returned as is.
    """
    if isinstance(name_or_path, Policy):
        return name_or_path
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or "/" in text
        or "\\" in text
        or text.lower().endswith((".yaml", ".yml"))
    )
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise PolicyError(
                f"No policy file at {path}.",
                hint=f"Check the path, or use a built-in pack: {', '.join(list_packs())}.",
            )
        return _parse(path.read_text(encoding="utf-8"), source=str(path))
    packs = list_packs()
    if text not in packs:
        raise PolicyError(
            f"Unknown policy pack '{text}'. Built-in packs: {', '.join(packs)}.",
            hint="Use one of the built-in packs, or pass the path to a policy YAML file.",
        )
    resource = resources.files("synthkit.policies").joinpath(_PACKS, f"{text}.yaml")
    return _parse(resource.read_text(encoding="utf-8"), source=f"built-in pack '{text}'")


def _parse(text: str, *, source: str) -> Policy:
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
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{_field(e['loc'], data)}': {e['msg']}" for e in exc.errors()
        )
        raise PolicyError(
            f"{source}: invalid policy: {problems}",
            hint="Valid top-level fields: " + ", ".join(Policy.model_fields)
            + "; rule fields: " + ", ".join(Rule.model_fields) + ".",
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

