"""Profiling and cleaning on real tables with planted problems: found, counted, acted on exactly."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import synthkit as sk
from synthkit.cli import main
from synthkit.prepare.clean import CleanRules, clean
from synthkit.prepare.profile import profile

DUPES, NEAR, BAD_NUMBERS, BAD_DATES, INCOMPLETE, BAD_TEXT = 7, 4, 5, 3, 6, 2


@pytest.fixture(scope="module")
def base(wage: pl.DataFrame) -> pl.DataFrame:
    """Wage without its own repeats, with a string column of numbers and one of dates."""
    frame = wage.unique(maintain_order=True).with_columns(
        pl.col("age").cast(pl.String).alias("age_text"),
        pl.format("{}-{}-15", pl.col("year"), (pl.col("age") % 12 + 1).cast(pl.String).str.zfill(2))
        .alias("hired"),
    )
    return frame


@pytest.fixture(scope="module")
def planted(base: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """``base`` with known problems at known rows (indices in the returned frame)."""
    n = base.height
    frame = base.with_columns(
        pl.Series("age_text", base["age_text"].to_list()),
        pl.Series("hired", base["hired"].to_list()),
    )
    rows = {"numbers": [10, 20, 30, 40, 50], "dates": [60, 70, 80], "text": [90, 100],
            "incomplete": [200, 210, 220, 230, 240, 250]}
    frame = frame.with_columns(
        frame["age_text"].scatter(rows["numbers"], ["n/a", "12,5", "forty", "inf", "1e400x"]),
        frame["hired"].scatter(rows["dates"], ["2009-02-30", "2007-13-01", "1700-01-15"]),
        frame["jobclass"].scatter(rows["text"], ["2. Infor\x00mation", "1. Indus\ufffdtrial"]),
    )
    nullable = [c for c in frame.columns if c not in ("age_text", "hired", "jobclass")]
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(rows["incomplete"])).then(None)
        .otherwise(pl.col(c)).alias(c) for c in nullable[:9]
    )
    exact = frame.slice(300, DUPES)
    near = frame.slice(400, NEAR).with_columns(
        pl.col("maritl").str.to_uppercase(), pl.col("education").str.replace(" ", "   "))
    out = pl.concat([frame, exact, near])
    rows["duplicates"] = list(range(n, n + DUPES))
    rows["near"] = list(range(n + DUPES, n + DUPES + NEAR))
    return out, rows


def test_base_is_clean(base):
    found = profile(base)
    for kind in ("duplicate_rows", "near_duplicate_rows", "invalid_type", "invalid_date",
                 "incomplete_rows", "bad_text"):
        assert found.count(kind) == 0, kind


def test_planted_problems_are_found_and_counted_exactly(planted):
    frame, rows = planted
    found = profile(frame)
    assert found.count("duplicate_rows") == DUPES
    assert found.count("near_duplicate_rows") == NEAR
    assert found.count("invalid_type", "age_text") == BAD_NUMBERS
    assert found.count("invalid_date", "hired") == BAD_DATES
    assert found.count("bad_text", "jobclass") == BAD_TEXT
    assert found.count("incomplete_rows") == INCOMPLETE
    (numbers,) = found.of("invalid_type")
    assert numbers.rows == rows["numbers"] and numbers.examples[0] == "n/a"
    assert found.of("duplicate_rows")[0].rows == rows["duplicates"][:5]
    assert found.of("incomplete_rows")[0].rows == rows["incomplete"][:5]
    assert "outliers" in {f.kind for f in found.findings}  # wage has real extremes
    assert json.loads(json.dumps(found.to_dict(), default=str))["rows"] == frame.height


def test_declared_bounds_and_column_checks(base):
    schema = sk.infer_schema(base).with_overrides({"age": {"min": 20, "max": 70}})
    found = profile(base, schema)
    assert found.count("out_of_bounds", "age") == int(((base["age"] < 20) | (base["age"] > 70)).sum())
    ids = base.with_columns(pl.int_range(pl.len()).alias("customer_id"),
                            pl.lit("x").alias("constant"))
    kinds = {(f.kind, f.column) for f in profile(ids).findings}
    assert ("id_like", "customer_id") in kinds and ("near_constant", "constant") in kinds
    high = pl.DataFrame({"code": [f"c{i} v" for i in range(3000)], "n": range(3000)})
    assert ("high_cardinality", "code") in {(f.kind, f.column) for f in profile(high).findings}


def test_default_cleaning_repairs_values_and_keeps_every_row(planted):
    frame, rows = planted
    data, report = clean(frame)
    assert data.height == frame.height and report.rows_out == frame.height
    assert data["age_text"].dtype == pl.Float64
    assert data["age_text"].gather(rows["numbers"]).null_count() == BAD_NUMBERS
    assert data["hired"].dtype == pl.Date and data["hired"].gather(rows["dates"]).null_count() == BAD_DATES
    assert data["jobclass"].gather(rows["text"]).to_list() == ["2. Information", "1. Industrial"]
    assert report.count("invalid_type", "age_text") == BAD_NUMBERS
    assert report.count("bad_text") == BAD_TEXT
    assert report.found["duplicate_rows"] == DUPES and report.count("duplicate_rows") == 0


def test_cleaning_never_changes_rows_that_break_no_rule(planted):
    frame, rows = planted
    rules = {"duplicates": "drop", "near_duplicates": "drop", "incomplete_rows": 0.5}
    data, report = clean(frame, rules=rules)
    dropped = set(rows["duplicates"]) | set(rows["near"]) | set(rows["incomplete"])
    assert report.rows_out == frame.height - len(dropped) == data.height
    kept = [i for i in range(frame.height) if i not in dropped]
    touched = set(rows["numbers"]) | set(rows["dates"]) | set(rows["text"])
    untouched = [j for j, i in enumerate(kept) if i not in touched]
    before = frame[kept][untouched]
    after = data[untouched]
    same = [c for c in frame.columns if c not in ("age_text", "hired")]
    assert after.select(same).equals(before.select(same))
    assert after["age_text"].to_list() == before["age_text"].cast(pl.Float64).to_list()
    assert after["hired"].to_list() == before["hired"].str.to_date("%Y-%m-%d").to_list()


def test_outlier_actions(wage):
    found = profile(wage)
    n_out = found.count("outliers", "wage")
    assert n_out > 0
    capped, report = clean(wage, rules={"outliers": "winsorise"})
    q1, q3 = wage["wage"].quantile(0.25, "linear"), wage["wage"].quantile(0.75, "linear")
    assert capped["wage"].max() <= q3 + 3 * (q3 - q1) + 1e-9
    changed = (capped["wage"] != wage["wage"]).sum()
    assert changed == n_out == report.count("outliers", "wage")
    flagged, _ = clean(wage, rules={"outliers": "flag"})
    assert flagged["wage_outlier"].sum() == n_out and flagged["wage"].equals(wage["wage"])
    dropped, _ = clean(wage, rules={"outliers": "drop_row"})
    assert dropped.height < wage.height


def test_edge_tables_and_bad_rules():
    assert profile(pl.DataFrame({"a": []}, schema={"a": pl.Int64})).findings == []
    one, report = clean(pl.DataFrame({"a": [1], "b": ["x"]}))
    assert one.height == 1 and not report.changed
    nulls = profile(pl.DataFrame({"a": [None] * 30, "b": list(range(30))}, schema={"a": pl.String, "b": pl.Int64}))
    assert nulls.count("incomplete_rows") == 0  # half of 2 columns missing is the threshold
    with pytest.raises(Exception, match="duplicates"):
        CleanRules(duplicates="maybe")


def test_inspect_profile_cli(planted, tmp_path):
    frame, _ = planted
    path = tmp_path / "planted.csv"
    frame.write_csv(path)
    result = CliRunner().invoke(main, ["inspect", str(path), "--profile", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    counts = {(f["kind"], f["column"]): f["count"] for f in found["findings"]}
    assert counts["duplicate_rows", None] == DUPES
    assert counts["invalid_type", "age_text"] == BAD_NUMBERS
    shown = CliRunner().invoke(main, ["inspect", str(path)])
    assert shown.exit_code == 0 and "Data quality" in shown.output


def test_profile_is_vectorised_on_a_large_table():
    rng = np.random.default_rng(0)
    big = pl.DataFrame({"x": rng.normal(size=300_000), "c": rng.choice(["a", "b", "c"], 300_000),
                        "t": rng.integers(0, 10, 300_000).astype(str)})
    found = profile(big)
    assert found.rows == 300_000  # finishes: no per-row Python on 300k rows


def test_pipeline_prepare_section_cleans_and_reports(planted, tmp_path):
    from synthkit.pipeline import Pipeline
    from synthkit.policies import generate_keypair, load_public_key, verify_log

    frame, _ = planted
    frame.write_csv(tmp_path / "planted.csv")
    generate_keypair(tmp_path / "keys")
    config = {
        "source": "planted.csv", "generator": {"name": "tabular/copula"}, "n": 500,
        "purpose": "software testing", "report": "out/report.html",
        "audit": {"log": "out/audit.jsonl", "private_key": "keys/synthkit.key"},
        "prepare": {"duplicates": "drop", "near_duplicates": "drop"}, "base_dir": str(tmp_path),
    }
    result = Pipeline(config).run(raise_on_refusal=False)
    prep = result.report.preparation
    assert prep["rows_in"] == frame.height and prep["rows_out"] == frame.height - DUPES - NEAR
    assert {a["rule"] for a in prep["actions"]} >= {"duplicate_rows", "invalid_type", "bad_text"}
    assert result.schema["age_text"].kind == sk.ColumnKind.NUMERICAL  # parsed once cleaned
    html = (tmp_path / "out/report.html").read_text()
    assert "Cleaning before training" in html
    saved = json.loads((tmp_path / "out/report.json").read_text())
    assert saved["preparation"]["rows_out"] == prep["rows_out"]
    log = tmp_path / "out/audit.jsonl"
    record = json.loads(log.read_text().splitlines()[-1])
    assert "cleaning" in json.dumps(record)
    assert verify_log(log, load_public_key(tmp_path / "keys/synthkit.pub")).ok
