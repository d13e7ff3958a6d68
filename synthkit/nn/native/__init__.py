"""Native (C++) training steps, compiled on this machine once and loaded when present.

A CPU training step of TVAE at its batch of 500 rows is a few matrix products and ~80 small
elementwise ops; from Python each op costs microseconds of argument parsing and dispatch, which
add up to a third of the step. :mod:`.tvae_step` (``tvae_step.cpp``) does the same step in one
call: the same products in the same dtypes, the elementwise work fused into a few row loops.
:mod:`.draws` (``draws.cpp``) makes the CPU samplers' 16-bit quantile draws
(:mod:`synthkit.nn.draws`) in one pass: the same values, bit for bit, at ~2x the speed.

Building needs a C++ compiler and takes ~30 s, so it never happens inside a fit: ``synthkit
native build`` (``make setup`` runs it) compiles into a per-user cache keyed by the source,
torch's version and this CPU, and fits load what is there. Without a build (no compiler, or
``SYNTHKIT_NATIVE=0``) fits take the Python step, which computes the same gradients, and
draws the Python path, which gives the same values.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from synthkit.errors import SynthkitError

_HERE = Path(__file__).resolve().parent
#: The native modules: name -> C++ source beside this file.
SOURCES = {"tvae_step": "tvae_step.cpp", "draws": "draws.cpp"}
_FLAGS = ["-O3", "-march=native"]


class NativeBuildError(SynthkitError):
    """A native module could not be compiled (no compiler, or it failed)."""


def enabled() -> bool:
    """False when ``SYNTHKIT_NATIVE`` is ``0`` (or ``false``/``no``/``off``): fits then take
    the Python steps even where a build exists."""
    return os.environ.get("SYNTHKIT_NATIVE", "1").strip().lower() not in {"0", "false", "no", "off"}


def _cpu_tag() -> str:
    """What ``-march=native`` compiled for: the CPU's flags (a build for another CPU may use
    instructions this one lacks)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_dir(name: str) -> Path:
    """Where ``name`` is built: ``$SYNTHKIT_NATIVE_DIR`` (default ``~/.cache/synthkit/native``),
    one folder per source, torch version, Python version and CPU."""
    root = Path(os.environ.get("SYNTHKIT_NATIVE_DIR") or Path.home() / ".cache" / "synthkit" / "native")
    key = hashlib.sha256()
    key.update((_HERE / SOURCES[name]).read_bytes())
    key.update(" ".join([torch.__version__, sys.version, platform.machine(), _cpu_tag(), *_FLAGS]).encode())
    return root / f"{name}-{key.hexdigest()[:16]}"


def library(name: str) -> Path | None:
    """The built shared library of ``name``, if there is one."""
    folder = build_dir(name)
    found = sorted(folder.glob(f"{name}*.so")) if folder.is_dir() else []
    return found[0] if found else None


def build(name: str, *, force: bool = False, verbose: bool = False) -> Path:
    """Compile ``name`` (a key of :data:`SOURCES`) into :func:`build_dir` and return the
    library (the one there already unless ``force``). Raises :class:`NativeBuildError` with
    the compiler's complaint when it fails."""
    from torch.utils import cpp_extension

    if not force and (existing := library(name)) is not None:
        return existing
    folder = build_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = os.environ.get("PATH", "")
    try:  # the ninja that pip installs lives beside this interpreter, maybe off PATH
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, str(Path(sys.executable).parent), path])
    except ImportError:
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])
    try:
        cpp_extension.load(
            name, [str(_HERE / SOURCES[name])], extra_cflags=_FLAGS, build_directory=str(folder),
            verbose=verbose,
        )
    except (RuntimeError, OSError, SystemExit) as err:  # a missing compiler or ninja, a failed compile
        raise NativeBuildError(
            f"Could not compile synthkit's native {name} ({err}). Training still works, on the "
            "Python step; to use the native one install a C++ compiler (e.g. g++) and run "
            "`synthkit native build`."
        ) from err
    finally:
        os.environ["PATH"] = path
    _load.cache_clear()
    built = library(name)
    if built is None:  # pragma: no cover - cpp_extension always writes it
        raise NativeBuildError(f"The native {name} built, but no library appeared in {folder}.")
    return built


@cache
def _load(name: str) -> ModuleType | None:
    built = library(name)
    if built is None:
        return None
    loader = importlib.machinery.ExtensionFileLoader(name, str(built))
    spec = importlib.util.spec_from_file_location(name, str(built), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load(name: str) -> ModuleType | None:
    """The native module ``name`` if it was built for this machine (and :func:`enabled`), else
    None: callers then run their Python code."""
    if not enabled():
        return None
    try:
        return _load(name)
    except ImportError:  # a stale or foreign build: ignored, the Python step runs
        return None
