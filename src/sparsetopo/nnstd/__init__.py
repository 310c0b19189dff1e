"""Neural Network Sparse Topology Distance (NNSTD, Liu et al., ECML PKDD 2020).

Semantics, for networks A and B with the same layer shapes:

1. The input neurons of layer 0 correspond by identity.
2. In layer k each output neuron is described by the set of its input
   neurons (B's inputs re-indexed by the matching of layer k-1). Pairing A's
   neuron i with B's neuron j costs the normalized edit distance
   ``NED = |S_i ^ S_j| / |S_i | S_j|`` (0 when both sets are empty).
3. A minimum-cost one-to-one matching of A's neurons to B's neurons is
   found; the layer distance is the minimum total cost divided by ``n_out``.
4. The matching re-indexes B's neurons as the inputs of layer k+1. The
   network distance is the mean of the per-layer distances.

Convolutions: a neuron is an output channel and its input set the (input
channel, kernel row, kernel column) positions it connects; the matching of a
layer re-indexes the next layer's input channels, moving all kernel positions
(or, for a fully connected layer after a flatten, the channel's block of
flattened inputs) together -- see :attr:`Topology.blocks`.

All set sizes and intersections of a layer come from one sparse product
``A @ B'.T``; no Python loop ever runs over neuron pairs. Three exact solvers:

``ssp`` (what ``auto``, the default, uses)
    Neurons that share no input cost exactly 1, so only the sparse overlap
    graph matters, plus a private dummy per neuron at cost 1. Successive
    shortest paths with Dijkstra on that graph, warm-started by
    Jonker-Volgenant's augmenting row reduction (:mod:`sparsetopo._lap`,
    compiled with numba, releases the GIL). Memory and time follow the
    connections, not neurons squared.
``dense``
    Builds the float64 cost matrix and calls
    ``scipy.optimize.linear_sum_assignment`` on it, exactly as the reference
    implementation published with the paper does, so that -- computed in the
    same direction -- matchings, and thus later layers, agree with it value
    for value, ties included.
``sparse``
    Neurons that share no input cost exactly 1, so the problem is equivalent
    to a *sparse* one: each of A's neurons may take a B neuron it shares an
    input with (cost ``NED``) or a private dummy (cost 1). That is solved by
    ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` and the
    unmatched neurons are paired arbitrarily, each pair at cost 1.

All three give the same minimum for layer 0. Among equal-cost matchings they
may choose differently, and since a layer's matching re-indexes the next
layer's inputs, deeper layers can differ slightly between solvers -- and
between the directions A -> B and B -> A (see the README's measured example).
By default a pair is computed in a canonical direction (by content
fingerprint) so that the distance is symmetric; ``reference=True`` (in
:func:`nnstd` and :func:`pairwise_nnstd`, ``--reference`` on the command
line) computes with ``dense`` in the direction given, as the published double
loop does, and is the one mode that reproduces the paper's published values.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as ss
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from ._npz import read_npz
from .errors import FileFormatError, SparsetopoError
from .fileio import atomic_write, write_text_atomic
from .topology import Topology

__all__ = [
    "NNSTDResult",
    "SOLVERS",
    "layer_cost_matrix",
    "match_layer",
    "nnstd",
    "nnstd_many",
    "pairwise_nnstd",
]

Solver = Literal["auto", "ssp", "dense", "sparse"]
SOLVERS = ("auto", "ssp", "dense", "sparse")

#: ``solver="auto"`` uses the dense solver while its float64 cost matrix fits here.
DEFAULT_MAX_DENSE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class NNSTDResult:
    """The distance between two topologies.

    Attributes
    ----------
    per_layer : ndarray of shape (n_layers,)
        Minimum total NED of each layer divided by its number of output neurons.
    matchings : tuple of ndarray
        ``matchings[k][i]`` is the neuron of B matched to neuron ``i`` of A in layer k.
    solvers : tuple of str
        The solver used for each layer (``"dense"``, ``"sparse"`` or ``"identity"``).
    """

    per_layer: np.ndarray
    matchings: tuple[np.ndarray, ...]
    solvers: tuple[str, ...]

    @property
    def value(self) -> float:
        """The network distance: the mean of the per-layer distances."""
        return float(np.mean(self.per_layer))


def _int_csr(m: ss.csr_matrix) -> ss.csr_matrix:
    """A boolean CSR as int32 data so that products count shared inputs."""
    return ss.csr_matrix((np.ones(m.nnz, dtype=np.int32), m.indices, m.indptr), shape=m.shape)


def _reindex_inputs(b: ss.csr_matrix, matching: np.ndarray | None, block: int = 1) -> ss.csr_matrix:
    """Rename B's input units so that B's ``matching[i]`` becomes ``i``.

    A unit owns ``block`` consecutive inputs (a convolution's kernel positions of
    one input channel, or one channel's flattened feature map): they move together.
    """
    if matching is None:
        return b
    inverse = np.empty_like(matching)
    inverse[matching] = np.arange(len(matching), dtype=matching.dtype)
    idx = b.indices.astype(np.int64)
    new = inverse[idx // block] * block + idx % block if block > 1 else inverse[idx]
    out = ss.csr_matrix((b.data, new.astype(np.int32), b.indptr), shape=b.shape)
    out.has_sorted_indices = False
    return out


def _intersections(a: ss.csr_matrix, b: ss.csr_matrix):
    """Rows, columns and counts of all neuron pairs sharing at least one input."""
    inter = (a @ b.T).tocoo()
    return inter.row, inter.col, inter.data.astype(np.int64)


def _ned(sa: np.ndarray, sb: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """NED from set sizes and intersection sizes; the same float ops as the reference.

    ``|S_a ^ S_b| / |S_a | S_b|`` with both integer counts; pairs sharing
    nothing are exactly 1 and two empty sets are 0.
    """
    union = sa + sb - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        ned = (union - inter) / union
    return np.where(union == 0, 0.0, ned)


def layer_cost_matrix(a: ss.spmatrix, b: ss.spmatrix) -> np.ndarray:
    """The dense ``(n_out, n_out)`` matrix of NED between A's and B's neurons.

    ``a`` and ``b`` are ``(n_out, n_in)`` masks whose inputs already correspond.
    """
    a, b = _int_csr(ss.csr_matrix(a)), _int_csr(ss.csr_matrix(b))
    return _dense_cost(a, b)


def _dense_cost(a: ss.csr_matrix, b: ss.csr_matrix) -> np.ndarray:
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    rows, cols, inter = _intersections(a, b)
    cost = np.ones((a.shape[0], b.shape[0]), dtype=np.float64)
    cost[rows, cols] = _ned(sa[rows], sb[cols], inter)
    empty_a, empty_b = np.flatnonzero(sa == 0), np.flatnonzero(sb == 0)
    if len(empty_a) and len(empty_b):
        cost[np.ix_(empty_a, empty_b)] = 0.0
    return cost


def _solve_dense(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    cost = _dense_cost(a, b)
    row, col = linear_sum_assignment(cost)
    return float(cost[row, col].sum()), col.astype(np.int64)


def _solve_sparse(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    n = a.shape[0]
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    col_of = np.full(n, -1, dtype=np.int64)
    # Two empty neurons cost 0; pairing empties with empties is always optimal
    # (any other partner costs 1), so take them out of the assignment problem.
    empty_a, empty_b = np.flatnonzero(sa == 0), np.flatnonzero(sb == 0)
    k = min(len(empty_a), len(empty_b))
    col_of[empty_a[:k]] = empty_b[:k]
    rows_left = np.flatnonzero(col_of < 0)
    used_b = np.zeros(n, dtype=bool)
    used_b[empty_b[:k]] = True
    cols_left = np.flatnonzero(~used_b)
    r = len(rows_left)
    if r:
        rows, cols, inter = _intersections(a, b)  # only non-empty neurons appear here
        ned = _ned(sa[rows], sb[cols], inter)
        row_pos = np.full(n, -1, dtype=np.int64)
        row_pos[rows_left] = np.arange(r)
        col_pos = np.full(n, -1, dtype=np.int64)
        col_pos[cols_left] = np.arange(r)
        # Every edge weight is offset by +1: csgraph drops zero weights, and a
        # full matching always has r edges, so the offset does not move the optimum.
        graph = ss.csr_matrix(
            (
                np.concatenate([ned + 1.0, np.full(r, 2.0)]),
                (
                    np.concatenate([row_pos[rows], np.arange(r)]),
                    np.concatenate([col_pos[cols], r + np.arange(r)]),
                ),
            ),
            shape=(r, 2 * r),
        )
        g_row, g_col = min_weight_full_bipartite_matching(graph)
        real = g_col < r
        col_of[rows_left[g_row[real]]] = cols_left[g_col[real]]
        used_b[cols_left[g_col[real]]] = True
        # Neurons left over share no input with each other (else the optimum
        # would have paired them), so any pairing of them costs 1 per pair.
        free_rows = np.flatnonzero(col_of < 0)
        col_of[free_rows] = np.flatnonzero(~used_b)
    # The value is recomputed from the final pairs, so it is the cost of
    # the matching actually returned.
    inter_pairs = np.asarray(a.multiply(b[col_of]).sum(axis=1)).ravel().astype(np.int64)
    total = float(_ned(sa, sb[col_of], inter_pairs).sum())
    return total, col_of


def _solve_ssp(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    """Exact successive shortest paths on the overlap graph (:mod:`sparsetopo._lap`).

    Memory and time follow the connections: the only arrays are the overlap
    graph (one sparse product) and O(n) vectors.
    """
    from ._lap import solve_sparse_lap

    n = a.shape[0]
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    prod = (a @ b.T).tocsr()
    prod.sort_indices()
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(prod.indptr))
    ned = _ned(sa[rows], sb[prod.indices], prod.data.astype(np.int64))
    indptr, indices = prod.indptr.astype(np.int64), prod.indices.astype(np.int64)
    # Two empty neurons cost 0 and any other partner 1: pair empties with empties up front,
    # as one zero-cost edge each (an empty neuron has no other edge).
    empty_a, empty_b = np.flatnonzero(sa == 0), np.flatnonzero(sb == 0)
    k = min(len(empty_a), len(empty_b))
    if k:
        extra = np.zeros(n, dtype=np.int64)
        extra[empty_a[:k]] = 1
        indptr = np.concatenate([[0], np.cumsum(np.diff(indptr) + extra)])
        new_indices = np.empty(indptr[-1], dtype=np.int64)
        new_costs = np.empty(indptr[-1], dtype=np.float64)
        old_pos = np.ones(indptr[-1], dtype=bool)
        old_pos[indptr[empty_a[:k]]] = False
        new_indices[old_pos], new_costs[old_pos] = indices, ned
        new_indices[~old_pos], new_costs[~old_pos] = empty_b[:k], 0.0
        indices, ned = new_indices, new_costs
    col, total = solve_sparse_lap(indptr, indices, ned, 1.0)
    # Rows on their dummies share no input with any column left over (else the
    # optimum would pair them), so any pairing of them costs 1 per pair.
    dummy = col >= n
    used = np.zeros(n, dtype=bool)
    used[col[~dummy]] = True
    col[dummy] = np.flatnonzero(~used)
    return total, col


def _solve_identity(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    inter = np.asarray(a.multiply(b).sum(axis=1)).ravel().astype(np.int64)
    return float(_ned(sa, sb, inter).sum()), np.arange(a.shape[0], dtype=np.int64)


_SOLVER_FUNCS: dict[str, Callable[[ss.csr_matrix, ss.csr_matrix], tuple[float, np.ndarray]]] = {
    "dense": _solve_dense,
    "sparse": _solve_sparse,
    "ssp": _solve_ssp,
    "identity": _solve_identity,
}


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise SparsetopoError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")


def _pick_solver(solver: str) -> str:
    return "ssp" if solver == "auto" else solver


def match_layer(a: ss.spmatrix, b: ss.spmatrix, *, solver: Solver = "auto",
                max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> tuple[float, np.ndarray]:
    """Minimum-cost matching of one layer whose inputs already correspond.

    Returns the layer distance (minimum total NED / ``n_out``) and the matching
    ``col`` with A's neuron ``i`` matched to B's neuron ``col[i]``.
    """
    _check_solver(solver)
    a, b = _int_csr(ss.csr_matrix(a)), _int_csr(ss.csr_matrix(b))
    if a.shape != b.shape:
        raise SparsetopoError(f"layer shapes differ: {a.shape} vs {b.shape}")
    chosen = _pick_solver(solver)
    total, col = _SOLVER_FUNCS[chosen](a, b)
    return total / a.shape[0], col


def _reference_solver(reference: bool, solver: str) -> str:
    """The solver a call runs with: ``dense`` in reference mode, which only ``auto``/``dense`` may ask for."""
    _check_solver(solver)
    if not reference:
        return solver
    if solver not in ("auto", "dense"):
        raise SparsetopoError(f"reference mode computes with solver 'dense' (the published code's "
                              f"linear_sum_assignment); it cannot use solver {solver!r}")
    return "dense"


def nnstd(a: Topology, b: Topology, *, match_outputs: bool = True, solver: Solver = "auto",
          max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, symmetric: bool = True,
          reference: bool = False) -> NNSTDResult:
    """The Neural Network Sparse Topology Distance between two topologies.

    Parameters
    ----------
    a, b : Topology
        Networks with identical layer shapes.
    match_outputs : bool, default True
        Match the output layer's neurons like any other layer (the paper's
        definition). ``False`` compares output neurons by identity, which fits
        labelled class units.
    solver : {"auto", "ssp", "dense", "sparse"}
        ``auto`` (``ssp``): the exact sparse solver, fast and memory-light;
        ``dense``: the reference implementation's ``linear_sum_assignment`` on
        the full cost matrix; ``sparse`` is scipy's sparse solver. All give the
        same layer-0 value; deeper layers may differ through ties. ``dense``
        alone does not reproduce published values (the direction matters too):
        use ``reference``.
    max_dense_bytes : int
        Kept for compatibility; ``auto`` no longer builds dense cost matrices.
    symmetric : bool, default True
        Beyond layer 0 the value depends on which of several equally cheap
        matchings the previous layer chose, and so on the direction: A vs B
        and B vs A can differ. With ``symmetric`` the pair is computed in a
        canonical direction (by content fingerprint, as :func:`pairwise_nnstd`
        does), so ``nnstd(a, b)`` equals ``nnstd(b, a)``; matchings are always
        returned from A to B. ``False`` computes in the given direction.
    reference : bool, default False
        Reproduce the implementation published with the paper: solver
        ``dense`` and the direction given, A -> B (``symmetric`` is then
        ignored). Only ``solver="auto"`` or ``"dense"`` may be combined with it.

    Returns
    -------
    NNSTDResult
    """
    solver = _reference_solver(reference, solver)
    if reference:
        symmetric = False  # the published double loop runs in the direction it is given
    if not isinstance(a, Topology) or not isinstance(b, Topology):
        raise TypeError("nnstd compares two Topology objects")
    if symmetric and b.fingerprint() < a.fingerprint():
        res = nnstd(b, a, match_outputs=match_outputs, solver=solver, max_dense_bytes=max_dense_bytes,
                    symmetric=False)
        return NNSTDResult(per_layer=res.per_layer, matchings=tuple(np.argsort(m) for m in res.matchings),
                           solvers=res.solvers)
    if a.shapes != b.shapes or a.kernels != b.kernels:
        raise SparsetopoError(
            f"cannot compare topologies of different shapes: {a.name or 'A'} has layers "
            f"{list(a.shapes)} (kernels {list(a.kernels)}), {b.name or 'B'} has {list(b.shapes)} "
            f"(kernels {list(b.kernels)})"
        )
    per_layer = np.empty(len(a), dtype=np.float64)
    matchings = []
    used = []
    previous: np.ndarray | None = None
    for k, (la, lb) in enumerate(zip(a.layers, b.layers)):
        la_i = _int_csr(la)
        lb_i = _reindex_inputs(_int_csr(lb), previous, a.blocks[k])
        last = k == len(a) - 1
        chosen = "identity" if (last and not match_outputs) else _pick_solver(solver)
        total, col = _SOLVER_FUNCS[chosen](la_i, lb_i)
        per_layer[k] = total / la.shape[0]
        matchings.append(col)
        used.append(chosen)
        previous = col
    return NNSTDResult(per_layer=per_layer, matchings=tuple(matchings), solvers=tuple(used))


def pairwise_nnstd(topologies: Sequence[Topology], *, match_outputs: bool = True,
                   solver: Solver = "auto", n_jobs: int | None = 1, progress: bool = False,
                   max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, cache_dir: str | os.PathLike | None = None,
                   cluster: str | None = None, reference: bool = False) -> np.ndarray:
    """NNSTD between every pair of topologies.

    Returns an array ``D`` of shape ``(N, N, n_layers)``, symmetric in its first
    two axes with a zero diagonal; ``D[i, j].mean()`` is the network distance.

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
    """
    solver = _reference_solver(reference, solver)
    topologies = list(topologies)
    if not topologies:
        raise SparsetopoError("pairwise_nnstd needs at least one topology")
    shapes = topologies[0].shapes
    for t in topologies[1:]:
        if t.shapes != shapes or t.kernels != topologies[0].kernels:
            raise SparsetopoError(
                f"all topologies must have the same layer shapes: {topologies[0].name or '#0'} has "
                f"{list(shapes)}, {t.name or 'another'} has {list(t.shapes)}"
            )
    n = len(topologies)
    prints = [t.fingerprint() for t in topologies]
    by_print = dict(zip(prints, topologies))
    tag = _cache_tag(solver, match_outputs, reference)

    def cache_file(key: tuple[str, str]) -> Path | None:
        return Path(cache_dir) / f"{key[0]}-{key[1]}-{tag}.npz" if cache_dir is not None else None

    # Canonical mode: one key per unordered pair, in sorted-fingerprint order, so the
    # result does not depend on the order of the list. Reference mode: the ordered pair.
    order = (lambda pair: pair) if reference else (lambda pair: tuple(sorted(pair)))
    pair_keys = {(i, j): order((prints[i], prints[j])) for i in range(n) for j in range(i + 1, n)}
    results: dict[tuple[str, str], np.ndarray] = {}
    todo: list[tuple[str, str]] = []
    for key in dict.fromkeys(pair_keys.values()):
        path = cache_file(key)
        if key[0] == key[1] and not reference:
            # Identical content: distance 0. Reference mode computes it anyway, as the published
            # loop does (ties among identical neurons can make its value non-zero beyond layer 0).
            results[key] = np.zeros(len(shapes))
        elif path is not None and (cached := _read_cache_entry(path, key, tag, len(shapes))) is not None:
            results[key] = cached
        else:
            todo.append(key)

    computed = nnstd_many([(by_print[a], by_print[b]) for a, b in todo], match_outputs=match_outputs,
                          solver=solver, n_jobs=n_jobs, progress=progress, max_dense_bytes=max_dense_bytes,
                          cluster=cluster, reference=reference)
    for key, per_layer in zip(todo, computed):
        results[key] = per_layer
        path = cache_file(key)
        if path is not None:
            _write_cache_entry(path, key, tag, per_layer)

    out = np.zeros((n, n, len(shapes)), dtype=np.float64)
    for (i, j), key in pair_keys.items():
        out[i, j] = out[j, i] = results[key]
    return out


def _cache_tag(solver: str, match_outputs: bool, reference: bool) -> str:
    """What a cache entry is about besides its pair; reference entries (ordered pairs) never mix with canonical."""
    tag = f"{solver}-{'matched' if match_outputs else 'identity'}-outputs"
    return f"reference-{tag}" if reference else tag


def _entry_digest(key: tuple[str, str], tag: str, per_layer: np.ndarray) -> str:
    h = hashlib.sha256(f"{key[0]}|{key[1]}|{tag}|".encode())
    h.update(np.ascontiguousarray(per_layer, dtype="<f8").tobytes())
    return h.hexdigest()


def _write_cache_entry(path: Path, key: tuple[str, str], tag: str, per_layer: np.ndarray) -> None:
    """One pair's result with what it is about (fingerprints, solver tag) and a checksum of it all."""
    with atomic_write(path) as f:
        np.savez(f, per_layer=np.asarray(per_layer, dtype="<f8"), a=np.array(key[0]), b=np.array(key[1]),
                 tag=np.array(tag), digest=np.array(_entry_digest(key, tag, per_layer)))


