"""PII handling: what each personal-data column becomes before a generator sees the data.

``prepare_pii(frame, schema, key=...)`` applies every ``pii`` and ``text`` column's handling
(``Column.effective_pii_handling``) and returns the prepared frame, the schema the generator
should be given, and a record of what was done, fit for an audit log (no values, no key):

* ``drop`` removes the column;
* ``fake`` replaces values with Faker values of the same kind and locale. With
  ``consistent: true`` the Faker seed of each value is a keyed HMAC of it, so the same original
  becomes the same fake in every table and run that shares the key (joins survive). The
  column stays unlearned: the generator fills it with new fakes at sample time;
* ``hash`` replaces values with keyed HMAC-SHA256 tokens (hex, ``hash_length`` long); the
  generator fills the column with random tokens of that shape;
* ``generalise`` coarsens: dates to a year (a number) or a month (``YYYY-MM``), numbers to
  bins (``bin_width`` or ``quantiles``), postcodes to a prefix (rare prefixes become null).
  The result is learned, marked as a quasi-identifier;
* ``keep`` lets the generator learn the real values; every kept column is listed in the
  record so the audit log shows who chose to keep what;
* free text: ``fake`` (default), ``redact`` (typed placeholders such as ``<EMAIL>``) or
  ``hash`` replace each PII span found by :mod:`synthkit.prepare.pii_text`.

Work is done once per distinct value, not per row. The key (:class:`PIIKey`) comes from an
environment variable or a key file; when none is given and one is needed, a random key is made
for this run only (and a :class:`PIIKeyWarning` says so): tokens and fakes then cannot be
matched across runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import warnings
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, SchemaError
from synthkit.prepare import pii_text
from synthkit.schema import (
    Column,
    ColumnKind,
    PIIHandling,
    PIIKind,
    PIIOptions,
    Schema,
    dtype_name,
)

#: Shortest accepted key: 128 bits.
MIN_KEY_BYTES = 16
#: Fakes drawn per column when fakes need not be consistent; values share this pool.
FAKE_POOL = 5_000
DEFAULT_LOCALE = "en_US"
#: Faker method per kind. Emails use reserved example domains, so no fake reaches a real inbox.
_FAKER_METHOD = {
    PIIKind.EMAIL: "safe_email",
    PIIKind.PHONE: "phone_number",
    PIIKind.PERSON_NAME: "name",
    PIIKind.FIRST_NAME: "first_name",
    PIIKind.LAST_NAME: "last_name",
    PIIKind.ADDRESS: "address",
    PIIKind.POSTCODE: "postcode",
    PIIKind.NATIONAL_ID: "ssn",
    PIIKind.CREDIT_CARD: "credit_card_number",
    PIIKind.IBAN: "iban",
    PIIKind.IP_ADDRESS: "ipv4",
}
#: Locales whose national identifier Faker makes under another method name than ``ssn``.
_NATIONAL_ID_METHOD = {"es_ES": "nif", "pt_BR": "cpf", "cs_CZ": "birth_number", "en_IN": "aadhaar_id"}
#: Dates of birth faked uniformly in this window (the same as the sample-time fillers).
_DOB_WINDOW = (date(1935, 1, 1), date(2006, 12, 31))


class PIIKeyWarning(UserWarning):
    """A PII key was needed but none was given: a random one was made for this run only."""


# --- the key --------------------------------------------------------------------------------
class PIIKey:
    """The secret behind hash tokens and consistent fakes. It is never written anywhere:
    records carry only its ``key_id`` (an HMAC of a fixed label) and where it came from."""

    __slots__ = ("_secret", "source")

    def __init__(self, secret: bytes, *, source: str = "given") -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"The PII key ({source}) is {len(secret)} bytes; at least {MIN_KEY_BYTES} are needed.",
                hint="Make one with: python -c \"import secrets; print(secrets.token_hex(32))\" > pii.key",
            )
        self._secret = bytes(secret)
        self.source = source

    def __repr__(self) -> str:  # never show the secret
        return f"PIIKey(source={self.source!r}, key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """A public fingerprint: equal ids mean the same key, and it reveals nothing of it."""
        return hmac.new(self._secret, b"synthkit pii key id", hashlib.sha256).hexdigest()[:16]

    @property
    def ephemeral(self) -> bool:
        return self.source == "ephemeral"

    @classmethod
    def from_env(cls, name: str) -> PIIKey:
        """The key held (as text) in environment variable ``name``."""
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"Environment variable {name} (the PII key) is unset or empty.",
                hint=f"export {name}=$(python -c \"import secrets; print(secrets.token_hex(32))\"), "
                "and keep it: the same key makes the same tokens and fakes next time.",
            )
        return cls(value.encode("utf-8"), source=f"env:{name}")

    @classmethod
    def from_file(cls, path: str | Path) -> PIIKey:
        """The key stored in a file (its bytes, a trailing newline ignored)."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(
                f"PII key file not found: {p}",
                hint="Create it with: python -c \"import secrets; print(secrets.token_hex(32))\" > "
                f"{p} (then chmod 600 it).",
            )
        return cls(p.read_bytes().rstrip(b"\r\n"), source=f"file:{p}")

    @classmethod
    def generate(cls) -> PIIKey:
        """A random key for this run only."""
        return cls(secrets.token_bytes(32), source="ephemeral")

    @classmethod
    def resolve(cls, *, key_env: str | None = None, key_file: str | Path | None = None) -> PIIKey | None:
        """The key from ``key_env`` or ``key_file`` (not both); None when neither is set."""
        if key_env and key_file:
            raise ConfigError("Give the PII key by key_env or by key_file, not both.")
        if key_env:
            return cls.from_env(key_env)
        if key_file:
            return cls.from_file(key_file)
        return None

    def digests(self, domain: str, values: list[str]) -> list[bytes]:
        """HMAC-SHA256 of each value, separated by ``domain`` (hash tokens vs fake seeds)."""
        base = hmac.new(self._secret, domain.encode("utf-8") + b"\x00", hashlib.sha256)
        out = []
        for value in values:
            h = base.copy()
            h.update(value.encode("utf-8"))
            out.append(h.digest())
        return out


