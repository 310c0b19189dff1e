"""Random generators from seeds: every random draw in the package starts here."""

from __future__ import annotations

import numpy as np

__all__ = ["SeedLike", "as_generator"]

#: What a ``seed`` parameter accepts: an int, a SeedSequence, a Generator (used as is) or None (fresh entropy).
SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a NumPy ``Generator`` for ``seed`` (an int, a SeedSequence or a Generator).

    A Generator passed in is returned as is, so callers can thread one stream
    through several calls; nothing here touches NumPy's global state.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