def _read_cache_entry(path: Path, key: tuple[str, str], tag: str, n_layers: int) -> np.ndarray | None:
    """A cached result, or None when it is missing, unreadable, about another pair or fails its checksum.

    A cache only saves time: an entry that does not verify is recomputed and
    rewritten, never trusted and never an error.
    """
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


def nnstd_many(pairs: Sequence[tuple[Topology, Topology]], *, match_outputs: bool = True,
               solver: Solver = "auto", n_jobs: int | None = 1, progress: bool = False,
               max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, cluster: str | None = None,
               reference: bool = False) -> list[np.ndarray]:
    """Per-layer NNSTD of many ``(A, B)`` pairs, in parallel; results in input order.

    ``reference=True`` computes each pair as :func:`nnstd` does with it: solver
    ``dense``, in the direction A -> B.
    """
    from .parallel import map_tasks

    solver = _reference_solver(reference, solver)
    task = functools.partial(_pair_task, match_outputs=match_outputs, solver=solver,
                             max_dense_bytes=max_dense_bytes, reference=reference)
    return list(map_tasks(task, list(pairs), n_jobs=n_jobs, progress=progress, cluster=cluster,
                          desc="NNSTD pairs"))


def _pair_task(pair: tuple[Topology, Topology], *, match_outputs: bool, solver: str,
               max_dense_bytes: int, reference: bool = False) -> np.ndarray:
    """One pair's per-layer NNSTD; module-level so that Dask and joblib can ship it."""
    a, b = pair
    return nnstd(a, b, match_outputs=match_outputs, solver=solver, max_dense_bytes=max_dense_bytes,
                 reference=reference).per_layer