# --- the record -----------------------------------------------------------------------------
@dataclass
class PIIAction:
    """What was done to one column, for the audit record: no values, no key."""

    column: str
    kind: str  # "pii" or "text"
    pii: str | None  # the subtype of a pii column
    handling: str
    default: bool  # the subtype's safe default, not declared
    options: dict[str, Any] = field(default_factory=dict)
    replaced: int = 0  # values (pii) or spans (text) replaced
    spans: dict[str, int] = field(default_factory=dict)  # text: PII spans found, by kind
    learned: bool = False  # whether a generator learns the resulting column

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column, "kind": self.kind, "pii": self.pii, "handling": self.handling,
            "default": self.default, "options": self.options, "replaced": self.replaced,
            "spans": self.spans, "learned": self.learned,
        }


@dataclass
class PreparedPII:
    """The prepared table, the schema to train on, and what was done to which column."""

    frame: pl.DataFrame
    schema: Schema
    actions: list[PIIAction]
    key: PIIKey | None = None
    #: what :meth:`scrub` replaced in generated data, per column
    scrubbed: dict[str, int] = field(default_factory=dict)
    #: the real values (column values and text spans) by kind: in memory only, never written
    _real: dict[str, PIIKind] = field(default_factory=dict, repr=False)
    _locale: str = field(default=DEFAULT_LOCALE, repr=False)

    @property
    def kept(self) -> list[str]:
        """Columns whose real personal data a generator may learn (handling ``keep``)."""
        return [a.column for a in self.actions if a.handling == PIIHandling.KEEP.value]

    @property
    def dropped(self) -> list[str]:
        return [a.column for a in self.actions if a.handling == PIIHandling.DROP.value]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary for an audit record (the key appears only as its id and source)."""
        key = None
        if self.key is not None:
            key = {"key_id": self.key.key_id, "source": self.key.source}
        return {
            "columns": [a.to_dict() for a in self.actions],
            "kept": self.kept,
            "dropped": self.dropped,
            "key": key,
            "scrubbed": dict(self.scrubbed),
        }

    def scrub(self, synthetic: pl.DataFrame, *, seed: int | None = None) -> pl.DataFrame:
        """``synthetic`` with every generated value that equals a real one replaced by a fake.

        Fakes come from Faker's finite lists, so a generated "jgarcia@example.org" can equal a
        real address by chance (certainly when the real data was itself made with Faker).
        Whatever the cause, a real value in the output reads as a leak: pii columns that are
        not learned get such values re-faked, and text columns get such identifiers (whole
        tokens) replaced. Learned columns (keep, generalise) are left alone.
        """
        rng = np.random.default_rng(seed)
        real = set(self._real)
        columns = {}
        for action in self.actions:
            name = action.column
            if action.learned or action.handling == PIIHandling.DROP.value or name not in synthetic.columns:
                continue
            series = synthetic.get_column(name)
            col = self.schema[name]
            if action.kind == ColumnKind.PII.value:
                hit = series.cast(pl.String).is_in(pl.Series(list(real), dtype=pl.String).implode())
                count = int(hit.sum())
                if count:
                    again = fake_values(series.filter(hit), col.pii or PIIKind.OTHER, locale=self._locale,
                                        rng=rng, column=col, avoid=real)
                    columns[name] = series.scatter(hit.arg_true(), again)
            else:
                targets = [v for v, k in self._real.items() if k != PIIKind.PERSON_NAME and len(v) >= 6]
                found = sorted(pii_text.find_whole(series, targets))
                count = len(found)
                if found:
                    fakes: dict[str, str] = {}
                    for kind in {self._real[v] for v in found}:
                        same = [v for v in found if self._real[v] == kind]
                        made = (_faker_fakes(same, kind, self._locale, None, rng, real)
                                if kind in _FAKER_METHOD else [pii_text.placeholder(kind)] * len(same))
                        fakes.update(zip(same, made, strict=True))
                    columns[name] = series.str.replace_many(list(fakes), list(fakes.values()))
            if count:
                self.scrubbed[name] = self.scrubbed.get(name, 0) + count
        return synthetic.with_columns(**columns) if columns else synthetic


# --- entry point ----------------------------------------------------------------------------
def prepare_pii(
    frame: pl.DataFrame,
    schema: Schema,
    *,
    key: PIIKey | bytes | None = None,
    seed: int | None = 0,
    locale: str | None = None,
) -> PreparedPII:
    """Apply each pii and text column's handling to ``frame``; see the module docstring.

    ``key`` signs hash tokens and consistent fakes (a random one is made, with a
    :class:`PIIKeyWarning`, when needed and not given); ``seed`` makes the non-consistent
    fakes reproducible; ``locale`` is the Faker locale for columns that declare none.
    """
    schema.check_frame(frame)
    if isinstance(key, (bytes, bytearray)):
        key = PIIKey(bytes(key))
    handled = [c for c in schema if c.kind in (ColumnKind.PII, ColumnKind.TEXT)]
    if key is None and any(_needs_key(c) for c in handled):
        key = PIIKey.generate()
        warnings.warn(
            "No PII key was given: a random one was made for this run, so hash tokens and "
            "consistent fakes will not match those of any other run. Declare a key (pipeline "
            "YAML pii: {key_env: ...} or {key_file: ...}) to keep them stable across runs.",
            PIIKeyWarning,
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    scans = {c.name: pii_text.scan_text(frame.get_column(c.name)) for c in handled
             if c.kind == ColumnKind.TEXT and c.effective_pii_handling != PIIHandling.DROP}
    # fakes must not equal any real value of any pii column or text span: see _faker_fakes
    kinds: dict[str, PIIKind] = {v: k for scan in scans.values() for k, spans in scan.spans.items()
                                 for v in spans}
    for c in handled:
        if c.kind == ColumnKind.PII:
            for v in frame.get_column(c.name).drop_nulls().cast(pl.String).unique().to_list():
                kinds.setdefault(v, c.pii or PIIKind.OTHER)
    real = set(kinds)
    columns: dict[str, pl.Series] = {}
    new_schema: list[Column] = []
    actions: list[PIIAction] = []
    default_locale = locale or DEFAULT_LOCALE
    handled_names = {c.name for c in handled}
    for col in schema:
        series = frame.get_column(col.name)
        if col.name not in handled_names:
            columns[col.name] = series
            new_schema.append(col)
            continue
        handling = col.effective_pii_handling
        assert handling is not None
        options = col.pii_options or PIIOptions()
        action = PIIAction(
            column=col.name, kind=col.kind.value, pii=col.pii.value if col.pii else None,
            handling=handling.value, default=col.pii_handling is None,
            options=col.pii_options.model_dump(exclude_defaults=True) if col.pii_options else {},
        )
        actions.append(action)
        if handling == PIIHandling.DROP:
            continue
        loc = options.locale or default_locale
        if col.kind == ColumnKind.TEXT:
            out = _handle_text(series, scans[col.name], handling, options, loc, key, rng, action, real)
            columns[col.name] = out
            new_schema.append(col)
            continue
        out, out_col = _handle_pii(series, col, handling, options, loc, key, rng, action, real)
        columns[col.name] = out.alias(col.name)
        new_schema.append(out_col)
    prepared = pl.DataFrame(list(columns.values())) if columns else pl.DataFrame()
    extra = [c for c in frame.columns if c not in schema]
    if extra:  # columns the schema does not name travel unchanged
        prepared = prepared.hstack(frame.select(extra)) if columns else frame.select(extra)
    out_schema = Schema(columns=new_schema, primary_key=schema.primary_key
                        if schema.primary_key in {c.name for c in new_schema} else None)
    return PreparedPII(frame=prepared, schema=out_schema, actions=actions, key=key, _real=kinds,
                       _locale=default_locale)


def _needs_key(col: Column) -> bool:
    handling = col.effective_pii_handling
    consistent = col.pii_options is not None and col.pii_options.consistent
    return handling == PIIHandling.HASH or (handling == PIIHandling.FAKE and consistent)


# --- pii columns ----------------------------------------------------------------------------
def _handle_pii(
    series: pl.Series, col: Column, handling: PIIHandling, options: PIIOptions, locale: str,
    key: PIIKey | None, rng: np.random.Generator, action: PIIAction, real: set[str],
) -> tuple[pl.Series, Column]:
    kind = col.pii or PIIKind.OTHER
    present = int(series.len() - series.null_count())
    if handling == PIIHandling.KEEP:
        action.learned = True
        return series, _learned_column(series, col)
    if handling == PIIHandling.HASH:
        assert key is not None
        out = hash_values(series, key, length=options.hash_length)
        action.replaced = present
        shaped = col.model_copy(update={"pii": PIIKind.OTHER, "dtype": "String", "datetime_format": None})
        return out, shaped
    if handling == PIIHandling.FAKE:
        out = fake_values(series, kind, locale=locale, consistent=options.consistent, key=key, rng=rng,
                          column=col, avoid=real)
        action.replaced = present
        return out, col
    out, out_col = generalise(series, col, options)
    action.replaced = present
    action.learned = True
    return out, out_col


def _learned_column(series: pl.Series, col: Column) -> Column:
    """The learned kind a kept pii column becomes: numbers, dates or categories."""
    base = {"name": col.name, "dtype": col.dtype, "nullable": col.nullable,
            "quasi_identifier": True}
    dtype = series.dtype
    if dtype.is_temporal() or col.datetime_format:
        return Column(kind=ColumnKind.DATETIME, datetime_format=col.datetime_format, **base)
    if dtype.is_numeric():
        values = series.drop_nulls()
        return Column(kind=ColumnKind.NUMERICAL, decimals=0 if dtype.is_integer() else None,
                      min=float(values.min()) if len(values) else None,  # type: ignore[arg-type]
                      max=float(values.max()) if len(values) else None, **base)  # type: ignore[arg-type]
    return Column(kind=ColumnKind.CATEGORICAL, **{**base, "dtype": "String"})


def _distinct(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(distinct non-null values as strings, the original values as strings)."""
    strings = series.cast(pl.String)
    return strings.drop_nulls().unique(maintain_order=True), strings


