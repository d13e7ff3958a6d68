"""Multi-table generators: several tables linked by foreign keys, made with referential integrity.

:class:`RelationalSynthesizer` fits on a :class:`~synthkit.relational.MultiTable` and samples a new
one. It is not a registry entry: a registered :class:`~synthkit.generators.base.Generator` fits
one table and samples ``n`` rows of it (and the conformance suite holds every registered name to
that), whereas this one fits and samples a whole database. Use ``sk.RelationalSynthesizer``.
"""

from synthkit.generators.relational.hma import RelationalConfig, RelationalSynthesizer

__all__ = ["RelationalConfig", "RelationalSynthesizer"]
