"""Streaming evaluation of partitioned output: exact counts over every row, the rest on a sample."""

from __future__ import annotations

import json

import polars as pl
import pytest

import synthkit as sk
from synthkit.errors import ConfigError
from synthkit.evaluate import streaming
from synthkit.evaluate.privacy import exact_copy_rate
from synthkit.evaluate.quality import canonical_frame
from synthkit.frames import fingerprint

FAST = dict(sdmetrics=False, detectability=False)


@pytest.fixture(scope="module")
def parts(wage: pl.DataFrame, tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame, object, object]:
    """Four partitions of 1,500 synthetic rows each; the last carries 60 copied training rows."""
    train, holdout = sk.split_holdout(wage.head(1500), fraction=0.2, seed=0)
    schema = sk.infer_schema(train)
    synthetic = sk.create("tabular/copula", seed=0).fit(train, schema=schema).sample(5_940, seed=3)
    whole = pl.concat([synthetic, train.head(60).select(synthetic.columns).cast(synthetic.schema)])
    directory = tmp_path_factory.mktemp("synth")
    for i in range(4):
        whole.slice(i * 1_500, 1_500).write_parquet(directory / f"part-{i:05d}.parquet")
    return train, holdout, schema, directory, whole


def test_exact_counts_stream_and_metrics_use_a_stated_sample(parts, monkeypatch) -> None:
    train, holdout, schema, directory, whole = parts
    seen: list[int] = []
    collect = streaming._collect
    monkeypatch.setattr(streaming, "_collect", lambda lf: seen.append((df := collect(lf)).height) or df)
    rep = streaming.evaluate_streaming(train, directory, schema, holdout, sample_rows=400, seed=1, **FAST)
    # the memory budget: nothing larger than the sample (or a category table) was materialised
    assert seen and max(seen) <= 400
    exact = rep.settings["streaming"]
    assert exact["rows"] == rep.n_synthetic == 6_000 and exact["sample_rows"] == 400
    assert any("computed on a sample of 400 of 6,000 rows" in note for note in rep.notes)
    # the exact figures equal those of the whole table held in memory
    learned = [c for c in schema if c.kind.value in ("numerical", "categorical", "boolean", "datetime")]
    copies = exact_copy_rate(canonical_frame(train, learned).unique(), canonical_frame(whole, learned))
    assert exact["exact_copies"] >= 60
    assert rep.metrics["privacy.exact_copy_rate"].value == pytest.approx(round(copies, 6))
    assert rep.metrics["privacy.exact_copy_rate"].value == round(exact["exact_copies"] / 6_000, 6)
    assert exact["columns"]["age"] == {"nulls": 0, "min": whole["age"].min(), "max": whole["age"].max()}
    assert exact["columns"]["race"]["categories"] == dict(whole["race"].value_counts().rows())
    assert exact["columns"]["race"]["nulls"] == whole["race"].null_count()
    # the fingerprint is the partitioned one a Decision binds to, recomputed from the files
    from synthkit.distributed import fingerprint_partitions

    assert rep.synthetic_fingerprint == exact["fingerprint"] == fingerprint_partitions(directory)
    # seeded: the same sample, the same report figures
    again = streaming.evaluate_streaming(train, directory, schema, holdout, sample_rows=400, seed=1, **FAST)
    assert again.metrics["quality.overall"].value == rep.metrics["quality.overall"].value


def test_evaluate_entry_point_streams_directories_and_lazy_frames(parts) -> None:
    train, _, schema, directory, whole = parts
    rep = sk.evaluate(train, directory, schema, max_rows=500, **FAST)
    assert rep.settings["streaming"]["rows"] == 6_000 and rep.n_synthetic == 6_000
    lazy = pl.scan_parquet(str(directory / "*.parquet"))
    rep_lazy = sk.evaluate(train, lazy, schema, max_rows=500, **FAST)
    assert rep_lazy.settings["streaming"]["exact_copies"] == rep.settings["streaming"]["exact_copies"]
    assert rep_lazy.synthetic_fingerprint == fingerprint(whole)  # one stream, in order
    with pytest.raises(ConfigError, match="sample_rows"):
        streaming.evaluate_streaming(train, directory, schema, sample_rows=1)


def test_cli_evaluate_on_a_directory(parts, tmp_path) -> None:
    from click.testing import CliRunner

    from synthkit.cli import main

    train, _, _, directory, _ = parts
    train.write_csv(tmp_path / "train.csv")
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "train.csv"), str(directory), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{"):])
    assert report["settings"]["streaming"]["rows"] == 6_000
    assert report["n_synthetic"] == 6_000
