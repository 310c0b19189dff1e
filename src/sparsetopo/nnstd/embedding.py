"""Embedding a distance matrix in the plane, for the studies' scatter plots."""

from __future__ import annotations

import numpy as np

from ..errors import SparsetopoError

__all__ = ["classical_mds"]


def classical_mds(distances: np.ndarray, dims: int = 2) -> np.ndarray:
    """Classical (Torgerson) multidimensional scaling of a symmetric distance matrix.

    Returns ``(N, dims)`` coordinates whose Euclidean distances best match
    ``distances`` in the least-squares sense of the double-centred Gram matrix.
    NNSTD is not Euclidean, so negative eigenvalues are dropped.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise SparsetopoError(f"classical_mds needs a square matrix, got shape {d.shape}")
    n = d.shape[0]
    j = np.eye(n) - np.full((n, n), 1.0 / n)
    b = -0.5 * j @ (d ** 2) @ j
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(vals)[::-1][:dims]
    vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
    coords = vecs * np.sqrt(vals)
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((n, dims - coords.shape[1]))])
    return coords
