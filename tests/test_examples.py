"""examples/sdk_tour.py runs (the README's tours are run by test_readme.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_sdk_tour_runs() -> None:
    result = _run([sys.executable, str(ROOT / "examples" / "sdk_tour.py")], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout.lower()
