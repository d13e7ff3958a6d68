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


def test_every_package_is_listed_for_installation() -> None:
    """A subpackage missing from pyproject's list would be absent from wheels (not from -e)."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {"synthkit": root / "synthkit", "synthkit.connectors": root / "connectors",
               "synthkit.policies": root / "policies"}
    found = set()
    for prefix, folder in mapping.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((prefix, *rel)))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
