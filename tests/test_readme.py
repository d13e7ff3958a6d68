"""The README's SDK tour and CLI tour run exactly as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block(language: str, after: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(after):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv: python and the synthkit script
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def test_sdk_tour_as_written(tmp_path: Path) -> None:
    code = _block("python", "## SDK tour")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "synthetic.parquet").exists() and (tmp_path / "report.html").exists()
    assert (tmp_path / "model" / "manifest.json").exists()


def test_cli_tour_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("data", "out", "keys"))
    script = "set -euo pipefail\n" + _block("bash", "## CLI tour")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    examples = tmp_path / "examples"
    for name in ("out/synth.parquet", "out/report.html", "out/evaluation.html",
                 "out/wage_synthetic.parquet", "demo-output/synthetic.parquet"):
        assert (examples / name).exists(), name
