"""Schema: what each column is, decided once and passed to every later stage.

``infer_schema(frame)`` guesses; users edit (``schema.with_overrides``) and save it as JSON.
No later stage re-guesses types: generators, evaluation and policies all read this.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthkit.errors import SchemaError
from synthkit.frames import normalise_missing, to_polars

SCHEMA_FORMAT_VERSION = 1


class ColumnKind(str, Enum):
    """What a column holds, which decides how it is modelled and judged."""

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    ID = "id"  # keys: generated unique, never learned
    TEXT = "text"  # free text
    PII = "pii"  # personal data: generated fake, never learned


class PIIKind(str, Enum):
    """Subtypes of personal data a ``pii`` column may hold."""

    EMAIL = "email"
    PHONE = "phone"
    PERSON_NAME = "person_name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    ADDRESS = "address"
    POSTCODE = "postcode"
    NATIONAL_ID = "national_id"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    IP_ADDRESS = "ip_address"
    DATE_OF_BIRTH = "date_of_birth"
    OTHER = "other"


class PIIHandling(str, Enum):
    """What happens to a ``pii`` or ``text`` column before training (synthkit.prepare.pii_handling).

    ``drop`` removes it; ``fake`` replaces values (text: the PII spans) with Faker values and
    leaves the column unlearned; ``hash`` replaces them with keyed HMAC-SHA256 tokens;
    ``generalise`` coarsens dates, numbers and postcodes so the generator may learn them;
    ``keep`` lets the generator learn the real values (recorded in the audit); ``redact``
    (text only) replaces PII spans with typed placeholders such as ``<EMAIL>``.
    """

    DROP = "drop"
    FAKE = "fake"
    HASH = "hash"
    GENERALISE = "generalise"
    KEEP = "keep"
    REDACT = "redact"


class PIIOptions(BaseModel):
    """Options of a column's PII handling; each applies to some handlings only."""

    model_config = ConfigDict(extra="forbid")

    consistent: bool = Field(
        False, description="fake: the same original always gets the same fake (keyed HMAC), so "
        "joins survive; needs the PII key to repeat across runs.",
    )
    locale: str | None = Field(None, description="fake: Faker locale, e.g. 'de_DE' (default en_US).")
    date_unit: Literal["month", "year"] = Field("year", description="generalise: dates to this unit.")
    bin_width: float | None = Field(None, gt=0, description="generalise: numbers to bins this wide.")
    quantiles: int | None = Field(
        None, ge=2, le=100, description="generalise: numbers to this many equal-count bins."
    )
    prefix_length: int = Field(3, ge=1, description="generalise: postcodes keep this many characters.")
    min_group_size: int = Field(
        10, ge=0, description="generalise: postcode prefixes shared by fewer rows become null."
    )
    hash_length: int = Field(16, ge=8, le=64, description="hash: hex characters kept of the HMAC.")


#: Safe defaults: direct identifiers are faked (never learned); dates of birth and postcodes
#: are generalised (year; first three characters) and learned as quasi-identifiers; free text
#: has its PII spans faked.
DEFAULT_PII_HANDLING: dict[PIIKind, PIIHandling] = {
    **{kind: PIIHandling.FAKE for kind in PIIKind},
    PIIKind.DATE_OF_BIRTH: PIIHandling.GENERALISE,
    PIIKind.POSTCODE: PIIHandling.GENERALISE,
}