def _map_back(strings: pl.Series, distinct: pl.Series, replaced: list[Any], dtype: pl.DataType) -> pl.Series:
    """Replace each value by its distinct value's replacement, nulls kept (vectorised)."""
    lookup = pl.Series("r", replaced, dtype=dtype)
    return strings.replace_strict(distinct, lookup, default=None, return_dtype=dtype)


def hash_values(series: pl.Series, key: PIIKey, *, length: int = 16) -> pl.Series:
    """Keyed HMAC-SHA256 tokens (hex, ``length`` characters) of each value; nulls stay null."""
    distinct, strings = _distinct(series)
    tokens = [d.hex()[:length] for d in key.digests("hash", distinct.to_list())]
    return _map_back(strings, distinct, tokens, pl.String()).alias(series.name)


def fake_values(
    series: pl.Series, kind: PIIKind, *, locale: str = DEFAULT_LOCALE, consistent: bool = False,
    key: PIIKey | None = None, rng: np.random.Generator | None = None, column: Column | None = None,
    avoid: set[str] | None = None,
) -> pl.Series:
    """Fakes of ``kind`` in place of each value; the dtype is kept, nulls stay null.

    With ``consistent`` (needs ``key``), each distinct value's fake is seeded by its HMAC: the
    same value gets the same fake wherever the same key is used. Otherwise a seeded pool of
    at most :data:`FAKE_POOL` fakes is shared out at random. No fake equals a value of the
    series or of ``avoid`` (other real values, e.g. the rest of the table's PII).
    """
    if consistent and key is None:
        raise ConfigError("Consistent fakes need a PII key.", hint="Pass key=PIIKey.from_env(...).")
    rng = rng if rng is not None else np.random.default_rng()
    distinct, strings = _distinct(series)
    n = len(distinct)
    seeds = _seeds(distinct.to_list(), kind, key) if consistent else None
    dtype = series.dtype
    if kind == PIIKind.DATE_OF_BIRTH:
        fakes = _fake_dates(n, seeds, rng)
        out = _map_back(strings, distinct, fakes, pl.Date())
        if dtype.is_temporal():
            return out.cast(dtype).alias(series.name)
        fmt = column.datetime_format if column is not None and column.datetime_format else "%Y-%m-%d"
        return out.dt.strftime(fmt).alias(series.name)
    if dtype.is_integer():
        fakes_int = _fake_digits(distinct, seeds, rng)
        return _map_back(strings, distinct, fakes_int, pl.Int64()).cast(dtype).alias(series.name)
    if kind == PIIKind.OTHER:
        fakes = _fake_shapes(distinct.to_list(), seeds, rng)
    else:
        fakes = _faker_fakes(distinct.to_list(), kind, locale, seeds, rng, avoid)
    return _map_back(strings, distinct, fakes, pl.String()).alias(series.name)


