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
                   desc: str = "NNSTD pairs", paths: Sequence[str | os.PathLike] | None = None,
                   max_seconds: float | None = None) -> PairwiseNNSTD:
    """NNSTD between every pair of topologies.

    Returns a :class:`~sparsetopo.nnstd.PairwiseNNSTD`: an array ``D`` of shape
    ``(N, N, n_layers)``, symmetric in its first two axes with a zero diagonal,
    labelled with ``names`` (default: the topologies' names, else their
    positions) and the layers that count (:func:`~sparsetopo.nnstd.sparse_layers`);
    ``D.value[i, j]`` is the network distance (the mean over those layers),
    ``D.to_dataframe()`` a labelled ``pandas.DataFrame``. ``desc`` labels the
    progress bar (say what the pairs are: ``"NNSTD epoch 10"``).

    Each pair is computed in a canonical direction (by content fingerprint), so the matrix does not
    depend on the order of the list. The unit of work is a layer pair (:mod:`.layer_tasks`): a pair's
    layers run in order (each matching re-indexes the next layer's inputs), different pairs in
    parallel, on joblib threads (``n_jobs``; the solvers release the GIL) or as Dask tasks
    (``cluster``: ``"local:N"`` or a scheduler address, :func:`sparsetopo.parallel.dask_client`).
    ``paths`` (the files the topologies were read from, in order) lets Dask workers read the layers a
    task needs themselves. With ``cache_dir`` every pair's result is stored under the two
    fingerprints, so adding a network computes only the new pairs, and a running pair's finished
    layers too, so a killed matrix resumes each pair from its last finished layer. Graph topologies
    (residual streams) are not split: one task per pair.

    With ``reference=True`` the matrix reproduces the implementation published
    with the paper instead: solver ``dense``, and pair ``(i, j)`` with
    ``i < j`` in the order given computed as A = ``topologies[i]``, B =
    ``topologies[j]`` and mirrored to ``(j, i)``; it then depends on the order.
    Reference entries are cached apart from canonical ones, under the ordered
    pair.

    ``max_seconds``: :func:`~sparsetopo.nnstd.nnstd`'s bounds mode, per pair (one task each); the
    result then has ``lower``, ``upper`` and ``status`` arrays. Only exact pairs are cached.
    """
    solver = reference_solver(reference, solver)
    topologies = list(topologies)
    _check_same_shapes(topologies)
    check_max_seconds(max_seconds, solver, reference, topologies[0].is_graph)
    names = _names(topologies, names)
    n, n_layers = len(topologies), len(topologies[0].shapes)
    prints = [t.fingerprint() for t in topologies]
    pair_keys = _pair_keys(prints, reference)
    cache = PairCache(cache_dir, cache_tag(solver, match_outputs, reference), n_layers)
    results, todo = _known(pair_keys.values(), cache, n_layers, reference)
    pairs, pair_paths, labels = _todo_pairs(todo, topologies, prints, names, paths)
    computed = nnstd_many(pairs, match_outputs=match_outputs, solver=solver, n_jobs=n_jobs, progress=progress,
                          max_dense_bytes=max_dense_bytes, cluster=cluster, reference=reference, desc=desc,
                          cache_dir=cache_dir, paths=pair_paths, labels=labels, max_seconds=max_seconds)
    bounds = _collect(todo, computed, results, cache, max_seconds is not None)
    out = np.zeros((n, n, n_layers), dtype=np.float64)
    for (i, j), key in pair_keys.items():
        out[i, j] = out[j, i] = results[key]
    extra = {} if max_seconds is None else _bounds_arrays(out, pair_keys, bounds)
    return PairwiseNNSTD(out, names, sparse_layers(*topologies), **extra)


def _todo_pairs(todo, topologies, prints, names, paths):
    """The arguments of :func:`nnstd_many` for the pairs left to compute: the pairs, their files, labels."""
    if paths is not None and len(paths) != len(topologies):
        raise SparsetopoError(f"paths must give one path per topology ({len(topologies)}); got {len(paths)}")
    by_print, by_name = dict(zip(prints, topologies)), dict(zip(prints, names))
    path_of = dict(zip(prints, paths)) if paths is not None else {}
    return ([(by_print[a], by_print[b]) for a, b in todo],
            [(path_of.get(a), path_of.get(b)) for a, b in todo] if paths is not None else None,
            [f"{by_name[a]}~{by_name[b]}" for a, b in todo])


