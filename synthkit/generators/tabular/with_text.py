"""``tabular/with-text``: tables with free-text columns, the text written row by row by a text
model conditioned on the row's other (synthetic) columns.

* **Fit** — a tabular family (``tabular``, default ``tabular/argn``) learns every learned column
  except the text ones. One ``text/gpt`` model per text column learns documents
  ``<prefix>\\n<text>``, where the prefix serialises the row's conditioning columns compactly and
  deterministically, e.g. ``0=Twitter for Android|1=q3|2=q0``: categorical and boolean values as
  themselves (the ``max_categories`` most frequent; rarer ones as ``~``), numbers and datetimes as
  their quantile bin (``numeric_bins`` bins learned at fit), missing values as ``_``. The prefix
  vocabulary stays small, so the text model learns it quickly.
* **Sample** — the tabular rows first (``conditions=`` go to the tabular part), then each row's
  text from its own synthetic prefix: prefixes are built with polars for a whole batch, encoded
  once per distinct prefix, and continued token by token with a key/value cache, a chunk of rows
  at a time (bounded memory).
* **Missing text** — a null or blank text is learned as an empty document after its prefix, so
  the model learns *when* text is missing, row by row; an empty generated text comes back null.
* **PII** — text columns are scanned for PII spans (``synthkit.prepare.pii_text``) before
  training and the spans replaced as the column's ``pii_handling`` says (default fake; ``keep``
  learns them; ``hash`` becomes typed placeholders, as no PII key is available here). A pipeline
  has already done this (``synthkit.prepare.pii_handling``); the second pass then finds only fakes.
* **Differential privacy** — ``dp={"epsilon": e}`` is split evenly over the parts (the tabular
  model and each text model read the same rows, so their epsilons and deltas add): each part
  trains privately with its share, and the fit report lists what each part spent and the total.
  The prefix bins and category lists are then learned from rows the private tabular model
  generated (post-processing, no extra budget), never from the real rows.
* **Artifacts** — one model directory: both parts' safetensors weights (names prefixed
  ``tabular/`` and ``text<i>/``) and JSON files (prefixed ``tabular.`` and ``text<i>.``), and
  ``with_text.json`` naming the parts and the prefix; no pickle.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from synthkit.errors import ConfigError, DataError
from synthkit.generators.base import LEARNED_KINDS, Generator, GeneratorConfig, _jsonable
from synthkit.nn.privacy import DPConfig
from synthkit.schema import Column, ColumnKind, PIIHandling, Schema

_STATE_FILE = "with_text.json"
_STATE_VERSION = 1
_TABULAR = "tabular"
#: Ends every prefix: a separate token for the byte-level BPE, so the prompt's tokens are the
#: leading tokens of the training document.
SEP = "\n"
MISSING, OTHER = "_", "~"
#: Rows the private tabular model generates to learn the prefix bins from (post-processing).
PRIVATE_PREFIX_ROWS = 5_000
#: Options of text/gpt this generator sets itself.
_TEXT_OWNED = frozenset({"text_column", "label_column", "labels", "dp", "seed"})


class TabularWithTextConfig(GeneratorConfig):
    """Options of ``tabular/with-text``: the two parts, the prefix, PII and privacy."""

    tabular: str = Field("tabular/argn", description="Registry name of the tabular family.")
    tabular_params: dict[str, Any] = Field(
        default_factory=dict, description="Options of the tabular family, e.g. {'epochs': 50}."
    )
    text_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of text/gpt for every text column, e.g. {'epochs': 10, 'dim': 64}; "
        "max_length counts the prefix's tokens too.",
    )
    text_columns: list[str] | None = Field(
        None, description="Text columns to generate (default: the schema's text columns)."
    )
    condition_on: list[str] | None = Field(
        None, description="Columns the text is conditioned on (default: every other learned column)."
    )
    numeric_bins: int = Field(5, ge=2, le=50, description="Quantile bins of a numerical prefix column.")
    max_categories: int = Field(
        30, ge=1, le=1000, description="Most frequent values of a categorical prefix column kept as such."
    )
    scan_pii: bool = Field(
        True, description="Scan text for PII spans before training and apply the column's pii_handling."
    )
    device: str = Field("auto", description="Device of both parts ('auto', 'cpu', 'cuda').")
    progress: bool = Field(False, description="Show both parts' progress lines.")
    dp: DPConfig | None = Field(
        None, description="Differential privacy of the whole fit, split evenly over the parts."
    )

    @model_validator(mode="after")
    def _names(self) -> TabularWithTextConfig:
        if not self.tabular.startswith("tabular/") or self.tabular == TabularWithTextGenerator.name:
            raise ValueError(f"tabular must name a tabular family (e.g. 'tabular/argn'), got '{self.tabular}'")
        owned = sorted(_TEXT_OWNED & set(self.text_params))
        if owned:
            raise ValueError(f"text_params may not set {owned}: tabular/with-text sets them itself "
                             "(dp= and seed= apply to both parts)")
        if "dp" in self.tabular_params:
            raise ValueError("tabular_params may not set dp: pass dp= to tabular/with-text, which "
                             "splits it over both parts")
        for field, names in (("text_columns", self.text_columns), ("condition_on", self.condition_on)):
            if names is not None and len(set(names)) != len(names):
                raise ValueError(f"{field} names a column twice: {names}")
        if self.text_columns and self.condition_on and set(self.text_columns) & set(self.condition_on):
            raise ValueError("a column cannot be both a text column and a condition of the text")
        return self


class TabularWithTextGenerator(Generator):
    """A tabular family for the table plus a ``text/gpt`` per text column, conditioned on the row."""

    name: ClassVar[str] = "tabular/with-text"
    config_class: ClassVar[type[GeneratorConfig]] = TabularWithTextConfig
    config: TabularWithTextConfig
    learned_kinds: ClassVar[frozenset[ColumnKind]] = LEARNED_KINDS | {ColumnKind.TEXT}
    supports_conditions: ClassVar[bool] = True
    #: Rows per batch: every row's text is generated before the batch is returned.
    sample_batch_size: ClassVar[int] = 10_000

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._tabular_generator()  # bad options of either part fail here, not after a fit
        self._text_generator("text", 0)

    # --- the parts -------------------------------------------------------------------------
    def _parts(self) -> int:
        n_text = len(self.text_columns_) if hasattr(self, "text_columns_") else 1
        return 1 + n_text

    def _part_dp(self, n_rows: int) -> DPConfig | None:
        dp = self.config.dp
        if dp is None:
            return None
        k = self._parts()
        return dp.model_copy(update={"epsilon": dp.epsilon / k, "delta": dp.resolved_delta(n_rows) / k})

    def _tabular_generator(self, n_rows: int = 1) -> Generator:
        from synthkit.generators.registry import resolve

        cfg = self.config
        cls = resolve(cfg.tabular)[0]
        fields = cls.config_class.model_fields
        if cfg.dp is not None and "dp" not in fields:
            raise ConfigError(
                f"{cfg.tabular} cannot be trained with differential privacy, so the table part of "
                "tabular/with-text could not be either.",
                hint="Pick a private family: tabular='tabular/argn', 'tabular/tvae' or 'tabular/dpcopula'.",
            )
        shared = {"seed": cfg.seed, "device": cfg.device, "progress": cfg.progress, "dp": self._part_dp(n_rows)}
        options = {k: v for k, v in shared.items() if k in fields and v is not None} | cfg.tabular_params
        return cls(**options)

    def _text_generator(self, column: str, index: int, n_rows: int = 1) -> Any:
        from synthkit.generators.text.gpt import TextGPTGenerator

        cfg = self.config
        seed = None if cfg.seed is None else cfg.seed + 1 + index
        options = {"device": cfg.device, "progress": cfg.progress, **cfg.text_params}
        return TextGPTGenerator(**options, text_column=column, seed=seed, dp=self._part_dp(n_rows))

    # --- fit -------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        cfg = self.config
        text_columns = self._find_text_columns(schema)
        table_columns = [c.name for c in schema if c.name not in text_columns]
        condition_on = self._find_conditions(table_columns)
        self.text_columns_ = text_columns
        private = cfg.dp is not None
        started = time.perf_counter()

        tab_schema = schema.select(table_columns)
        tabular = self._tabular_generator(df.height)
        tabular.fit(df.select(table_columns), schema=tab_schema)
        self.tabular_ = tabular
        self.condition_values_ = dict(tabular.condition_values_)
        report: dict[str, Any] = self.fit_report_
        report["tabular"] = {"generator": cfg.tabular, "fit_seconds": round(time.perf_counter() - started, 4)}
        report["warnings"].extend(tabular.fit_report_.get("warnings", []))

        # the prefix: learned from the real rows, or (private fit) from rows the private model made
        source = df
        if private:
            source = tabular.sample(min(max(df.height, 1_000), PRIVATE_PREFIX_ROWS),
                                    seed=0 if cfg.seed is None else cfg.seed)
        self.prefix_ = learn_prefix(source, [schema[c] for c in condition_on],
                                    bins=cfg.numeric_bins, max_categories=cfg.max_categories)
        prefixes = build_prefixes(df, self.prefix_)

        self.text_ = {}
        report["text"] = {}
        report["pii"] = {}
        for index, name in enumerate(text_columns):
            texts = self._prepared_text(df.get_column(name), schema[name], report["pii"], private=private)
            if texts.null_count() == texts.len():
                raise DataError(f"Text column '{name}' holds no text: every value is null or blank.",
                                hint=f"Drop it (df.drop('{name}')) or fill it before training.")
            docs = (prefixes + SEP + texts.fill_null("")).alias(name)
            t0 = time.perf_counter()
            model = self._text_generator(name, index, df.height).fit(docs.to_frame())
            self.text_[name] = model
            seen = build_prefixes(source, self.prefix_) if private else prefixes  # private: no real facts
            longest = max(len(e.ids) for e in model.tokenizer_.encode_batch(seen.unique().to_list()))
            report["text"][name] = {**model.fit_report_.get("corpus", {}),
                                    "fit_seconds": round(time.perf_counter() - t0, 4),
                                    "training": model.fit_report_.get("training", {})}
            if not private:  # the longest real prefix is a fact about the real rows
                report["text"][name]["prefix_tokens_max"] = longest
            report["warnings"].extend(model.fit_report_.get("warnings", []))
            if longest + 8 > model.seq_length_:
                report["warnings"].append(
                    f"Prefixes of '{name}' take up to {longest} of its {model.seq_length_} tokens: "
                    "raise text_params max_length or condition on fewer columns (condition_on=)."
                )
        report["prefix"] = {"columns": [s["column"] for s in self.prefix_], "distinct_training_prefixes":
                            None if private else int(prefixes.n_unique())}
        if private:
            report["privacy"] = self._privacy_report()

    def _find_text_columns(self, schema: Schema) -> list[str]:
        named = self.config.text_columns
        if named is None:
            found = [c.name for c in schema if c.kind == ColumnKind.TEXT]
            if not found:
                raise DataError(
                    "The table has no text column: the schema marks none as kind 'text'.",
                    hint="Name them with text_columns=[...], or set kind 'text' in the schema; "
                    "for a table without text use a tabular family (e.g. tabular/argn).",
                )
            return found
        for name in named:
            if name not in schema:
                raise DataError(f"text_columns names '{name}', which the table lacks.",
                                hint=f"Columns: {schema.names}")
            col = schema[name]
            if col.kind not in (ColumnKind.TEXT, ColumnKind.CATEGORICAL) or col.dtype != "String":
                raise DataError(
                    f"Column '{name}' is of kind {col.kind.value} ({col.dtype}), not text.",
                    hint="Name string columns in text_columns, or mark the column kind 'text'.",
                )
        return list(named)

    def _find_conditions(self, table_columns: list[str]) -> list[str]:
        if not table_columns:
            raise DataError(
                "The table has no column besides its text to condition the text on.",
                hint="Use text/gpt for a corpus of text alone.",
            )
        if self.config.condition_on is None:
            return table_columns
        unknown = [c for c in self.config.condition_on if c not in table_columns]
        if unknown:
            raise DataError(
                f"condition_on names {unknown}, which are not learned non-text columns of the table.",
                hint=f"Choose among {table_columns}.",
            )
        return list(self.config.condition_on)

    def _prepared_text(self, series: pl.Series, col: Column, record: dict[str, Any], *,
                       private: bool) -> pl.Series:
        """The text column, stripped, with its PII spans handled (see the module docstring)."""
        from synthkit.prepare import pii_text
        from synthkit.prepare.pii_handling import redact_text

        texts = series.cast(pl.String).str.strip_chars()
        texts = pl.when(texts.str.len_chars() > 0).then(texts).otherwise(None)
        texts = pl.select(texts.alias(col.name)).to_series()
        handling = col.effective_pii_handling if col.kind == ColumnKind.TEXT else PIIHandling.FAKE
        if not self.config.scan_pii:
            record[col.name] = {"scanned": False}
            return texts
        if handling == PIIHandling.DROP:
            raise ConfigError(
                f"Text column '{col.name}' has pii_handling 'drop', yet it is to be generated.",
                hint=f"Drop it before fitting (df.drop('{col.name}')), or choose fake or redact.",
            )
        scan = pii_text.scan_text(texts)
        entry: dict[str, Any] = {"scanned": True, "handling": handling.value}
        if not private:  # span counts are facts about the real rows: not released under dp
            entry["spans"] = {k.value: v for k, v in scan.counts.items()}
        if handling != PIIHandling.KEEP and scan.total:
            how = PIIHandling.REDACT if handling == PIIHandling.HASH else handling
            texts = redact_text(texts, scan, how, rng=np.random.default_rng(self.config.seed))
            entry["replaced"] = "spans" if private else scan.total
            if handling == PIIHandling.HASH:
                entry["note"] = "hash needs a PII key: spans became typed placeholders instead"
        record[col.name] = entry
        return texts

    def _privacy_report(self) -> dict[str, Any]:
        parts = {"tabular": self.tabular_.fit_report_.get("privacy", {})}
        parts |= {f"text:{name}": m.fit_report_.get("privacy", {}) for name, m in self.text_.items()}
        missing = [p for p, r in parts.items() if not r.get("differential_privacy")]
        if missing:
            raise ConfigError(f"Parts {missing} did not report a private fit; refusing to claim one.")
        dp = self.config.dp
        assert dp is not None
        return {
            "differential_privacy": True,
            "epsilon": float(sum(float(r["epsilon"]) for r in parts.values())),
            "delta": float(sum(float(r.get("delta", 0.0)) for r in parts.values())),
            "target_epsilon": dp.epsilon,
            "parts": parts,
            "composition": "basic: every part reads the same rows, so their epsilons and deltas add; "
            "the budget was split evenly over the parts",
            "covers": "both models' weights and every sample drawn from them; the prefix bins and "
            "categories come from the private tabular model's own output; the manifest's data "
            "fingerprint and row count are not covered",
        }

    # --- sample ----------------------------------------------------------------------------
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        table = self.tabular_.sample(n, conditions=conditions or None, seed=int(rng.integers(2**62)))
        prefixes = build_prefixes(table, self.prefix_)
        texts = {name: write_texts(model, prefixes, rng=rng, nullable=self.schema_[name].nullable)
                 for name, model in self.text_.items()}
        return table.with_columns(**texts)

    def _sample_meeting(
        self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None
    ) -> pl.DataFrame:
        """The tabular part meets ``conditions`` itself, so no text is written for rows that
        would be thrown away."""
        return self._sample(n, rng=rng, conditions=conditions)

    # --- persistence -----------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, files = self.tabular_._state()
        tensors = {f"{_TABULAR}/{k}": v for k, v in tensors.items()}
        files = {f"{_TABULAR}.{k}": v for k, v in files.items()}
        texts = []
        for index, (name, model) in enumerate(self.text_.items()):
            t, f = model._state()
            tensors |= {f"text{index}/{k}": v for k, v in t.items()}
            files |= {f"text{index}.{k}": v for k, v in f.items()}
            texts.append({"column": name, "config": model.config.model_dump(mode="json"),
                          "data_fingerprint": model.data_fingerprint_, "n_rows": model.n_rows_})
        files[_STATE_FILE] = {
            "version": _STATE_VERSION,
            "tabular": {"generator": self.tabular_.registry_name,
                        "config": self.tabular_.config.model_dump(mode="json"),
                        "schema": self.tabular_.schema_.to_dict()},
            "text": texts,
            "prefix": _jsonable(self.prefix_),
        }
        return tensors, files

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        from synthkit.generators.neural import family_state
        from synthkit.generators.registry import resolve
        from synthkit.generators.text.gpt import TextGPTGenerator

        state = family_state(files, _STATE_FILE, _STATE_VERSION)

        def part(prefix: str, sep: str, items: dict[str, Any]) -> dict[str, Any]:
            return {k[len(prefix) + 1:]: v for k, v in items.items() if k.startswith(prefix + sep)}

        spec = state["tabular"]
        tabular = resolve(spec["generator"])[0](**spec["config"])
        tabular.schema_ = Schema.from_dict(spec["schema"])
        tabular.data_fingerprint_ = self.data_fingerprint_
        tabular.n_rows_ = self.n_rows_
        tabular.fit_report_ = {}
        tabular.fillers_ = {"version": 1, "columns": []}
        tabular.condition_values_ = self.condition_values_
        tabular._restore(part(_TABULAR, "/", tensors), part(_TABULAR, ".", files), trust_pickle=trust_pickle)
        self.tabular_ = tabular
        self.text_ = {}
        for index, entry in enumerate(state["text"]):
            model = TextGPTGenerator(**entry["config"])
            model.data_fingerprint_ = entry["data_fingerprint"]
            model.n_rows_ = entry["n_rows"]
            model.fit_report_ = {}
            model._restore(part(f"text{index}", "/", tensors), part(f"text{index}", ".", files),
                           trust_pickle=trust_pickle)
            self.text_[entry["column"]] = model
        self.text_columns_ = list(self.text_)
        self.prefix_ = state["prefix"]


# --- the prefix -------------------------------------------------------------------------------
def learn_prefix(frame: pl.DataFrame, columns: list[Column], *, bins: int,
                 max_categories: int) -> list[dict[str, Any]]:
    """How each conditioning column becomes prefix words: quantile bin edges of numbers and
    datetimes, the ``max_categories`` most frequent values of categories (JSON-safe)."""
    spec: list[dict[str, Any]] = []
    for col in columns:
        series = frame.get_column(col.name)
        if col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            values = _as_number(series, col).drop_nulls()
            edges: list[float] = []
            if values.len():
                qs = np.quantile(values.to_numpy(), np.arange(1, bins) / bins)
                edges = [float(v) for v in np.unique(qs)]
            spec.append({"column": col.name, "kind": col.kind.value, "format": col.datetime_format,
                         "edges": edges})
        else:
            counts = (series.drop_nulls().cast(pl.String).value_counts(name="n")
                      .sort(["n", series.name], descending=[True, False]))
            spec.append({"column": col.name, "kind": col.kind.value,
                         "values": counts.get_column(series.name).head(max_categories).to_list()})
    return spec


def build_prefixes(frame: pl.DataFrame, spec: list[dict[str, Any]]) -> pl.Series:
    """Each row's prefix, e.g. ``0=Twitter for Android|1=q3`` (vectorised over the frame)."""
    words = []
    for i, entry in enumerate(spec):
        series = frame.get_column(entry["column"])
        if "edges" in entry:
            col = Column(name=entry["column"], kind=ColumnKind(entry["kind"]), dtype="String",
                         datetime_format=entry.get("format"))
            values = _as_number(series, col)
            codes = np.searchsorted(np.asarray(entry["edges"], float), values.fill_null(0.0).to_numpy(),
                                    side="right")
            labels = np.asarray([f"q{k}" for k in range(len(entry["edges"]) + 1)])
            word = pl.Series(labels[codes]).set(values.is_null(), MISSING)
        else:
            text = series.cast(pl.String)
            known = text.is_in(pl.Series(entry["values"], dtype=pl.String).implode())
            clean = text.str.replace_all(r"[|\r\n]", " ")
            word = (pl.select(pl.when(text.is_null()).then(pl.lit(MISSING))
                              .when(known).then(clean).otherwise(pl.lit(OTHER)).alias("w"))
                    .to_series())
        words.append((f"{i}=" + word).alias(f"w{i}"))
    if not words:
        return pl.Series("prefix", [""] * frame.height, dtype=pl.String)
    return pl.DataFrame(words).select(pl.concat_str(pl.all(), separator="|").alias("prefix")).to_series()


