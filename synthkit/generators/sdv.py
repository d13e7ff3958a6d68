"""Any SDV single-table synthesizer as a synthkit Generator: ``sk.create("sdv/CTGANSynthesizer")``.

The adapter converts polars to pandas and the Schema to SDV metadata (``Schema.to_sdv``), and
passes the synthesizer's own keyword arguments through unchanged. SDV learns every column kind
itself, ids and personal data included (with its own generators).

Two things differ from native generators, both because of SDV:

* **Storage is a pickle.** SDV can only save a synthesizer with (cloud)pickle, which runs
  arbitrary code when loaded; it is the one pickle synthkit writes. Loading it raises
  :class:`~synthkit.errors.UntrustedPickleError` unless ``trust_pickle=True``.
* **Seeding is best effort.** SDV's ``sample`` takes no seed. Each batch seeds the model's
  random state (``_set_random_state``) and every RDT transformer's reverse-transform state from
  the batch's generator, after a ``reset_sampling()`` at the start of each ``sample`` call, so
  the same seed gives the same rows on the same machine and library versions. Values SDV makes
  outside those states (Faker-based personal data in some versions) follow SDV's own fixed seeds.

SDV is imported lazily (inside methods): importing this module does not import SDV.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import sys
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import ConfigDict, field_validator, model_validator

from synthkit.errors import ArtifactError, DataError, MissingDependencyError, UntrustedPickleError
from synthkit.frames import to_polars
from synthkit.generators.base import Generator, GeneratorConfig
from synthkit.schema import ColumnKind, Schema

_PICKLE_FILE = "synthesizer.pkl"
_TABLE = "table"


class SDVConfig(GeneratorConfig):
    """Which SDV synthesizer, plus its own keyword arguments (passed through as given)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    synthesizer: str

    @field_validator("synthesizer")
    @classmethod
    def _known(cls, value: str) -> str:
        known = single_table_synthesizers()
        if value not in known:
            raise ValueError(f"unknown SDV synthesizer '{value}'; choose one of {sorted(known)}")
        return value

    @model_validator(mode="after")
    def _parameters(self) -> SDVConfig:
        allowed = _parameters_of(self.synthesizer)
        extra = sorted(set(self.model_extra or {}) - allowed)
        if extra:
            raise ValueError(
                f"{self.synthesizer} takes no parameter(s) {extra}; it takes {sorted(allowed)}"
            )
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The keyword arguments handed to the SDV synthesizer."""
        return dict(self.model_extra or {})


class SDVGenerator(Generator):
    """An SDV single-table synthesizer behind the synthkit Generator interface."""

    name = "sdv/*"
    wildcard_field: ClassVar[str] = "synthesizer"
    config_class = SDVConfig
    config: SDVConfig
    learned_kinds = frozenset(ColumnKind)

    def __init__(self, **config: Any) -> None:
        _require_sdv()
        super().__init__(**config)

    @property
    def registry_name(self) -> str:
        config = getattr(self, "config", None)
        return f"sdv/{config.synthesizer}" if config is not None else self.name

    # --- fit -----------------------------------------------------------------------------------
    def _fit(self, df: pl.DataFrame, schema: Schema, *, resume: bool = False) -> None:
        from sdv.errors import InvalidDataError

        cls = single_table_synthesizers()[self.config.synthesizer]
        synth = cls(schema.to_sdv(_TABLE), **self.config.params)
        with _seeded(self.config.seed):
            try:
                synth.fit({_TABLE: df.to_pandas()})
            except InvalidDataError as exc:
                raise DataError(
                    f"SDV refused the data: {exc}",
                    hint="Check the schema against the data (kinds, decimals, datetime formats).",
                ) from exc
        self.synthesizer_ = synth

    # --- sample --------------------------------------------------------------------------------
    def sample_batches(
        self,
        n: int,
        *,
        batch_size: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Iterator[pl.DataFrame]:
        """As :meth:`Generator.sample_batches`; SDV's sampling state restarts with each call."""
        self._check_fitted()
        self.synthesizer_.reset_sampling()
        yield from super().sample_batches(n, batch_size=batch_size, conditions=conditions, seed=seed)

    def _sample(
        self, n: int, *, rng: np.random.Generator, conditions: Mapping[str, Any] | None
    ) -> pl.DataFrame:
        synth = self.synthesizer_
        seed = int(rng.integers(0, 2**31 - 1))
        if hasattr(synth, "_set_random_state"):
            synth._set_random_state(seed)
        _seed_transformers(synth, seed)
        out = synth.sample(n)
        if isinstance(out, dict):
            out = out.get(_TABLE, next(iter(out.values())))
        return to_polars(out).select(self.schema_.names)

    # --- state ---------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / _PICKLE_FILE
            self.synthesizer_.save(str(path))
            blob = path.read_bytes()
        return {}, {_PICKLE_FILE: blob}

    def _restore(
        self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool
    ) -> None:
        if not trust_pickle:
            raise UntrustedPickleError(
                f"This {self.registry_name} model holds an SDV synthesizer stored with pickle "
                "(SDV's only format); unpickling runs whatever code the file contains, so it is "
                "not loaded by default."
            )
        blob = files.get(_PICKLE_FILE)
        if not isinstance(blob, bytes):
            raise ArtifactError(f"The model directory has no {_PICKLE_FILE}.")
        from sdv.utils import load_synthesizer

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / _PICKLE_FILE
            path.write_bytes(blob)
            self.synthesizer_ = load_synthesizer(str(path))


# --- helpers ---------------------------------------------------------------------------------
def _require_sdv() -> None:
    try:
        import sdv  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "The sdv/* generators need SDV, which is not installed.", hint="pip install sdv"
        ) from exc


@lru_cache(maxsize=1)
def single_table_synthesizers() -> dict[str, type]:
    """SDV's single-table synthesizer classes by name (those that learn from data)."""
    import sdv.single_table as st
    from sdv.single_table.base import BaseSingleTableSynthesizer

    return {
        name: obj
        for name, obj in vars(st).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseSingleTableSynthesizer)
        and name.endswith("Synthesizer")
    }


@cache
def _parameters_of(synthesizer: str) -> frozenset[str]:
    cls = single_table_synthesizers()[synthesizer]
    params = inspect.signature(cls.__init__).parameters
    return frozenset(p for p in params if p not in ("self", "metadata"))


def _seed_transformers(synth: Any, seed: int) -> None:
    """Seed the reverse transforms of SDV's RDT transformers (missing values, categories)."""
    processor = getattr(synth, "_data_processor", None)
    hyper = getattr(processor, "_hyper_transformer", None)
    transformers = getattr(hyper, "field_transformers", None) or {}
    for i, transformer in enumerate(transformers.values()):
        if transformer is not None and hasattr(transformer, "set_random_state"):
            state = np.random.RandomState((seed + 7919 * (i + 1)) % (2**32 - 1))
            transformer.set_random_state(state, "reverse_transform")


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed numpy's, Python's and (if loaded) torch's global generators; restore them after."""
    if seed is None:
        yield
        return
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch = sys.modules.get("torch")
    fork = torch.random.fork_rng() if torch is not None else contextlib.nullcontext()
    try:
        with fork:
            np.random.seed(seed % 2**32)
            random.seed(seed)
            if torch is not None:
                torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)

