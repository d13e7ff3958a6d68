"""PII detection: decide from a column's name and validated values whether it holds personal data.

Every value check has two steps: a vectorised polars regular expression picks candidates, then
a library validates them (python-stdnum for check digits, phonenumbers for phone numbers, the
standard ``ipaddress`` module for IPs, Faker's name lists for person names), over distinct
values, at most ``max_validate`` of them. A column is PII when most checked values validate as
one kind. Its name decides only when its values say nothing; an ambiguous name (``name``)
decides only when the values also look like person names, so product names stay categorical.
"""

from __future__ import annotations

import importlib
import ipaddress
import pkgutil
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import polars as pl

from synthkit.schema import PIIKind

#: Share of checked values (rows) that must validate as one kind.
MATCH_SHARE = 0.9
#: Share of distinct values that must look like person names (dictionaries are incomplete).
NAME_SHARE = 0.6
#: Share of phone-shaped values that must be *valid* numbers in some region (the rest possible).
PHONE_VALID_SHARE = 0.5
#: Distinct values validated per detector by default (regex candidate checks use every row).
MAX_VALIDATE = 500
#: Regions tried for phone numbers written without a country code.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN")

# --- names ----------------------------------------------------------------------------------
#: ``_B`` keeps a match from starting inside a word ("voice_mail", "automobile").
_B = r"(?:^|(?<=[^a-z]))"
_NAME_PATTERNS: list[tuple[re.Pattern[str], PIIKind]] = [
    (re.compile(_B + r"e[-_ ]?mail", re.I), PIIKind.EMAIL),
    (re.compile(_B + r"(phone|mobile|cell(_|$)|fax|telephone|msisdn|tel(_|$))", re.I), PIIKind.PHONE),
    (re.compile(r"^(first|given|fore)[-_ ]?names?$|^forename$|(^|_)(first|given)[-_]?name$", re.I),
     PIIKind.FIRST_NAME),
    (re.compile(r"^(last|family|sur)[-_ ]?names?$|^surname$|(^|_)(last|family)[-_]?name$", re.I),
     PIIKind.LAST_NAME),
    (re.compile(r"^full[-_ ]?name$|(person|customer|patient|client|employee|contact|member|"
                r"cardholder|account[-_ ]?holder|passenger|applicant|student)[-_ ]?name", re.I),
     PIIKind.PERSON_NAME),
    (re.compile(r"^((street|home|postal|mailing|billing|shipping|residential)[-_ ]?)?address"
                r"([-_ ]?(line)?[-_ ]?\d)?$|^street([-_ ]?address)?$|^addr[-_ ]?\d?$", re.I),
     PIIKind.ADDRESS),
    (re.compile(r"^(zip|post|postal)[-_ ]?code$|^zip$|^postcode$|^plz$", re.I), PIIKind.POSTCODE),
    (re.compile(_B + r"(ssn|social[-_ ]?security|national[-_ ]?(id|insurance)|passport|tax[-_ ]?id|"
                r"nino|bsn|personnummer|pesel|cpf|aadhaar|steuer[-_ ]?id|id[-_ ]?card)(?![a-z])", re.I),
     PIIKind.NATIONAL_ID),
    (re.compile(r"credit[-_ ]?card|card[-_ ]?(number|num|no)$|^ccn$|^pan$", re.I), PIIKind.CREDIT_CARD),
    (re.compile(_B + r"iban(?![a-z])", re.I), PIIKind.IBAN),
    (re.compile(r"(^|_)ip(v[46])?([-_ ]?addr(ess)?)?$|ip[-_ ]?address", re.I), PIIKind.IP_ADDRESS),
    (re.compile(r"birth[-_ ]?date|date[-_ ]?of[-_ ]?birth|^dob$|birthday", re.I), PIIKind.DATE_OF_BIRTH),
]
#: Names that say "a person's name" only when the values agree (products have names too).
_AMBIGUOUS_NAME = re.compile(r"^(names?|display[-_ ]?name)$", re.I)
#: Values of flag columns ("has_phone": yes/no) that a PII name must not turn into PII.
_FLAG_VALUES = {"yes", "no", "y", "n", "true", "false", "t", "f", "0", "1", ""}