class Column(BaseModel):
    """One column: its name, kind and the facts later stages need about it."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str
    kind: ColumnKind
    dtype: str = Field(description="polars dtype the column is restored to, e.g. 'Int64'.")
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    decimals: int | None = Field(None, description="Digits after the point; 0 for integers.")
    datetime_format: str | None = Field(
        None, description="strftime format when datetimes are stored as strings."
    )
    timezone: str | None = None
    pii: PIIKind | None = None
    pii_handling: PIIHandling | None = Field(
        None, description="pii and text columns: what happens before training; None = the safe "
        "default for the subtype (DEFAULT_PII_HANDLING; text: fake).",
    )
    pii_options: PIIOptions | None = None
    pii_spans: dict[PIIKind, int] | None = Field(
        None, description="text columns: PII spans found in the inference sample, by kind."
    )
    categories: list[Any] | None = Field(
        None, description="Declared (public) category set; None means learned from data."
    )
    references: str | None = Field(
        None, description="Foreign key: 'table.column' (or 'schema.table.column') whose values "
        "this column's values must be among; sinks recreate the constraint where that table exists.",
    )
    public_bounds: bool = Field(
        False,
        description="min/max are declared public knowledge, not read from the data: "
        "differential privacy may use them without spending budget.",
    )
    quasi_identifier: bool = Field(
        False,
        description="Not identifying alone, but identifying in combination (age, postcode, job): "
        "the privacy report measures k-anonymity over these columns.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.kind == ColumnKind.PII and self.pii is None:
            self.pii = PIIKind.OTHER
        if self.kind != ColumnKind.PII and self.pii is not None:
            raise ValueError(f"column '{self.name}': pii subtype given but kind is {self.kind.value}")
        if self.kind not in (ColumnKind.PII, ColumnKind.TEXT) and (
                self.pii_handling is not None or self.pii_options is not None):
            raise ValueError(f"column '{self.name}': pii_handling applies to pii and text columns, "
                             f"not {self.kind.value}; set kind: pii (with a pii subtype) first")
        if self.kind == ColumnKind.TEXT and self.pii_handling == PIIHandling.GENERALISE:
            raise ValueError(f"column '{self.name}': free text cannot be generalised; use fake, "
                             "redact, hash, drop or keep")
        if self.kind == ColumnKind.PII and self.pii_handling == PIIHandling.REDACT:
            raise ValueError(f"column '{self.name}': redact is for free text; a pii column takes "
                             "drop, fake, hash, generalise or keep")
        if self.pii_spans is not None and self.kind != ColumnKind.TEXT:
            raise ValueError(f"column '{self.name}': pii_spans applies to text columns only")
        if self.public_bounds and (self.min is None or self.max is None):
            raise ValueError(f"column '{self.name}': public_bounds needs both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column '{self.name}': min {self.min} > max {self.max}")
        return self

    @property
    def polars_dtype(self) -> pl.DataType:
        """The polars dtype this column's values are returned as."""
        return parse_dtype(self.dtype)

    @property
    def effective_pii_handling(self) -> PIIHandling | None:
        """The handling that applies: the declared one, else the subtype's safe default."""
        if self.pii_handling is not None:
            return self.pii_handling
        if self.kind == ColumnKind.TEXT:
            return PIIHandling.FAKE
        if self.kind == ColumnKind.PII:
            return DEFAULT_PII_HANDLING[self.pii or PIIKind.OTHER]
        return None


