"""Fillers: generate the columns no family learns (ids, personal data, free text).

``fit_fillers`` keeps only what is safe to keep: null shares, the *shape* of string ids
(length and character classes per position), text length statistics. It never stores a real
value of an id, PII or text column. ``generate_filled`` makes new values from that state:

* ids are unique within one sample call (``offset`` counts rows of earlier batches): integer
  ids count up from ``1 + offset``; string ids embed a scrambled counter in the learned shape;
* PII comes from Faker (seeded from the caller's rng) through a bounded pool per column, so
  a million rows cost a few thousand Faker calls;
* text is assembled from Faker's word list with lengths close to the real mean and spread.

Everything else is vectorised numpy / polars.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd
from typing import Any

import numpy as np
import polars as pl

from synthkit.schema import Column, ColumnKind, PIIKind, parse_dtype

#: Fake values drawn per PII column and batch; larger batches sample from this pool.
PII_POOL = 5_000
#: Texts assembled per column and batch; larger batches sample from this pool.
TEXT_POOL = 20_000
#: Values looked at to learn the shape of string ids (the shape only, never the values).
SHAPE_SAMPLE = 10_000
#: Largest counter space embedded in a string id (keeps the arithmetic in int64).
_COUNTER_CAP = 2**31
_FAKER_LOCALE = "en_US"
_ALPHABETS = {
    "9": b"0123456789",
    "A": b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "a": b"abcdefghijklmnopqrstuvwxyz",
}
#: Template for string ids whose real values give no usable (ASCII) shape.
_DEFAULT_TEMPLATE = ["9a"] * 12
#: Faker method per PII kind (date of birth, ``other`` and numeric columns are not Faker's).
_FAKER_METHOD = {
    PIIKind.EMAIL: "email",
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
#: Dates of birth are drawn uniformly in this fixed window (days since 1970), so the same
#: seed gives the same dates on any day the code runs.
_DOB_DAYS = (-12_784, 13_514)  # 1935-01-01 .. 2006-12-31


# --- fit ------------------------------------------------------------------------------------
def fit_fillers(df: pl.DataFrame, columns: list[Column], *, private: bool = False) -> dict[str, Any]:
    """Learn what filling ``columns`` needs: JSON-safe, and free of real values.

    ``private=True`` (a differentially private fit) reads nothing from the data: null shares,
    id and value shapes and text lengths take data-independent defaults.
    """
    specs = []
    for col in columns:
        s = df.get_column(col.name)
        if private:
            s = pl.Series(col.name, [], dtype=s.dtype)
        spec: dict[str, Any] = {
            "name": col.name,
            "kind": col.kind.value,
            "dtype": col.dtype,
            "null_share": _null_share(s),
        }
        if col.kind == ColumnKind.ID:
            spec.update(_fit_id(s, col))
        elif col.kind == ColumnKind.PII:
            spec.update(_fit_pii(s, col))
        elif col.kind == ColumnKind.TEXT:
            spec.update(_fit_text(s))
        else:
            # a learned kind handed to the fillers (a family that cannot model it): treat it
            # like opaque personal data, keeping its shape (or digit count), never its values.
            spec["kind"] = ColumnKind.PII.value
            spec.update(_fit_pii(s, col.model_copy(update={"pii": PIIKind.OTHER})))
        specs.append(spec)
    return {"version": 1, "columns": specs}


def _null_share(s: pl.Series) -> float:
    return float(s.null_count() / len(s)) if len(s) else 0.0


def _fit_id(s: pl.Series, col: Column) -> dict[str, Any]:
    if s.dtype.is_numeric() or parse_dtype(col.dtype).is_numeric():
        return {"mode": "int"}
    return {"mode": "string", "template": _template(s)}


def _fit_pii(s: pl.Series, col: Column) -> dict[str, Any]:
    kind = col.pii or PIIKind.OTHER
    dtype = parse_dtype(col.dtype)
    if kind == PIIKind.DATE_OF_BIRTH:
        return {"pii": kind.value, "mode": "dob"}
    if dtype.is_numeric():
        digits = _modal_digits(s)
        return {"pii": kind.value, "mode": "digits", "digits": digits}
    if kind == PIIKind.OTHER:
        return {"pii": kind.value, "mode": "shape", "template": _template(s)}
    return {"pii": kind.value, "mode": "faker", "locale": _FAKER_LOCALE}


def _fit_text(s: pl.Series) -> dict[str, Any]:
    lengths = s.drop_nulls().cast(pl.String).str.len_chars().cast(pl.Float64)
    if len(lengths) == 0:
        return {"mean_len": 40.0, "std_len": 10.0, "min_len": 1, "max_len": 80}
    return {
        "mean_len": float(lengths.mean()),  # type: ignore[arg-type]
        "std_len": float(lengths.std() or 0.0),
        "min_len": int(lengths.min()),  # type: ignore[arg-type]
        "max_len": int(lengths.max()),  # type: ignore[arg-type]
    }


def _modal_digits(s: pl.Series) -> int:
    """Most common number of digits of a numeric column's absolute integer values."""
    vals = s.drop_nulls().head(SHAPE_SAMPLE).cast(pl.Float64).abs().round(0)
    if len(vals) == 0:
        return 9
    digits = vals.cast(pl.Int64).cast(pl.String).str.len_chars()
    return int(digits.mode().sort()[-1])


