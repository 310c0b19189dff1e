"""Pairwise NNSTD arrays on disk: ``.npz`` (read back validated) and a long-format CSV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._npz import read_npz
from ..errors import FileFormatError, SparsetopoError
from ..fileio import atomic_write, write_text_atomic
from .core import STATUSES, mean_over
from .table import PairwiseNNSTD

__all__ = ["load_matrix", "save_matrix"]


def save_matrix(distances: np.ndarray, names: Sequence[str], *, npz: str | None = None,
                csv: str | None = None, sparse_layers: Sequence[int] | None = None) -> None:
    """Write a pairwise NNSTD array ``(N, N, L)`` to ``.npz`` and/or a long-format CSV.

    The CSV has one row per ordered pair and layer (``a,b,layer,nnstd``) plus
    the network value as layer ``mean``: easy to filter in pandas or a spreadsheet.
    ``mean`` averages ``sparse_layers`` (default: those a :class:`~sparsetopo.nnstd.PairwiseNNSTD`
    knows; else every layer), the network distance as the report computes it; when the
    layers are known a ``mean_all`` row (every layer) follows it. The ``.npz`` holds
    ``nnstd``, ``mean`` and ``names`` (and then ``mean_all`` and ``sparse_layers``). A
    :class:`~sparsetopo.nnstd.PairwiseNNSTD` of the bounds mode with a pair not exact also writes
    ``lower``, ``upper`` and ``status`` arrays, and the CSV gets those three columns.
    """
    distances_in = distances
    distances = np.asarray(distances, dtype=np.float64)
    names = [str(n) for n in names]
    if distances.ndim != 3 or distances.shape[0] != distances.shape[1] or distances.shape[0] != len(names):
        raise SparsetopoError(f"expected an (N, N, L) array for {len(names)} names, got shape {distances.shape}")
    if sparse_layers is None:
        sparse_layers = getattr(distances_in, "sparse_layers", None)
    status = getattr(distances_in, "status", None)
    bounds = {} if status is None or (status == "exact").all() else {
        "lower": np.asarray(distances_in.lower), "upper": np.asarray(distances_in.upper), "status": status}
    means = {"mean": mean_over(distances, sparse_layers, axis=2)}
    if sparse_layers is not None:
        means["mean_all"] = distances.mean(axis=2)
    if npz:
        extra = {} if sparse_layers is None else {"sparse_layers": np.array(list(sparse_layers), dtype=np.int64)}
        with atomic_write(npz) as f:
            np.savez(f, nnstd=distances, names=np.array(names), **means, **extra, **bounds)
    if csv:
        write_text_atomic(csv, _long_csv(distances, names, means, bounds))


def _long_csv(distances: np.ndarray, names: list[str], means: dict[str, np.ndarray], bounds: dict) -> str:
    import csv as _csv
    import io

    buf = io.StringIO()
    w = _csv.writer(buf)
    w.writerow(["a", "b", "layer", "nnstd"] + (["lower", "upper", "status"] if bounds else []))
    n, _, n_layers = distances.shape
    for i in range(n):
        for j in range(n):
            for k in range(n_layers):
                extra = [repr(float(bounds["lower"][i, j, k])), repr(float(bounds["upper"][i, j, k])),
                         str(bounds["status"][i, j, k])] if bounds else []
                w.writerow([names[i], names[j], k, repr(float(distances[i, j, k]))] + extra)
            for label, m in means.items():
                w.writerow([names[i], names[j], label, repr(float(m[i, j]))] + (["", "", ""] if bounds else []))
    return buf.getvalue()


def load_matrix(path: str) -> tuple[PairwiseNNSTD, list[str]]:
    """Read an array written by :func:`save_matrix`; returns ``(distances, names)``, validated.

    ``distances`` is a :class:`~sparsetopo.nnstd.PairwiseNNSTD` (an ndarray) with the file's
    ``sparse_layers`` (every layer if it has none) and, for a matrix of the bounds mode, its
    ``lower``, ``upper`` and ``status``, so what was bounded stays labelled after a round trip.
    """
    z = read_npz(path, "an NNSTD matrix (sparsetopo matrix --out)")
    if "nnstd" not in z or "names" not in z:
        raise FileFormatError(path, "not an NNSTD matrix file (needs arrays 'nnstd' and 'names')")
    d, names = z["nnstd"], z["names"]
    if d.ndim != 3 or d.shape[0] != d.shape[1] or d.dtype.kind != "f" or names.ndim != 1 \
            or len(names) != d.shape[0] or names.dtype.kind not in "US":
        raise FileFormatError(path, f"expected an (N, N, L) float array and N names, got {d.dtype} {d.shape} "
                                    f"and {len(names)} names")
    if not np.all(np.isfinite(d)) or d.min(initial=0) < 0 or d.max(initial=0) > 1:
        raise FileFormatError(path, "NNSTD values must be finite and in [0, 1]")
    layers = z["sparse_layers"] if "sparse_layers" in z else np.arange(d.shape[2])
    if layers.ndim != 1 or layers.dtype.kind not in "iu" or not np.all((layers >= 0) & (layers < d.shape[2])):
        raise FileFormatError(path, f"'sparse_layers' must be layer indices in [0, {d.shape[2]}); got {layers!r}")
    d, names = np.array(d, dtype=np.float64), [str(x) for x in names]
    return PairwiseNNSTD(d, names, [int(k) for k in layers], **_read_bounds(path, z, d)), names


def _read_bounds(path: str, z, d: np.ndarray) -> dict:
    """The bounds mode's ``lower``/``upper``/``status`` arrays of a matrix file, validated (or none)."""
    present = [k for k in ("lower", "upper", "status") if k in z]
    if not present:
        return {}
    if len(present) != 3:
        raise FileFormatError(path, f"a bounds-mode matrix needs 'lower', 'upper' and 'status'; it has only {present}")
    lower, upper, status = z["lower"], z["upper"], z["status"]
    for key, arr, kinds in (("lower", lower, "f"), ("upper", upper, "f"), ("status", status, "US")):
        if arr.shape != d.shape or arr.dtype.kind not in kinds:
            raise FileFormatError(path, f"'{key}' must be a {'string' if key == 'status' else 'float'} array of "
                                        f"shape {d.shape}; got {arr.dtype} {arr.shape}")
    bad = sorted(set(np.unique(status).tolist()) - set(STATUSES))
    if bad:
        raise FileFormatError(path, f"'status' values must be among {', '.join(STATUSES)}; got {', '.join(bad)}")
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))) or np.any(lower > upper + 1e-12) \
            or np.any(upper != d):
        raise FileFormatError(path, "bounds must be finite with lower <= upper, and 'nnstd' must hold 'upper'")
    return {"lower": lower, "upper": upper, "status": np.asarray(status).astype("<U19")}