def _collect(todo, computed, results: dict, cache: PairCache, bounded: bool) -> dict[tuple[str, str], tuple]:
    """Put the computed pairs into ``results``; returns the bounds mode's ``(lower, upper, status)`` per pair.

    Without bounds, :func:`nnstd_many` stored each pair in the cache as it finished; in the bounds
    mode only the pairs that came out exact are cached (the cache holds NNSTD values only).
    """
    bounds: dict[tuple[str, str], tuple] = {}
    for key, per_layer in zip(todo, computed):
        if bounded:
            per_layer, lo, up, st = per_layer
            bounds[key] = (lo, up, st)
            if all(x == "exact" for x in st):
                cache.put(key, per_layer)
        results[key] = per_layer
    return bounds


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
               reference: bool = False, desc: str = "NNSTD pairs", cache_dir: str | os.PathLike | None = None,
               paths: Sequence[tuple[str | os.PathLike | None, str | os.PathLike | None]] | None = None,
               labels: Sequence[str] | None = None, max_seconds: float | None = None) -> list:
    """Per-layer NNSTD of many ``(A, B)`` pairs, in parallel; results in input order.

    Each pair is computed as :func:`nnstd` computes it (in its canonical direction; ``reference=True``:
    solver ``dense``, A -> B), one layer pair per task (:mod:`.layer_tasks`): a pair's layers run in
    order, different pairs in parallel on ``n_jobs`` threads or, with ``cluster``, as Dask tasks.

    ``cache_dir`` keeps every finished layer of an unfinished pair and every finished pair
    (:class:`.cache.PairCache`), so a killed call resumes each pair from its last finished layer.
    ``paths`` gives per pair the files A and B were read from: Dask workers then read the layers
    they need from there instead of receiving them from this process. ``labels`` name the pairs
    in the progress bar, which counts layer pairs.

    With ``max_seconds`` (a budget per pair, :func:`nnstd`'s bounds mode) each pair runs whole as one
    task, nothing is cached here (:func:`pairwise_nnstd` caches the pairs that came out exact), and
    each result is ``(per_layer, lower, upper, status)`` (:class:`~sparsetopo.nnstd.NNSTDResult`'s fields).
    """
    from .layer_tasks import PairJob, run_pair_jobs

    solver = reference_solver(reference, solver)
    pairs = list(pairs)
    if not pairs:
        return []
    if max_seconds is not None:
        from ..parallel import map_tasks

        task = functools.partial(_bounded_pair_task, match_outputs=match_outputs, solver=solver,
                                 max_dense_bytes=max_dense_bytes, max_seconds=max_seconds)
        return list(map_tasks(task, pairs, n_jobs=n_jobs, progress=progress, cluster=cluster, desc=desc, unit="pair"))
    if paths is not None and len(paths) != len(pairs):
        raise SparsetopoError(f"paths must give one (path A, path B) per pair ({len(pairs)}); got {len(paths)}")
    tag, caches = cache_tag(solver, match_outputs, reference), {}
    jobs, results = [], [None] * len(pairs)
    for i, (a, b) in enumerate(pairs):
        pa, pb = paths[i] if paths is not None else (None, None)
        pa, pb = (str(p) if p is not None else None for p in (pa, pb))
        fa, fb = a.fingerprint(), b.fingerprint()
        cache = caches.setdefault(len(a), PairCache(cache_dir, tag, len(a)))  # pairs may differ in depth
        if not reference and fb < fa:  # the canonical direction, as nnstd(symmetric=True) takes it
            a, b, fa, fb, pa, pb = b, a, fb, fa, pb, pa
        if (cached := cache.get((fa, fb))) is not None:
            results[i] = cached
            continue
        job = PairJob((fa, fb), a, b, (pa, pb), labels[i] if labels is not None else f"pair {i}", cache=cache)
        if job.split:
            job.done = cache.layers(job.key, [m.shape[0] for m in a.layers])
        jobs.append((i, job))
    computed = run_pair_jobs([j for _, j in jobs], solver=solver, match_outputs=match_outputs, reference=reference,
                             n_jobs=n_jobs, cluster=cluster, progress=progress, desc=desc)
    for (i, _), per_layer in zip(jobs, computed):
        results[i] = per_layer
    return results


def _bounded_pair_task(pair: tuple[Topology, Topology], *, match_outputs: bool, solver: str,
                       max_dense_bytes: int, max_seconds: float):
    """One pair in the bounds mode: its per-layer NNSTD and bounds; module-level so that Dask
    and joblib can ship it."""
    res = nnstd(pair[0], pair[1], match_outputs=match_outputs, solver=solver, max_dense_bytes=max_dense_bytes,
                max_seconds=max_seconds)
    return res.per_layer, res.lower, res.upper, res.status