def _template(s: pl.Series) -> list[str]:
    """Character classes per position of the most common length among (ASCII) values.

    Each entry is a class code made of ``9`` (digit), ``A`` (upper) and ``a`` (lower) letters,
    or a single punctuation character that every value has at that position.
    """
    strings = s.drop_nulls().head(SHAPE_SAMPLE).cast(pl.String)
    ascii_only = strings.filter(strings.str.len_bytes() == strings.str.len_chars())
    ascii_only = ascii_only.filter(ascii_only.str.len_bytes() > 0)
    if len(ascii_only) == 0:
        return list(_DEFAULT_TEMPLATE)
    lengths = ascii_only.str.len_bytes()
    counts = lengths.value_counts(sort=True)
    width = int(counts.get_column(lengths.name)[0])
    same = ascii_only.filter(lengths == width)
    grid = np.frombuffer(same.str.join("").item().encode("ascii"), dtype=np.uint8)
    grid = grid.reshape(len(same), width)
    digit = (grid >= 48) & (grid <= 57)
    upper = (grid >= 65) & (grid <= 90)
    lower = (grid >= 97) & (grid <= 122)
    other = ~(digit | upper | lower)
    template = []
    for j in range(width):
        if other[:, j].all():
            template.append(chr(int(np.bincount(grid[:, j]).argmax())))
            continue
        code = "".join(c for c, m in (("9", digit), ("A", upper), ("a", lower)) if m[:, j].any())
        template.append(code)
    return template


# --- generate ----------------------------------------------------------------------------------
def generate_filled(
    state: dict[str, Any], n: int, *, rng: np.random.Generator, offset: int
) -> dict[str, pl.Series]:
    """One series of length ``n`` per filled column; ids stay unique across ``offset``."""
    out: dict[str, pl.Series] = {}
    for spec in state.get("columns", []):
        name = spec["name"]
        kind = spec["kind"]
        if kind == ColumnKind.ID.value:
            series = _gen_id(spec, n, rng, offset)
        elif kind == ColumnKind.TEXT.value:
            series = _gen_text(spec, n, rng)
        else:
            series = _gen_pii(spec, n, rng)
        out[name] = _apply_nulls(series.alias(name), float(spec.get("null_share", 0.0)), rng)
    return out


def _apply_nulls(s: pl.Series, share: float, rng: np.random.Generator) -> pl.Series:
    if share <= 0.0 or len(s) == 0:
        return s
    mask = pl.Series(rng.random(len(s)) < share)
    return s.to_frame().select(
        pl.when(mask).then(pl.lit(None, dtype=s.dtype)).otherwise(pl.col(s.name)).alias(s.name)
    ).to_series()


# ids ------------------------------------------------------------------------------------------
def _gen_id(spec: dict[str, Any], n: int, rng: np.random.Generator, offset: int) -> pl.Series:
    counter = np.arange(offset, offset + n, dtype=np.int64)
    if spec.get("mode") == "int":
        return pl.Series(spec["name"], counter + 1)
    return _render_template(spec["template"], counter, rng, unique=True)


def _render_template(
    template: list[str], counter: np.ndarray, rng: np.random.Generator, *, unique: bool
) -> pl.Series:
    """Strings of the template's shape; with ``unique`` a scrambled counter fills it.

    The counter takes the right-most variable positions (up to ``_COUNTER_CAP`` values) and
    goes through a fixed bijection, so ids look random yet never repeat within a sample call;
    counters beyond the template's capacity get a decimal prefix, which keeps them unique.
    """
    n = len(counter)
    width = len(template)
    grid = np.empty((n, width), dtype=np.uint8)
    alphabets = [_alphabet(code) for code in template]
    counter_pos: list[int] = []
    capacity = 1
    if unique:
        for j in reversed(range(width)):
            size = len(alphabets[j]) if alphabets[j] is not None else 1
            if size > 1 and capacity * size <= _COUNTER_CAP:
                counter_pos.append(j)
                capacity *= size
    high = counter // capacity
    code = _scramble(counter % capacity, capacity)
    for j, alpha in enumerate(alphabets):
        if alpha is None:
            grid[:, j] = ord(template[j])
        elif j in counter_pos:
            size = len(alpha)
            grid[:, j] = alpha[code % size]
            code //= size
        else:
            grid[:, j] = alpha[rng.integers(0, len(alpha), size=n)]
    if width == 0:
        strings = pl.Series(np.full(n, "", dtype=object), dtype=pl.String)
    else:
        strings = pl.Series(grid.view(f"S{width}").ravel()).cast(pl.String)
    if unique and n and int(high.max()) > 0:
        prefix = pl.Series(high).cast(pl.String)
        strings = pl.select(
            pl.when(pl.lit(pl.Series(high > 0)))
            .then(pl.lit(prefix) + pl.lit(strings))
            .otherwise(pl.lit(strings))
        ).to_series()
    return strings


