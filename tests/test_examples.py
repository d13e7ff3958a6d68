"""The README's tours really run: the SDK tour script and the example pipeline YAML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_sdk_tour_runs() -> None:
    result = _run([sys.executable, str(ROOT / "examples" / "sdk_tour.py")], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout.lower()


def test_example_pipeline_runs(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    for name in ("wage_pipeline.yaml", "prepare_wage.py"):
        shutil.copy(ROOT / "examples" / name, examples / name)
    assert _run([sys.executable, str(examples / "prepare_wage.py")], cwd=tmp_path).returncode == 0
    synthkit = [sys.executable, "-m", "synthkit.cli"]
    assert _run([*synthkit, "keys", "generate", "--out", str(examples / "keys")], cwd=tmp_path).returncode == 0
    result = _run([*synthkit, "run", str(examples / "wage_pipeline.yaml")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(examples / "out" / "wage_synthetic.parquet").height == 3000
    assert (examples / "out" / "audit.jsonl").exists()
