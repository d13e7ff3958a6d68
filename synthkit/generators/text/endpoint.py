"""``text/endpoint`` and ``tabular/endpoint``: generation by a large language model behind any
OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp, a company gateway).

``fit`` learns nothing: it keeps a pool of real examples (``example_pool`` rows or documents,
saved with the model) and, for tables, the JSON schema of a row built from the synthkit
:class:`~synthkit.schema.Schema`. ``sample`` sends few-shot prompts (``examples_per_prompt``
real examples drawn from the pool per request) and collects the answers:

* **tables** — each request asks for ``rows_per_request`` rows with
  ``response_format={"type": "json_schema", ...}`` (types, category enums, numeric bounds,
  nullability); every row is validated against the Schema, rejected rows (missing or extra
  fields, wrong types, unknown categories, out-of-range numbers, unparseable dates) are counted
  by reason and re-requested, up to ``max_rounds`` rounds. Conditions go into the prompt and the
  JSON schema. Columns marked PII are never sent: they are filled with Faker values as in every
  family, unless their ``pii_handling`` is ``keep``; free-text columns in which personal data was
  found are withheld likewise.
* **text** — one document per request, with the label in the prompt when the corpus has labels.

Real examples leave the machine: the fit report says so, and ``examples_per_prompt=0`` sends
none (zero-shot). HTTP, retries, rate limits, the response cache and usage counts live in
:mod:`synthkit.generators.text.endpoint_client`. The API key comes from the environment variable
``api_key_env`` names, at request time; it is never stored in the config, a saved model, a
report, a log line or an error.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from synthkit.errors import ConfigError
from synthkit.frames import normalise_missing, to_polars
from synthkit.generators.base import (
    Generator,
    GeneratorConfig,
    NonTabularGenerator,
    _check_n,
    _jsonable,
)
from synthkit.generators.text.common import TextModelMixin, classes_of
from synthkit.generators.text.endpoint_client import (
    EndpointClient,
    EndpointError,
    EndpointUsage,
    read_api_key,
)
from synthkit.schema import Column, ColumnKind, PIIHandling, Schema, infer_schema

G = TypeVar("G", bound="Generator")

STATE_FILE = "endpoint.json"
STATE_VERSION = 1
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Most values of a category set spelt out in the prompt (the JSON schema has up to _MAX_ENUM).
_PROMPT_CATEGORIES = 30
#: Categorical columns with more distinct values are sent as free strings (no enum, no check).
_MAX_ENUM = 1000
#: Sent columns get these kinds in the JSON schema; others are filled (ids, withheld PII/text).
_ROW_KINDS = frozenset({ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN,
                        ColumnKind.DATETIME})


class EndpointConfig(GeneratorConfig):
    """Options shared by ``text/endpoint`` and ``tabular/endpoint``."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Server root, e.g. https://api.openai.com/v1.")
    model: str = Field(..., min_length=1, description="Model name the server serves.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key "
        "(the key itself is never configured); None for a server that needs no key.",
    )
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int | None = Field(None, ge=1, description="Most completion tokens per request.")
    examples_per_prompt: int = Field(5, ge=0, description="Real examples per prompt (0: zero-shot, nothing real sent).")
    example_pool: int = Field(200, ge=1, description="Real examples kept at fit (and saved) to draw from.")
    max_concurrent: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(None, ge=1, description="Request rate limit.")
    tokens_per_minute: int | None = Field(None, ge=1, description="Token rate limit (prompt + completion).")
    max_retries: int = Field(5, ge=0, le=50, description="Retries per request on 429, 5xx, timeouts.")
    backoff: float = Field(1.0, gt=0.0, description="First back-off in seconds (doubles, full jitter).")
    max_backoff: float = Field(60.0, gt=0.0, description="Longest wait between tries, Retry-After included.")
    timeout: float = Field(60.0, gt=0.0, description="Seconds per request.")
    cache_dir: str | None = Field(None, description="On-disk response cache; repeated requests cost nothing.")
    max_rounds: int = Field(5, ge=1, le=100, description="Rounds of requests (first + re-requests for rejects).")
    price_per_1k_prompt_tokens: float | None = Field(None, ge=0.0, description="For the cost estimate.")
    price_per_1k_completion_tokens: float | None = Field(None, ge=0.0, description="For the cost estimate.")
    instructions: str | None = Field(None, description="Extra instructions added to the system prompt.")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (not _ENV_NAME.fullmatch(value) or len(value) > 128):
            # never echo the value: it may be a key pasted into the wrong field
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), "
                             "e.g. 'OPENAI_API_KEY', not the key itself")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8000/v1")
        if parts.username or parts.password:
            raise ValueError("must not hold credentials: put the key in the environment variable "
                             "named by api_key_env")
        return value.rstrip("/")

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return None if value is None else str(value)