def _as_number(series: pl.Series, col: Column) -> pl.Series:
    """Numbers as Float64; datetimes (also strings with a format) as seconds since the epoch."""
    if col.kind != ColumnKind.DATETIME:
        return series.cast(pl.Float64, strict=False)
    if series.dtype == pl.String:
        series = series.str.to_datetime(col.datetime_format, strict=False)
    return series.dt.epoch("s").cast(pl.Float64)


# --- writing the text -------------------------------------------------------------------------
def write_texts(model: Any, prefixes: pl.Series, *, rng: np.random.Generator,
                nullable: bool = True) -> pl.Series:
    """One text per prefix from a fitted ``text/gpt`` model trained on ``prefix\\ntext``
    documents: prompts of equal length are continued together, ``model.sample_chunk`` rows at a
    time. Empty texts come back null; ``nullable=False`` makes every text at least one token."""
    import torch

    n = prefixes.len()
    out: list[str | None] = [None] * n
    if n == 0:
        return pl.Series(model.text_column_, out, dtype=pl.String)
    distinct = prefixes.unique(maintain_order=True)
    encoded = model.tokenizer_.encode_batch([p + SEP for p in distinct.to_list()])
    index = pl.DataFrame({"prefix": distinct, "k": np.arange(distinct.len())})
    which = prefixes.to_frame("prefix").join(index, on="prefix", how="left", maintain_order="left")["k"].to_numpy()
    lengths = np.asarray([len(e.ids) for e in encoded])[which]
    generator = torch.Generator(device=model.device_).manual_seed(int(rng.integers(2**62)))
    temperature, top_p = model.config.temperature, model.config.top_p
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        for start in range(0, rows.size, model.sample_chunk):
            chunk = rows[start:start + model.sample_chunk]
            prompts = torch.as_tensor(np.asarray([encoded[k].ids for k in which[chunk]], np.int64),
                                      device=model.device_)
            tokens = continue_prompts(model.net_, prompts, generator=generator,
                                      temperature=temperature, top_p=top_p, min_tokens=0 if nullable else 1)
            for r, text in zip(chunk.tolist(), model._decode(tokens.cpu().numpy()), strict=True):
                out[r] = text.strip() or (None if nullable else text)
    return pl.Series(model.text_column_, out, dtype=pl.String)


def continue_prompts(net: Any, prompts: Any, *, generator: Any, temperature: float = 1.0,
                     top_p: float = 1.0, min_tokens: int = 0) -> Any:
    """(rows, ≤ free positions) tokens continuing ``prompts`` (rows, L) of a ``GPTNet`` in its
    "no label" mode, each row ending at its first end token (then padding), which may not come
    before ``min_tokens`` other tokens."""
    import torch

    from synthkit.generators.text.gpt import EOS_ID

    net.eval()
    rows, length = prompts.shape
    steps = net.max_length - length  # inputs: the label slot and the prompt, then one per new token
    if steps <= 0:
        return torch.full((rows, 1), EOS_ID, dtype=torch.long, device=prompts.device)
    with torch.no_grad():
        caches = net.new_caches(rows, net.max_length, prompts.device)
        no_label = torch.full((rows,), net.no_label, dtype=torch.long, device=prompts.device)
        h = torch.cat([net.labels(no_label).unsqueeze(1), net.tokens(prompts)], dim=1)
        h = h + net.positions.weight[: length + 1]
        return net.continue_from(h, caches, generator=generator, steps=steps, offset=length + 1,
                                 temperature=temperature, top_p=top_p, min_tokens=min_tokens)