def kind_from_name(name: str) -> PIIKind | None:
    """The PII kind a column name points to, if any (``name`` alone is ambiguous: None)."""
    for pattern, kind in _NAME_PATTERNS:
        if pattern.search(name):
            return kind
    return None


# --- result -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PIIDetection:
    """What a column was found to hold, how, and how many checked values agreed."""

    kind: PIIKind
    source: str  # "values": validated values decided; "name": the column name did
    matched: int  # checked values (rows) that validated as ``kind``
    checked: int  # non-null values (rows) that were checked
    locale: str | None = None  # Faker locale matching the values' country (phones, IBANs, ids)
    scheme: str | None = None  # the identifier scheme that validated, e.g. "nl.bsn", "luhn"

    @property
    def share(self) -> float:
        return self.matched / self.checked if self.checked else 0.0


def detect_pii(name: str, values: pl.Series, *, max_validate: int = MAX_VALIDATE) -> PIIDetection | None:
    """What personal data a column holds, judged by its values first, then its name.

    ``values`` are the column's values (nulls are ignored; a sample is enough); at most
    ``max_validate`` distinct values, the most frequent, are validated. Integer columns are
    checked only for kinds with check digits (cards, national ids) and by identifier or
    postcode names, so a column of 16-digit numbers that fail Luhn is not a card; dates only
    by a date-of-birth name. None for non-PII.
    """
    non_null = values.drop_nulls()
    if len(non_null) == 0:
        return None
    numeric = non_null.dtype.is_integer()
    if non_null.dtype.is_float() or non_null.dtype == pl.Boolean or non_null.dtype.is_temporal():
        return _by_name_only(name, non_null)
    strings = non_null.cast(pl.String).str.strip_chars()
    strings = strings.filter(strings.str.len_chars() > 0)
    if len(strings) == 0:
        return None
    hint = kind_from_name(name)
    counts = strings.alias("v").value_counts(sort=True, name="n")
    checked = counts.head(max_validate)
    detectors = _NUMERIC_DETECTORS if numeric else _DETECTORS
    for _kind, detect in detectors:
        found = detect(checked, hint)
        if found is not None:
            return found
    if hint is None and _AMBIGUOUS_NAME.search(name) and not numeric:
        return _person_names(checked, None, relaxed=True)
    if hint is None:
        return None
    return _by_name(hint, checked, numeric)


def detect_pii_kind(name: str, values: pl.Series) -> PIIKind | None:
    """The PII kind a column holds (see :func:`detect_pii`); None for non-PII columns."""
    found = detect_pii(name, values)
    return None if found is None else found.kind


def _by_name(hint: PIIKind, counts: pl.DataFrame, numeric: bool) -> PIIDetection | None:
    """A PII name decides, unless the values plainly are something else.

    Flags ("has_phone": yes/no) and low-cardinality categories (Ames "Street": Pave/Grvl) are
    not personal data; integers count only for identifier kinds with 6 digits or more, and for
    postcodes (ZIP codes read as numbers).
    """
    values = counts.get_column("v")
    total = int(counts.get_column("n").sum())
    if set(values.str.to_lowercase().head(20).to_list()) <= _FLAG_VALUES:
        return None
    if hint != PIIKind.DATE_OF_BIRTH and len(values) <= 5 and total >= 50:
        return None
    if numeric:  # identifiers of 6 digits or more, and postcodes read as numbers (ZIP codes)
        digits = float(values.str.len_chars().median() or 0)
        if hint == PIIKind.POSTCODE:
            if not 3 <= digits <= 10:
                return None
        elif hint not in (PIIKind.PHONE, PIIKind.NATIONAL_ID, PIIKind.CREDIT_CARD) or digits < 6:
            return None
    return PIIDetection(hint, "name", matched=0, checked=total)


def _by_name_only(name: str, values: pl.Series) -> PIIDetection | None:
    """Dates (and floats) say nothing by value: only a date-of-birth name makes them PII."""
    if values.dtype.is_temporal() and kind_from_name(name) == PIIKind.DATE_OF_BIRTH:
        return PIIDetection(PIIKind.DATE_OF_BIRTH, "name", matched=0, checked=len(values))
    return None


