"""Free-text PII: find personal data inside text, span by span, and replace it.

Candidates come from vectorised polars regexes (``str.extract_all``); each *distinct* candidate
is validated once, by the same checks as whole columns: emails by syntax, phone numbers by
phonenumbers (a number as a whole, else ``PhoneNumberMatcher`` inside the candidate), cards by
Luhn, IBANs and national ids by python-stdnum, IPs by ``ipaddress``, person names by Faker's
name lists. Spans found are masked before the next
kind is looked for, so a card number is never also counted as a phone number. Replacing is one
Aho-Corasick pass (``str.replace_many``) over the column.

Names and street addresses in prose are found by dictionaries and patterns, not a language
model: "Contact John Smith" is found, an unusual name or a written-out address may not be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import polars as pl

from synthkit.prepare import pii_detect as detect
from synthkit.schema import PIIKind

#: Kinds looked for in free text, in the order overlaps are settled.
SPAN_KINDS: tuple[PIIKind, ...] = (
    PIIKind.EMAIL,
    PIIKind.IBAN,
    PIIKind.CREDIT_CARD,
    PIIKind.NATIONAL_ID,
    PIIKind.IP_ADDRESS,
    PIIKind.PHONE,
    PIIKind.ADDRESS,
    PIIKind.PERSON_NAME,
)
#: Stands in for a span already found while later kinds are looked for.
_MASK = "\x00"


@dataclass
class TextScan:
    """The PII spans found in a text column: by kind, each distinct span with its occurrences."""

    spans: dict[PIIKind, dict[str, int]] = field(default_factory=dict)
    rows: int = 0
    rows_with_pii: int = 0

    @property
    def counts(self) -> dict[PIIKind, int]:
        """Occurrences per kind (kinds with none left out)."""
        return {k: sum(v.values()) for k, v in self.spans.items() if v}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def values(self, kinds: Iterable[PIIKind] | None = None) -> list[str]:
        """The distinct span texts, of ``kinds`` (default: all)."""
        wanted = set(kinds) if kinds is not None else None
        return [s for k, v in self.spans.items() if wanted is None or k in wanted for s in v]


def placeholder(kind: PIIKind) -> str:
    """The typed placeholder a redacted span becomes, e.g. ``<EMAIL>``."""
    return f"<{kind.value.upper()}>"


def scan_text(
    texts: pl.Series,
    *,
    kinds: Iterable[PIIKind] = SPAN_KINDS,
    phone_regions: tuple[str, ...] = detect.PHONE_REGIONS,
) -> TextScan:
    """Find the PII spans in ``texts`` (nulls are skipped)."""
    original = texts.cast(pl.String).fill_null("")
    masked = original
    scan = TextScan(rows=int(texts.len() - texts.null_count()))
    for kind in [k for k in SPAN_KINDS if k in set(kinds)]:
        found: set[str] = set()
        for pattern, validate in _finders(kind, phone_regions):
            candidates = masked.str.extract_all(pattern).explode().drop_nulls().unique()
            if len(candidates):
                found.update(validate(candidates))
        found.discard("")
        if not found:
            continue
        patterns = sorted(found, key=lambda s: (-len(s), s))
        hits = masked.str.extract_many(patterns, leftmost=True).explode().drop_nulls()
        scan.spans[kind] = {str(k): int(v) for k, v in hits.value_counts().iter_rows()}
        masked = masked.str.replace_many(patterns, [_MASK] * len(patterns), leftmost=True)
    scan.rows_with_pii = int((masked != original).sum())
    return scan


def count_spans(texts: pl.Series) -> dict[PIIKind, int]:
    """Occurrences of PII spans per kind in ``texts`` (see :func:`scan_text`)."""
    return scan_text(texts).counts


def replace_spans(
    texts: pl.Series,
    scan: TextScan,
    replacements: Callable[[PIIKind, list[str]], list[str]],
) -> pl.Series:
    """``texts`` with every span of ``scan`` replaced by ``replacements(kind, spans)``.

    ``replacements`` returns one string per span, in order (a placeholder, a fake, a token).
    Longer spans win where spans overlap; nulls stay null.
    """
    mapping: dict[str, str] = {}
    for kind, spans in scan.spans.items():
        distinct = [s for s in spans if s not in mapping]
        if distinct:
            mapping.update(zip(distinct, replacements(kind, distinct), strict=True))
    if not mapping:
        return texts
    patterns = sorted(mapping, key=lambda s: (-len(s), s))
    out = texts.cast(pl.String).str.replace_many(patterns, [mapping[p] for p in patterns], leftmost=True)
    return out.alias(texts.name)


def find_whole(texts: pl.Series, values: list[str]) -> set[str]:
    """Which of ``values`` occur in ``texts`` as whole tokens: a fake "matthewsmith@example.com"
    does not contain the real "wsmith@example.com". One Aho-Corasick pass; rows with a hit
    (few) are then checked at the match edges."""
    if not values or texts.len() == 0:
        return set()
    patterns = sorted(set(values), key=lambda v: (-len(v), v))
    frame = texts.drop_nulls().cast(pl.String).alias("t").to_frame()
    hits = frame.with_columns(
        m=pl.col("t").str.extract_many(patterns, overlapping=True),
        at=pl.col("t").str.find_many(patterns, overlapping=True),
    ).filter(pl.col("m").list.len() > 0)
    found: set[str] = set()
    for text, matched, starts in hits.iter_rows():
        raw = text.encode("utf-8")
        for value, start in zip(matched, starts, strict=True):
            if value not in found and _whole(raw, start, start + len(value.encode("utf-8"))):
                found.add(value)
    return found


_INNER = frozenset(b"@._%+-'")


def _whole(raw: bytes, start: int, end: int) -> bool:
    """Whether ``raw[start:end]`` stands alone: no letter, digit or identifier character joins
    it on either side (a full stop after it may end a sentence)."""
    before = raw[start - 1] if start > 0 else None
    after = raw[end] if end < len(raw) else None
    if before is not None and (chr(before).isalnum() or before in _INNER or before >= 0x80):
        return False
    if after is None:
        return True
    if after == ord("."):
        return end + 1 >= len(raw) or not chr(raw[end + 1]).isalnum()
    return not (chr(after).isalnum() or after in _INNER or after >= 0x80)


# --- finders: (regex, validator of distinct candidates -> valid span texts) -------------------
_Validator = Callable[[pl.Series], set[str]]


def _finders(kind: PIIKind, regions: tuple[str, ...]) -> list[tuple[str, _Validator]]:
    if kind == PIIKind.EMAIL:
        return [(detect.EMAIL_RE, lambda c: {v for v in c.to_list() if detect.valid_email(v)})]
    if kind == PIIKind.IBAN:
        return [(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
                 lambda c: _windows(c, detect.valid_iban, min_chars=15))]
    if kind == PIIKind.CREDIT_CARD:
        # as cards are printed: groups of four, Amex's 4-6-5, or one unbroken run
        return [(r"\b(?:\d{4}[ -]){2,4}\d{1,7}\b|\b\d{4}[ -]\d{6}[ -]\d{4,5}\b|\b\d{12,19}\b",
                 lambda c: _windows(c, detect.valid_card, min_chars=12))]
    if kind == PIIKind.NATIONAL_ID:
        return [(pattern, lambda c, s=schemes: _national_ids(c, s)) for pattern, schemes in _ID_FORMATS]
    if kind == PIIKind.IP_ADDRESS:
        return [
            (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", lambda c: {v for v in c.to_list() if detect.valid_ip(v)}),
            (r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}", _ipv6),
        ]
    if kind == PIIKind.PHONE:
        return [(_PHONE_CANDIDATE, lambda c: _phones(c, regions))]
    if kind == PIIKind.ADDRESS:
        return [(p, lambda c: set(c.to_list())) for p in _address_patterns()]
    if kind == PIIKind.PERSON_NAME:
        return [(_NAME_CANDIDATE, _person_names)]
    return []


def _windows(candidates: pl.Series, valid: Callable[[str], bool], *, min_chars: int) -> set[str]:
    """The longest runs of whole tokens inside each candidate that ``valid`` accepts.

    Regexes grab too much at the edges ("4111 1111 1111 1111 2024"): trying token windows,
    longest first, finds the identifier inside.
    """
    out: set[str] = set()
    for text in candidates.to_list():
        tokens = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z0-9]+", text)]
        if len(tokens) == 1:  # one run of characters: try its prefixes, longest first
            pieces = [text[:k] for k in range(len(text), 0, -1)]
        else:
            windows = sorted(((i, j) for i in range(len(tokens)) for j in range(i, len(tokens))),
                             key=lambda ij: (ij[0] - ij[1], ij[0]))
            pieces = [text[tokens[i][0]:tokens[j][1]] for i, j in windows]
        for piece in pieces:
            compact = re.sub(r"[ -]", "", piece)
            if len(compact) >= min_chars and valid(compact):
                out.add(piece)
                break
    return out


# national ids written in their usual formats, with the schemes that read each one
_ID_FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\b\d{3}-\d{2}-\d{4}\b", ("us.ssn",)),
    (r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b", ("br.cpf",)),
    (r"\b756\.?\d{4}\.?\d{4}\.?\d{2}\b", ("ch.ssn",)),
    (r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b", ("it.codicefiscale",)),
    (r"\b[XYZ]?\d{7,8}-?[A-Z]\b", ("es.dni", "es.nie")),
    (r"\b\d{6}[-+A]\d{3}[0-9A-Y]\b", ("fi.hetu",)),
    (r"\b(?:\d{2})?\d{6}[-+]\d{4}\b", ("se.personnummer", "dk.cpr")),
    (r"\b[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}\b", ("fr.nir",)),
    (r"\b\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}\b", ("be.nn",)),
    (r"\b\d{11}\b", ("pl.pesel", "no.fodselsnummer", "be.nn", "de.idnr", "br.cpf")),
    (r"\b\d{6}/\d{3,4}\b", ("cz.rc",)),
    (r"\b\d{17}[\dX]\b", ("cn.ric",)),
    (r"\b[2-9]\d{3} \d{4} \d{4}\b", ("in_.aadhaar",)),
)


def _national_ids(candidates: pl.Series, schemes: tuple[str, ...]) -> set[str]:
    return {v for v in candidates.to_list() if any(detect.valid_national_id(v, s) for s in schemes)}


def _ipv6(candidates: pl.Series) -> set[str]:
    out = set()
    for text in candidates.to_list():
        for piece in (text, text.strip(":")):
            hexdigits = sum(ch.isalnum() for ch in piece)
            if piece.count(":") >= 2 and hexdigits >= 4 and detect.valid_ip(piece):
                out.add(piece)
                break
    return out


_PHONE_CANDIDATE = r"(?:\+|\b00)?\(?\d[\d ()./-]{5,20}\d(?:\s?(?:x|ext\.?)\s?\d{1,6})?"


def _phones(candidates: pl.Series, regions: tuple[str, ...]) -> set[str]:
    """Phone numbers among the candidates: written as a phone is written (a country code, a
    trunk 0 or NANP's 3-3-4 grouping) and of a possible length for one of the three regions
    that suit this text best. Redaction errs towards removing: a number need not be assigned.

    A candidate that is one number as a whole is read directly; one with more around it
    ("4155552671 2024") goes to phonenumbers' PhoneNumberMatcher, which finds the number inside.
    """
    import phonenumbers

    # trim separators off the ends, and a bracket only when its partner is not in the span
    trimmed = candidates.str.strip_chars_start(" ./-)").str.strip_chars_end(" ./-(")
    stripped = pl.select(
        pl.when(trimmed.str.starts_with("(") & ~trimmed.str.contains(")", literal=True))
        .then(trimmed.str.slice(1)).otherwise(trimmed)
    ).to_series()
    stripped = pl.select(
        pl.when(stripped.str.ends_with(")") & ~stripped.str.contains("(", literal=True))
        .then(stripped.str.strip_chars_end(")")).otherwise(stripped)
    ).to_series()
    digits = stripped.str.replace(detect._PHONE_EXTENSION, "").str.count_matches(r"\d")
    keep = (digits >= 7) & ~stripped.str.contains(detect._DATE_SHAPE)
    stripped, digits = stripped.filter(keep), digits.filter(keep)
    whole = stripped.str.contains(detect._PHONE_SHAPE) & (digits <= 15)
    leads = stripped.str.contains(detect.PHONE_LEAD)
    shaped = stripped.filter(whole & leads).to_list()
    best = detect.best_phone_regions(shaped[:200], regions)[:3] if shaped else regions[:3]
    out: set[str] = set()
    for text in shaped:
        if detect.phone_match(text, best)[0]:
            out.add(text)
    lead = re.compile(detect.PHONE_LEAD)
    for text in stripped.filter(~whole).to_list():
        for region in best:
            matches = [m.raw_string.strip() for m in phonenumbers.PhoneNumberMatcher(
                text, region, leniency=phonenumbers.Leniency.POSSIBLE)]
            matches = [m for m in matches if lead.search(m)]
            if matches:
                out.update(matches)
                break
    return out


#: Street-type word endings distinctive enough for prose ("Spring 2012" must not match "ring").
_TEXT_COMPOUNDS = ("straße", "strasse", "gasse", "platz", "allee", "straat", "gracht", "plein",
                   "singel", "laan", "gatan", "vägen", "veien", "katu", "stræde", "gade", "vej")


@lru_cache(maxsize=1)
def _address_patterns() -> tuple[str, ...]:
    """Street addresses as written in prose: a house number (not a year), capitalised names,
    a street word ("221B Baker Street", "12 rue de Rivoli", "Via Roma 5", "Hauptstraße 5")."""
    suffixes = "|".join(re.escape(w.title()) for w in detect.street_words())
    prefixes = "|".join(re.escape(w) for w in detect.street_prefixes())
    titled = "|".join(re.escape(w.title()) for w in detect.street_prefixes())
    compounds = "|".join(re.escape(w) for w in _TEXT_COMPOUNDS)
    particles = r"(?:(?:de|del|della|di|da|do|dos|das|la|le|les|des|du|el|los|las)\s+)*"
    name = r"\p{Lu}[\p{L}'-]*(?:\s+\p{Lu}[\p{L}'-]*){0,3}"
    number = r"\b(?:[1-9]\d{0,2}|1[0-8]\d\d|2[1-9]\d\d|[3-9]\d{3}|\d{5,6})[A-Za-z]?"  # 1900-2099 are years
    return (
        rf"{number}\s+(?:\p{{Lu}}[\p{{L}}'-]*\s+){{1,4}}(?:{suffixes})\b\.?",
        rf"{number},?\s+(?i:{prefixes})\s+{particles}{name}",
        rf"\b(?:{titled})\s+{particles}{name},?\s+\d{{1,5}}[a-z]?\b",
        rf"\b\p{{Lu}}[\p{{L}}'-]*(?:{compounds})\s+\d{{1,5}}[a-z]?\b",
    )


_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+"
_NAME_CANDIDATE = rf"(?:\b{_TITLE})?\b\p{{Lu}}\p{{Ll}}+(?:['’-]\p{{Lu}}?\p{{Ll}}+)?(?:\s+\p{{Lu}}\p{{Ll}}+(?:['’-]\p{{Lu}}?\p{{Ll}}+)?){{0,3}}\b"
#: Capitalised words that are also first names but far more often something else in prose.
_NOT_FIRST_NAMES = frozenset({
    "will", "may", "june", "april", "august", "march", "mark", "bill", "art", "grace", "hope",
    "joy", "faith", "summer", "winter", "autumn", "spring", "dawn", "ray", "guy", "chase", "page",
    "sky", "star", "angel", "christian", "young", "long", "new", "north", "south", "east", "west",
    "saint", "san", "santa", "del", "van", "von", "la", "le", "al", "an", "de", "di", "do",
    "king", "queen", "prince", "princess", "lord", "lady", "sir", "judge", "major", "general",
    "governor", "captain", "president", "senator", "bishop", "pope", "doctor", "nurse",
})


@lru_cache(maxsize=1)
def _name_sets() -> tuple[frozenset[str], frozenset[str]]:
    firsts, lasts = detect.name_dictionary(broad=False)
    return frozenset(firsts.to_list()) - _NOT_FIRST_NAMES, frozenset(lasts.to_list())


def _person_names(candidates: pl.Series) -> set[str]:
    """Runs of capitalised words holding "First Last" (or "Title Last") by the name lists.

    Within a run ("Contact John Smith Jones") the best pair wins: a first name followed, one or
    two words on, by a last name (or, failing that, by another first name).
    """
    firsts, lasts = _name_sets()
    out: set[str] = set()
    for text in candidates.to_list():
        title = re.match(_TITLE, text)
        offset = title.end() if title else 0
        words = [(offset + m.start(), offset + m.end())
                 for m in re.finditer(r"[^\s]+", text[offset:])]
        keys = [re.sub(r"['’]s$", "", text[a:b]).lower() for a, b in words]
        if title and len(words) == 1:
            if keys[0] in lasts:
                out.add(text[: words[0][0]] + re.sub(r"['’]s$", "", text[words[0][0]:]))
            continue
        best: tuple[int, int, int] | None = None  # (score, i, j)
        for i, key in enumerate(keys):
            if key not in firsts:
                continue
            for j in (i + 1, i + 2):
                if j >= len(keys):
                    break
                score = 2 if keys[j] in lasts else 1 if keys[j] in firsts else 0
                if score and (best is None or (score, -(j - i)) > (best[0], -(best[2] - best[1]))):
                    best = (score, i, j)
            if best is not None:
                break
        if best is not None:
            _, i, j = best
            start = 0 if title and i == 0 else words[i][0]
            end = words[j][1] - (2 if re.search(r"['’]s$", text[words[j][0]:words[j][1]]) else 0)
            out.add(text[start:end])
    return out
