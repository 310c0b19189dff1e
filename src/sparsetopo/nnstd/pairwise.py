"""NNSTD of many pairs: the pairwise matrix of a study, in parallel, with a cache of pairs."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from ..errors import SparsetopoError
from ..topology import Topology
from .cache import PairCache, cache_tag
from .core import check_max_seconds, nnstd, sparse_layers
from .solvers import DEFAULT_MAX_DENSE_BYTES, Solver, reference_solver
from .table import PairwiseNNSTD

__all__ = ["nnstd_many", "pairwise_nnstd"]


def _check_same_shapes(topologies: list[Topology]) -> None:
    if not topologies:
        raise SparsetopoError("pairwise_nnstd needs at least one topology")
    first = topologies[0]
    for t in topologies[1:]:
        if t.shapes != first.shapes or t.kernels != first.kernels:
            raise SparsetopoError(
                f"all topologies must have the same layer shapes: {first.name or '#0'} has "
                f"{list(first.shapes)}, {t.name or 'another'} has {list(t.shapes)}"
            )


def _pair_keys(prints: list[str], reference: bool) -> dict[tuple[int, int], tuple[str, str]]:
    """The key of every pair ``i < j``: the sorted fingerprints (canonical mode), or the ordered pair
    (reference mode), so that a canonical matrix does not depend on the order of the list."""
    n = len(prints)
    if reference:
        return {(i, j): (prints[i], prints[j]) for i in range(n) for j in range(i + 1, n)}
    return {(i, j): tuple(sorted((prints[i], prints[j]))) for i in range(n) for j in range(i + 1, n)}


def _known(keys, cache: PairCache, n_layers: int, reference: bool):
    """The results needing no computation (identical content, verified cache entries) and the keys left."""
    results: dict[tuple[str, str], np.ndarray] = {}
    todo: list[tuple[str, str]] = []
    for key in dict.fromkeys(keys):
        if key[0] == key[1] and not reference:
            # Identical content: distance 0. Reference mode computes it anyway, as the published
            # loop does (ties among identical neurons can make its value non-zero beyond layer 0).
            results[key] = np.zeros(n_layers)
        elif (cached := cache.get(key)) is not None:
            results[key] = cached
        else:
            todo.append(key)
    return results, todo


def pairwise_nnstd(topologies: Sequence[Topology], *, match_outputs: bool = True,
                   solver: Solver = "auto", n_jobs: int | None = 1, progress: bool = False,
                   max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, cache_dir: str | os.PathLike | None = None,
                   cluster: str | None = None, reference: bool = False, names: Sequence[str] | None = None,
                   desc: str = "NNSTD pairs", max_seconds: float | None = None) -> PairwiseNNSTD:
    """NNSTD between every pair of topologies.

    Returns a :class:`~sparsetopo.nnstd.PairwiseNNSTD`: an array ``D`` of shape
    ``(N, N, n_layers)``, symmetric in its first two axes with a zero diagonal,
    labelled with ``names`` (default: the topologies' names, else their
    positions) and the layers that count (:func:`~sparsetopo.nnstd.sparse_layers`);
    ``D.value[i, j]`` is the network distance (the mean over those layers),
    ``D.to_dataframe()`` a labelled ``pandas.DataFrame``. ``desc`` labels the
    progress bar (say what the pairs are: ``"NNSTD epoch 10"``).

    Each pair is computed in a canonical direction (by content fingerprint), so
    the matrix does not depend on the order of the list. Pairs run in parallel
    with joblib threads (``n_jobs``; the sparse products and the assignment
    solvers release the GIL) or on a Dask cluster (``cluster``, see
    :func:`sparsetopo.parallel.map_tasks`). With ``cache_dir`` every pair's
    result is stored under the two fingerprints, so adding a network to a
    study computes only the new pairs.

    With ``reference=True`` the matrix reproduces the implementation published
    with the paper instead: solver ``dense``, and pair ``(i, j)`` with
    ``i < j`` in the order given computed as A = ``topologies[i]``, B =
    ``topologies[j]`` and mirrored to ``(j, i)``; it then depends on the order.
    Reference entries are cached apart from canonical ones, under the ordered
    pair.

    ``max_seconds``: :func:`~sparsetopo.nnstd.nnstd`'s bounds mode, per pair; the result then has ``lower``,
    ``upper`` and ``status`` arrays (:class:`PairwiseNNSTD`). Only exact pairs are cached.
    """
    solver = reference_solver(reference, solver)
    topologies = list(topologies)
    _check_same_shapes(topologies)
    check_max_seconds(max_seconds, solver, reference, topologies[0].is_graph)
    names = _names(topologies, names)
    n, n_layers = len(topologies), len(topologies[0].shapes)
    prints = [t.fingerprint() for t in topologies]
    by_print = dict(zip(prints, topologies))
    pair_keys = _pair_keys(prints, reference)
    cache = PairCache(cache_dir, cache_tag(solver, match_outputs, reference), n_layers)
    results, todo = _known(pair_keys.values(), cache, n_layers, reference)
    computed = nnstd_many([(by_print[a], by_print[b]) for a, b in todo], match_outputs=match_outputs,
                          solver=solver, n_jobs=n_jobs, progress=progress, max_dense_bytes=max_dense_bytes,
                          cluster=cluster, reference=reference, desc=desc, max_seconds=max_seconds)
    bounds: dict[tuple[str, str], tuple] = {}  # bounds mode: (lower, upper, status) of the pairs computed
    for key, per_layer in zip(todo, computed):
        if max_seconds is not None:
            per_layer, lo, up, st = per_layer
            bounds[key] = (lo, up, st)
        results[key] = per_layer
        if key not in bounds or all(st == "exact" for st in bounds[key][2]):
            cache.put(key, per_layer)  # a bounded pair is never cached: the cache holds NNSTD values only
    out = np.zeros((n, n, n_layers), dtype=np.float64)
    for (i, j), key in pair_keys.items():
        out[i, j] = out[j, i] = results[key]
    extra = {} if max_seconds is None else _bounds_arrays(out, pair_keys, bounds)
    return PairwiseNNSTD(out, names, sparse_layers(*topologies), **extra)


def _bounds_arrays(out: np.ndarray, pair_keys, bounds: dict) -> dict[str, np.ndarray]:
    """The bounds mode's ``lower``, ``upper`` and ``status`` arrays (the values and "exact" where not computed)."""
    lower, upper = out.copy(), out.copy()
    status = np.full(out.shape, "exact", dtype="<U19")
    for (i, j), key in pair_keys.items():
        if key in bounds:
            lower[i, j] = lower[j, i] = bounds[key][0]
            upper[i, j] = upper[j, i] = bounds[key][1]
            status[i, j] = status[j, i] = bounds[key][2]
    return {"lower": lower, "upper": upper, "status": status}