class TabularEndpointConfig(EndpointConfig):
    """Options of ``tabular/endpoint``."""

    rows_per_request: int = Field(10, ge=1, le=1000, description="Rows asked for in one request.")


class TextEndpointConfig(EndpointConfig):
    """Options of ``text/endpoint``."""

    text_column: str | None = Field(None, description="Text column of a table (default: its only string column).")
    label_column: str | None = Field(None, description="Label (condition) column of a table.")
    max_tokens: int | None = Field(512, ge=1, description="Most completion tokens per document.")


# --- shared machinery ---------------------------------------------------------------------------
class _EndpointMixin:
    """Client sessions and usage bookkeeping shared by both endpoint generators."""

    config: EndpointConfig
    fit_report_: dict[str, Any]

    def _usage_dict(self, usage: EndpointUsage) -> dict[str, Any]:
        cfg = self.config
        return usage.to_dict(cfg.price_per_1k_prompt_tokens, cfg.price_per_1k_completion_tokens)

    def _check_key(self) -> None:
        read_api_key(self.config.api_key_env)

    @contextmanager
    def _session(self) -> Iterator[tuple[EndpointClient, EndpointUsage]]:
        """One client and one usage record for a sample call (nested calls share them)."""
        current = getattr(self, "_active", None)
        if current is not None:
            yield current
            return
        cfg = self.config
        client = EndpointClient(
            base_url=cfg.base_url, api_key=read_api_key(cfg.api_key_env), timeout=cfg.timeout,
            max_retries=cfg.max_retries, backoff=cfg.backoff, max_backoff=cfg.max_backoff,
            max_concurrent=cfg.max_concurrent, requests_per_minute=cfg.requests_per_minute,
            tokens_per_minute=cfg.tokens_per_minute, cache_dir=cfg.cache_dir,
        )
        usage = EndpointUsage()
        self._active = (client, usage)
        self._rejects: Counter[str] = Counter()
        try:
            yield client, usage
        finally:
            self._active = None
            client.close()
            total = EndpointUsage.from_counts(self.fit_report_.get("usage", {}))
            total.merge(usage)
            self.fit_report_["usage"] = self._usage_dict(total)
            self.sample_report_ = {"usage": self._usage_dict(usage), "rejected": dict(self._rejects)}

    def _body(self, messages: list[dict[str, str]], seed: int, response_format: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                                "seed": seed}
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        if response_format is not None:
            body["response_format"] = response_format
        return body

    def _endpoint_report(self, sent: str, pool: int) -> dict[str, Any]:
        cfg = self.config
        if cfg.examples_per_prompt:
            notice = (f"Real {sent} are sent to the endpoint: {cfg.examples_per_prompt} per request, "
                      f"drawn from {pool} kept at fit and stored in the model directory.")
        else:
            notice = (f"Zero-shot: no real {sent} are sent to the endpoint; {pool} are still kept "
                      "in the model directory.")
        return {"base_url": _public_url(cfg.base_url), "model": cfg.model, "api_key_env": cfg.api_key_env,
                "examples_per_prompt": cfg.examples_per_prompt, "example_pool": pool,
                "real_examples_sent": cfg.examples_per_prompt > 0, "notice": notice}


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _seeds(rng: np.random.Generator, k: int) -> list[int]:
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=k)]


# --- rows: JSON schema and validation -------------------------------------------------------------
def _json_type(col: Column) -> str:
    dtype = col.polars_dtype
    if col.kind == ColumnKind.BOOLEAN:
        return "boolean"
    if col.kind == ColumnKind.NUMERICAL or (col.kind == ColumnKind.PII and dtype.is_numeric()):
        return "integer" if dtype.is_integer() or col.decimals == 0 else "number"
    return "string"


