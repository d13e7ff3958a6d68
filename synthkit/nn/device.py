"""Device choice and seeding for every torch generator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from synthkit.errors import ConfigError


def resolve_device(device: str = "auto", *, fallback: bool = False) -> torch.device:
    """``"auto"``: CUDA when present, else CPU; a named device that is absent is an error.

    ``fallback=True`` (used when loading a saved model) turns an absent CUDA device into the
    CPU with a warning, so a model trained on a GPU still samples on a laptop.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"Unknown device '{device}'.", hint="Use 'auto', 'cpu' or 'cuda'.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        if fallback:
            import warnings

            warnings.warn(f"Device '{device}' is not available here; using the CPU.", stacklevel=2)
            return torch.device("cpu")
        raise ConfigError(
            f"Device '{device}' was asked for, but this machine has no CUDA GPU.",
            hint="Use device='auto' (CUDA when present, else CPU) or device='cpu'.",
        )
    return resolved


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global RNG seeded (restored afterwards): reproducible nets."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
