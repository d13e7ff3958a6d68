"""The public API: every name in synthkit.__all__ resolves, lazily, without importing torch."""

from __future__ import annotations

import subprocess
import sys

import synthkit as sk


def test_all_exports_resolve() -> None:
    assert set(sk.__all__) == {"__version__", *sk._EXPORTS}
    for name in sk.__all__:
        assert getattr(sk, name) is not None


def test_import_is_light() -> None:
    code = "import sys, synthkit; print('torch' in sys.modules, 'sdv' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