# --- helpers ----------------------------------------------------------------------------------
def _share(counts: pl.DataFrame, mask: np.ndarray | pl.Series) -> tuple[int, int]:
    """(rows whose value is in ``mask``, all checked rows)."""
    n = counts.get_column("n").to_numpy()
    m = np.asarray(mask, dtype=bool)
    return int(n[m].sum()), int(n.sum())


def _validated(values: list[str], check: Callable[[str], bool], where: np.ndarray,
               *, give_up: bool = False) -> np.ndarray:
    """``check`` each value where ``where`` holds; with ``give_up``, stop (all False) when
    fewer than half of the first 50 checked pass: that scheme cannot reach the threshold."""
    out = np.zeros(len(values), dtype=bool)
    done = 0
    for i in np.flatnonzero(where):
        try:
            out[i] = bool(check(values[i]))
        except Exception:  # noqa: BLE001 - a validator that chokes on a value says "not valid"
            out[i] = False
        done += 1
        if give_up and done == 50 and out.sum() < 25:
            return np.zeros(len(values), dtype=bool)
    return out


def _found(kind: PIIKind, counts: pl.DataFrame, mask: np.ndarray, share: float = MATCH_SHARE,
           **extra: str | None) -> PIIDetection | None:
    matched, total = _share(counts, mask)
    if total == 0 or matched < share * total:
        return None
    return PIIDetection(kind, "values", matched=matched, checked=total, **extra)  # type: ignore[arg-type]


def _candidates(counts: pl.DataFrame, pattern: str) -> np.ndarray:
    return counts.get_column("v").str.contains(pattern).to_numpy()


def _quick_reject(counts: pl.DataFrame, mask: np.ndarray, share: float = MATCH_SHARE) -> bool:
    matched, total = _share(counts, mask)
    return total == 0 or matched < share * total


# --- emails -----------------------------------------------------------------------------------
EMAIL_RE = (r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}")


def valid_email(value: str) -> bool:
    """RFC 5321-style syntax check: dot-atom local part of at most 64, a dotted host name."""
    local, _, domain = value.rpartition("@")
    return 0 < len(local) <= 64 and len(domain) <= 253 and re.fullmatch(EMAIL_RE, value) is not None


