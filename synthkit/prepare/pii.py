"""Personal data in one import: detection, free-text spans, handling, and a per-column scan.

* :mod:`synthkit.prepare.pii_detect` decides which columns hold PII (names, validated values);
* :mod:`synthkit.prepare.pii_text` finds PII spans inside free text and replaces them;
* :mod:`synthkit.prepare.pii_handling` applies drop / fake / hash / generalise / keep before
  training (``prepare_pii``), keyed by a :class:`PIIKey`;
* :func:`scan_pii` reports, per column, what was found, how many values or spans agree, and the
  handling that will apply: what ``synthkit inspect`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synthkit.prepare.pii_detect import (
    MATCH_SHARE,
    PIIDetection,
    detect_pii,
    detect_pii_kind,
    kind_from_name,
)
from synthkit.prepare.pii_handling import (
    PIIAction,
    PIIKey,
    PIIKeyWarning,
    PreparedPII,
    fake_values,
    generalise,
    hash_values,
    prepare_pii,
    redact_text,
)
from synthkit.prepare.pii_text import (
    SPAN_KINDS,
    TextScan,
    count_spans,
    placeholder,
    replace_spans,
    scan_text,
)
from synthkit.schema import ColumnKind, Schema, infer_schema

__all__ = [
    "MATCH_SHARE", "SPAN_KINDS", "PIIAction", "PIIDetection", "PIIFinding", "PIIKey", "PIIKeyWarning",
    "PreparedPII", "TextScan", "count_spans", "detect_pii", "detect_pii_kind", "fake_values",
    "generalise", "hash_values", "kind_from_name", "placeholder", "prepare_pii", "redact_text",
    "replace_spans", "scan_pii", "scan_text",
]


@dataclass(frozen=True)
class PIIFinding:
    """One column's PII: what it holds, the evidence (with counts) and the handling that applies."""

    column: str
    kind: str  # "pii" or "text"
    pii: str | None  # subtype of a pii column
    source: str  # "values", "name", "schema" (declared, not detected) or "spans"
    matched: int | None  # values that validated as the subtype (pii columns found by value)
    checked: int | None  # values checked
    handling: str
    default: bool  # the safe default, not declared
    spans: dict[str, int] = field(default_factory=dict)  # text: spans by kind
    rows_with_spans: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column, "kind": self.kind, "pii": self.pii, "source": self.source,
            "matched": self.matched, "checked": self.checked, "handling": self.handling,
            "default": self.default, "spans": self.spans, "rows_with_spans": self.rows_with_spans,
        }

    def describe(self) -> str:
        """One line for a terminal table, e.g. "email: 2,991 of 3,000 values valid → fake"."""
        how = f"→ {self.handling}" + (" (default)" if self.default else "")
        if self.kind == ColumnKind.TEXT.value:
            if not self.spans:
                return f"no PII spans found {how}"
            spans = ", ".join(f"{k} {v:,}" for k, v in self.spans.items())
            return f"PII spans: {spans} in {self.rows_with_spans:,} rows {how}"
        if self.source == "values" and self.checked:
            return f"PII: {self.pii} ({self.matched:,} of {self.checked:,} checked values valid) {how}"
        evidence = "by column name" if self.source == "name" else "declared in the schema"
        return f"PII: {self.pii} ({evidence}) {how}"


def scan_pii(frame: pl.DataFrame, schema: Schema | None = None, *, max_validate: int = 5_000) -> list[PIIFinding]:
    """Findings for every pii and text column of ``schema`` (inferred when None).

    PII columns are re-checked on up to ``max_validate`` distinct values; text columns are
    scanned span by span in full.
    """
    schema = schema if schema is not None else infer_schema(frame)
    findings = []
    for col in schema:
        if col.kind not in (ColumnKind.PII, ColumnKind.TEXT) or col.name not in frame.columns:
            continue
        handling = col.effective_pii_handling
        assert handling is not None
        series = frame.get_column(col.name)
        if col.kind == ColumnKind.TEXT:
            scan = scan_text(series)
            findings.append(PIIFinding(
                column=col.name, kind="text", pii=None, source="spans", matched=None, checked=scan.rows,
                handling=handling.value, default=col.pii_handling is None,
                spans={k.value: v for k, v in scan.counts.items()}, rows_with_spans=scan.rows_with_pii,
            ))
            continue
        found = detect_pii(col.name, series, max_validate=max_validate)
        same = found is not None and found.kind == col.pii
        findings.append(PIIFinding(
            column=col.name, kind="pii", pii=col.pii.value if col.pii else None,
            source=found.source if same and found else "schema",
            matched=found.matched if same and found and found.source == "values" else None,
            checked=found.checked if same and found else int(series.len() - series.null_count()),
            handling=handling.value, default=col.pii_handling is None,
        ))
    return findings
