"""Per-layer costs and the exact assignment solvers behind NNSTD.

A layer is a pair of ``(n_out, n_in)`` 0/1 masks whose inputs already
correspond. Every solver takes the two masks as int32 CSR matrices and returns
``(total NED, col)``, A's neuron ``i`` matched to B's neuron ``col[i]``; all set
sizes and intersections come from one sparse product ``A @ B.T``, so no Python
loop runs over neuron pairs. A new solver is one function in ``SOLVER_FUNCS``
(and its name in ``SOLVERS`` when callers may ask for it by name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError

__all__ = ["DEFAULT_MAX_DENSE_BYTES", "SOLVERS", "Solver", "layer_cost_matrix", "solve_ssp_bounded"]

Solver = Literal["auto", "ssp", "dense", "sparse"]
#: The solvers a caller may name (``identity`` is used internally for unmatched output layers).
SOLVERS = ("auto", "ssp", "dense", "sparse")

#: ``solver="auto"`` uses the dense solver while its float64 cost matrix fits here.
DEFAULT_MAX_DENSE_BYTES = 512 * 2**20


def int_csr(m: ss.csr_matrix) -> ss.csr_matrix:
    """A boolean CSR as int32 data so that products count shared inputs."""
    return ss.csr_matrix((np.ones(m.nnz, dtype=np.int32), m.indices, m.indptr), shape=m.shape)


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
    a, b = int_csr(ss.csr_matrix(a)), int_csr(ss.csr_matrix(b))
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
    from scipy.optimize import linear_sum_assignment  # here: importing scipy.optimize costs `train` 0.3-0.7 s

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
        from scipy.sparse.csgraph import min_weight_full_bipartite_matching

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


def _empty_pairs(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """``forced[i] = j``: A's empty neurons paired with B's, in index order (cost 0; -1 elsewhere).

    Two empty neurons cost 0 and any other partner 1, so pairing empties with empties is optimal.
    """
    empty_a, empty_b = np.flatnonzero(sa == 0), np.flatnonzero(sb == 0)
    k = min(len(empty_a), len(empty_b))
    forced = np.full(len(sa), -1, dtype=np.int64)
    forced[empty_a[:k]] = empty_b[:k]
    return forced


def _fill_dummies(col: np.ndarray) -> np.ndarray:
    """Rows on their dummies share no input with any column left over (else the optimum would
    pair them), so any pairing of them costs 1 per pair: give them those columns in order."""
    n = len(col)
    dummy = col >= n
    used = np.zeros(n, dtype=bool)
    used[col[~dummy]] = True
    col[dummy] = np.flatnonzero(~used)
    return col


def _solve_ssp(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    """Exact successive shortest paths on the implicit overlap graph (:mod:`sparsetopo._lap_implicit`).

    Memory follows the connections: each row keeps its cheapest edges, the rest is generated
    again from B's inverted index when a search reads it; the matching and the total are those
    of the explicit solver (:func:`_solve_ssp_explicit`) to the last bit.
    """
    from .._lap_implicit import solve_implicit

    a_ptr, b_ptr = a.indptr.astype(np.int64), b.indptr.astype(np.int64)
    col, total = solve_implicit(a_ptr, a.indices, b_ptr, b.indices, a.shape[1],  # indices: int32, no copy
                                _empty_pairs(np.diff(a_ptr), np.diff(b_ptr)))
    return total, _fill_dummies(col)


#: Seconds per row the bounds mode keeps back from its budget for the work after the stop.
STOP_RESERVE_PER_ROW = 3e-5


def solve_ssp_bounded(a: ss.csr_matrix, b: ss.csr_matrix, seconds: float | None,
                      max_aug: int = -1) -> tuple[float, np.ndarray, float, bool]:
    """:func:`_solve_ssp` stopped after ``seconds`` (``None``: never) or ``max_aug`` augmentations.

    Returns ``(upper, col, lower, exact)`` with totals (not divided by ``n``). Exact (the search
    finished): ``upper == lower`` is :func:`_solve_ssp`'s total and ``col`` its matching, bit for
    bit. Stopped: ``col`` is a complete matching (the search's, its free rows completed greedily,
    :func:`sparsetopo._lap_implicit.solve_implicit_bounded`), ``upper`` the NED cost of exactly
    that matching, recomputed pair by pair, and ``lower`` the dual bound of the search's prices, so
    ``lower <= minimum <= upper``. ``max_aug`` is for tests: a stop at a known step.
    """
    import threading

    from .._lap_implicit import solve_implicit_bounded

    stop = np.zeros(1, dtype=np.int8)
    timer = None
    if seconds is not None:
        # What runs after the stop (the dual bound's pass over the rows, the completion, the upper
        # bound's recount) takes ~7 us a row (measured at 200,000 neurons); with the rest of nnstd and a
        # busy neighbour a 1,000,000-neuron layer still ran 6 s past a 10 us reserve: keep 30 us a row back.
        seconds -= min(0.2 * seconds, STOP_RESERVE_PER_ROW * a.shape[0])
    if seconds is not None and seconds <= 0:
        stop[0] = 1  # no time left: stop before the warm start's first row, deterministically
    elif seconds is not None:
        # The kernel releases the GIL, so this thread sets the flag while it runs; it reads the flag
        # before each augmenting path.
        timer = threading.Timer(float(seconds), stop.__setitem__, (0, 1))
        timer.daemon = True
        timer.start()
    try:
        a_ptr, b_ptr = a.indptr.astype(np.int64), b.indptr.astype(np.int64)
        col, total, lower, finished = solve_implicit_bounded(  # indices as _solve_ssp passes them: no copy
            a_ptr, a.indices, b_ptr, b.indices, a.shape[1], _empty_pairs(np.diff(a_ptr), np.diff(b_ptr)), stop,
            max_aug)
    finally:
        if timer is not None:
            timer.cancel()
    col = _fill_dummies(col)
    if finished:
        return total, col, total, True
    upper = SOLVER_FUNCS["identity"](a, b[col])[0]  # the matching returned, never "1 per leftover pair"
    # The dual bound is a float sum; a tie (lower == upper up to rounding) must not cross over.
    return upper, col, min(lower, upper), False


def _solve_ssp_explicit(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    """The same solver on the overlap graph stored as a CSR (one sparse product): the reference
    the implicit one is tested against; memory O(overlapping pairs)."""
    from .._lap import solve_sparse_lap

    n = a.shape[0]
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    prod = (a @ b.T).tocsr()
    prod.sort_indices()
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(prod.indptr))
    ned = _ned(sa[rows], sb[prod.indices], prod.data.astype(np.int64))
    indptr, indices = prod.indptr.astype(np.int64), prod.indices.astype(np.int64)
    # Each empty-empty pair is one zero-cost edge (an empty neuron has no other edge).
    forced = _empty_pairs(sa, sb)
    if (forced >= 0).any():
        extra = (forced >= 0).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(np.diff(indptr) + extra)])
        at = indptr[:-1][forced >= 0]
        keep = np.ones(indptr[-1], dtype=bool)
        keep[at] = False
        new_indices, new_costs = np.empty(indptr[-1], dtype=np.int64), np.empty(indptr[-1])
        new_indices[keep], new_costs[keep] = indices, ned
        new_indices[at], new_costs[at] = forced[forced >= 0], 0.0
        indices, ned = new_indices, new_costs
    col, total = solve_sparse_lap(indptr, indices, ned, 1.0)
    return total, _fill_dummies(col)


def _solve_identity(a: ss.csr_matrix, b: ss.csr_matrix) -> tuple[float, np.ndarray]:
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    inter = np.asarray(a.multiply(b).sum(axis=1)).ravel().astype(np.int64)
    return float(_ned(sa, sb, inter).sum()), np.arange(a.shape[0], dtype=np.int64)


SOLVER_FUNCS: dict[str, Callable[[ss.csr_matrix, ss.csr_matrix], tuple[float, np.ndarray]]] = {
    "dense": _solve_dense,
    "sparse": _solve_sparse,
    "ssp": _solve_ssp,
    "identity": _solve_identity,
}


def check_solver(solver: str) -> None:
    """The one check of a ``solver`` parameter."""
    if solver not in SOLVERS:
        raise SparsetopoError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")


def pick_solver(solver: str) -> str:
    """The solver function's name for a requested solver: ``auto`` is ``ssp``."""
    return "ssp" if solver == "auto" else solver


def layer_solvers(n_layers: int, solver: str, match_outputs: bool) -> list[str]:
    """The solver function of each layer of a chain: the output layer by identity when outputs are not
    matched (the one place this rule is written; the graph rule is in :mod:`.graph`)."""
    chosen = pick_solver(solver)
    return [chosen] * (n_layers - 1) + [chosen if match_outputs else "identity"]


def reference_solver(reference: bool, solver: str) -> str:
    """The solver a call runs with: ``dense`` in reference mode, which only ``auto``/``dense`` may ask for."""
    check_solver(solver)
    if not reference:
        return solver
    if solver not in ("auto", "dense"):
        raise SparsetopoError(f"reference mode computes with solver 'dense' (the published code's "
                              f"linear_sum_assignment); it cannot use solver {solver!r}")
    return "dense"
