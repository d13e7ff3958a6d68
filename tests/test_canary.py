"""A planted canary (one unique outlier row) is not reproduced by the default pipeline."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from synthkit.pipeline import Pipeline
from synthkit.policies import generate_keypair
from synthkit.prepare.split import split_holdout


def test_default_pipeline_does_not_reproduce_a_planted_canary(tmp_path: Path, wage: pl.DataFrame) -> None:
    real = wage.head(2000)
    canary = real.head(1).with_columns(
        pl.lit(2009).alias("year"), pl.lit(79).alias("age"), pl.lit("4. Other").alias("race"),
        pl.lit("5. Advanced Degree").alias("education"), pl.lit(317.5).alias("wage"),
        pl.lit(2.50).alias("logwage"),
    ).cast(real.schema)
    learned = ["year", "age", "maritl", "race", "education", "region", "jobclass", "health",
               "health_ins", "wage"]
    for shuffle in range(20):  # an order in which the pipeline's seeded split trains on the canary
        data = pl.concat([real, canary]).sample(fraction=1.0, shuffle=True, seed=shuffle)
        train, _ = split_holdout(data, fraction=0.2, seed=0)
        if train.join(canary.select(learned), on=learned, how="semi").height:
            break
    data.write_csv(tmp_path / "data.csv")
    generate_keypair(tmp_path / "keys")
    config = {
        "source": "data.csv",
        "n": 20_000,  # ten times the table: a memorised row would show up
        "purpose": "software testing",
        "sink": "out/synthetic.parquet",
        "audit": {"log": "out/audit.jsonl", "private_key": "keys/synthkit.key"},
        "base_dir": str(tmp_path),
    }
    Pipeline(config).run()
    synth = pl.read_parquet(tmp_path / "out/synthetic.parquet")
    # never the whole row, and never even its rare combination of age, race and top wage
    assert synth.join(canary.select(learned), on=learned, how="semi").height == 0
    near = synth.filter(
        (pl.col("age") >= 78) & (pl.col("race") == "4. Other") & (pl.col("wage") > 300)
    )
    assert near.height == 0