class Schema(BaseModel):
    """An ordered list of columns; JSON round trip, SDV metadata in and out."""

    model_config = ConfigDict(extra="forbid")

    columns: list[Column]
    primary_key: str | None = None
    format_version: int = SCHEMA_FORMAT_VERSION

    @model_validator(mode="after")
    def _unique(self) -> Schema:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {dupes}")
        if self.primary_key is not None and self.primary_key not in names:
            raise ValueError(f"primary key '{self.primary_key}' is not a column")
        return self

    # --- access ------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __iter__(self) -> Iterator[Column]:  # type: ignore[override]
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(f"No column '{name}' in the schema.", hint=f"Columns: {self.names}")

    def of_kind(self, *kinds: ColumnKind) -> list[Column]:
        """The columns whose kind is one of ``kinds``, in schema order."""
        return [c for c in self.columns if c.kind in kinds]

    @property
    def quasi_identifiers(self) -> list[str]:
        """Names of the columns marked ``quasi_identifier``, in schema order."""
        return [c.name for c in self.columns if c.quasi_identifier]

    # --- editing -----------------------------------------------------------------------
    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Schema:
        """A copy with per-column fields replaced, e.g. ``{"zip": {"kind": "categorical"}}``."""
        unknown = [n for n in overrides if n not in self]
        if unknown:
            raise SchemaError(
                f"Overrides name columns that do not exist: {unknown}.",
                hint=f"Columns: {self.names}",
            )
        cols = []
        for c in self.columns:
            if c.name in overrides:
                merged = {**c.model_dump(), **dict(overrides[c.name]), "name": c.name}
                if str(getattr(merged["kind"], "value", merged["kind"])) != c.kind.value:
                    for key in ("pii_handling", "pii_options", "pii_spans"):  # belong to the old kind
                        if key not in overrides[c.name]:
                            merged[key] = None
                if merged.get("kind") != c.kind.value and "pii" not in overrides[c.name]:
                    merged.setdefault("pii", None)
                    if str(merged["kind"]) != ColumnKind.PII.value:
                        merged["pii"] = None
                try:
                    cols.append(Column.model_validate(merged))
                except ValidationError as exc:
                    raise SchemaError(f"Invalid override for '{c.name}': {exc}") from exc
            else:
                cols.append(c)
        return Schema(columns=cols, primary_key=self.primary_key)

    def select(self, names: list[str]) -> Schema:
        """A schema holding only ``names``, in that order."""
        pk = self.primary_key if self.primary_key in names else None
        return Schema(columns=[self[n] for n in names], primary_key=pk)

    def check_frame(self, df: pl.DataFrame) -> None:
        """Raise :class:`SchemaError` when ``df`` lacks columns the schema names."""
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise SchemaError(
                f"The data lacks columns the schema names: {missing}.",
                hint="Pass the schema inferred from this data, or drop those columns from it.",
            )

    # --- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SchemaError(f"Invalid schema: {exc}") from exc

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise (sorted keys); also write to ``path`` when one is given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Schema:
        """Parse JSON text, or read it from a path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise SchemaError(f"Schema file not found: {path}")
            text = path.read_text(encoding="utf-8")
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"Schema is not valid JSON: {exc}") from exc

    # --- SDV ---------------------------------------------------------------------------
    def to_sdv(self, table_name: str = "table") -> Any:
        """SDV (2.x) ``Metadata`` for a single table with this schema."""
        try:
            from sdv.metadata import Metadata
        except ImportError as exc:  # pragma: no cover - sdv is a core dependency today
            from synthkit.errors import MissingDependencyError

            raise MissingDependencyError("SDV is not installed.", hint="pip install sdv") from exc
        return Metadata.load_from_dict(self.to_sdv_dict(table_name))

    def to_sdv_dict(self, table_name: str = "table") -> dict[str, Any]:
        """The SDV metadata dict (``METADATA_SPEC_VERSION`` V1 layout) for this schema."""
        cols: dict[str, dict[str, Any]] = {}
        for c in self.columns:
            cols[c.name] = _column_to_sdv(c)
        table: dict[str, Any] = {"columns": cols}
        if self.primary_key:
            table["primary_key"] = self.primary_key
        return {"tables": {table_name: table}, "relationships": [], "METADATA_SPEC_VERSION": "V1"}

    @classmethod
    def from_sdv(cls, metadata: Any, table_name: str | None = None) -> Schema:
        """Build a Schema from SDV ``Metadata`` (or ``SingleTableMetadata``, or their dicts)."""
        data = metadata if isinstance(metadata, Mapping) else metadata.to_dict()
        if "tables" in data:
            tables = data["tables"]
            if table_name is None:
                if len(tables) != 1:
                    raise SchemaError(
                        f"SDV metadata holds {len(tables)} tables: {sorted(tables)}.",
                        hint="Pass table_name= to pick one.",
                    )
                table_name = next(iter(tables))
            if table_name not in tables:
                raise SchemaError(f"No table '{table_name}' in the SDV metadata: {sorted(tables)}")
            table = tables[table_name]
        else:
            table = data
        cols = [_column_from_sdv(name, spec) for name, spec in table.get("columns", {}).items()]
        return cls(columns=cols, primary_key=table.get("primary_key"))


# --- dtypes -------------------------------------------------------------------------------
_DATETIME_RE = re.compile(r"Datetime\(time_unit='(\w+)', time_zone=(?:'([^']*)'|None)\)")


def parse_dtype(text: str) -> pl.DataType:
    """Turn a dtype string written by :func:`dtype_name` back into a polars dtype."""
    m = _DATETIME_RE.fullmatch(text)
    if m:
        return pl.Datetime(time_unit=m.group(1), time_zone=m.group(2))  # type: ignore[arg-type]
    if text.startswith("Datetime"):
        return pl.Datetime("us")
    dtype = getattr(pl, text, None)
    if isinstance(dtype, type) and issubclass(dtype, pl.DataType):
        return dtype()
    if isinstance(dtype, pl.DataType):
        return dtype
    return pl.String()


def dtype_name(dtype: pl.DataType) -> str:
    """A dtype as a short string that :func:`parse_dtype` reads back."""
    if isinstance(dtype, pl.Datetime):
        tz = f"'{dtype.time_zone}'" if dtype.time_zone else "None"
        return f"Datetime(time_unit='{dtype.time_unit}', time_zone={tz})"
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "String"
    return type(dtype).__name__ if not isinstance(dtype, type) else dtype.__name__


# --- SDV mapping --------------------------------------------------------------------------
_PII_TO_SDV = {
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
    PIIKind.IP_ADDRESS: "ipv4_address",
    PIIKind.DATE_OF_BIRTH: "date_of_birth",
}
_SDV_TO_PII = {v: k for k, v in _PII_TO_SDV.items()} | {
    "phone": PIIKind.PHONE,
    "ipv6_address": PIIKind.IP_ADDRESS,
    "ip_address": PIIKind.IP_ADDRESS,
    "street_address": PIIKind.ADDRESS,
    "full_name": PIIKind.PERSON_NAME,
    "zipcode": PIIKind.POSTCODE,
}


def _column_to_sdv(c: Column) -> dict[str, Any]:
    if c.kind == ColumnKind.NUMERICAL:
        out_num: dict[str, Any] = {"sdtype": "numerical"}
        if c.decimals is not None:
            out_num["decimal_places"] = c.decimals
        return out_num
    if c.kind == ColumnKind.CATEGORICAL:
        return {"sdtype": "categorical"}
    if c.kind == ColumnKind.BOOLEAN:
        return {"sdtype": "boolean"}
    if c.kind == ColumnKind.DATETIME:
        out: dict[str, Any] = {"sdtype": "datetime"}
        if c.datetime_format:
            out["datetime_format"] = c.datetime_format
        return out
    if c.kind == ColumnKind.ID:
        return {"sdtype": "id"}
    if c.kind == ColumnKind.PII:
        sdtype = _PII_TO_SDV.get(c.pii or PIIKind.OTHER)
        # SDV knows no generic PII type: keep it private as a non-learned id-like column.
        return {"sdtype": sdtype, "pii": True} if sdtype else {"sdtype": "id"}
    # free text: SDV has no text sdtype; 'id' keeps SDV from learning (and leaking) it.
    return {"sdtype": "id"}


def _column_from_sdv(name: str, spec: Mapping[str, Any]) -> Column:
    sdtype = spec.get("sdtype", "categorical")
    if sdtype == "numerical":
        rep = str(spec.get("computer_representation", ""))
        is_int = "int" in rep.lower() or spec.get("decimal_places") == 0
        return Column(
            name=name,
            kind=ColumnKind.NUMERICAL,
            dtype="Int64" if is_int else "Float64",
            decimals=0 if is_int else spec.get("decimal_places"),
            min=spec.get("range_min"),
            max=spec.get("range_max"),
        )
    if sdtype in ("categorical", "ordinal"):
        cats = spec.get("range_values") or spec.get("order")
        return Column(name=name, kind=ColumnKind.CATEGORICAL, dtype="String", categories=cats)
    if sdtype == "boolean":
        return Column(name=name, kind=ColumnKind.BOOLEAN, dtype="Boolean")
    if sdtype == "datetime":
        fmt = spec.get("datetime_format")
        return Column(
            name=name,
            kind=ColumnKind.DATETIME,
            dtype="String" if fmt else "Datetime(time_unit='us', time_zone=None)",
            datetime_format=fmt,
        )
    if sdtype == "id":
        return Column(name=name, kind=ColumnKind.ID, dtype="String")
    if sdtype in _SDV_TO_PII or spec.get("pii"):
        return Column(
            name=name, kind=ColumnKind.PII, dtype="String", pii=_SDV_TO_PII.get(sdtype, PIIKind.OTHER)
        )
    return Column(name=name, kind=ColumnKind.CATEGORICAL, dtype="String")


# --- inference ----------------------------------------------------------------------------
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key|rownames|index)$|^id_|Id$|ID$")
#: Strings at least this long on average, mostly unique and with spaces, are free text.
_TEXT_MIN_MEAN_LEN = 40
_SAMPLE_FOR_INFERENCE = 20_000


def infer_schema(data: Any, *, detect_pii: bool = True) -> Schema:
    """Guess a :class:`Schema` for a polars or pandas frame.

    Integers and floats are ``numerical`` (bounds and decimals recorded), booleans
    ``boolean``, temporal types and date-like strings ``datetime``, unique integer or string
    keys with id-like names ``id``, long mostly-unique strings ``text``; strings whose name or
    values look like personal data are ``pii`` (``detect_pii=False`` skips that scan).
    Review the result: it is a guess, and every later stage trusts it.
    """
    df = normalise_missing(to_polars(data))
    cols = [_infer_column(df.get_column(name), detect_pii=detect_pii) for name in df.columns]
    ids = [c.name for c in cols if c.kind == ColumnKind.ID]
    return Schema(columns=cols, primary_key=ids[0] if len(ids) == 1 else None)


def _infer_column(s: pl.Series, *, detect_pii: bool) -> Column:
    name = s.name
    nullable = s.null_count() > 0
    dtype = s.dtype
    non_null = s.drop_nulls()
    n = len(non_null)
    if dtype == pl.Null or n == 0:
        return Column(name=name, kind=ColumnKind.CATEGORICAL, dtype="String", nullable=True)
    if dtype == pl.Boolean:
        return Column(name=name, kind=ColumnKind.BOOLEAN, dtype="Boolean", nullable=nullable)
    if dtype.is_temporal():
        if isinstance(dtype, (pl.Duration, pl.Time)):
            return _numeric_like_temporal(s, nullable)
        tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
        found = _pii_column(non_null, nullable) if detect_pii else None
        if found is not None:  # dates of birth, by name
            return found.model_copy(update={"timezone": tz})
        return Column(
            name=name, kind=ColumnKind.DATETIME, dtype=dtype_name(dtype), nullable=nullable, timezone=tz
        )
    if dtype.is_numeric():
        found = _pii_column(non_null, nullable) if detect_pii and dtype.is_integer() else None
        if found is not None:  # card numbers and national ids with valid check digits
            return found
        unique = non_null.n_unique() == n
        if dtype.is_integer() and unique and n > 1 and _ID_NAME.search(name):
            return Column(name=name, kind=ColumnKind.ID, dtype=dtype_name(dtype), nullable=nullable)
        if dtype.is_integer():
            decimals = 0
        else:
            decimals = _decimals(non_null)
        return Column(
            name=name,
            kind=ColumnKind.NUMERICAL,
            dtype=dtype_name(dtype),
            nullable=nullable,
            min=float(non_null.min()),  # type: ignore[arg-type]
            max=float(non_null.max()),  # type: ignore[arg-type]
            decimals=decimals,
        )
    if isinstance(dtype, (pl.String, pl.Categorical, pl.Enum)):
        strings = non_null.cast(pl.String)
        sample = strings.head(_SAMPLE_FOR_INFERENCE)
        found = _pii_column(sample, nullable) if detect_pii else None
        if found is not None:
            return found
        fmt = _datetime_format(sample)
        if fmt is not None:
            return Column(
                name=name,
                kind=ColumnKind.DATETIME,
                dtype="String",
                nullable=nullable,
                datetime_format=fmt,
            )
        n_unique = strings.n_unique()
        if n_unique == n and n > 1 and _ID_NAME.search(name):
            return Column(name=name, kind=ColumnKind.ID, dtype="String", nullable=nullable)
        mean_len = float(sample.str.len_chars().mean() or 0.0)
        has_spaces = float(sample.str.contains(" ").mean() or 0.0)
        if mean_len >= _TEXT_MIN_MEAN_LEN and has_spaces > 0.5 and n_unique > 0.5 * n:
            spans = None
            if detect_pii:
                from synthkit.prepare.pii_text import count_spans

                spans = count_spans(sample) or None
            return Column(name=name, kind=ColumnKind.TEXT, dtype="String", nullable=nullable,
                          pii_spans=spans)
        return Column(name=name, kind=ColumnKind.CATEGORICAL, dtype="String", nullable=nullable)
    # lists, structs, binary, objects: nothing we can model yet; keep as categorical strings.
    return Column(name=name, kind=ColumnKind.CATEGORICAL, dtype="String", nullable=nullable)


def _pii_column(values: pl.Series, nullable: bool) -> Column | None:
    """A ``pii`` column when the name or validated values say personal data, else None."""
    from synthkit.prepare.pii_detect import detect_pii

    found = detect_pii(values.name, values)
    if found is None:
        return None
    dtype = values.dtype if values.dtype.is_temporal() or values.dtype.is_integer() else pl.String()
    fmt = None
    if found.kind == PIIKind.DATE_OF_BIRTH and dtype == pl.String:
        fmt = _datetime_format(values.head(_SAMPLE_FOR_INFERENCE))
    return Column(
        name=values.name, kind=ColumnKind.PII, dtype=dtype_name(dtype), nullable=nullable,
        pii=found.kind, datetime_format=fmt,
        pii_options=PIIOptions(locale=found.locale) if found.locale else None,
    )


def _numeric_like_temporal(s: pl.Series, nullable: bool) -> Column:
    phys = s.to_physical().drop_nulls()
    return Column(
        name=s.name,
        kind=ColumnKind.NUMERICAL,
        dtype=dtype_name(s.dtype),
        nullable=nullable,
        min=float(phys.min()),  # type: ignore[arg-type]
        max=float(phys.max()),  # type: ignore[arg-type]
        decimals=0,
    )


def _decimals(s: pl.Series, cap: int = 6) -> int | None:
    """Smallest number of decimals (<= cap) that represents every sampled value exactly.

    None when more than ``cap`` are needed (measurements, logs): such values are not rounded.
    """
    sample = s.head(_SAMPLE_FOR_INFERENCE).cast(pl.Float64)
    tolerance = (sample.abs() * 8 * 2.220446049250313e-16).clip(lower_bound=1e-12)
    for d in range(cap + 1):
        if bool(((sample.round(d) - sample).abs() <= tolerance).all()):
            return d
    return None


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y-%m",
    "%b%Y",
    "%b-%Y",
)


def _datetime_format(sample: pl.Series) -> str | None:
    """The first format that parses every sampled string as a date or datetime, if any."""
    probe = sample.head(2_000)
    if len(probe) == 0 or not bool(probe.str.contains(r"\d").all()):
        return None
    for fmt in _DATE_FORMATS:
        parser = (
            probe.str.strptime(pl.Date, fmt, strict=False)
            if "%H" not in fmt
            else probe.str.strptime(pl.Datetime, fmt, strict=False)
        )
        if parser.null_count() == 0:
            return fmt
    return None