def save_matrix(distances: np.ndarray, names: Sequence[str], *, npz: str | None = None,
                csv: str | None = None) -> None:
    """Write a pairwise NNSTD array ``(N, N, L)`` to ``.npz`` and/or a long-format CSV.

    The CSV has one row per ordered pair and layer (``a,b,layer,nnstd``) plus
    the network value as layer ``mean``: easy to filter in pandas or a spreadsheet.
    """
    import csv as _csv
    import io

    distances = np.asarray(distances, dtype=np.float64)
    names = [str(n) for n in names]
    if distances.ndim != 3 or distances.shape[0] != distances.shape[1] or distances.shape[0] != len(names):
        raise SparsetopoError(f"expected an (N, N, L) array for {len(names)} names, got shape {distances.shape}")
    if npz:
        with atomic_write(npz) as f:
            np.savez(f, nnstd=distances, mean=distances.mean(axis=2), names=np.array(names))
    if csv:
        buf = io.StringIO()
        w = _csv.writer(buf)
        w.writerow(["a", "b", "layer", "nnstd"])
        n, _, n_layers = distances.shape
        for i in range(n):
            for j in range(n):
                for k in range(n_layers):
                    w.writerow([names[i], names[j], k, repr(float(distances[i, j, k]))])
                w.writerow([names[i], names[j], "mean", repr(float(distances[i, j].mean()))])
        write_text_atomic(csv, buf.getvalue())


def load_matrix(path: str) -> tuple[np.ndarray, list[str]]:
    """Read an array written by :func:`save_matrix`; returns ``(distances, names)``, validated."""
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
    return np.array(d, dtype=np.float64), [str(x) for x in names]


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
