"""Generator: the one interface every family implements (fit / sample / save / load).

The scikit-learn habit: the constructor only stores a validated, frozen config; ``fit`` learns
(state ends in ``_``) and returns ``self``; ``sample`` returns new rows. Public methods check
their inputs and call the family's ``_fit`` / ``_sample`` / ``_state`` / ``_restore``.

Columns a family does not learn (ids, personal data, and free text for families that cannot
model it) are handled here, the same way for every family: ids are generated unique, PII is
generated with Faker, and neither is ever learned from the real values.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from synthkit.errors import ArtifactError, ConfigError, DataError, NotFittedError
from synthkit.frames import check_table, fingerprint, normalise_missing, to_polars
from synthkit.schema import ColumnKind, Schema, infer_schema

G = TypeVar("G", bound="Generator")

#: Kinds every tabular family models from data; the rest are filled (see module docstring).
LEARNED_KINDS = frozenset(
    {ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN, ColumnKind.DATETIME}
)


class GeneratorConfig(BaseModel):
    """Base config: frozen, unknown keys rejected. Families subclass it with their fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int | None = None


class Generator(ABC):
    """Base class of every synthkit generator.

    Subclasses set ``name`` (registry name, e.g. ``"tabular/copula"``) and ``config_class``,
    and implement ``_fit``, ``_sample``, ``_state`` and ``_restore``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    #: Fewer training rows than this raise DataError: a model of so few rows can only copy them.
    min_rows: ClassVar[int] = 10
    #: Column kinds the family learns; other columns are filled by prepare.fillers.
    learned_kinds: ClassVar[frozenset[ColumnKind]] = LEARNED_KINDS
    #: Default rows per batch in sample_batches().
    sample_batch_size: ClassVar[int] = 100_000
    #: Whether ``fit(..., resume=True)`` can continue an interrupted training run.
    supports_resume: ClassVar[bool] = False
    #: Whether ``_sample`` biases its rows toward ``conditions`` itself; every generator honours
    #: conditions either way, because the base keeps only rows that meet them.
    supports_conditions: ClassVar[bool] = False
    #: Give up on conditional sampling after this many attempts without enough matching rows.
    max_condition_attempts: ClassVar[int] = 100

    def __init__(self, **config: Any) -> None:
        if config.get("dp") is not None and "dp" not in self.config_class.model_fields:
            raise ConfigError(
                f"{self.registry_name or type(self).__name__} cannot be trained with "
                "differential privacy: it has no private training procedure, and passing dp= "
                "would only pretend.",
                hint="Use a family that supports dp=, e.g. tabular/tvae or tabular/ctgan.",
            )
        try:
            self.config = self.config_class(**config)
        except ValidationError as exc:
            raise ConfigError(
                f"Invalid configuration for {self.registry_name or type(self).__name__}: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                hint=f"Options of {type(self).__name__}: {sorted(self.config_class.model_fields)}"
                + (" plus the wrapped library's own." if self.config_class.model_config.get("extra") == "allow" else "."),
            ) from exc

    # --- identity ----------------------------------------------------------------------
    @property
    def registry_name(self) -> str:
        """The name this generator is registered (and saved) under."""
        return self.name

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump(exclude_defaults=True).items())
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "schema_")

    # --- fit ---------------------------------------------------------------------------
    def fit(self: G, data: Any, *, schema: Schema | None = None, resume: bool = False) -> G:
        """Learn from ``data`` (polars or pandas); infer the schema when none is given.

        ``resume=True`` continues an interrupted training run from its last checkpoint, for
        families that checkpoint (``supports_resume``).
        """
        if resume and not self.supports_resume:
            raise ConfigError(
                f"{self.registry_name} trains in one pass and has no checkpoints to resume from.",
                hint="Fit again without resume.",
            )
        df = normalise_missing(to_polars(data))
        check_table(df, min_rows=self.min_rows, what="training table")
        schema = schema if schema is not None else infer_schema(df)
        schema.check_frame(df)
        df = df.select(schema.names)
        _check_all_null(df, schema)
        from synthkit.prepare.fillers import fit_fillers

        self.schema_ = schema
        self.data_fingerprint_ = fingerprint(df)
        self.n_rows_ = df.height
        self.fit_report_: dict[str, Any] = {"warnings": []}
        filled = [c for c in schema if c.kind not in self.learned_kinds]
        private = getattr(self.config, "dp", None) is not None
        self.fillers_ = fit_fillers(df, filled, private=private)
        learned = schema.select([c.name for c in schema if c.kind in self.learned_kinds])
        # a private fit learns its categories with noise: the family sets these from what it released
        self.condition_values_ = {} if private else _condition_values(df, learned)
        started = time.perf_counter()
        try:
            self._fit(df.select(learned.names), learned, resume=resume)
        except BaseException:
            self._forget_fit()  # an interrupted or failed fit leaves an unfitted generator
            raise
        self.fit_report_["fit_seconds"] = round(time.perf_counter() - started, 4)
        self.fit_report_["filled_columns"] = {c.name: c.kind.value for c in filled}
        return self

    # --- sample ------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        rebalance: Mapping[str, Mapping[Any, float]] | None = None,
        seed: int | None = None,
    ) -> pl.DataFrame:
        """Return ``n`` new rows with the training schema's columns and dtypes.

        The same ``seed`` gives the same rows. ``conditions`` (``{"col": value}``, categorical
        and boolean columns) fixes values: every row meets them. ``rebalance``
        (``{"col": {"a": 0.5, "b": 0.5}}``) sets the shares of one column's values.
        """
        if rebalance:
            return self._sample_rebalanced(n, rebalance, conditions=conditions, seed=seed)
        batches = list(self.sample_batches(n, conditions=conditions, seed=seed))
        if not batches:
            return self._empty_frame()
        return pl.concat(batches, how="vertical")

    def sample_batches(
        self,
        n: int,
        *,
        batch_size: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Iterator[pl.DataFrame]:
        """Yield ``n`` rows in batches of at most ``batch_size``: bounded memory for any n."""
        self._check_fitted()
        n = _check_n(n)
        size = self.sample_batch_size if batch_size is None else int(batch_size)
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}.")
        conditions = self._check_conditions(conditions) if conditions else None
        root = np.random.SeedSequence(seed)
        done = 0
        learned = [c.name for c in self.schema_ if c.kind in self.learned_kinds]
        id_offset = 0
        while done < n:
            m = min(size, n - done)
            child = root.spawn(1)[0]
            rng = np.random.default_rng(child)
            part = self._sample_meeting(m, rng, conditions) if learned else pl.DataFrame()
            filled = self._fill(m, rng, id_offset)
            id_offset += m
            yield self._assemble(part, filled)
            done += m

    # --- persistence -------------------------------------------------------------------
    def save(
        self, path: str | Path, *, overwrite: bool = False, encrypt: bool = False, key: Any = None
    ) -> Path:
        """Write the fitted model to a directory (safetensors + JSON; see synthkit.artifacts).

        ``encrypt=True`` (key from SYNTHKIT_MODEL_KEY) or ``key=`` (bytes, base64 text or a key
        file path) seals every file with AES-256-GCM.
        """
        from synthkit.artifacts import write_model_dir

        self._check_fitted()
        tensors, files = self._state()
        files = {**files, "fillers.json": self.fillers_, "conditions.json": self.condition_values_}
        manifest = {
            "generator": self.registry_name,
            "config": self.config.model_dump(mode="json"),
            "schema": self.schema_.to_dict(),
            "data_fingerprint": self.data_fingerprint_,
            "n_rows": self.n_rows_,
            "fit_report": _jsonable(self.fit_report_),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return write_model_dir(path, manifest=manifest, tensors=tensors, files=files, overwrite=overwrite,
                               encrypt=encrypt, key=key)

    @classmethod
    def load(cls, path: str | Path, *, trust_pickle: bool = False, key: Any = None) -> Generator:
        """Load a model directory saved by any generator; hashes are checked first (``key``: encrypted models)."""
        from synthkit.generators.registry import load as registry_load

        gen = registry_load(path, trust_pickle=trust_pickle, key=key)
        if cls is not Generator and not isinstance(gen, cls):
            raise ArtifactError(
                f"{path} holds a '{gen.registry_name}' model, not a {cls.__name__}.",
                hint="Load it with synthkit.load(path), which picks the right class.",
            )
        return gen

    @classmethod
    def _from_artifact(cls: type[G], artifact: Any, *, trust_pickle: bool = False) -> G:
        """Rebuild a fitted generator from a checked artifact (used by the registry)."""
        manifest = artifact.manifest
        gen = cls(**manifest["config"])
        gen.schema_ = Schema.from_dict(manifest["schema"])
        gen.data_fingerprint_ = manifest["data_fingerprint"]
        gen.n_rows_ = manifest["n_rows"]
        gen.fit_report_ = manifest.get("fit_report", {})
        gen.fillers_ = artifact.files.pop("fillers.json", {})
        gen.condition_values_ = artifact.files.pop("conditions.json", {})
        gen._restore(artifact.tensors, artifact.files, trust_pickle=trust_pickle)
        return gen

    # --- what families implement --------------------------------------------------------
    @abstractmethod
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:
        """Learn from ``df`` (only the learned columns, nulls as null, no NaN)."""

    @abstractmethod
    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        """Return ``n`` rows of the learned columns; draw all randomness from ``rng``."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned state as (arrays for safetensors, JSON-able objects or bytes by file name)."""

    @abstractmethod
    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        """Set learned state from what ``_state`` returned."""

    # --- helpers -------------------------------------------------------------------------
    def _forget_fit(self) -> None:
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet.")

    def _check_conditions(self, conditions: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``{"col": value}`` against the learned categorical and boolean columns."""
        checked: dict[str, Any] = {}
        for name, value in conditions.items():
            known = self.condition_values_.get(name)
            if known is None:
                raise ConfigError(
                    f"Cannot condition on '{name}': only categorical and boolean columns the "
                    "model learned can be fixed.",
                    hint=f"Conditionable columns: {sorted(self.condition_values_)}",
                )
            if value not in known:
                shown = known if len(known) <= 20 else [*known[:20], "..."]
                raise ConfigError(
                    f"'{value}' was never seen in column '{name}' during training.",
                    hint=f"Known values: {shown}",
                )
            checked[name] = value
        return checked

    def _sample_meeting(
        self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None
    ) -> pl.DataFrame:
        """``_sample`` rows, keeping only those that meet ``conditions`` until there are n."""
        if not conditions:
            return self._sample(n, rng=rng, conditions=None)
        kept: list[pl.DataFrame] = []
        have = drawn = 0
        rate = 1.0
        for _ in range(self.max_condition_attempts):
            need = n - have
            ask = int(min(max(need / max(rate, 1e-3) * 1.2, need, 16), 20 * self.sample_batch_size))
            out = self._sample(ask, rng=rng, conditions=conditions)
            mask = pl.all_horizontal(
                pl.col(c).eq_missing(pl.lit(v).cast(out.schema[c])) for c, v in conditions.items()
            )
            good = out.filter(mask)
            kept.append(good)
            have += good.height
            drawn += out.height
            rate = max(have / drawn, 1e-3)
            if have >= n:
                return pl.concat(kept, how="vertical").head(n)
        raise ConfigError(
            f"Only {have} of {drawn:,} generated rows met the conditions {conditions}; "
            f"{n} were asked for.",
            hint="The combination is (almost) never produced by this model: relax the "
            "conditions or train a conditional generator (e.g. tabular/ctgan).",
        )

    def _sample_rebalanced(
        self,
        n: int,
        rebalance: Mapping[str, Mapping[Any, float]],
        *,
        conditions: Mapping[str, Any] | None,
        seed: int | None,
    ) -> pl.DataFrame:
        if len(rebalance) != 1:
            raise ConfigError(
                f"rebalance takes one column, got {sorted(rebalance)}.",
                hint="Rebalance one column; fix others with conditions=.",
            )
        (column, shares), = rebalance.items()
        if conditions and column in conditions:
            raise ConfigError(f"'{column}' is both fixed by conditions and rebalanced.")
        values = list(shares)
        weights = np.array([float(shares[v]) for v in values])
        if weights.size == 0 or (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ConfigError(
                f"rebalance shares for '{column}' must be non-negative numbers with a positive sum.",
                hint='e.g. rebalance={"churn": {"yes": 0.5, "no": 0.5}}',
            )
        for v in values:
            self._check_conditions({**(conditions or {}), column: v})
        counts = _largest_remainder(_check_n(n), weights / weights.sum())
        root = np.random.SeedSequence(seed)
        parts = [
            self.sample(int(k), conditions={**(conditions or {}), column: v},
                        seed=int(root.spawn(1)[0].generate_state(1)[0]))
            for v, k in zip(values, counts, strict=True)
            if k > 0
        ]
        if not parts:
            return self._empty_frame()
        out = pl.concat(parts, how="vertical")
        order = np.random.default_rng(root.spawn(1)[0]).permutation(out.height)
        return out[order]

    def _fill(self, n: int, rng: np.random.Generator, id_offset: int) -> dict[str, pl.Series]:
        from synthkit.prepare.fillers import generate_filled

        return generate_filled(self.fillers_, n, rng=rng, offset=id_offset)

    def _assemble(self, learned: pl.DataFrame, filled: dict[str, pl.Series]) -> pl.DataFrame:
        cols = []
        for c in self.schema_:
            if c.name in filled:
                series = filled[c.name]
            else:
                series = learned.get_column(c.name)
            cols.append(_restore_dtype(series.alias(c.name), c.polars_dtype))
        return pl.DataFrame(cols)

    def _empty_frame(self) -> pl.DataFrame:
        return pl.DataFrame({c.name: pl.Series(c.name, [], dtype=c.polars_dtype) for c in self.schema_})


class NonTabularGenerator(Generator):
    """Base of generators that learn something other than one table (a text corpus, an image set).

    They keep the Generator contract's seeds, save/load and registry, with a manifest that names
    ``data_kind`` instead of a table schema; ``fit``/``sample`` take the family's own data, so the
    table hooks refuse with a pointer to them.
    """

    #: What the family learns, written to the manifest ("text", "images").
    data_kind: ClassVar[str] = ""

    def _manifest_extra(self) -> dict[str, Any]:
        """Facts a family adds to the manifest beside the common ones (JSON values)."""
        return {}

    def _restore_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Read back what :meth:`_manifest_extra` wrote (before the family's ``_restore``)."""

    def save(
        self, path: str | Path, *, overwrite: bool = False, encrypt: bool = False, key: Any = None
    ) -> Path:
        """Write the fitted model to a directory (safetensors + JSON; see synthkit.artifacts)."""
        from synthkit.artifacts import write_model_dir

        self._check_fitted()
        tensors, files = self._state()
        manifest = {
            "generator": self.registry_name,
            "config": self.config.model_dump(mode="json"),
            "data_kind": self.data_kind,
            **self._manifest_extra(),
            "data_fingerprint": self.data_fingerprint_,
            "n_rows": self.n_rows_,
            "fit_report": _jsonable(self.fit_report_),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return write_model_dir(path, manifest=manifest, tensors=tensors, files=files,
                               overwrite=overwrite, encrypt=encrypt, key=key)

    @classmethod
    def _from_artifact(cls: type[G], artifact: Any, *, trust_pickle: bool = False) -> G:
        manifest = artifact.manifest
        gen = cls(**manifest["config"])
        gen.data_fingerprint_ = manifest["data_fingerprint"]
        gen.n_rows_ = manifest["n_rows"]
        gen.fit_report_ = manifest.get("fit_report", {})
        gen._restore_manifest(manifest)  # type: ignore[attr-defined]
        gen._restore(artifact.tensors, artifact.files, trust_pickle=trust_pickle)
        return gen

    # --- the table interface does not apply ---------------------------------------------------
    def _refuse_table(self) -> ConfigError:
        return ConfigError(
            f"{self.registry_name} learns {self.data_kind or 'other data'}, not a table.",
            hint=f"Call fit() with {self.data_kind or 'its data'} and sample(n); see the README.",
        )

    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool) -> None:  # pragma: no cover
        raise self._refuse_table()

    def _sample(self, n: int, *, rng: np.random.Generator,
                conditions: Mapping[str, Any] | None) -> pl.DataFrame:  # pragma: no cover
        raise self._refuse_table()

    def sample_batches(self, *args: Any, **kwargs: Any) -> Iterator[pl.DataFrame]:  # pragma: no cover
        raise self._refuse_table()


def declared_classes(
    values: list[Any], declared: list[Any] | None, seen: list[Any], *, private: bool,
    what: str, option: str, hint: str,
) -> list[Any]:
    """The classes a conditional non-tabular fit learns (text labels, image classes): the
    ``declared`` ones (every value must be one of them, compared as text), else the ``seen``
    ones, which a private fit may not use: they are a fact about the data that DP-SGD does not
    cover. ``what``/``option``/``hint`` word the errors for the family."""
    if declared is None:
        if private:
            raise ConfigError(
                f"With dp= the {what} must be declared public: the labels seen in the data are a "
                "fact about it that DP-SGD does not cover.",
                hint=hint,
            )
        return list(seen)
    unknown = sorted({str(v) for v in values} - {str(v) for v in declared})
    if unknown:
        raise DataError(
            f"Labels {unknown[:10]} are not among the declared {option}={list(declared)}.",
            hint=f"Declare every label the data may have in {option}=[...], or drop those rows.",
        )
    return list(declared)


def _restore_dtype(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if series.dtype == dtype:
        return series
    try:
        return series.cast(dtype, strict=False)
    except Exception:  # noqa: BLE001 - keep the generated values rather than fail the batch
        return series


def _largest_remainder(n: int, shares: np.ndarray) -> np.ndarray:
    """Whole counts that add up to n and are as close as possible to n * shares."""
    exact = n * shares
    counts = np.floor(exact).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


#: Columns with more distinct values than this cannot be conditioned on (ids in disguise).
MAX_CONDITION_VALUES = 10_000


def _condition_values(df: pl.DataFrame, schema: Schema) -> dict[str, list[Any]]:
    """The values each categorical or boolean column took in training (what conditions accept)."""
    out: dict[str, list[Any]] = {}
    for col in schema.of_kind(ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        values = df.get_column(col.name).drop_nulls().unique()
        if values.len() <= MAX_CONDITION_VALUES:
            out[col.name] = sorted(_jsonable(values.to_list()), key=lambda v: (str(type(v)), v))
    return out


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ConfigError(f"n must be a whole number of rows, got {n!r}.")
    if n < 0:
        raise ConfigError(f"n must be at least 0, got {n}.")
    return int(n)


def _check_all_null(df: pl.DataFrame, schema: Schema) -> None:
    counts = df.null_count().row(0)
    empty = [c for c, k in zip(df.columns, counts, strict=True) if k == df.height]
    if empty:
        raise DataError(
            f"Column(s) {empty} hold no values at all (every row is null).",
            hint="Drop them before training (there is nothing to learn), "
            f"e.g. df.drop({empty!r}).",
        )


def _jsonable(obj: Any) -> Any:
    """Make a fit report JSON-safe (numpy scalars, tuples, NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
