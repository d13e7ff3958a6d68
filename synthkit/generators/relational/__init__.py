"""Multi-table generators: several tables linked by foreign keys, made with referential integrity.

:class:`RelationalSynthesizer` fits on a :class:`~synthkit.relational.MultiTable` and samples a new
one. It is not a registry entry: a registered :class:`~synthkit.generators.base.Generator` fits
one table and samples ``n`` rows of it (and the conformance suite holds every registered name to
that), whereas this one fits and samples a whole database. Use ``sk.RelationalSynthesizer``.

:class:`SequentialSynthesizer` fits on one event table of per-entity sequences (an entity key
and an order/time column) and samples new entities' sequences. Use ``sk.SequentialSynthesizer``.
"""

from typing import Any

from synthkit.generators.relational.hma import RelationalConfig, RelationalSynthesizer

__all__ = ["RelationalConfig", "RelationalSynthesizer", "SequentialConfig", "SequentialSynthesizer"]


def __getattr__(name: str) -> Any:
    """The sequential model imports torch: only when it is asked for."""
    if name in ("SequentialConfig", "SequentialSynthesizer"):
        from synthkit.generators.relational import sequential

        return getattr(sequential, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
