"""Conformance checks every generator should pass: ``check_generator(gen, data, tmp_path=...)``.

Like scikit-learn's ``check_estimator``: one call runs the checks synthkit relies on, so a
plugin author can put a single test in their suite::

    from synthkit.testing import check_generator

    def test_my_generator(tmp_path, my_table):
        check_generator("acme/my-family", my_table, tmp_path=tmp_path)

What is checked: ``fit`` returns ``self``; ``sample(n)`` has ``n`` rows, the schema's columns
in order and their dtypes, no nulls where the schema says none, unique ids; ``sample(0)`` is an
empty frame of that shape; the same seed gives equal frames and another seed different ones;
``sample_batches`` yields exactly ``n`` rows; a save / load round trip samples the same rows
for the same seed; saving over an existing directory raises ``SinkExistsError``; one changed
byte in ``weights.safetensors`` makes loading raise ``IntegrityError``; bad input raises typed
errors (empty frame: ``EmptyDataError``; one row: ``DataError``; ``n=-1``: ``ConfigError``;
sampling an unfitted generator: ``NotFittedError``). A failed check raises ``AssertionError``
naming it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from synthkit.errors import (
    ConfigError,
    DataError,
    EmptyDataError,
    IntegrityError,
    NotFittedError,
    SinkExistsError,
    UntrustedPickleError,
)
from synthkit.frames import to_polars
from synthkit.generators.base import Generator
from synthkit.schema import ColumnKind, Schema

#: Rows sampled by the checks (small: the suite should run in seconds).
SAMPLE_ROWS = 64


def check_generator(
    generator: Generator | str,
    data: Any,
    *,
    tmp_path: str | Path,
    schema: Schema | None = None,
    seeded: bool = True,
    n: int = SAMPLE_ROWS,
) -> list[str]:
    """Run every conformance check on ``generator`` (an instance or a registry name).

    ``data`` is a training table (polars or pandas) with at least a few dozen rows;
    ``tmp_path`` a writable directory for the save / load checks. ``seeded=False`` skips the
    checks that need reproducible sampling, for generators that cannot offer it. Returns the
    names of the checks that ran; raises ``AssertionError`` at the first that fails.
    """
    frame = to_polars(data)
    make = _factory(generator)
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    passed: list[str] = []

    def run(name: str, check: Callable[[], None]) -> None:
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"check_generator[{name}] failed for {_label(make)}: {exc}") from exc
        passed.append(name)

    run("unfitted_sample_raises", lambda: _check_unfitted(make()))
    run("empty_frame_raises", lambda: _expect(EmptyDataError, make().fit, frame.head(0), schema=schema))
    run("single_row_raises", lambda: _expect(DataError, make().fit, frame.head(1), schema=schema))
    gen = make()
    fitted = gen.fit(frame, schema=schema)
    run("fit_returns_self", lambda: _assert(fitted is gen, "fit() did not return self"))
    used = gen.schema_
    run("sample_shape_and_dtypes", lambda: _check_frame(gen.sample(n, seed=0), used, n))
    run("sample_zero_rows", lambda: _check_frame(gen.sample(0, seed=0), used, 0))
    run("negative_n_raises", lambda: _expect(ConfigError, gen.sample, -1))
    run("sample_batches_total", lambda: _check_batches(gen, used, n))
    if seeded:
        run("same_seed_same_rows", lambda: _check_same_seed(gen, n))
    run("other_seed_other_rows", lambda: _check_other_seed(gen, n))
    path = root / "model"
    run("save_load_round_trip", lambda: _check_round_trip(gen, path, n, seeded=seeded))
    run("save_refuses_existing", lambda: _check_no_overwrite(gen, path))
    run("tampered_weights_raise", lambda: _check_tampered(path, root / "tampered"))
    return passed


# --- the checks --------------------------------------------------------------------------------
def _check_unfitted(gen: Generator) -> None:
    _expect(NotFittedError, gen.sample, 5)
    _expect(NotFittedError, lambda: list(gen.sample_batches(5)))


def _check_frame(out: pl.DataFrame, schema: Schema, n: int) -> None:
    _assert(isinstance(out, pl.DataFrame), f"sample() returned {type(out).__name__}, not a polars frame")
    _assert(out.height == n, f"asked for {n} rows, got {out.height}")
    _assert(out.columns == schema.names, f"columns {out.columns} != schema {schema.names}")
    wrong = {
        c.name: (str(out.schema[c.name]), str(c.polars_dtype))
        for c in schema
        if out.schema[c.name] != c.polars_dtype
    }
    _assert(not wrong, f"dtypes differ from the schema (got, expected): {wrong}")
    if n == 0:
        return
    nulls = [c.name for c in schema if not c.nullable and out.get_column(c.name).null_count()]
    _assert(not nulls, f"nulls in columns the schema marks not nullable: {nulls}")
    ids = [c.name for c in schema if c.kind == ColumnKind.ID]
    dupes = [name for name in ids if out.get_column(name).drop_nulls().is_duplicated().any()]
    _assert(not dupes, f"id columns with repeated values: {dupes}")


def _check_batches(gen: Generator, schema: Schema, n: int) -> None:
    size = max(1, n // 3)
    batches = list(gen.sample_batches(n, batch_size=size, seed=0))
    _assert(all(b.height <= size for b in batches), f"a batch exceeds batch_size={size}")
    _check_frame(pl.concat(batches, how="vertical"), schema, n)


def _check_same_seed(gen: Generator, n: int) -> None:
    a, b = gen.sample(n, seed=123), gen.sample(n, seed=123)
    _assert(a.equals(b), "two samples with seed=123 differ")


def _check_other_seed(gen: Generator, n: int) -> None:
    a, b = gen.sample(n, seed=1), gen.sample(n, seed=2)
    _assert(not a.equals(b), "samples with seed=1 and seed=2 are identical")


def _check_round_trip(gen: Generator, path: Path, n: int, *, seeded: bool) -> None:
    written = gen.save(path, overwrite=True)
    _assert((Path(written) / "manifest.json").is_file(), "save() wrote no manifest.json")
    loaded = _load(written)
    _assert(type(loaded) is type(gen), f"loaded a {type(loaded).__name__}, saved a {type(gen).__name__}")
    _assert(
        loaded.registry_name == gen.registry_name,
        f"loaded '{loaded.registry_name}', saved '{gen.registry_name}'",
    )
    _assert(loaded.schema_ == gen.schema_, "the loaded schema differs from the saved one")
    if seeded:
        before, after = gen.sample(n, seed=7), loaded.sample(n, seed=7)
        _assert(before.equals(after), "the loaded model samples other rows for the same seed")
    else:
        _check_frame(loaded.sample(n, seed=7), gen.schema_, n)


def _check_no_overwrite(gen: Generator, path: Path) -> None:
    before = sorted(p.name for p in path.iterdir())
    _expect(SinkExistsError, gen.save, path)
    _assert(sorted(p.name for p in path.iterdir()) == before, "a refused save changed the directory")


def _check_tampered(path: Path, copy: Path) -> None:
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(path, copy)
    weights = copy / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    _assert(len(blob) > 0, "weights.safetensors is empty")
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    _expect(IntegrityError, _load, copy)


# --- helpers -----------------------------------------------------------------------------------
def _factory(generator: Generator | str) -> Callable[[], Generator]:
    """A function that builds a fresh, unfitted generator with the same configuration."""
    if isinstance(generator, str):
        from synthkit.generators.registry import create

        name = generator
        return lambda: create(name)
    if not isinstance(generator, Generator):
        raise TypeError(f"Expected a Generator or a registry name, got {type(generator).__name__}.")
    cls, config = type(generator), generator.config.model_dump()
    return lambda: cls(**config)


def _load(path: Path) -> Generator:
    """Load a model the suite itself wrote; a pickle it wrote is trusted after the refusal."""
    from synthkit.generators.registry import load

    try:
        return load(path)
    except UntrustedPickleError:
        return load(path, trust_pickle=True)


def _label(make: Callable[[], Generator]) -> str:
    try:
        return make().registry_name
    except Exception:  # noqa: BLE001 - only for the message
        return "generator"


def _expect(error: type[BaseException], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except error:
        return
    except Exception as exc:  # noqa: BLE001 - report what was raised instead
        raise AssertionError(
            f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"expected {error.__name__}, nothing was raised")


def _assert(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