def _seeds(values: list[str], kind: PIIKind, key: PIIKey | None) -> list[int]:
    assert key is not None
    return [int.from_bytes(d[:8], "big") for d in key.digests(f"fake:{kind.value}", values)]


@lru_cache(maxsize=16)
def _faker(locale: str) -> Any:
    from faker import Faker

    try:
        return Faker(locale)
    except AttributeError as exc:  # Faker's error for an unknown locale
        raise ConfigError(f"Faker has no locale '{locale}'.",
                          hint="Use one such as en_US, en_GB, de_DE, fr_FR, nl_NL.") from exc


def _faker_method(faker: Any, kind: PIIKind, locale: str, value: str | None = None) -> Any:
    name = _FAKER_METHOD[kind]
    if kind == PIIKind.NATIONAL_ID:
        name = _NATIONAL_ID_METHOD.get(locale, "ssn")
    if kind == PIIKind.IP_ADDRESS and value is not None and ":" in value:
        name = "ipv6"
    method = getattr(faker, name, None)
    if method is None:  # a locale without this provider: fall back to the default locale
        method = getattr(_faker(DEFAULT_LOCALE), _FAKER_METHOD[kind])
    return method


#: Redraws of a fake that happens to equal a real value, before giving up on that value.
_REDRAWS = 8


