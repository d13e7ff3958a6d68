"""Train/holdout split: real rows kept out of training so privacy can be measured against them.

The split is a pure function of the data, the fraction and the seed, so ``synthkit train`` and a
later ``synthkit sample --real`` arrive at the same rows without storing any real data.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError


def split_holdout(
    df: pl.DataFrame, *, fraction: float = 0.2, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Split ``df`` into (train, holdout) with ``fraction`` of rows held out; 0 keeps all rows.

    Row order inside each part follows the original order, so fingerprints are reproducible.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"holdout fraction must be in [0, 1), got {fraction}.")
    if fraction == 0.0:
        return df, None
    n_hold = int(round(df.height * fraction))
    if n_hold < 1 or df.height - n_hold < 1:
        raise DataError(
            f"Cannot hold out {fraction:.0%} of {df.height} rows and keep rows on both sides.",
            hint="Use more data, or a holdout fraction of 0 (privacy metrics that need a "
            "holdout are then missing, and policies that require them fail).",
        )
    rng = np.random.default_rng(seed)
    mask = np.zeros(df.height, dtype=bool)
    mask[rng.choice(df.height, size=n_hold, replace=False)] = True
    flags = pl.Series("__holdout__", mask)
    return df.filter(~flags), df.filter(flags)