def _alphabet(code: str) -> np.ndarray | None:
    """The bytes a template position draws from; None for a literal character."""
    if not code or any(c not in _ALPHABETS for c in code):
        return None
    return np.frombuffer(b"".join(_ALPHABETS[c] for c in code), dtype=np.uint8)


def _scramble(x: np.ndarray, modulus: int) -> np.ndarray:
    """A fixed bijection of [0, modulus): an affine map with a multiplier coprime to it."""
    if modulus <= 2:
        return x.copy()
    a = max(1, int(modulus * 0.6180339887498949))
    while gcd(a, modulus) != 1:
        a += 1
    b = modulus // 3
    return (x * a + b) % modulus


# pii ------------------------------------------------------------------------------------------
def _gen_pii(spec: dict[str, Any], n: int, rng: np.random.Generator) -> pl.Series:
    mode = spec.get("mode", "faker")
    name = spec["name"]
    if mode == "dob":
        days = rng.integers(_DOB_DAYS[0], _DOB_DAYS[1] + 1, size=n).astype(np.int32)
        dates = pl.Series(name, days).cast(pl.Date)
        dtype = parse_dtype(spec.get("dtype", "String"))
        return dates if dtype.is_temporal() else dates.dt.strftime("%Y-%m-%d")
    if mode == "digits":
        digits = max(1, min(int(spec.get("digits", 9)), 18))
        low = 10 ** (digits - 1) if digits > 1 else 0
        return pl.Series(name, rng.integers(low, 10**digits, size=n, dtype=np.int64))
    if mode == "shape":
        counter = np.zeros(n, dtype=np.int64)
        return _render_template(spec["template"], counter, rng, unique=False).alias(name)
    return _faker_values(spec, n, rng).alias(name)


def _faker_values(spec: dict[str, Any], n: int, rng: np.random.Generator) -> pl.Series:
    """Faker values from a pool of at most ``PII_POOL`` per call, seeded from ``rng``."""
    kind = PIIKind(spec["pii"])
    faker = _faker(spec.get("locale", _FAKER_LOCALE))
    faker.seed_instance(int(rng.integers(0, 2**63 - 1)))
    method = getattr(faker, _FAKER_METHOD[kind])
    size = min(n, PII_POOL)
    pool = pl.Series([method() for _ in range(size)], dtype=pl.String)
    if kind == PIIKind.ADDRESS:
        pool = pool.str.replace_all("\n", ", ", literal=True)
    if n <= size:
        return pool
    return pool.gather(rng.integers(0, size, size=n))


@lru_cache(maxsize=8)
def _faker(locale: str) -> Any:
    from faker import Faker

    return Faker(locale)


# text -----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _words() -> tuple[pl.Series, float]:
    words = pl.Series("w", list(_faker(_FAKER_LOCALE).get_words_list()), dtype=pl.String)
    return words, float(words.str.len_chars().mean())  # type: ignore[arg-type]


def _gen_text(spec: dict[str, Any], n: int, rng: np.random.Generator) -> pl.Series:
    """Lorem sentences whose character lengths follow the real mean and spread."""
    import pyarrow as pa

    size = min(n, TEXT_POOL)
    words, mean_word = _words()
    lo, hi = max(1, int(spec["min_len"])), max(1, int(spec["max_len"]))
    target = rng.normal(spec["mean_len"], spec["std_len"], size=size).clip(lo, hi)
    counts = np.maximum(1, np.rint((target + 1.0) / (mean_word + 1.0))).astype(np.int64)
    total = int(counts.sum())
    picked = words.gather(rng.integers(0, len(words), size=total))
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    starts = np.zeros(total, dtype=bool)
    starts[offsets[:-1]] = True
    ends = np.zeros(total, dtype=bool)
    ends[offsets[1:] - 1] = True
    breaks = (rng.random(total) < 0.1) | ends
    capital = starts.copy()
    capital[1:] |= breaks[:-1]
    frame = pl.DataFrame({"w": picked, "cap": capital, "brk": breaks})
    tokens = frame.select(
        pl.when(pl.col("cap"))
        .then(pl.col("w").str.slice(0, 1).str.to_uppercase() + pl.col("w").str.slice(1))
        .otherwise(pl.col("w"))
        + pl.when(pl.col("brk")).then(pl.lit(".")).otherwise(pl.lit(""))
    ).to_series()
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), tokens.to_arrow())
    texts = pl.Series(spec["name"], pl.from_arrow(lists)).list.join(" ")
    if n <= size:
        return texts
    return texts.gather(rng.integers(0, size, size=n))
