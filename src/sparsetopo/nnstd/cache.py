"""The pair cache of :func:`~sparsetopo.nnstd.pairwise_nnstd`: one ``.npz`` per pair, self-describing.

An entry is named and filled by the two fingerprints and a tag (solver,
output matching, reference mode) and carries a SHA-256 of all of it, so a
file copied from another study, truncated or edited by hand is recomputed,
never trusted. A cache only saves time: a bad entry is never an error.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .._npz import read_npz
from ..fileio import atomic_write

__all__ = ["PairCache", "cache_tag"]

Key = tuple[str, str]


def cache_tag(solver: str, match_outputs: bool, reference: bool) -> str:
    """What a cache entry is about besides its pair; reference entries (ordered pairs) never mix with canonical."""
    tag = f"{solver}-{'matched' if match_outputs else 'identity'}-outputs"
    return f"reference-{tag}" if reference else tag


def _entry_digest(key: Key, tag: str, per_layer: np.ndarray) -> str:
    h = hashlib.sha256(f"{key[0]}|{key[1]}|{tag}|".encode())
    h.update(np.ascontiguousarray(per_layer, dtype="<f8").tobytes())
    return h.hexdigest()


def _write_cache_entry(path: Path, key: Key, tag: str, per_layer: np.ndarray) -> None:
    """One pair's result with what it is about (fingerprints, solver tag) and a checksum of it all."""
    with atomic_write(path) as f:
        np.savez(f, per_layer=np.asarray(per_layer, dtype="<f8"), a=np.array(key[0]), b=np.array(key[1]),
                 tag=np.array(tag), digest=np.array(_entry_digest(key, tag, per_layer)))


def _read_cache_entry(path: Path, key: Key, tag: str, n_layers: int) -> np.ndarray | None:
    """A cached result, or None when it is missing, unreadable, about another pair or fails its checksum."""
    if not path.exists():
        return None
    try:
        z = read_npz(path, "an NNSTD cache entry")
        per_layer = np.asarray(z["per_layer"], dtype=np.float64)
        ok = (per_layer.shape == (n_layers,) and str(z["a"][()]) == key[0] and str(z["b"][()]) == key[1]
              and str(z["tag"][()]) == tag and str(z["digest"][()]) == _entry_digest(key, tag, per_layer)
              and np.all(np.isfinite(per_layer)) and np.all((per_layer >= 0) & (per_layer <= 1)))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return per_layer if ok else None


class PairCache:
    """Per-layer results under ``directory/<fingerprint a>-<fingerprint b>-<tag>.npz``; no directory: no cache."""

    def __init__(self, directory: str | os.PathLike | None, tag: str, n_layers: int):
        self.directory = Path(directory) if directory is not None else None
        self.tag, self.n_layers = tag, n_layers

    def _path(self, key: Key) -> Path | None:
        return self.directory / f"{key[0]}-{key[1]}-{self.tag}.npz" if self.directory is not None else None

    def get(self, key: Key) -> np.ndarray | None:
        """The entry of ``key`` if it verifies, else None."""
        path = self._path(key)
        return None if path is None else _read_cache_entry(path, key, self.tag, self.n_layers)

    def put(self, key: Key, per_layer: np.ndarray) -> None:
        path = self._path(key)
        if path is not None:
            _write_cache_entry(path, key, self.tag, per_layer)
