"""PII detection: decide from a column's name and sampled values whether it holds personal data.

Values are checked with vectorised regular expressions first; identifiers with check digits
(credit cards, IBANs) are then validated with python-stdnum so a column of random digits is not
flagged. A column is PII when most of its sampled values match one kind.
"""

from __future__ import annotations

import re

import polars as pl

from synthkit.schema import PIIKind

#: Share of sampled non-null values that must match a value pattern.
MATCH_SHARE = 0.9
_VALIDATE_AT_MOST = 500

#: Column-name patterns; ``_B`` keeps a match from starting inside a word ("voice_mail").
_B = r"(?:^|(?<=[^a-z]))"
_NAME_PATTERNS: list[tuple[re.Pattern[str], PIIKind]] = [
    (re.compile(_B + r"e[-_ ]?mail", re.I), PIIKind.EMAIL),
    (re.compile(_B + r"(phone|mobile|cell(_|$)|fax|telephone)", re.I), PIIKind.PHONE),
    (re.compile(r"^(first|given)[-_ ]?name$|^forename$", re.I), PIIKind.FIRST_NAME),
    (re.compile(r"^(last|family|sur)[-_ ]?name$|^surname$", re.I), PIIKind.LAST_NAME),
    (re.compile(r"^(full[-_ ]?)?name$|(person|customer|patient)[-_ ]?name", re.I),
     PIIKind.PERSON_NAME),
    (re.compile(r"^((street|home|postal|mailing)[-_ ]?)?address$|^street$", re.I), PIIKind.ADDRESS),
    (re.compile(r"^(zip|post)[-_ ]?code$|^zip$|^postcode$", re.I), PIIKind.POSTCODE),
    (re.compile(_B + r"(ssn|social[-_ ]?security|national[-_ ]?id|passport|tax[-_ ]?id|nino)(?![a-z])",
                re.I), PIIKind.NATIONAL_ID),
    (re.compile(r"credit[-_ ]?card|card[-_ ]?number|^ccn$|^pan$", re.I), PIIKind.CREDIT_CARD),
    (re.compile(_B + r"iban(?![a-z])", re.I), PIIKind.IBAN),
    (re.compile(r"(^|_)ip([-_ ]?addr(ess)?)?$|ip[-_ ]?address", re.I), PIIKind.IP_ADDRESS),
    (re.compile(r"birth[-_ ]?date|date[-_ ]?of[-_ ]?birth|^dob$", re.I), PIIKind.DATE_OF_BIRTH),
]
#: Values of flag columns ("has_phone": yes/no) that a PII name must not turn into PII.
_FLAG_VALUES = {"yes", "no", "y", "n", "true", "false", "t", "f", "0", "1", ""}

_VALUE_PATTERNS: list[tuple[str, PIIKind]] = [
    (r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", PIIKind.EMAIL),
    (r"^\d{3}-\d{2}-\d{4}$", PIIKind.NATIONAL_ID),
    (r"^(?:\d[ -]?){12,18}\d$", PIIKind.CREDIT_CARD),
    (r"^[A-Z]{2}\d{2}[ ]?(?:[A-Z0-9]{4}[ ]?){2,7}[A-Z0-9]{1,4}$", PIIKind.IBAN),
    (r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$", PIIKind.IP_ADDRESS),
    (r"^(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}$", PIIKind.IP_ADDRESS),
    (r"^\+?\(?\d{1,4}\)?[-. ]?\(?\d{2,4}\)?[-. ]?\d{3,4}[-. ]?\d{3,4}(?:\s*(?:x|ext)\.?\s*\d+)?$",
     PIIKind.PHONE),
]


def detect_pii_kind(name: str, values: pl.Series) -> PIIKind | None:
    """The PII kind a string column holds, judged by its values first, then its name.

    ``values`` are non-null strings (a sample is enough). Returns None for non-PII columns.
    """
    by_value = _kind_from_values(values)
    if by_value is not None:
        return by_value
    distinct = values.cast(pl.String).str.to_lowercase().str.strip_chars().unique().head(20)
    if set(distinct.to_list()) <= _FLAG_VALUES:
        return None
    for pattern, kind in _NAME_PATTERNS:
        if pattern.search(name):
            return kind
    return None


def _kind_from_values(values: pl.Series) -> PIIKind | None:
    if len(values) == 0:
        return None
    stripped = values.cast(pl.String).str.strip_chars()
    for pattern, kind in _VALUE_PATTERNS:
        matches = stripped.str.contains(pattern)
        if kind == PIIKind.PHONE:  # E.164: at most 15 digits, and at least 7 to be a number
            digits = stripped.str.count_matches(r"\d")
            matches = matches & (digits >= 7) & (digits <= 15)
        share = float(matches.mean() or 0.0)
        if share < MATCH_SHARE:
            continue
        if kind in (PIIKind.CREDIT_CARD, PIIKind.IBAN) and not _checksums_hold(stripped, pattern, kind):
            continue
        return kind
    return None


def _checksums_hold(values: pl.Series, pattern: str, kind: PIIKind) -> bool:
    """True when most pattern-matching values also pass their check-digit validation."""
    from stdnum import iban, luhn

    candidates = values.filter(values.str.contains(pattern)).head(_VALIDATE_AT_MOST).to_list()
    compact = [re.sub(r"[ -]", "", v) for v in candidates]
    check = luhn.is_valid if kind == PIIKind.CREDIT_CARD else iban.is_valid
    valid = sum(1 for v in compact if check(v))
    return valid >= MATCH_SHARE * len(compact)