def _names(topologies: list[Topology], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [t.name or str(i) for i, t in enumerate(topologies)]
    names = [str(n) for n in names]
    if len(names) != len(topologies):
        raise SparsetopoError(f"names must give one name per topology ({len(topologies)}); got {len(names)}")
    return names


def nnstd_many(pairs: Sequence[tuple[Topology, Topology]], *, match_outputs: bool = True,
               solver: Solver = "auto", n_jobs: int | None = 1, progress: bool = False,
               max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, cluster: str | None = None,
               reference: bool = False, desc: str = "NNSTD pairs", max_seconds: float | None = None) -> list:
    """Per-layer NNSTD of many ``(A, B)`` pairs, in parallel; results in input order.

    ``reference=True`` computes each pair as :func:`nnstd` does with it: solver
    ``dense``, in the direction A -> B. With ``max_seconds`` (per pair) each result is
    ``(per_layer, lower, upper, status)`` (:class:`~sparsetopo.nnstd.NNSTDResult`'s fields).
    """
    from ..parallel import map_tasks

    solver = reference_solver(reference, solver)
    task = functools.partial(_pair_task, match_outputs=match_outputs, solver=solver,
                             max_dense_bytes=max_dense_bytes, reference=reference, max_seconds=max_seconds)
    return list(map_tasks(task, list(pairs), n_jobs=n_jobs, progress=progress, cluster=cluster,
                          desc=desc, unit="pair"))


def _pair_task(pair: tuple[Topology, Topology], *, match_outputs: bool, solver: str,
               max_dense_bytes: int, reference: bool = False, max_seconds: float | None = None):
    """One pair's per-layer NNSTD (with ``max_seconds``: and its bounds); module-level so that Dask
    and joblib can ship it."""
    a, b = pair
    res = nnstd(a, b, match_outputs=match_outputs, solver=solver, max_dense_bytes=max_dense_bytes,
                reference=reference, max_seconds=max_seconds)
    return res.per_layer if max_seconds is None else (res.per_layer, res.lower, res.upper, res.status)
