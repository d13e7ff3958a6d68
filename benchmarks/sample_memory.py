"""Peak memory of `synthkit sample` writing many rows to Parquet (bounded-memory sampling).

Trains a model on openintro loans_full_schema with `synthkit train`, then runs
`synthkit sample -n N` (gated, streamed to Parquet) in its own process and reads that process's
peak resident set size from the kernel (``os.wait4``). Appends the figures to
``benchmarks/results/sample_memory.md`` and rebuilds ``benchmarks/RESULTS.md``.

    python benchmarks/sample_memory.py --generator tabular/copula --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tabular import RESULTS_DIR, load_table, rebuild_results  # noqa: E402

_PERMISSIVE_POLICY = """\
name: benchmark
version: "1"
description: Memory benchmark only; checks that no training row is copied.
purpose: {required: true}
rules:
  - {id: no-copies, metric: privacy.exact_copy_rate, op: "<=", threshold: 0.01,
     description: no copied rows, hint: train less}
"""


def run_measured(args: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that one process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(args)} failed:\n{log.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="tabular/copula")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "synthkit"]
    work = Path(tempfile.mkdtemp(prefix="synthkit-mem-"))
    try:
        source = work / "loans.parquet"
        load_table("loans_full_schema").write_parquet(source)
        train = [*cli, "train", str(source), "-g", args.generator, "--out", str(work / "model")]
        for option in args.options:
            train += ["--set", option]
        fit_s, fit_mib = run_measured(train)
        policy = work / "benchmark-policy.yaml"  # memory is measured whatever the quality: a
        policy.write_text(_PERMISSIVE_POLICY)     # short training run must not be refused
        sample = [*cli, "sample", str(work / "model"), "-n", str(args.rows), "--out",
                  str(work / "synthetic.parquet"), "--real", str(source), "--policy", str(policy),
                  "--purpose", "benchmark of bounded-memory sampling", "--seed", "0"]
        sample_s, sample_mib = run_measured(sample)
        size_mib = (work / "synthetic.parquet").stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    line = (f"| {args.generator} {' '.join(args.options)} | {args.rows:,} | {sample_s:.1f} | "
            f"{args.rows / sample_s:,.0f} | {sample_mib:,.0f} | {size_mib:,.1f} | {fit_s:.1f} | {fit_mib:,.0f} |")
    print(line)
    path = RESULTS_DIR / "sample_memory.md"
    if not path.exists():
        path.write_text(
            "## Bounded-memory sampling: `synthkit sample` to Parquet (loans_full_schema model)\n\n"
            "Peak RSS of the `synthkit sample` process (load the model, generate, evaluate a 50,000-row uniform "
            "sample, gate, stream to Parquet), measured with `os.wait4`. Target: under 2,048 MiB. "
            "The model was trained with `synthkit train` first (its figures in the last columns).\n\n"
            "| generator | rows | sample s | rows/s (whole command) | peak RSS MiB | Parquet MiB | "
            "train s | train peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n"
        )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    rebuild_results()


if __name__ == "__main__":
    main()