def row_json_schema(columns: list[dict[str, Any]], conditions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of one row: a type per column, enums for categories, bounds, null."""
    props: dict[str, Any] = {}
    for spec in columns:
        prop: dict[str, Any] = {"type": spec["type"]}
        if spec.get("enum") is not None:
            prop = {"enum": list(spec["enum"])}
        if spec.get("minimum") is not None:
            prop["minimum"] = spec["minimum"]
        if spec.get("maximum") is not None:
            prop["maximum"] = spec["maximum"]
        if spec.get("format"):
            prop["format"] = spec["format"]
        if conditions and spec["name"] in conditions:
            prop = {"enum": [conditions[spec["name"]]]}
        elif spec["nullable"]:
            if "enum" in prop:
                prop["enum"] = [*prop["enum"], None]
            else:
                prop["type"] = [prop["type"], "null"]
        props[spec["name"]] = prop
    return {"type": "object", "properties": props, "required": [s["name"] for s in columns],
            "additionalProperties": False}


def response_format(columns: list[dict[str, Any]], k: int, conditions: Mapping[str, Any] | None) -> dict[str, Any]:
    """``response_format`` for a request of ``k`` rows (json_schema, strict)."""
    schema = {"type": "object", "properties": {"rows": {
        "type": "array", "items": row_json_schema(columns, conditions), "minItems": k, "maxItems": k}},
        "required": ["rows"], "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": "rows", "strict": True, "schema": schema}}


def _check_value(spec: dict[str, Any], value: Any, allowed: set[Any] | None) -> str | None:
    """Why ``value`` does not fit the column, or None when it does."""
    if value is None:
        return None if spec["nullable"] else "null_in_required_column"
    if isinstance(value, (list, dict)):
        return "wrong_type"
    enum = spec.get("enum")
    if enum is not None:
        return None if allowed is not None and value in allowed and not _bool_mismatch(value, enum) else "unknown_category"
    kind = spec["type"]
    if kind == "boolean":
        return None if isinstance(value, bool) else "wrong_type"
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "wrong_type"
        if kind == "integer" and not float(value).is_integer():
            return "wrong_type"
        lo, hi = spec.get("minimum"), spec.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return "out_of_range"
        return None
    return None if isinstance(value, str) else "wrong_type"


def _bool_mismatch(value: Any, enum: list[Any]) -> bool:
    # JSON true == 1 in Python: keep booleans and numbers apart
    return isinstance(value, bool) != any(isinstance(e, bool) for e in enum if e is not None)


def validate_rows(rows: Any, columns: list[dict[str, Any]], reasons: Counter[str]) -> list[dict[str, Any]]:
    """The rows of an answer that fit the column specs; each rejected row is counted by reason."""
    if not isinstance(rows, list):
        reasons["malformed_response"] += 1
        return []
    names = [c["name"] for c in columns]
    wanted = set(names)
    allowed = [set(c["enum"]) if c.get("enum") is not None else None for c in columns]
    good: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, dict):
            reasons["not_an_object"] += 1
            continue
        keys = set(row)
        if wanted - keys:
            reasons["missing_field"] += 1
            continue
        if keys - wanted:
            reasons["extra_field"] += 1
            continue
        why = next((w for c, a in zip(columns, allowed, strict=True)
                    if (w := _check_value(c, row[c["name"]], a)) is not None), None)
        if why is not None:
            reasons[why] += 1
            continue
        good.append(row)
    return good


def _parse_rows(content: str) -> Any:
    """The rows array of an answer (an object with ``rows``, or a bare array), else None."""
    text = content.strip()
    if text.startswith("```"):  # some servers wrap JSON in a code fence despite the schema
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("rows")
    return data if isinstance(data, list) else None


def _to_json_values(df: pl.DataFrame) -> pl.DataFrame:
    """Dates and datetimes as ISO strings, so rows go to JSON as the JSON schema describes them."""
    out = []
    for name, dtype in df.schema.items():
        s = df.get_column(name)
        if dtype == pl.Date:
            s = s.dt.to_string("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            s = s.dt.to_string("%Y-%m-%dT%H:%M:%S")
        elif isinstance(dtype, (pl.Categorical, pl.Enum)):
            s = s.cast(pl.String)
        out.append(s)
    return pl.DataFrame(out)


def _frame_from_rows(rows: list[dict[str, Any]], columns: list[dict[str, Any]], schema: Schema) -> tuple[pl.DataFrame, np.ndarray]:
    """Valid rows as a frame in the schema's dtypes, and a mask of rows whose dates parsed."""
    series = []
    ok = np.ones(len(rows), dtype=bool)
    for spec in columns:
        col = schema[spec["name"]]
        values = [r[spec["name"]] for r in rows]
        dtype = col.polars_dtype
        if col.kind == ColumnKind.DATETIME:
            raw = pl.Series(spec["name"], values, pl.String)
            if dtype == pl.Date:
                parsed = raw.str.to_date(strict=False)
            elif isinstance(dtype, pl.Datetime):
                parsed = raw.str.to_datetime(strict=False, time_unit=dtype.time_unit).cast(dtype, strict=False)
            else:
                check = raw.str.to_datetime(col.datetime_format, strict=False)
                ok &= ~(check.is_null() & raw.is_not_null()).to_numpy()
                series.append(raw)
                continue
            ok &= ~(parsed.is_null() & raw.is_not_null()).to_numpy()
            series.append(parsed)
        elif spec["type"] in ("integer", "number") and spec.get("enum") is None:
            series.append(pl.Series(spec["name"], [None if v is None else float(v) for v in values], pl.Float64))
        else:
            series.append(pl.Series(spec["name"], values, dtype=dtype, strict=False))
    return pl.DataFrame(series), ok


# --- tabular/endpoint ------------------------------------------------------------------------------
class TabularEndpointGenerator(_EndpointMixin, Generator):
    """``tabular/endpoint``: table rows from an LLM behind an OpenAI-compatible server, each row
    validated against the Schema (see the module docstring)."""

    name: ClassVar[str] = "tabular/endpoint"
    config_class: ClassVar[type[GeneratorConfig]] = TabularEndpointConfig
    config: TabularEndpointConfig
    supports_conditions: ClassVar[bool] = True
    min_rows: ClassVar[int] = 2
    #: One sample batch is at most this many rows (each costs requests; bounded memory anyway).
    sample_batch_size: ClassVar[int] = 10_000

    def fit(self: G, data: Any, *, schema: Schema | None = None, resume: bool = False) -> G:
        """Keep the example pool and the row JSON schema; no request is made (the key is checked)."""
        self._check_key()  # type: ignore[attr-defined]
        df = normalise_missing(to_polars(data))
        if schema is None and df.height:
            schema = infer_schema(df)
        self._whole = df  # type: ignore[attr-defined]
        try:
            super().fit(df, schema=schema, resume=resume)  # type: ignore[misc]
        finally:
            del self._whole  # type: ignore[attr-defined]
        sent = {s["name"] for s in self.columns_}  # type: ignore[attr-defined]
        self.fit_report_["filled_columns"] = {k: v for k, v in self.fit_report_["filled_columns"].items()
                                              if k not in sent}
        return self

    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        cfg = self.config
        whole: pl.DataFrame = self._whole
        withheld: dict[str, str] = {}
        extra: list[Column] = []
        for col in self.schema_:
            keep = col.pii_handling == PIIHandling.KEEP
            if col.kind == ColumnKind.PII:
                if keep:
                    extra.append(col)
                else:
                    withheld[col.name] = f"personal data ({(col.pii.value if col.pii else 'other')}): filled with fakes"
            elif col.kind == ColumnKind.TEXT:
                if keep or not any((col.pii_spans or {}).values()):
                    extra.append(col)
                else:
                    withheld[col.name] = "free text with personal data found in it: filled with placeholder text"
            elif col.kind == ColumnKind.ID:
                withheld[col.name] = "id: generated unique"
        sent_names = [c.name for c in schema] + [c.name for c in extra]
        sent = self.schema_.select([n for n in self.schema_.names if n in set(sent_names)])
        self.columns_ = [self._column_spec(c, whole.get_column(c.name)) for c in sent]
        if extra:  # these are now generated by the endpoint, not filled
            names = {c.name for c in extra}
            self.fillers_ = {**self.fillers_, "columns": [s for s in self.fillers_.get("columns", [])
                                                            if s["name"] not in names]}
        rng = np.random.default_rng(cfg.seed)
        pool = whole.select(sent.names)
        if pool.height > cfg.example_pool:
            pool = pool[np.sort(rng.choice(pool.height, cfg.example_pool, replace=False))]
        self.examples_ = _to_json_values(pool).to_dicts()
        report = self._endpoint_report("rows", len(self.examples_))
        report.update(columns_sent=sent.names, columns_withheld=withheld,
                      rows_per_request=cfg.rows_per_request)
        self.fit_report_["endpoint"] = report

    @staticmethod
    def _column_spec(col: Column, values: pl.Series) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": col.name, "kind": col.kind.value, "type": _json_type(col),
                                "nullable": bool(col.nullable or values.null_count() > 0)}
        if col.kind == ColumnKind.CATEGORICAL:
            cats = col.categories if col.categories is not None else values.drop_nulls().unique().to_list()
            if len(cats) <= _MAX_ENUM:
                spec["enum"] = sorted(_jsonable(list(cats)), key=lambda v: (str(type(v)), v))
        elif col.kind == ColumnKind.NUMERICAL:
            spec["minimum"], spec["maximum"] = col.min, col.max
            if spec["type"] == "integer":
                spec["minimum"] = None if col.min is None else math.floor(col.min)
                spec["maximum"] = None if col.max is None else math.ceil(col.max)
        elif col.kind == ColumnKind.DATETIME:
            dtype = col.polars_dtype
            spec["format"] = "date" if dtype == pl.Date else "date-time" if isinstance(dtype, pl.Datetime) else None
            spec["datetime_format"] = col.datetime_format
        return spec

    # --- prompts ------------------------------------------------------------------------------
    def _describe(self, spec: dict[str, Any]) -> str:
        col = self.schema_[spec["name"]]
        if spec.get("enum") is not None:
            values = spec["enum"]
            shown = ", ".join(json.dumps(v) for v in values[:_PROMPT_CATEGORIES])
            more = f" (and {len(values) - _PROMPT_CATEGORIES} more)" if len(values) > _PROMPT_CATEGORIES else ""
            what = f"one of {shown}{more}"
        elif spec["type"] in ("integer", "number"):
            what = spec["type"]
            if spec.get("minimum") is not None:
                what += f" from {spec['minimum']:g} to {spec['maximum']:g}"
        elif col.kind == ColumnKind.DATETIME:
            what = f"date/time as {spec.get('datetime_format') or spec.get('format')}"
        elif col.kind == ColumnKind.TEXT:
            what = "free text"
        else:
            what = spec["type"]
        return f"- {spec['name']}: {what}{', may be null' if spec['nullable'] else ''}"

    def _messages(self, k: int, rng: np.random.Generator, conditions: Mapping[str, Any] | None) -> list[dict[str, str]]:
        cfg = self.config
        system = ("You generate realistic, varied synthetic rows of a table. Answer with JSON only: an "
                  f'object whose "rows" array holds exactly {k} new rows, each an object with every '
                  "column. Follow the column types and value sets exactly. Never copy an example row.")
        if cfg.instructions:
            system += "\n" + cfg.instructions
        lines = ["Columns:", *(self._describe(s) for s in self.columns_)]
        m = min(cfg.examples_per_prompt, len(self.examples_))
        if m:
            index = rng.choice(len(self.examples_), size=m, replace=False)
            lines += ["", "Example rows:", *(json.dumps(self.examples_[i], ensure_ascii=False) for i in sorted(index))]
        lines.append("")
        if conditions:
            fixed = ", ".join(f"{c} = {json.dumps(_jsonable(v))}" for c, v in conditions.items())
            lines.append(f"Every row must have {fixed}.")
        lines.append(f"Write {k} new rows.")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    # --- sample -------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        rebalance: Mapping[str, Mapping[Any, float]] | None = None,
        seed: int | None = None,
    ) -> pl.DataFrame:
        """``n`` rows from the endpoint (see Generator.sample); ``sample_report_`` then holds
        this call's requests, retries, cache hits, tokens, cost and rejected rows by reason."""
        self._check_fitted()
        _check_n(n)
        with self._session():
            return super().sample(n, conditions=conditions, rebalance=rebalance, seed=seed)

    def sample_batches(self, n: int, **kwargs: Any) -> Iterator[pl.DataFrame]:
        self._check_fitted()
        with self._session():
            yield from super().sample_batches(n, **kwargs)

    def _sample(self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None) -> pl.DataFrame:
        cfg = self.config
        client, usage = getattr(self, "_active", None) or (None, None)
        if client is None:  # called outside sample(): open a session for this call
            with self._session():
                return self._sample(n, rng=rng, conditions=conditions)
        conditions = {c: v for c, v in (conditions or {}).items() if any(s["name"] == c for s in self.columns_)}
        got: list[dict[str, Any]] = []
        reasons: Counter[str] = Counter()
        for _ in range(cfg.max_rounds):
            need = n - len(got)
            if need <= 0:
                break
            sizes = [cfg.rows_per_request] * (need // cfg.rows_per_request)
            if need % cfg.rows_per_request:
                sizes.append(need % cfg.rows_per_request)
            bodies = [self._body(self._messages(k, rng, conditions), seed,
                                 response_format(self.columns_, k, conditions))
                      for k, seed in zip(sizes, _seeds(rng, len(sizes)), strict=True)]
            for done in client.complete_many(bodies, usage):
                rows = _parse_rows(done.content)
                if rows is None:
                    reasons["malformed_response"] += 1
                    continue
                got.extend(validate_rows(rows, self.columns_, reasons))
        if got:
            frame, ok = _frame_from_rows(got, self.columns_, self.schema_)
            reasons["bad_datetime"] += int((~ok).sum())
            frame = frame.filter(pl.Series(ok))
        else:
            frame = pl.DataFrame()
        self._rejects.update({k: v for k, v in reasons.items() if v})
        if frame.height < n:
            raise EndpointError(
                f"The endpoint gave {frame.height} valid rows of {n} asked for in {cfg.max_rounds} "
                f"rounds of requests; rejected: {dict(+reasons)}.",
                hint="Use a stronger model or one that supports response_format json_schema, lower "
                "rows_per_request or temperature, or raise max_rounds.",
            )
        return frame.head(n)

    # --- persistence --------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {STATE_FILE: {"version": STATE_VERSION, "columns": self.columns_, "examples": self.examples_}}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        from synthkit.generators.neural import family_state

        state = family_state(files, STATE_FILE, STATE_VERSION)
        self.columns_ = list(state["columns"])
        self.examples_ = list(state["examples"])


# --- text/endpoint ---------------------------------------------------------------------------------
class TextEndpointGenerator(_EndpointMixin, TextModelMixin, NonTabularGenerator):
    """``text/endpoint``: documents from an LLM behind an OpenAI-compatible server, few-shot from
    the corpus and conditioned on its label; output like ``text/gpt``'s."""

    name: ClassVar[str] = "text/endpoint"
    data_kind: ClassVar[str] = "text"
    config_class: ClassVar[type[GeneratorConfig]] = TextEndpointConfig
    config: TextEndpointConfig
    min_rows: ClassVar[int] = 2
    supports_conditions: ClassVar[bool] = True
    fitted_attribute: ClassVar[str] = "examples_"

    def fit(self: G, data: Any, *, schema: Any = None, resume: bool = False) -> G:
        """Keep an example pool from ``data`` (a TextCorpus, a DataFrame or a list of strings)."""
        if schema is not None:
            raise ConfigError(f"{self.registry_name} learns documents: it takes no table schema.")
        if resume:
            raise ConfigError(f"{self.registry_name} has no training to resume.", hint="Fit again without resume.")
        cfg = self.config
        self._check_key()  # type: ignore[attr-defined]
        docs, labels, text_name, label_name = self._read_corpus(data)
        classes = classes_of(labels, None, private=False)
        rng = np.random.default_rng(cfg.seed)
        index = np.arange(len(docs))
        if len(docs) > cfg.example_pool:
            index = np.sort(rng.choice(len(docs), cfg.example_pool, replace=False))
        self._keep_corpus_facts(docs, labels, text_name, label_name, classes)
        self.examples_ = [{"text": docs[i], "label": None if labels is None else labels[i]} for i in index]
        self.fit_report_ = {"warnings": [], "corpus": {"documents": len(docs), "classes": len(classes)},
                            "endpoint": self._endpoint_report("documents", len(self.examples_)), "fit_seconds": 0.0}
        return self

    def _messages(self, label: str | None, rng: np.random.Generator) -> list[dict[str, str]]:
        cfg = self.config
        system = ("You write one new document in the style of the examples. Answer with the document's "
                  "text only: no title, no quotes, no commentary. Never copy an example.")
        if cfg.instructions:
            system += "\n" + cfg.instructions
        pool = [e for e in self.examples_ if label is None or e["label"] == label] or self.examples_
        m = min(cfg.examples_per_prompt, len(pool))
        lines: list[str] = []
        if m:
            lines.append("Examples:")
            for i in sorted(rng.choice(len(pool), size=m, replace=False)):
                e = pool[i]
                if self.label_column_ is not None:
                    lines.append(f"Label: {e['label']}")
                lines += [f"Text: {e['text']}", ""]
        if label is not None:
            lines.append(f"Label: {label}")
        lines.append("Write one new document" + (" with this label." if label is not None else "."))
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    def sample(  # type: ignore[override]
        self, n: int, *, conditions: Mapping[str, Any] | None = None, seed: int | None = None,
        rebalance: Any = None,
    ) -> pl.DataFrame:
        """``n`` new documents (text column, plus the label column when the corpus had labels);
        ``conditions={"label": v}`` asks for one class. ``sample_report_`` holds the usage."""
        if rebalance is not None:
            raise ConfigError("rebalance= applies to tables; text models take conditions={'label': v}.")
        self._check_fitted()
        n = _check_n(n)
        fixed = self._check_label(conditions)
        cfg = self.config
        rng = np.random.default_rng(seed)
        wanted = self._class_names(
            self._draw_classes(n, None if fixed is None else self.classes_.index(fixed), rng).tolist()
        )
        texts: list[str | None] = [None] * n
        with self._session() as (client, usage):
            for _ in range(cfg.max_rounds):
                todo = [i for i in range(n) if texts[i] is None]
                if not todo:
                    break
                bodies = [self._body(self._messages(wanted[i], rng), s, None)
                          for i, s in zip(todo, _seeds(rng, len(todo)), strict=True)]
                for i, done in zip(todo, client.complete_many(bodies, usage), strict=True):
                    text = done.content.strip()
                    if text:
                        texts[i] = text
                    else:
                        self._rejects["empty_document"] += 1
        missing = sum(t is None for t in texts)
        if missing:
            raise EndpointError(f"The endpoint gave {missing} of {n} documents empty in {cfg.max_rounds} rounds.",
                                hint="Raise max_tokens or max_rounds, or check the model.")
        return self._text_frame(texts, wanted)

    def _check_label(self, conditions: Mapping[str, Any] | None) -> str | None:
        if not conditions:
            return None
        allowed = {"label", *([self.label_column_] if self.label_column_ else [])}
        unknown = set(conditions) - allowed
        if unknown:
            raise ConfigError(f"Text models can be conditioned on their label only, not {sorted(unknown)}.",
                              hint="Use conditions={'label': v}.")
        if not self.classes_:
            raise ConfigError("This model was fitted without labels.", hint="Fit on a corpus with labels.")
        value = str(next(iter(conditions.values())))
        if value not in self.classes_:
            raise ConfigError(f"Label {value!r} was never seen in the corpus.", hint=f"Known labels: {self.classes_}")
        return value

    # --- persistence --------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {STATE_FILE: {"version": STATE_VERSION, "examples": self.examples_, **self._label_state()}}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        from synthkit.generators.neural import family_state

        state = family_state(files, STATE_FILE, STATE_VERSION)
        self.examples_ = list(state["examples"])
        self._restore_labels(state)