def _emails(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    mask = counts.get_column("v").str.contains(f"^{EMAIL_RE}$").to_numpy()
    mask &= (counts.get_column("v").str.split("@").list.first().str.len_chars() <= 64).to_numpy()
    return _found(PIIKind.EMAIL, counts, mask)


# --- credit cards -----------------------------------------------------------------------------
def valid_card(digits: str) -> bool:
    """12-19 digits, an issuer's first digit (1-6: JCB, Amex, Visa, Mastercard, Maestro,
    Discover, UnionPay) and a valid Luhn check digit."""
    from stdnum import luhn

    return 12 <= len(digits) <= 19 and digits[0] in "123456" and digits.isdigit() and luhn.is_valid(digits)


def _cards(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    cand = _candidates(counts, r"^(?:\d[ -]?){11,18}\d$")
    if _quick_reject(counts, cand):
        return None
    values = counts.get_column("v").to_list()
    mask = _validated(values, lambda v: valid_card(re.sub(r"[ -]", "", v)), cand)
    return _found(PIIKind.CREDIT_CARD, counts, mask, scheme="luhn")


# --- IBANs ------------------------------------------------------------------------------------
def valid_iban(value: str) -> bool:
    """An IBAN whose country, length and mod-97 check digits python-stdnum accepts."""
    from stdnum import iban

    return bool(iban.is_valid(value))


def _ibans(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    upper = counts.get_column("v").str.to_uppercase()
    cand = upper.str.contains(r"^[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}$").to_numpy()
    if _quick_reject(counts, cand):
        return None
    values = upper.to_list()
    mask = _validated(values, valid_iban, cand)
    countries = Counter(v[:2] for v, ok in zip(values, mask, strict=True) if ok)
    locale = locale_for_region(countries.most_common(1)[0][0]) if countries else None
    return _found(PIIKind.IBAN, counts, mask, locale=locale, scheme="iban")


# --- national ids -----------------------------------------------------------------------------
#: (python-stdnum module, Faker locale, strong). Strong schemes carry a checksum or an embedded
#: date that random digits rarely pass; weak ones (a single mod-10/11 digit, or none) count only
#: when values are written with separators ("046 454 286") or the column name says id.
NATIONAL_ID_SCHEMES: tuple[tuple[str, str, bool], ...] = (
    ("us.ssn", "en_US", False),
    ("fr.nir", "fr_FR", True),
    ("it.codicefiscale", "it_IT", True),
    ("es.dni", "es_ES", True),
    ("es.nie", "es_ES", True),
    ("se.personnummer", "sv_SE", True),
    ("fi.hetu", "fi_FI", True),
    ("no.fodselsnummer", "no_NO", True),
    ("pl.pesel", "pl_PL", True),
    ("be.nn", "nl_BE", True),
    ("br.cpf", "pt_BR", True),
    ("ch.ssn", "de_CH", True),
    ("de.idnr", "de_DE", True),
    ("cn.ric", "zh_CN", True),
    ("cz.rc", "cs_CZ", False),
    ("dk.cpr", "da_DK", False),
    ("nl.bsn", "nl_NL", False),
    ("ca.sin", "en_CA", False),
    ("in_.aadhaar", "en_IN", False),
    ("gb.nhs", "en_GB", False),
)
_ID_CANDIDATE = r"^[0-9A-Za-z][0-9A-Za-z .\-/+]{5,24}$"


@cache
def _stdnum(module: str) -> object:
    return importlib.import_module(f"stdnum.{module}")


def valid_national_id(value: str, scheme: str) -> bool:
    """Whether ``value`` is a valid identifier of ``scheme`` (a python-stdnum module name)."""
    try:
        return bool(_stdnum(scheme).is_valid(value))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return False


def _national_ids(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    v = counts.get_column("v")
    cand = (v.str.contains(_ID_CANDIDATE) & (v.str.count_matches(r"\d") >= 5)).to_numpy()
    if _quick_reject(counts, cand):
        return None
    formatted = v.str.contains(r"[ .\-/]").to_numpy()
    weak_ok = hint == PIIKind.NATIONAL_ID or _share(counts, formatted & cand)[0] >= MATCH_SHARE * _share(
        counts, cand)[1]
    values = v.to_list()
    best: PIIDetection | None = None
    for scheme, locale, strong in NATIONAL_ID_SCHEMES:
        if not strong and not weak_ok:
            continue
        if scheme == "us.ssn" and hint != PIIKind.NATIONAL_ID:
            ok = cand & v.str.contains(r"^\d{3}-\d{2}-\d{4}$").to_numpy()
            if _quick_reject(counts, ok):
                continue
        mask = _validated(values, lambda x, s=scheme: valid_national_id(x, s), cand, give_up=True)
        found = _found(PIIKind.NATIONAL_ID, counts, mask, locale=locale, scheme=scheme)
        if found is not None and (best is None or found.matched > best.matched):
            best = found
    return best


# --- IP addresses -----------------------------------------------------------------------------
def valid_ip(value: str) -> bool:
    """An IPv4 or IPv6 address (any standard notation), as the ``ipaddress`` module reads it."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ips(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    v = counts.get_column("v")
    cand = v.str.contains(r"^(?:\d{1,3}\.){3}\d{1,3}$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$")
    cand_np = cand.to_numpy()
    if _quick_reject(counts, cand_np):
        return None
    mask = _validated(v.to_list(), valid_ip, cand_np)
    return _found(PIIKind.IP_ADDRESS, counts, mask)


# --- phone numbers ----------------------------------------------------------------------------
_PHONE_EXTENSION = r"\s*(?:x|ext\.?|#)\s*\d{1,6}$"
_PHONE_SHAPE = r"^(?:\+|00)?[\d ()./-]{6,22}\d(?:" + _PHONE_EXTENSION.removesuffix("$") + ")?$"
_DATE_SHAPE = r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$|^\d{1,2}:\d{2}"
#: How a phone number without a phone-ish column name is written: with a country code (+, 00),
#: a trunk prefix (0, as most countries write national numbers), or North American 3-3-4
#: grouping ("(415) 555-2671", "415.555.2671", or ten bare digits of a valid shape). Ranges
#: ("2500-5000"), seasons ("2003-2004") and ids ("2015-000001", "877-76317") are not.
PHONE_LEAD = (r"^(?:\+|00|\(?0)"
              r"|^(?:1[-. ]?)?(?:\(\d{3}\)|\d{3})[-. ]?\d{3}[-. ]\d{4}(?:\s*(?:x|ext\.?|#)\s*\d{1,6})?$"
              r"|^(?:1[-. ]?)?[2-9]\d{2}[2-9]\d{6}$")


def phone_match(value: str, regions: tuple[str, ...] = PHONE_REGIONS) -> tuple[bool, bool, str | None]:
    """(possible, valid, region) of a phone number, trying ``regions`` in order when it has no
    country code ("+49 ..." or "0049 ..." needs none)."""
    import phonenumbers

    text = "+" + value[2:] if value.startswith("00") else value
    tries: tuple[str | None, ...] = (None,) if text.startswith("+") else regions
    possible = False
    for region in tries:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True, True, phonenumbers.region_code_for_number(number)
        possible = possible or phonenumbers.is_possible_number(number)
    return possible, False, None


def best_phone_regions(values: list[str], regions: tuple[str, ...] = PHONE_REGIONS) -> tuple[str, ...]:
    """``regions`` ordered for reading a column's national-format numbers.

    "0837 783533" is valid in Germany and in the Netherlands. The countries of the column's
    international numbers ("+31 ...") come first; then the regions that validate most of its
    national ones. The order also picks the locale of the fakes.
    """
    import phonenumbers

    international: Counter[str] = Counter()
    for value in [v for v in values if v.startswith(("+", "00"))][:100]:
        _, valid, region = phone_match(value, regions)
        if valid and region:
            international[region] += 1
    national = [v for v in values if not v.startswith(("+", "00"))][:100]
    scores = {}
    for region in regions:
        valid = 0
        for value in national:
            try:
                valid += phonenumbers.is_valid_number(phonenumbers.parse(value, region))
            except phonenumbers.NumberParseException:
                pass
        scores[region] = (international[region], valid)
    seen = [r for r, _ in international.most_common() if r not in regions]
    return (*sorted(regions, key=lambda r: (-scores[r][0], -scores[r][1])), *seen)


def _phones(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    v = counts.get_column("v")
    digits = v.str.replace(_PHONE_EXTENSION, "").str.count_matches(r"\d")
    shaped = v.str.contains(_PHONE_SHAPE) & ~v.str.contains(_DATE_SHAPE) & (digits >= 7) & (digits <= 15)
    if hint != PIIKind.PHONE:
        shaped = shaped & v.str.contains(PHONE_LEAD)
    cand = shaped.to_numpy()
    if _quick_reject(counts, cand):
        return None
    values = v.to_list()
    regions = best_phone_regions([x for x, c in zip(values, cand, strict=True) if c])
    possible = np.zeros(len(v), dtype=bool)
    valid = np.zeros(len(v), dtype=bool)
    found: Counter[str] = Counter()
    for i, value in enumerate(values):
        if not cand[i]:
            continue
        possible[i], valid[i], region = phone_match(value, regions)
        if region:
            found[region] += 1
    n_valid, total = _share(counts, valid)
    if n_valid < PHONE_VALID_SHARE * total:
        return None
    # the best-suited region names the locale (a US number that happens to be valid in
    # Germany should not make the fakes German)
    locale = locale_for_region(regions[0] if found[regions[0]] else found.most_common(1)[0][0]) \
        if found else None
    return _found(PIIKind.PHONE, counts, possible | valid, locale=locale, scheme="phonenumbers")


# --- street addresses -------------------------------------------------------------------------
_STREET_SUFFIXES_EXTRA = (
    "st", "ave", "av", "rd", "blvd", "ln", "dr", "ct", "pl", "sq", "ter", "pkwy", "hwy", "cir",
    "trl", "way", "close", "crescent", "grove", "mews", "row", "walk", "gardens", "hill",
)
_STREET_PREFIXES = (
    "rue", "avenue", "boulevard", "bd", "chemin", "impasse", "allée", "allee", "place", "quai",
    "route", "calle", "avenida", "paseo", "plaza", "camino", "carrer", "via", "viale", "piazza",
    "corso", "largo", "vicolo", "strada", "borgo", "contrada", "incrocio", "rotonda", "canale",
    "stretto", "piazzale", "lungomare", "salita", "rua", "travessa", "praça",
    "estrada", "alameda", "ulica", "ul", "aleja",
)
_STREET_COMPOUNDS = (
    "straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "ring", "damm", "ufer", "laan",
    "straat", "plein", "gracht", "kade", "singel", "boulevard", "dreef", "dijk", "steeg", "markt",
    "chaussee", "pfad", "pad", "hof", "vej", "gade", "stræde", "gatan", "gata", "vägen", "gränd",
    "torget", "stigen", "veien", "gate", "katu", "tie", "kuja",
)


@lru_cache(maxsize=1)
def street_words() -> tuple[str, ...]:
    """Street-type words ("Street", "Ave", "Lane", ...) from Faker's address lists, lower-cased."""
    words: set[str] = set(_STREET_SUFFIXES_EXTRA)
    for locale in ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN"):
        words.update(_faker_address_words(locale, "street_suffixes"))
    return tuple(sorted(words, key=lambda w: (-len(w), w)))


@lru_cache(maxsize=1)
def street_prefixes() -> tuple[str, ...]:
    """Street-type words written before the name ("rue", "Calle", "Via"), lower-cased."""
    words: set[str] = set(_STREET_PREFIXES)
    for locale in ("fr_FR", "es_ES", "it_IT", "pt_BR", "pt_PT"):
        words.update(_faker_address_words(locale, "street_prefixes"))
    return tuple(sorted(words, key=lambda w: (-len(w), w)))


def _faker_address_words(locale: str, attr: str) -> set[str]:
    try:
        provider = importlib.import_module(f"faker.providers.address.{locale}").Provider
    except ImportError:  # pragma: no cover - every Faker release ships these
        return set()
    words = getattr(provider, attr, ())
    if not isinstance(words, (tuple, list, dict)):
        return set()
    return {w.lower() for w in words if isinstance(w, str) and w.replace(" ", "").isalpha()}


@lru_cache(maxsize=1)
def address_patterns() -> tuple[str, ...]:
    """Regexes (unanchored) for one street address in the common layouts.

    "221B Baker Street" (number first), "rue de Rivoli 12" / "Via Roma 5" (street type first),
    "Hauptstraße 5" / "Keizersgracht 12" (street type as a word ending) and "Åkerstigen 74,
    96828 Skövde" (street, number, postcode, town). The last one, a street type without a
    number, is too loose for free text and serves whole-column checks only.
    """
    suffixes = "|".join(re.escape(w) for w in street_words())
    prefixes = "|".join(re.escape(w) for w in street_prefixes())
    compounds = "|".join(re.escape(w) for w in _STREET_COMPOUNDS)
    return (
        rf"(?i)\b\d{{1,6}}[a-z]?,?\s+(?:[\p{{L}}'.-]+\s+){{0,4}}(?:{suffixes})\b\.?",
        rf"(?i)(?:\b\d{{1,5}}[a-z]?,?\s+)?\b(?:{prefixes})\.?\s+(?:[\p{{L}}'.-]+\s+){{0,4}}[\p{{L}}'.-]+,?\s+\d{{1,5}}[a-z]?\b",
        rf"(?i)\b[\p{{L}}'-]*(?:{compounds})\s+\d{{1,5}}[a-z]?\b",
        # street and number, then postcode and town: "Åkerstigen 74, 96828 Skövde"
        r"\b\p{Lu}[\p{L}'.-]+(?: [\p{L}'.-]+){0,3} \d{1,5}[a-zA-Z]?(?:[-/]\d{1,4})?, ?"
        r"(?:[A-Z]{1,2}-)?\d{2}-?\d{2,3} ?[A-Z]{0,2},? \p{Lu}",
        r"\b(?:PSC|Unit) \d{1,5},? Box \d{1,5}|\b[APD]PO A[AEP] \d{5}\b",  # US military mail
        rf"(?i)(?:\b\d{{1,5}}[a-z]?,?\s+)?\b(?:{prefixes})\.?\s+(?:[\p{{L}}'.-]+\s+){{0,4}}[\p{{L}}'.-]+",
    )


def _addresses(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    v = counts.get_column("v")
    looks = pl.Series([False] * len(v))
    for pattern in address_patterns():
        looks = looks | v.str.contains(pattern)
    looks = looks & v.str.contains(r"\d") & (v.str.len_chars() <= 200)
    return _found(PIIKind.ADDRESS, counts, looks.to_numpy(), share=0.8)


# --- person names -----------------------------------------------------------------------------
_TITLES = ("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "lady", "lord", "rev",
           "jr", "sr", "ii", "iii", "iv", "phd", "md", "dds", "dvm", "esq")


@lru_cache(maxsize=2)
def name_dictionary(*, broad: bool = True) -> tuple[pl.Series, pl.Series]:
    """Lower-cased first names and last names from every Faker person provider (offline).

    ``broad`` includes Faker's generic ``en`` list: every first name in US birth records,
    "Governor" and "Captain" among them. Good for judging whole columns; free text uses the
    narrow lists.
    """
    import faker.providers.person as people

    firsts: set[str] = set()
    lasts: set[str] = set()
    for module in pkgutil.iter_modules(people.__path__):
        if module.name == "en" and not broad:
            continue
        try:
            provider = importlib.import_module(f"faker.providers.person.{module.name}").Provider
        except ImportError:  # pragma: no cover
            continue
        for attr, into in (("first_names", firsts), ("first_names_male", firsts),
                           ("first_names_female", firsts), ("first_names_nonbinary", firsts),
                           ("last_names", lasts)):
            names = getattr(provider, attr, ())
            if not isinstance(names, (tuple, list, dict)):
                continue
            for name in names:
                for token in str(name).lower().replace("-", " ").split():
                    if len(token) > 1:
                        into.add(token)
    return pl.Series("first", sorted(firsts)), pl.Series("last", sorted(lasts))


def name_tokens(values: pl.Series) -> pl.Series:
    """Lower-cased name tokens per value: "Last, First" turned around, titles and initials gone."""
    s = values.cast(pl.String).str.strip_chars()
    frame = pl.DataFrame({"s": s})
    before = pl.col("s").str.split_exact(",", 1).struct.field("field_0")
    after = pl.col("s").str.split_exact(",", 1).struct.field("field_1")
    turned = (
        pl.when(pl.col("s").str.count_matches(",") == 1).then(after + pl.lit(" ") + before)
        .otherwise(pl.col("s"))
    )
    tokens = (
        turned.str.to_lowercase().str.replace_all(r"[.\-]", " ").str.split(" ")
        .list.eval(pl.element().str.strip_chars().filter(
            (pl.element().str.strip_chars().str.len_chars() > 1)
            & ~pl.element().str.strip_chars().is_in(pl.Series(_TITLES).implode())
        ))
    )
    return frame.select(tokens.alias("t")).to_series()


def name_likeness(values: pl.Series) -> pl.DataFrame:
    """Per value: ``full`` (2-4 name tokens, the first a first name, the last a last or first
    name, or any word in "Last, First" order), ``first`` and ``last`` (one token found in that
    dictionary)."""
    first_names, last_names = name_dictionary()
    firsts, lasts = first_names.implode(), last_names.implode()
    shaped = values.cast(pl.String).str.contains(r"^[\p{L}][\p{L}'’ .,-]*$")
    tokens = name_tokens(values)
    # "Warhol, Andy": the catalogue order is evidence enough for the surname
    comma = values.cast(pl.String).str.count_matches(",") == 1
    frame = pl.DataFrame({"t": tokens, "ok": shaped, "comma": comma})
    n = pl.col("t").list.len()
    first = pl.col("t").list.first()
    last = pl.col("t").list.last()
    return frame.select(
        full=pl.col("ok") & n.is_between(2, 4) & first.is_in(firsts)
        & (last.is_in(lasts) | last.is_in(firsts) | pl.col("comma")),
        first=pl.col("ok") & (n == 1) & first.is_in(firsts),
        last=pl.col("ok") & (n == 1) & first.is_in(lasts),
    )


def _person_names(counts: pl.DataFrame, hint: PIIKind | None, *, relaxed: bool = False) -> PIIDetection | None:
    """Person names by values: full names anywhere; single names only under a name-ish column."""
    v = counts.get_column("v")
    if len(v) < 5 or not bool(v.str.contains(r"^[\p{L}]").any()):
        return None
    looks = name_likeness(v)
    full = looks.get_column("full").to_numpy()
    first = looks.get_column("first").to_numpy()
    last = looks.get_column("last").to_numpy()
    threshold = 0.5 if relaxed else NAME_SHARE
    if full.mean() >= threshold:
        matched, total = _share(counts, full)
        return PIIDetection(PIIKind.PERSON_NAME, "values", matched=matched, checked=total)
    if relaxed and (first | last | full).mean() >= threshold:
        matched, total = _share(counts, first | last | full)
        shares = {PIIKind.PERSON_NAME: full.sum(), PIIKind.FIRST_NAME: first.sum(),
                  PIIKind.LAST_NAME: last.sum()}
        return PIIDetection(max(shares, key=lambda k: shares[k]), "values", matched=matched, checked=total)
    return None


# --- DOB by name, with date-looking values ----------------------------------------------------
def _dates_of_birth(counts: pl.DataFrame, hint: PIIKind | None) -> PIIDetection | None:
    if hint != PIIKind.DATE_OF_BIRTH:
        return None
    v = counts.get_column("v")
    mask = v.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|^\d{8}$").to_numpy()
    found = _found(PIIKind.DATE_OF_BIRTH, counts, mask)
    return None if found is None else PIIDetection(found.kind, "name", found.matched, found.checked)


# --- locales ----------------------------------------------------------------------------------
_REGION_LOCALE = {
    "US": "en_US", "GB": "en_GB", "IE": "en_IE", "IN": "en_IN", "CA": "en_CA", "AU": "en_AU",
    "NZ": "en_NZ", "DE": "de_DE", "AT": "de_AT", "CH": "de_CH", "FR": "fr_FR", "BE": "nl_BE",
    "NL": "nl_NL", "ES": "es_ES", "IT": "it_IT", "PT": "pt_PT", "BR": "pt_BR", "MX": "es_MX",
    "PL": "pl_PL", "SE": "sv_SE", "NO": "no_NO", "DK": "da_DK", "FI": "fi_FI", "CZ": "cs_CZ",
    "CN": "zh_CN", "JP": "ja_JP", "KR": "ko_KR",
}


def locale_for_region(region: str | None) -> str | None:
    """The Faker locale for an ISO 3166 region code, when Faker has one."""
    if not region:
        return None
    from faker.config import AVAILABLE_LOCALES

    locale = _REGION_LOCALE.get(region.upper())
    if locale in AVAILABLE_LOCALES:
        return locale
    matches = sorted(loc for loc in AVAILABLE_LOCALES if loc.endswith("_" + region.upper()))
    return matches[0] if matches else None


# --- detector order ---------------------------------------------------------------------------
_Detector = Callable[[pl.DataFrame, PIIKind | None], PIIDetection | None]
#: The order settles overlaps: check digits first, loose shapes (phones, names) last.
_DETECTORS: list[tuple[PIIKind, _Detector]] = [
    (PIIKind.EMAIL, _emails),
    (PIIKind.IBAN, _ibans),
    (PIIKind.CREDIT_CARD, _cards),
    (PIIKind.NATIONAL_ID, _national_ids),
    (PIIKind.IP_ADDRESS, _ips),
    (PIIKind.DATE_OF_BIRTH, _dates_of_birth),
    (PIIKind.PHONE, _phones),
    (PIIKind.ADDRESS, _addresses),
    (PIIKind.PERSON_NAME, _person_names),
]
#: Integer columns: only kinds a check digit proves (random ids fail it).
_NUMERIC_DETECTORS: list[tuple[PIIKind, _Detector]] = [
    (PIIKind.CREDIT_CARD, _cards),
    (PIIKind.NATIONAL_ID, _national_ids),
]
