"""The generator registry: names to classes, through the ``synthkit.generators`` entry points.

Built-in families register exactly as third-party plugins do, in ``pyproject.toml``::

    [project.entry-points."synthkit.generators"]
    "tabular/copula" = "synthkit.generators.tabular.copula:GaussianCopulaGenerator"

A name ending in ``/*`` registers a family of names: ``"sdv/*"`` serves ``"sdv/CTGANSynthesizer"``
and every other SDV synthesizer, the part after the slash going to the class's
``wildcard_field`` config field.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from synthkit.errors import ArtifactError, GeneratorNotFoundError
from synthkit.generators.base import Generator

GROUP = "synthkit.generators"


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def refresh() -> None:
    """Forget cached entry points (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


def available() -> dict[str, str]:
    """Registered names and the ``module:Class`` each points to."""
    eps = _entry_points()
    if not eps:
        raise GeneratorNotFoundError(
            "No generators are registered: synthkit's entry points are missing.",
            hint="Install synthkit (pip install -e .) rather than running it from a source tree.",
        )
    return {name: ep.value for name, ep in sorted(eps.items())}


def resolve(name: str) -> tuple[type[Generator], dict[str, Any]]:
    """The class registered for ``name`` and the config the name itself implies."""
    eps = _entry_points()
    ep = eps.get(name)
    implied: dict[str, Any] = {}
    if ep is None and "/" in name:
        family, _, rest = name.partition("/")
        ep = eps.get(f"{family}/*")
        if ep is not None and rest:
            implied = {"__wildcard__": rest}
    if ep is None:
        known = ", ".join(sorted(eps)) or "(none)"
        raise GeneratorNotFoundError(f"No generator named '{name}'. Registered: {known}.")
    try:
        cls = ep.load()
    except ImportError as exc:
        raise GeneratorNotFoundError(
            f"Generator '{name}' is registered but cannot be imported: {exc}",
            hint="Install the extra or package it needs.",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise GeneratorNotFoundError(f"Entry point '{ep.name}' ({ep.value}) is not a Generator class.")
    if implied:
        field = getattr(cls, "wildcard_field", None)
        if not field:
            raise GeneratorNotFoundError(f"'{ep.name}' does not take a name suffix.")
        implied = {field: implied["__wildcard__"]}
    return cls, implied


def create(name: str, **config: Any) -> Generator:
    """Build an unfitted generator by registry name: ``create("tabular/copula", seed=0)``."""
    cls, implied = resolve(name)
    return cls(**implied, **config)


def load(path: str | Path, *, trust_pickle: bool = False, key: Any = None) -> Generator:
    """Load any saved model directory; the class comes from the manifest's registry name.

    ``key`` opens an encrypted model: bytes, base64 text or a key file path (default: the
    SYNTHKIT_MODEL_KEY environment variable).
    """
    from synthkit.artifacts import read_model_dir

    artifact = read_model_dir(path, key=key)
    name = artifact.generator
    try:
        cls, implied = resolve(name)
    except GeneratorNotFoundError as exc:
        raise ArtifactError(
            f"{path} was saved by generator '{name}', which is not installed here.",
            hint="Install the package that provides it, then load again.",
        ) from exc
    gen = cls._from_artifact(artifact, trust_pickle=trust_pickle)
    for key, value in implied.items():
        if getattr(gen.config, key, value) != value:
            raise ArtifactError(f"{path}: manifest name '{name}' disagrees with its config.")
    return gen
