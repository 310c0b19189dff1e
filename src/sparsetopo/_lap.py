"""An exact assignment solver for sparse NNSTD layers (successive shortest paths, numba).

The problem. Rows (A's neurons) and columns (B's neurons) of one layer; a row
may take a column it shares an input with, at cost NED < 1, or a private dummy
column at cost 1 (in NNSTD two neurons that share no input cost exactly 1, so
any rows left over are paired among the columns left over at cost 1 each).
Minimising the total over this sparse graph gives the same minimum as the full
dense ``n x n`` problem, with memory and time that follow the overlap graph.

The method is the shortest-augmenting-path algorithm of Jonker-Volgenant in
Crouse's form (as in ``scipy.optimize.linear_sum_assignment``), with Dijkstra
on a binary heap over the sparse edges instead of dense scans, and row
reduction plus a greedy matching as warm start: most rows take their cheapest
option at once and only the contested ones need a search. Dual variables keep
every reduced cost non-negative, so the result is optimal (exact up to float
rounding of the NED values themselves).

The kernel is compiled with ``nogil=True``, so threads solve layers in
parallel, and ``cache=True``, so a command pays the compilation (a few
seconds) once per machine. :func:`solver` sets up the cache directory: the
package's own ``__pycache__`` when writable, else a user cache directory, and
says so once if neither is (each process then compiles anew).
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import numpy as np

from ._numba_cache import choose_cache_dir

__all__ = ["solve_sparse_lap", "solver"]


#: Held while numba is imported and the kernels are set up: pairwise NNSTD solves layers on several
#: threads, and two threads importing numba at once failed ("cannot access submodule 'config' of module
#: 'numba.core' (most likely due to a circular import)"). Re-entrant: the implicit solver's set-up calls
#: :func:`solver` under it.
COMPILE_LOCK = threading.RLock()


def solver():
    """The compiled kernel (imports numba on first use and chooses where its cache lives); thread-safe."""
    with COMPILE_LOCK:
        return _solver()


@cache
def _solver():
    choose_cache_dir(Path(__file__).parent, "the compiled NNSTD solver")
    import numba

    global _before, _put, _sift_up, _sift_down
    _before = numba.njit(inline="always")(_before_py)
    _put = numba.njit(inline="always")(_put_py)
    _sift_up = numba.njit(inline="always")(_sift_up_py)
    _sift_down = numba.njit(inline="always")(_sift_down_py)
    return numba.njit(cache=True, nogil=True)(_solve)


# The heap helpers are plain functions here and compiled (inlined) by ``solver``.
def _before_py(key_a, free_a, key_b, free_b):
    """Heap order: smaller distance first; on a tie a free column first (the search can stop there)."""
    return key_a < key_b or (key_a == key_b and free_a and not free_b)


def _put_py(heap, hkey, hfree, pos, k, j, key, free):  # pragma: no cover - compiled by numba
    """Store column ``j`` with its key at heap slot ``k``."""
    heap[k] = j
    hkey[k] = key
    hfree[k] = free
    pos[j] = k


def _sift_up_py(heap, hkey, hfree, pos, k, j, key, free):  # pragma: no cover - compiled by numba
    """Place column ``j`` with ``(key, free)`` at slot ``k`` or above in the indexed heap.

    Keys live in arrays parallel to the heap (``hkey``, ``hfree``), so a sift
    compares neighbouring memory instead of chasing column indices.
    """
    while k > 0:
        parent = (k - 1) // 2
        if not _before(key, free, hkey[parent], hfree[parent]):
            break
        _put(heap, hkey, hfree, pos, k, heap[parent], hkey[parent], hfree[parent])
        k = parent
    _put(heap, hkey, hfree, pos, k, j, key, free)


def _sift_down_py(heap, hkey, hfree, pos, size):  # pragma: no cover - compiled by numba
    """After a pop, move the old last element (at ``size``) down from slot 0 to its place."""
    last, key, free = heap[size], hkey[size], hfree[size]
    k = 0
    while True:
        child = 2 * k + 1
        if child >= size:
            break
        if child + 1 < size and _before(hkey[child + 1], hfree[child + 1], hkey[child], hfree[child]):
            child += 1
        if not _before(hkey[child], hfree[child], key, free):
            break
        _put(heap, hkey, hfree, pos, k, heap[child], hkey[child], hfree[child])
        k = child
    _put(heap, hkey, hfree, pos, k, last, key, free)


_before, _put, _sift_up, _sift_down = _before_py, _put_py, _sift_up_py, _sift_down_py


def solve_sparse_lap(indptr: np.ndarray, indices: np.ndarray, costs: np.ndarray,
                     dummy_cost: float = 1.0) -> tuple[np.ndarray, float]:
    """Optimal assignment of ``n`` rows to ``n`` columns on a sparse cost graph.

    Row ``i``'s options are the columns ``indices[indptr[i]:indptr[i+1]]`` at
    ``costs[...]`` (at most one entry per column, each at most ``dummy_cost``)
    and, always, a private dummy at ``dummy_cost``. Returns ``col`` (``col[i] >=
    n`` means row ``i`` took its dummy) and the minimum total cost.
    """
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    costs = np.asarray(costs, dtype=np.float64)
    if len(costs) and costs.max() > dummy_cost:
        raise ValueError(f"edge costs must be at most the dummy cost {dummy_cost}; got {costs.max()}")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    costs = np.ascontiguousarray(costs)
    col, total = solver()(indptr, indices, costs, float(dummy_cost))
    return col, float(total)


def _solve(indptr, indices, costs, dummy_cost):  # pragma: no cover - compiled by numba
    n = indptr.shape[0] - 1
    # Each row's edges cheapest first (on copies): the search stops reading a row at the
    # first edge that cannot beat the nearest free column.
    indices = indices.copy()
    costs = costs.copy()
    for i in range(n):
        a, b = indptr[i], indptr[i + 1]
        if b - a > 1:
            o = np.argsort(costs[a:b], kind="mergesort")
            indices[a:b] = indices[a:b][o]
            costs[a:b] = costs[a:b][o]
            # Among equally cheap columns, column i (the same neuron index) first: ties are then
            # broken towards the identity, so a dense layer (every pairing costs 0) keeps its
            # neurons in place instead of scrambling the next layer's inputs.
            for p in range(a, b):
                if indices[p] == i:
                    q = p
                    while q > a and costs[q - 1] == costs[p]:
                        q -= 1
                    c = costs[p]
                    for t in range(p, q, -1):
                        indices[t] = indices[t - 1]
                        costs[t] = costs[t - 1]
                    indices[q] = i
                    costs[q] = c
                    break
    m = 2 * n  # columns: n real ones, then row i's dummy at n + i
    inf = np.inf
    u = np.zeros(n)
    v = np.zeros(m)
    col4row = np.full(n, -1, np.int64)
    row4col = np.full(m, -1, np.int64)

    # Warm start: Jonker-Volgenant's augmenting row reduction, an auction-like
    # pass in which a free row takes its cheapest column (cost c - v) and lowers
    # that column's price v to its second-cheapest option, evicting the owner.
    # It settles most rows at almost no cost. Invariant: an assigned row sits on
    # a column of minimal c - v, so u_i = min_j (c_ij - v_j) is dual feasible.
    free = np.arange(n)
    n_free = n
    # A bound on the edges this phase may look at: with many near-equal costs the
    # bidding can go on for long at tiny price steps; what is left goes to the exact phase.
    budget = 4 * (indices.shape[0] + n) + 100
    for _pass in range(2):
        k = 0
        todo = n_free
        n_free = 0
        while k < todo:
            i = free[k]
            k += 1
            u1 = dummy_cost - v[n + i]
            j1 = n + i
            u2 = inf
            j2 = -1
            for p in range(indptr[i], indptr[i + 1]):
                h = costs[p] - v[indices[p]]
                if h < u2:
                    if h >= u1:
                        u2 = h
                        j2 = indices[p]
                    else:
                        u2 = u1
                        j2 = j1
                        u1 = h
                        j1 = indices[p]
            i0 = row4col[j1]
            budget -= indptr[i + 1] - indptr[i] + 1
            if j2 >= 0 and budget > 0:
                if u1 < u2:
                    v[j1] -= u2 - u1
                elif i0 >= 0:
                    j1 = j2
                    i0 = row4col[j2]
            if i0 >= 0:
                col4row[i0] = -1
                if u1 < u2 and budget > 0:
                    k -= 1
                    free[k] = i0  # re-seat the evicted row at once
                else:
                    free[n_free] = i0  # or in the next pass
                    n_free += 1
            row4col[j1] = i
            col4row[i] = j1
    # Row duals from the column prices: every edge's reduced cost is now >= 0.
    for i in range(n):
        best = dummy_cost - v[n + i]
        for p in range(indptr[i], indptr[i + 1]):
            h = costs[p] - v[indices[p]]
            if h < best:
                best = h
        u[i] = best

    dist = np.full(m, inf)
    pred = np.full(m, -1, np.int64)
    scanned = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    scanned_rows = np.empty(n + 1, np.int64)
    # An indexed binary heap of columns keyed by (dist, not free): decrease-key in
    # place, so the heap never holds stale entries.
    heap = np.empty(m, np.int64)
    hkey = np.empty(m)
    hfree = np.empty(m, np.bool_)
    pos = np.full(m, -1, np.int64)

    # Free rows in order of their row dual (cheapest best option first): measured
    # on independent 10,000-neuron layers, 1.6x less work than index order.
    order = np.argsort(u, kind="mergesort")
    for rr in range(n):
        r = order[rr]
        if col4row[r] != -1:
            continue
        n_touched = 0
        n_rows = 0
        size = 0
        i = r
        min_val = 0.0
        sink = -1
        best_free = inf
        while sink == -1:
            scanned_rows[n_rows] = i
            n_rows += 1
            base = min_val - u[i]
            end = indptr[i + 1]
            for p in range(indptr[i], end + 1):  # the row's edges (cheapest first), then its dummy
                if p < end:
                    j = indices[p]
                    c = costs[p]
                else:
                    j = n + i
                    c = dummy_cost
                if base + c >= best_free:
                    # Prices v are never positive, so rc >= base + c: this edge and every later
                    # one (costs ascend, the dummy is last) cannot beat the free column at best_free.
                    break
                if scanned[j]:
                    continue
                rc = base + c - v[j]
                # A column no closer than the nearest free one found so far is never on the
                # shortest path (free columns win ties): leave it out of the heap.
                if rc < dist[j] and rc < best_free:
                    if dist[j] == inf:
                        touched[n_touched] = j
                        n_touched += 1
                        k = size
                        size += 1
                    else:
                        k = pos[j]
                    dist[j] = rc
                    pred[j] = i
                    free_j = row4col[j] == -1
                    if free_j:
                        best_free = rc
                    _sift_up(heap, hkey, hfree, pos, k, j, rc, free_j)
            if size == 0:  # cannot happen: every row has its dummy
                return col4row, inf
            j = heap[0]  # the closest unscanned column
            pos[j] = -1
            size -= 1
            if size > 0:
                _sift_down(heap, hkey, hfree, pos, size)
            min_val = dist[j]
            scanned[j] = True
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]

        # Dual update (Crouse): keeps reduced costs >= 0 and zero on the matching.
        u[r] += min_val
        for t in range(1, n_rows):
            k = scanned_rows[t]
            u[k] += min_val - dist[col4row[k]]
        for t in range(n_touched):
            j = touched[t]
            if scanned[j]:
                v[j] -= min_val - dist[j]
        # Augment along the shortest path.
        j = sink
        while True:
            i = pred[j]
            row4col[j] = i
            prev = col4row[i]
            col4row[i] = j
            j = prev
            if i == r:
                break
        for t in range(n_touched):
            j = touched[t]
            dist[j] = inf
            pred[j] = -1
            scanned[j] = False
            pos[j] = -1

    total = 0.0
    for i in range(n):
        j = col4row[i]
        if j >= n:
            total += dummy_cost
        else:
            for p in range(indptr[i], indptr[i + 1]):
                if indices[p] == j:
                    total += costs[p]
                    break
    return col4row, total
