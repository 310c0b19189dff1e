"""The pair cache of :func:`~sparsetopo.nnstd.pairwise_nnstd`: one ``.npz`` per pair, self-describing.

An entry is named and filled by the two fingerprints and a tag (solver,
output matching, reference mode) and carries a SHA-256 of all of it, so a
file copied from another study, truncated or edited by hand is recomputed,
never trusted. A cache only saves time: a bad entry is never an error.

While a pair is being computed, each finished layer is kept too, so that a
killed matrix resumes each pair from its last finished layer:
``<a>-<b>-<tag>.layers/layer_<k>.npz`` holds the layer's total NED and its
matching (int32 when it fits), and its checksum covers the previous layer's
checksum as well, so only an unbroken chain of valid layers 0..m-1 is used
(layer m on is recomputed). When the pair is done its pair entry is written
and its layer entries removed (the pair entry is what a finished pair needs;
a 600,000-neuron layer's matching is 2.4 MB). Pair entries kept their format.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._npz import read_npz
from ..fileio import atomic_write

__all__ = ["LayerProgress", "PairCache", "cache_tag"]

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


def _layer_digest(key: Key, tag: str, k: int, previous: str, total: float, matching: np.ndarray) -> str:
    h = hashlib.sha256(f"{key[0]}|{key[1]}|{tag}|layer {k}|after {previous}|".encode())
    h.update(np.float64(total).astype("<f8").tobytes())
    h.update(np.ascontiguousarray(matching, dtype="<i8").tobytes())
    return h.hexdigest()


def _read_layer_entry(path: Path, key: Key, tag: str, k: int, previous: str,
                      n_out: int) -> tuple[float, np.ndarray, str] | None:
    """``(total, matching, digest)`` of a finished layer, or None when missing, unreadable or not the
    continuation of the chain whose previous layer's checksum is ``previous``."""
    if not path.exists():
        return None
    try:
        z = read_npz(path, "an NNSTD layer cache entry")
        total, matching = float(z["total"][()]), np.asarray(z["matching"]).astype(np.int64)
        digest = str(z["digest"][()])
        ok = (matching.shape == (n_out,) and np.isfinite(total) and 0 <= total <= n_out
              and str(z["a"][()]) == key[0] and str(z["b"][()]) == key[1] and str(z["tag"][()]) == tag
              and int(z["layer"][()]) == k and digest == _layer_digest(key, tag, k, previous, total, matching)
              and matching.min(initial=0) >= 0 and matching.max(initial=0) < n_out
              and np.all(np.bincount(matching, minlength=n_out) == 1))  # a permutation
    except (ValueError, KeyError, IndexError, TypeError, OverflowError):
        return None
    return (total, matching, digest) if ok else None


@dataclass
class LayerProgress:
    """How far a pair got: the totals of its finished layers 0..m-1 (m = ``len(totals)``), the matching
    of layer m-1 (``None`` for m = 0: layer 0's inputs correspond by identity) and its checksum."""

    totals: list[float]
    matching: np.ndarray | None = None
    digest: str = ""


class PairCache:
    """Per-layer results under ``directory/<fingerprint a>-<fingerprint b>-<tag>.npz``; no directory: no cache.

    Unfinished pairs keep their finished layers under ``...-<tag>.layers/`` (:meth:`put_layer`,
    :meth:`layers`).
    """

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
        """Store a finished pair; its layer entries are no longer needed and are removed."""
        path = self._path(key)
        if path is not None:
            _write_cache_entry(path, key, self.tag, per_layer)
            shutil.rmtree(self._layer_dir(key), ignore_errors=True)

    # ------------------------------------------------------------ layer entries
    def _layer_dir(self, key: Key) -> Path:
        return self.directory / f"{key[0]}-{key[1]}-{self.tag}.layers"

    def layers(self, key: Key, n_outs: list[int] | tuple[int, ...]) -> LayerProgress:
        """The longest unbroken chain of valid finished layers of ``key`` (``n_outs``: each layer's
        output count); an empty one without a cache or entries."""
        progress = LayerProgress([])
        if self.directory is None:
            return progress
        folder = self._layer_dir(key)
        if not folder.is_dir():
            return progress
        for k, n_out in enumerate(n_outs):
            entry = _read_layer_entry(folder / f"layer_{k}.npz", key, self.tag, k, progress.digest, n_out)
            if entry is None:
                break
            progress.totals.append(entry[0])
            progress.matching, progress.digest = entry[1], entry[2]
        return progress

    def put_layer(self, key: Key, k: int, total: float, matching: np.ndarray, previous: str) -> str:
        """Store layer ``k`` of an unfinished pair, computed after the layer whose checksum is ``previous``
        (``""`` for layer 0); returns this entry's checksum, the ``previous`` of layer k+1."""
        digest = _layer_digest(key, self.tag, k, previous, total, matching)
        if self.directory is not None:
            stored = np.asarray(matching, dtype=np.int32 if len(matching) < 2**31 else np.int64)
            with atomic_write(self._layer_dir(key) / f"layer_{k}.npz") as f:
                np.savez(f, total=np.float64(total), matching=stored, a=np.array(key[0]), b=np.array(key[1]),
                         tag=np.array(self.tag), layer=np.int64(k), digest=np.array(digest))
        return digest
