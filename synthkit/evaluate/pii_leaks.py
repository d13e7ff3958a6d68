"""PII leaks: real personal data found verbatim in the synthetic output.

The direct identifiers of the real table (emails, phone numbers, card numbers, IBANs, national
ids, IP addresses and street addresses in its ``pii`` columns, and the same kinds found inside
its free-text columns) are looked for in every string and integer column of the synthetic
table, as whole values and inside text, in one Aho-Corasick pass per column. Names, postcodes
and dates of birth are not counted: different people share them, so a match proves nothing.
The report holds counts only, never the values.
"""

from __future__ import annotations

import polars as pl

from synthkit.evaluate.report import Metric
from synthkit.prepare.pii_text import find_whole, scan_text
from synthkit.schema import ColumnKind, PIIKind, Schema

#: Kinds whose values single out one person: a verbatim match is a leak.
LEAK_KINDS = frozenset({
    PIIKind.EMAIL, PIIKind.PHONE, PIIKind.CREDIT_CARD, PIIKind.IBAN, PIIKind.NATIONAL_ID,
    PIIKind.IP_ADDRESS, PIIKind.ADDRESS,
})
#: Shorter values are not looked for (they occur by chance inside other text).
MIN_CHARS = 6


def pii_leak_metrics(
    real: pl.DataFrame, schema: Schema, synthetic: pl.DataFrame, *, max_rows: int = 50_000, seed: int = 0
) -> dict[str, Metric]:
    """``privacy.pii_verbatim``: how many distinct real identifiers appear in ``synthetic``.

    ``real`` is the data *before* PII handling and ``schema`` its schema. Free text is scanned
    on a seeded sample of at most ``max_rows`` rows. Empty when the schema has no pii or text
    column: there is nothing to leak, and the report does not list a metric that says nothing.
    """
    if not schema.of_kind(ColumnKind.PII, ColumnKind.TEXT):
        return {}
    values: dict[str, PIIKind] = {}
    sources: list[str] = []
    for col in schema:
        if col.name not in real.columns:
            continue
        series = real.get_column(col.name)
        if col.kind == ColumnKind.PII and col.pii in LEAK_KINDS:
            distinct = series.drop_nulls().cast(pl.String).str.strip_chars().unique()
            for v in distinct.filter(distinct.str.len_chars() >= MIN_CHARS).to_list():
                values.setdefault(v, col.pii)
            sources.append(col.name)
        elif col.kind == ColumnKind.TEXT:
            texts = series if series.len() <= max_rows else series.sample(max_rows, seed=seed)
            scan = scan_text(texts, kinds=LEAK_KINDS)
            for kind, spans in scan.spans.items():
                for v in spans:
                    if len(v) >= MIN_CHARS:
                        values.setdefault(v, kind)
            sources.append(f"{col.name} (text)")
    found = _found(values, synthetic)
    by_kind: dict[str, int] = {}
    for v in found:
        by_kind[values[v].value] = by_kind.get(values[v].value, 0) + 1
    if values:
        detail = ", ".join(f"{k} {n:,}" for k, n in sorted(by_kind.items())) or "none"
        note = (f"Looked for {len(values):,} distinct real identifiers from {', '.join(sources)} "
                f"in every string and integer column of the synthetic data; found by kind: {detail}. "
                "Names, postcodes and dates of birth are not counted (people share them).")
    else:
        note = ("The real data's pii and text columns hold no direct identifiers to look for "
                "(only names, postcodes or dates of birth, or no spans in the text).")
    return {
        "privacy.pii_verbatim": Metric(
            name="privacy.pii_verbatim",
            section="privacy",
            value=float(len(found)),
            meaning="Real personal identifiers (emails, phone and card numbers, IBANs, national "
            "ids, IPs, street addresses) found verbatim in the synthetic data; 0 means none leaked.",
            higher_is_better=False,
            threshold=0.0,
            note=note,
        )
    }


def _found(values: dict[str, PIIKind], synthetic: pl.DataFrame) -> set[str]:
    """The real values that occur in ``synthetic`` as whole tokens, in any string column."""
    found: set[str] = set()
    for name, dtype in synthetic.schema.items():
        if dtype == pl.String or dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum)):
            found |= find_whole(synthetic.get_column(name), list(values))
    return found