def _faker_fakes(values: list[str], kind: PIIKind, locale: str, seeds: list[int] | None,
                 rng: np.random.Generator, avoid: set[str] | None = None) -> list[str]:
    """One fake per value. A fake never equals one of ``values`` (the real ones): Faker's
    small name lists make such collisions common, and a real value in the output looks like
    a leak whatever its cause; such fakes are drawn again (seeded, so still consistent)."""
    faker = _faker(locale)
    real = set(values) | (avoid or set())

    def tidy(value: object) -> str:
        text = str(value)
        return text.replace("\n", ", ") if kind == PIIKind.ADDRESS else text

    if seeds is not None:
        out = []
        for value, seed in zip(values, seeds, strict=True):
            method = _faker_method(faker, kind, locale, value)
            for attempt in range(_REDRAWS):
                faker.seed_instance(seed + attempt)
                fake = tidy(method())
                if fake not in real and fake.replace("\n", ", ") not in real:
                    break
            out.append(fake)
        return out
    faker.seed_instance(int(rng.integers(0, 2**63 - 1)))
    size = min(len(values), FAKE_POOL)
    v6 = kind == PIIKind.IP_ADDRESS and any(":" in v for v in values[:100])
    method = _faker_method(faker, kind, locale, "::" if v6 else None)
    pool: list[str] = []
    for _ in range(_REDRAWS):
        pool += [f for f in (tidy(method()) for _ in range(size - len(pool))) if f not in real]
        if len(pool) >= size:
            break
    if not pool:
        raise SchemaError(f"Could not make {kind.value} fakes that differ from the real values.",
                          hint="Use hash or drop for this column.")
    return [pool[i] for i in rng.integers(0, len(pool), size=len(values))]


