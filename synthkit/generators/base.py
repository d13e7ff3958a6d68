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

    def __init__(self, **config: Any) -> None:
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
    def fit(self: G, data: Any, *, schema: Schema | None = None) -> G:
        """Learn from ``data`` (polars or pandas); infer the schema when none is given."""
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
        self.fillers_ = fit_fillers(df, filled)
        learned = schema.select([c.name for c in schema if c.kind in self.learned_kinds])
        started = time.perf_counter()
        self._fit(df.select(learned.names), learned)
        self.fit_report_["fit_seconds"] = round(time.perf_counter() - started, 4)
        self.fit_report_["filled_columns"] = {c.name: c.kind.value for c in filled}
        return self

    # --- sample ------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> pl.DataFrame:
        """Return ``n`` new rows with the training schema's columns and dtypes.

        The same ``seed`` gives the same rows; ``conditions`` fixes column values in families
        that support it.
        """
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
        if conditions:
            self._check_conditions(conditions)
        root = np.random.SeedSequence(seed)
        done = 0
        learned = [c.name for c in self.schema_ if c.kind in self.learned_kinds]
        id_offset = 0
        while done < n:
            m = min(size, n - done)
            child = root.spawn(1)[0]
            rng = np.random.default_rng(child)
            part = self._sample(m, rng=rng, conditions=conditions) if learned else pl.DataFrame()
            filled = self._fill(m, rng, id_offset)
            id_offset += m
            yield self._assemble(part, filled)
            done += m

    # --- persistence -------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted model to a directory (safetensors + JSON; see synthkit.artifacts)."""
        from synthkit.artifacts import write_model_dir

        self._check_fitted()
        tensors, files = self._state()
        files = {**files, "fillers.json": self.fillers_}
        manifest = {
            "generator": self.registry_name,
            "config": self.config.model_dump(mode="json"),
            "schema": self.schema_.to_dict(),
            "data_fingerprint": self.data_fingerprint_,
            "n_rows": self.n_rows_,
            "fit_report": _jsonable(self.fit_report_),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return write_model_dir(path, manifest=manifest, tensors=tensors, files=files, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, *, trust_pickle: bool = False) -> Generator:
        """Load a model directory saved by any generator; hashes are checked first."""
        from synthkit.generators.registry import load as registry_load

        gen = registry_load(path, trust_pickle=trust_pickle)
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
        gen._restore(artifact.tensors, artifact.files, trust_pickle=trust_pickle)
        return gen

    # --- what families implement --------------------------------------------------------
    @abstractmethod
    def _fit(self, df: pl.DataFrame, schema: Schema) -> None:
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
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet.")

    def _check_conditions(self, conditions: Mapping[str, Any]) -> None:
        raise ConfigError(
            f"{self.registry_name} does not support conditional sampling.",
            hint="Sample without conditions, or use a generator that supports them.",
        )

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


def _restore_dtype(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if series.dtype == dtype:
        return series
    try:
        return series.cast(dtype, strict=False)
    except Exception:  # noqa: BLE001 - keep the generated values rather than fail the batch
        return series


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
