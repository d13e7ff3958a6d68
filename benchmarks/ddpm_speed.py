"""tabular/ddpm's fast sampler speed: rows per second of DDIM sampling on each table.

Sampling speed depends on the network's size and the number of steps, not on how long the model
trained, so a short fit of the default-size model is enough to time it.

    python benchmarks/ddpm_speed.py wage credit_data mlc_churn loans_full_schema diamonds
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular import TABLES, load_table  # noqa: E402

import synthkit as sk  # noqa: E402


def main() -> None:
    for table in sys.argv[1:] or list(TABLES):
        real = load_table(table)
        gen = sk.create("tabular/ddpm", seed=0, train_steps=50, progress=False).fit(real)
        fast = gen.with_sampler("ddim")
        fast.sample(2_000, seed=0)  # warm-up
        started = time.perf_counter()
        fast.sample(20_000, seed=1)
        rate = 20_000 / (time.perf_counter() - started)
        print(f"{table:18s} torch threads {torch.get_num_threads()}  DDIM {rate:10,.0f} rows/s", flush=True)


if __name__ == "__main__":
    main()
