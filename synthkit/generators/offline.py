"""The Hugging Face libraries with the Hub switched off: local checkpoints only, never a download."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["hub_offline"]

_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


@contextmanager
def hub_offline() -> Iterator[None]:
    """Set the offline switches of huggingface_hub, transformers and diffusers for the block,
    then restore what was there (text/hf and image/diffusers load local directories only)."""
    saved = {n: os.environ.get(n) for n in _SWITCHES}
    os.environ.update({n: "1" for n in _SWITCHES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