def _fake_dates(n: int, seeds: list[int] | None, rng: np.random.Generator) -> list[date]:
    lo, hi = (d.toordinal() for d in _DOB_WINDOW)
    if seeds is not None:
        offsets = np.array([s % (hi - lo + 1) for s in seeds], dtype=np.int64)
    else:
        offsets = rng.integers(0, hi - lo + 1, size=n)
    return [date.fromordinal(lo + int(o)) for o in offsets]


def _fake_digits(distinct: pl.Series, seeds: list[int] | None, rng: np.random.Generator) -> list[int]:
    """Random integers with as many digits as each original (18 at most)."""
    digits = distinct.str.len_chars().clip(1, 18).to_numpy()
    low = np.where(digits > 1, 10 ** (digits - 1), 0).astype(np.int64)
    span = (10**digits).astype(np.int64) - low
    if seeds is not None:
        draw = np.array([s % int(m) for s, m in zip(seeds, span, strict=True)], dtype=np.int64)
    else:
        draw = (rng.random(len(distinct)) * span).astype(np.int64)
    return (low + draw).tolist()


_ALPHABETS = ("0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fake_shapes(values: list[str], seeds: list[int] | None, rng: np.random.Generator) -> list[str]:
    """Each value with its digits and letters replaced at random; punctuation kept."""
    out = []
    for i, value in enumerate(values):
        draw = np.random.default_rng(seeds[i]) if seeds is not None else rng
        picks = draw.integers(0, 26, size=len(value))
        chars = []
        for ch, pick in zip(value, picks, strict=True):
            alphabet = next((a for a in _ALPHABETS if ch in a), None)
            chars.append(alphabet[pick % len(alphabet)] if alphabet else ch)
        out.append("".join(chars))
    return out


# --- generalise -----------------------------------------------------------------------------
def generalise(series: pl.Series, col: Column, options: PIIOptions) -> tuple[pl.Series, Column]:
    """Coarsen a date, number or postcode column; returns the values and their new Column."""
    kind = col.pii or PIIKind.OTHER
    dtype = series.dtype
    base = {"name": col.name, "nullable": col.nullable, "quasi_identifier": True}
    if kind == PIIKind.POSTCODE:
        return _generalise_postcode(series, options, base)
    if dtype.is_temporal() or col.datetime_format or kind == PIIKind.DATE_OF_BIRTH:
        return _generalise_date(series, col, options, base)
    if dtype.is_numeric():
        return _generalise_number(series, col, options, base)
    raise SchemaError(
        f"Column '{col.name}' ({kind.value}, {dtype_name(dtype)}) cannot be generalised: "
        "generalise coarsens dates, numbers and postcodes.",
        hint="Use drop, fake or hash for it, or declare it a date (datetime_format) or a postcode.",
    )


def _generalise_postcode(series: pl.Series, options: PIIOptions, base: dict[str, Any]) -> tuple[pl.Series, Column]:
    """Postcodes cut to ``prefix_length`` characters; where fewer than ``min_group_size`` rows
    share a prefix, those rows get a shorter one (down to one character), then null. Every
    prefix left is shared by at least ``min_group_size`` rows."""
    compact = series.cast(pl.String).str.to_uppercase().str.replace_all(r"\s+", "")
    compact = pl.select(pl.when(compact.str.len_chars() > 0).then(compact)).to_series()
    k = options.min_group_size
    if k <= 1:
        out = compact.str.slice(0, options.prefix_length)
    else:
        out = pl.Series(base["name"], [None] * len(compact), dtype=pl.String)
        for length in range(options.prefix_length, 0, -1):
            prefix = compact.str.slice(0, length)
            open_rows = out.is_null() & prefix.is_not_null()
            counts = prefix.filter(open_rows).value_counts(name="_n")
            frequent = counts.filter(pl.col("_n") >= k).get_column(counts.columns[0])
            take = open_rows & prefix.is_in(frequent.implode())
            out = pl.select(pl.when(take).then(prefix).otherwise(out)).to_series()
        if out.null_count() == len(out) and compact.null_count() < len(compact):
            raise SchemaError(
                f"Column '{base['name']}': no postcode prefix is shared by {k} rows, so "
                "generalising would leave nothing.",
                hint="Lower min_group_size (pii options), keep fewer characters, or drop the column.",
            )
    out = out.alias(base["name"])
    return out, Column(kind=ColumnKind.CATEGORICAL, dtype="String", **{**base, "nullable": True})


def _as_dates(series: pl.Series, col: Column) -> pl.Series:
    if series.dtype == pl.Date:
        return series
    if series.dtype.is_temporal():
        return series.cast(pl.Date)
    strings = series.cast(pl.String)
    if col.datetime_format:
        parsed = strings.str.strptime(pl.Date, col.datetime_format, strict=False)
    else:
        parsed = strings.str.to_date(strict=False)
    bad = int(parsed.null_count() - strings.null_count())
    if bad:
        raise SchemaError(
            f"Column '{col.name}': {bad} value(s) do not parse as dates"
            + (f" with format {col.datetime_format}." if col.datetime_format else "."),
            hint="Declare its datetime_format in the schema (e.g. '%d/%m/%Y').",
        )
    return parsed


def _generalise_date(series: pl.Series, col: Column, options: PIIOptions, base: dict[str, Any]) -> tuple[pl.Series, Column]:
    dates = _as_dates(series, col)
    if options.date_unit == "year":
        years = dates.dt.year().cast(pl.Int64).alias(col.name)
        present = years.drop_nulls()
        return years, Column(
            kind=ColumnKind.NUMERICAL, dtype="Int64", decimals=0,
            min=float(present.min()) if len(present) else None,  # type: ignore[arg-type]
            max=float(present.max()) if len(present) else None, **base)  # type: ignore[arg-type]
    months = dates.dt.strftime("%Y-%m").alias(col.name)
    return months, Column(kind=ColumnKind.DATETIME, dtype="String", datetime_format="%Y-%m", **base)


def _generalise_number(series: pl.Series, col: Column, options: PIIOptions, base: dict[str, Any]) -> tuple[pl.Series, Column]:
    x = series.cast(pl.Float64).to_numpy()
    present = x[~np.isnan(x)]
    if options.bin_width is not None:
        lo = np.floor(x / options.bin_width) * options.bin_width
        edges_lo, edges_hi = lo, lo + options.bin_width
        closed = np.zeros(len(x), dtype=bool)
    elif options.quantiles is not None:
        if len(present) == 0:
            edges = np.array([0.0, 0.0])
        else:
            edges = np.unique(np.quantile(present, np.linspace(0, 1, options.quantiles + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]])
        idx = np.clip(np.searchsorted(edges, np.nan_to_num(x), side="right") - 1, 0, len(edges) - 2)
        edges_lo, edges_hi = edges[idx], edges[idx + 1]
        closed = idx == len(edges) - 2
    else:
        raise SchemaError(
            f"Column '{col.name}': generalising numbers needs bin_width or quantiles.",
            hint="e.g. pii: {columns: {income: {handling: generalise, bin_width: 10000}}}",
        )
    decimals = col.decimals if col.decimals is not None else 6
    labels = [
        None if np.isnan(v) else f"[{_fmt(a, decimals)}, {_fmt(b, decimals)}{']' if c else ')'}"
        for v, a, b, c in zip(x, edges_lo, edges_hi, closed, strict=True)
    ]
    out = pl.Series(col.name, labels, dtype=pl.String)
    return out, Column(kind=ColumnKind.CATEGORICAL, dtype="String", **base)


def _fmt(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- free text ------------------------------------------------------------------------------
def _handle_text(
    series: pl.Series, scan: pii_text.TextScan, handling: PIIHandling, options: PIIOptions,
    locale: str, key: PIIKey | None, rng: np.random.Generator, action: PIIAction, real: set[str],
) -> pl.Series:
    action.spans = {k.value: v for k, v in scan.counts.items()}
    if handling == PIIHandling.KEEP:
        action.learned = True
        return series
    action.replaced = scan.total
    return redact_text(series, scan, handling, consistent=options.consistent, locale=locale, key=key,
                       rng=rng, avoid=real)


def redact_text(
    series: pl.Series, scan: pii_text.TextScan, handling: PIIHandling, *, consistent: bool = False,
    locale: str = DEFAULT_LOCALE, key: PIIKey | None = None, rng: np.random.Generator | None = None,
    avoid: set[str] | None = None,
) -> pl.Series:
    """``series`` with the spans of ``scan`` replaced: fakes, placeholders or tokens.

    Fakes never equal a span of ``scan`` or a value of ``avoid``."""
    rng = rng if rng is not None else np.random.default_rng()

    def replacements(kind: PIIKind, spans: list[str]) -> list[str]:
        if handling == PIIHandling.REDACT:
            return [pii_text.placeholder(kind)] * len(spans)
        if handling == PIIHandling.HASH:
            assert key is not None
            tag = kind.value.upper()
            return [f"<{tag}:{d.hex()[:12]}>" for d in key.digests("hash", spans)]
        seeds = _seeds(spans, kind, key) if consistent else None
        return _faker_fakes(spans, kind, locale, seeds, rng, set(scan.values()) | (avoid or set()))

    if handling not in (PIIHandling.REDACT, PIIHandling.HASH, PIIHandling.FAKE):
        raise SchemaError(f"Text columns cannot be handled with {handling.value} span by span.")
    return pii_text.replace_spans(series, scan, replacements)

