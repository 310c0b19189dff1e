"""The ``ssp`` solver of :mod:`sparsetopo._lap` on the implicit overlap graph: memory follows the connections.

:func:`sparsetopo._lap.solve_sparse_lap` takes the overlap graph of a layer (every pair of
neurons sharing an input, ``O(n * d_in * d_in_use)`` edges) as a CSR: at 50,000 neurons with 40
inputs each that is 77 M edges, and with the product and the sorted copies several GB. This
module runs *the same algorithm, step for step* (same warm start, same search order, same
tie rule), but stores only each row's ``PREFIX`` cheapest edges, in the order the explicit
solver sorts them (cost, then the row's own index, then column). The searches rarely read
further (the scan stops at the first edge that cannot beat the nearest free column; measured
on independent 20,000-neuron layers at epsilon 20: 99.99 % of the scans end within 127 edges).
When one does, the row is generated again on the fly from B's inverted index (input -> the
neurons using it), counting shared inputs, and sorted the same way. So the matching, and the
total (summed over rows in index order), are those of the explicit solver to the last bit.

Memory: the prefixes (16 bytes per kept edge), A's CSR and B's inverted index, and O(n)
vectors. One layer is solved on one thread (successive shortest paths are sequential); the
kernels release the GIL, so several layers or pairs run in parallel on threads.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np

from . import _lap
from ._numba_cache import choose_cache_dir

__all__ = ["PREFIX", "solve_implicit", "solve_implicit_bounded", "kernels"]

#: Edges kept per row (the cheapest, in search order); the rest is generated again when read.
PREFIX = 128
#: At most this many threads build the prefixes, for layers whose candidate counting takes at least
#: ``PREFIX_THREADS_FROM`` steps (A's connections times B's neurons on each input: 784 neurons at 2 %
#: about 200,000, 20,000 at epsilon 20 32 M); below, starting threads costs more than it saves (measured
#: on 784-neuron layers: at 1 % two threads were slower, at 2 % 1.7x faster).
PREFIX_THREADS = 4
PREFIX_THREADS_FROM = 150_000


def kernels():
    """The compiled parts (imports numba on first use; cached on disk like :func:`sparsetopo._lap.solver`);
    thread-safe (:data:`sparsetopo._lap.COMPILE_LOCK`)."""
    with _lap.COMPILE_LOCK:
        return _kernels()


@cache
def _kernels():
    choose_cache_dir(Path(__file__).parent, "the compiled NNSTD solver")
    import numba

    _lap.solver()  # compiles (inlines) the shared heap helpers
    jit = numba.njit(cache=True, nogil=True)
    g = globals()
    g["_sift_up"], g["_sift_down"] = _lap._sift_up, _lap._sift_down
    # The per-edge and per-row helpers are inlined into their callers at numba's IR level: called as
    # functions they take the graph and state tuples (two dozen arrays) by value, with a reference
    # count update per array and call, on every edge read.
    inline = numba.njit(inline="always")
    for name in ("_ned1", "_gather", "_edge", "_scan", "_pop"):
        g[name] = inline(g[name + "_py"])
    for name in ("_candidates", "_sort_edges", "_full_row", "_warm_start", "_row_duals", "_finish", "_search_all",
                 "_total", "_solve_bounded", "_lower_bound", "_complete"):  # [bounds] the last three
        g[name] = jit(g[name + "_py"])
    # Not ``parallel=True``: callers solve layers on several threads at once (pairwise NNSTD), and
    # numba's workqueue threading layer aborts the process on concurrent parallel launches; the
    # prefixes are built on Python threads instead (:func:`_prefixes`).
    g["_prefix_rows"] = jit(_prefix_rows_py)
    return _prefixes, jit(_solve_py)


def solve_implicit(a_ptr, a_idx, b_ptr, b_idx, n_in: int, forced: np.ndarray, prefix: int | None = None,
                   dummy_cost: float = 1.0) -> tuple[np.ndarray, float]:
    """Optimal assignment of A's ``n`` neurons to B's ``n`` (CSR masks, integer arrays) at NED cost.

    ``forced[i] = j`` gives row ``i`` the single option column ``j`` at cost 0 (pairs of empty
    neurons), ``-1`` none. Returns ``col`` (``col[i] >= n``: row ``i`` took its dummy) and the
    total, exactly as :func:`sparsetopo._lap.solve_sparse_lap` on the explicit overlap graph.
    ``prefix``: the edges stored per row (``None``: :data:`PREFIX`).
    """
    if prefix is not None and prefix < 1:
        raise ValueError(f"prefix must be >= 1; got {prefix}")
    graph, prefix = _graph(a_ptr, a_idx, b_ptr, b_idx, n_in, forced, prefix, dummy_cost)
    _build, solve = kernels()
    col, total = solve(graph, n_in, prefix, float(dummy_cost))
    return col, float(total)


def _graph(a_ptr, a_idx, b_ptr, b_idx, n_in: int, forced, prefix: int | None, dummy_cost: float):
    """The implicit overlap graph both entry points search: A's CSR, B's inverted index, the prefixes."""
    n = len(a_ptr) - 1
    # One dtype per argument (one compiled version): offsets int64, neuron and input indices int32
    # (half the memory traffic of int64; CSR indices already are int32, so no copy).
    a_ptr, b_ptr = np.asarray(a_ptr, dtype=np.int64), np.asarray(b_ptr, dtype=np.int64)
    a_idx, b_idx = np.asarray(a_idx, dtype=np.int32), np.asarray(b_idx, dtype=np.int32)
    forced = np.asarray(forced, dtype=np.int64)
    sb = np.diff(b_ptr)
    # B's inverted index: input -> B's neurons using it (B's CSC), columns ascending per input.
    order = np.argsort(b_idx, kind="stable")
    bt_idx = np.repeat(np.arange(n, dtype=np.int32), sb)[order]
    bt_ptr = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(np.bincount(b_idx, minlength=n_in), out=bt_ptr[1:])
    del order
    if prefix is None:
        # Not whole rows even where they fit: on 784-neuron layers at 4.5 % (625 edges a row) sorting
        # every row cost more (47 ms) than building prefixes and generating the few rows read further (21 ms).
        prefix = PREFIX
    build, _solve = kernels()
    pcol, pcost, plen, deg = build(a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, prefix, dummy_cost)
    return (a_ptr, a_idx, bt_ptr, bt_idx, b_ptr, b_idx, sb, forced, pcol, pcost, plen, deg), prefix


# [bounds] issue 21 item 2: the interruptible entry point (the search itself is the one above).
def solve_implicit_bounded(a_ptr, a_idx, b_ptr, b_idx, n_in: int, forced: np.ndarray, stop: np.ndarray,
                           max_aug: int = -1, prefix: int = PREFIX,
                           dummy_cost: float = 1.0) -> tuple[np.ndarray, float, float, bool]:
    """:func:`solve_implicit` that can be stopped, with a certified lower bound when it is.

    The search stops before its next augmenting path once ``stop[0] != 0`` (an ``int8`` array of
    size 1 another thread may set: the kernels release the GIL) or after ``max_aug`` augmentations
    (``-1``: no limit; a deterministic stop for tests). Returns ``(col, total, lower, finished)``:

    - finished: ``col`` and ``total`` exactly as :func:`solve_implicit` returns them (bit for bit:
      the same kernels run), ``lower = total``;
    - stopped: every row left free takes the cheapest column among its edges still free, in row
      order, else its dummy (``col[i] >= n``); ``total`` is ``nan`` (the caller recomputes the cost
      of the complete matching once dummies are paired); ``lower`` is the dual bound
      ``sum_i min(d - v[n+i], min_j (c_ij - v_j)) + sum_j v_j`` of the search's column prices
      ``v`` when stopped, or when the warm start ended if that is larger (prices are never
      positive, so any such ``v`` gives a feasible dual of the LP "each row once, each column at
      most once" on the n x 2n problem, whose optimum is the layer's).
    """
    if prefix < 1:
        raise ValueError(f"prefix must be >= 1; got {prefix}")
    n = len(a_ptr) - 1
    graph, prefix = _graph(a_ptr, a_idx, b_ptr, b_idx, n_in, forced, prefix, dummy_cost)
    kernels()
    col, row4col, v, lower0, finished = _solve_bounded(graph, n_in, prefix, float(dummy_cost), stop, int(max_aug))
    if finished:
        total = float(_total(graph, n, n_in, float(dummy_cost), col))
        return col, total, total, True
    # Both are lower bounds; the one of the prices when stopped is not always the larger (the row
    # minima are recomputed, not the search's row duals), so keep the better.
    lower = max(float(lower0), float(_lower_bound(graph, n, prefix, float(dummy_cost), v)))
    _complete(graph, n, prefix, col, row4col)
    return col, float("nan"), lower, False


def _ned1_py(sa, sb, inter):  # pragma: no cover - compiled by numba
    """One NED, the float operations of :func:`sparsetopo.nnstd.solvers._ned`."""
    union = sa + sb - inter
    if union == 0:
        return 0.0
    return (union - inter) / union


def _gather_py(i, a_ptr, a_idx, bt_ptr, bt_idx, cnt, out):  # pragma: no cover - compiled by numba
    """B's neurons sharing an input with A's ``i`` into ``out``, in the order they are met (unsorted);
    ``cnt[j]`` = shared inputs; returns their number."""
    m = 0
    for p in range(a_ptr[i], a_ptr[i + 1]):
        x = a_idx[p]
        for q in range(bt_ptr[x], bt_ptr[x + 1]):
            j = bt_idx[q]
            if cnt[j] == 0:
                out[m] = j
                m += 1
            cnt[j] += 1
    return m


def _candidates_py(i, a_ptr, a_idx, bt_ptr, bt_idx, cnt, out):  # pragma: no cover - compiled by numba
    """:func:`_gather_py`, columns ascending."""
    m = _gather(i, a_ptr, a_idx, bt_ptr, bt_idx, cnt, out)
    out[:m] = np.sort(out[:m])
    return m


def _sort_edges_py(i, cols, costs):  # pragma: no cover - compiled by numba
    """Sort one row's edges (columns ascending on entry) as :func:`sparsetopo._lap._solve` does.

    Cheapest first (stable), and column ``i`` first among the columns as cheap as it.
    """
    o = np.argsort(costs, kind="mergesort")
    cols[:] = cols[o]
    costs[:] = costs[o]
    for p in range(len(cols)):
        if cols[p] == i:
            q = p
            while q > 0 and costs[q - 1] == costs[p]:
                q -= 1
            c = costs[p]
            for t in range(p, q, -1):
                cols[t] = cols[t - 1]
                costs[t] = costs[t - 1]
            cols[q] = i
            costs[q] = c
            break


def _full_row_py(i, a_ptr, a_idx, bt_ptr, bt_idx, sb, cnt, cols, costs):  # pragma: no cover - compiled
    """Row ``i``'s edges, all of them, sorted in search order into ``cols``/``costs``; returns their number."""
    m = _candidates(i, a_ptr, a_idx, bt_ptr, bt_idx, cnt, cols)
    sa = a_ptr[i + 1] - a_ptr[i]
    for t in range(m):
        j = cols[t]
        costs[t] = _ned1(sa, sb[j], cnt[j])
        cnt[j] = 0
    _sort_edges(i, cols[:m], costs[:m])
    return m


def _prefix_rows_py(lo, hi, a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, k, pcol, pcost, plen, deg):  # pragma: no cover
    """Rows ``lo..hi-1``: their ``k`` first edges in search order (``plen`` of them) into ``pcol``/``pcost``,
    and their full edge counts into ``deg``.

    Only the edges that can be among the ``k`` cheapest (cost at most the ``k``-th smallest, ties
    included) are sorted, by column and then stably by cost: the order of sorting the whole row
    (columns ascending, then stably by cost) restricted to them, without sorting the rest.
    """
    n = len(a_ptr) - 1
    cnt = np.zeros(n, np.int32)
    cols = np.empty(n, np.int64)
    costs = np.empty(n)
    for i in range(lo, hi):
        if forced[i] >= 0:
            pcol[i * k], pcost[i * k], plen[i], deg[i] = forced[i], 0.0, 1, 1
            continue
        m = _gather(i, a_ptr, a_idx, bt_ptr, bt_idx, cnt, cols)  # unsorted: only the kept ones are sorted
        sa = a_ptr[i + 1] - a_ptr[i]
        deg[i] = m
        keep = m
        if m > k:  # the k cheapest (with all their ties) come first in the full order
            for t in range(m):
                costs[t] = _ned1(sa, sb[cols[t]], cnt[cols[t]])
            thr = np.partition(costs[:m], k - 1)[k - 1]
            keep = 0
            for t in range(m):
                j = cols[t]
                if costs[t] <= thr:
                    cols[keep] = j
                    keep += 1
                else:
                    cnt[j] = 0
        cols[:keep].sort()
        for t in range(keep):
            j = cols[t]
            costs[t] = _ned1(sa, sb[j], cnt[j])
            cnt[j] = 0
        _sort_edges(i, cols[:keep], costs[:keep])
        plen[i] = min(k, keep)
        pcol[i * k:i * k + plen[i]] = cols[:plen[i]]
        pcost[i * k:i * k + plen[i]] = costs[:plen[i]]


def _prefixes(a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, k, dummy_cost, threads=None):
    """Every row's ``k`` first edges in search order (``plen`` of them) and its full edge count ``deg``.

    Rows are independent: large layers are built on ``threads`` Python threads (default: the
    cores this process may use, at most :data:`PREFIX_THREADS`) over row chunks, each running
    the compiled ``nogil`` kernel; measured on 2 cores at 20,000 neurons: see ``benchmarks/RESULTS.md``.
    """
    n = len(a_ptr) - 1
    pcol = np.empty(n * k, np.int32)
    pcost = np.empty(n * k)
    plen = np.zeros(n, np.int64)
    deg = np.zeros(n, np.int64)
    if threads is None:
        work = int(np.diff(bt_ptr)[a_idx].sum())
        threads = min(PREFIX_THREADS, _cores()) if work >= PREFIX_THREADS_FROM else 1
    bounds = np.linspace(0, n, max(1, min(threads, n)) + 1).astype(np.int64)

    def run(c):
        _prefix_rows(bounds[c], bounds[c + 1], a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, k, pcol, pcost, plen, deg)

    if len(bounds) == 2:
        run(0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            list(pool.map(run, range(len(bounds) - 1)))
    return pcol, pcost, plen, deg


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _edge_py(graph, i, p, k, scratch):  # pragma: no cover - compiled by numba
    """Row ``i``'s edge ``p`` in search order, from the prefix or the row generated again."""
    a_ptr, a_idx, bt_ptr, bt_idx, _b_ptr, _b_idx, sb, _forced, pcol, pcost, plen, _deg = graph
    cache_row, cnt, cols, costs = scratch
    if p < plen[i]:
        return np.int64(pcol[i * k + p]), pcost[i * k + p]
    if cache_row[0] != i:
        _full_row(i, a_ptr, a_idx, bt_ptr, bt_idx, sb, cnt, cols, costs)
        cache_row[0] = i
    return cols[p], costs[p]


def _warm_start_py(graph, n, k, dummy_cost, v, col4row, row4col, scratch, budget_factor, stop):  # pragma: no cover
    """Jonker-Volgenant's augmenting row reduction, as in :func:`sparsetopo._lap._solve`.

    The explicit solver reads whole rows; this stops at the first edge with ``c >= u2``: prices
    are never positive, so ``c - v >= c`` and no later edge (costs ascend) changes ``u1, u2``.
    The budget is charged the row's full length, as there, so both stop at the same step.
    [bounds] Returns early, before the next row, once ``stop[0] != 0``: the rows not reached stay
    free and the prices stay <= 0, so the dual bound of these prices still holds.
    """
    deg = graph[11]
    inf = np.inf
    free = np.arange(n)
    n_free = n
    budget = budget_factor * (deg.sum() + n) + 100
    for _pass in range(2):
        kk = 0
        todo = n_free
        n_free = 0
        while kk < todo:
            if stop[0] != 0:  # [bounds]
                return
            i = free[kk]
            kk += 1
            u1 = dummy_cost - v[n + i]
            j1 = n + i
            u2 = inf
            j2 = -1
            for p in range(deg[i]):
                j, c = _edge(graph, i, p, k, scratch)
                if c >= u2:
                    break
                h = c - v[j]
                if h < u2:
                    if h >= u1:
                        u2 = h
                        j2 = j
                    else:
                        u2 = u1
                        j2 = j1
                        u1 = h
                        j1 = j
            i0 = row4col[j1]
            budget -= deg[i] + 1
            if j2 >= 0 and budget > 0:
                if u1 < u2:
                    v[j1] -= u2 - u1
                elif i0 >= 0:
                    j1 = j2
                    i0 = row4col[j2]
            if i0 >= 0:
                col4row[i0] = -1
                if u1 < u2 and budget > 0:
                    kk -= 1
                    free[kk] = i0
                else:
                    free[n_free] = i0
                    n_free += 1
            row4col[j1] = i
            col4row[i] = j1


def _row_duals_py(graph, n, k, dummy_cost, u, v, scratch):  # pragma: no cover - compiled by numba
    """``u_i = min_j (c_ij - v_j)`` over row ``i``'s edges and its dummy (stopping as the warm start does)."""
    deg = graph[11]
    for i in range(n):
        best = dummy_cost - v[n + i]
        for p in range(deg[i]):
            j, c = _edge(graph, i, p, k, scratch)
            if c >= best:
                break
            h = c - v[j]
            if h < best:
                best = h
        u[i] = best


def _scan_py(graph, i, n, k, dummy_cost, base, best_free, size, n_touched, st, scratch):  # pragma: no cover
    """Relax row ``i``'s edges (cheapest first, then its dummy) in one Dijkstra search."""
    _u, v, _col4row, row4col, dist, pred, scanned, touched, heap, hkey, hfree, pos = st
    end = graph[11][i]
    for p in range(end + 1):
        if p < end:
            j, c = _edge(graph, i, p, k, scratch)
        else:
            j = n + i
            c = dummy_cost
        if base + c >= best_free:  # prices are <= 0: neither this edge nor a later one can win
            break
        if scanned[j]:
            continue
        rc = base + c - v[j]
        if rc < dist[j] and rc < best_free:
            if dist[j] == np.inf:
                touched[n_touched] = j
                n_touched += 1
                at = size
                size += 1
            else:
                at = pos[j]
            dist[j] = rc
            pred[j] = i
            free_j = row4col[j] == -1
            if free_j:
                best_free = rc
            _sift_up(heap, hkey, hfree, pos, at, j, rc, free_j)
    return best_free, size, n_touched


def _pop_py(heap, hkey, hfree, pos, size):  # pragma: no cover - compiled by numba
    """Take the closest column off the heap; returns it and the new heap size."""
    j = heap[0]
    pos[j] = -1
    size -= 1
    if size > 0:
        _sift_down(heap, hkey, hfree, pos, size)
    return j, size


def _finish_py(r, sink, min_val, n_rows, n_touched, st, scanned_rows):  # pragma: no cover - compiled
    """Crouse's dual update, the augmentation along the shortest path, and the reset of the search."""
    u, v, col4row, row4col, dist, pred, scanned, touched, _heap, _hkey, _hfree, pos = st
    u[r] += min_val
    for t in range(1, n_rows):
        q = scanned_rows[t]
        u[q] += min_val - dist[col4row[q]]
    for t in range(n_touched):
        j = touched[t]
        if scanned[j]:
            v[j] -= min_val - dist[j]
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
        dist[j] = np.inf
        pred[j] = -1
        scanned[j] = False
        pos[j] = -1


def _search_all_py(graph, n, k, dummy_cost, st, scratch, stop, max_aug):  # pragma: no cover - compiled
    """A shortest augmenting path for each row left free, in order of its row dual.

    [bounds] Returns False, leaving the rows not reached free, when ``stop[0] != 0`` or after
    ``max_aug`` augmentations (``-1``: never); checked between augmentations, where the prices are
    consistent (see :func:`solve_implicit_bounded`).
    """
    u, _v, col4row, row4col, dist, _pred, scanned, _touched, heap, hkey, hfree, pos = st
    scanned_rows = np.empty(n + 1, np.int64)
    order = np.argsort(u, kind="mergesort")
    n_aug = 0  # [bounds]
    for rr in range(n):
        r = order[rr]
        if col4row[r] != -1:
            continue
        if stop[0] != 0 or n_aug == max_aug:  # [bounds]
            return False
        n_touched, n_rows, size, i, min_val, sink, best_free = 0, 0, 0, r, 0.0, -1, np.inf
        while sink == -1:
            scanned_rows[n_rows] = i
            n_rows += 1
            best_free, size, n_touched = _scan(graph, i, n, k, dummy_cost, min_val - u[i], best_free, size,
                                               n_touched, st, scratch)
            if size == 0:  # cannot happen: every row has its dummy
                return False
            j, size = _pop(heap, hkey, hfree, pos, size)
            min_val = dist[j]
            scanned[j] = True
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
        _finish(r, sink, min_val, n_rows, n_touched, st, scanned_rows)
        n_aug += 1  # [bounds]
    return True


def _total_py(graph, n, n_in, dummy_cost, col4row):  # pragma: no cover - compiled by numba
    """The matching's cost summed over rows in index order (the explicit solver's sum)."""
    a_ptr, a_idx, _bt_ptr, _bt_idx, b_ptr, b_idx, sb, forced, _pc, _pcost, _plen, _deg = graph
    mark = np.zeros(n_in, np.bool_)
    total = 0.0
    for i in range(n):
        j = col4row[i]
        if j >= n:
            total += dummy_cost
        elif forced[i] == j:
            total += 0.0
        else:
            mark[a_idx[a_ptr[i]:a_ptr[i + 1]]] = True
            inter = 0
            for q in range(b_ptr[j], b_ptr[j + 1]):
                inter += mark[b_idx[q]]
            mark[a_idx[a_ptr[i]:a_ptr[i + 1]]] = False
            total += _ned1(a_ptr[i + 1] - a_ptr[i], sb[j], inter)
    return total


def _solve_py(graph, n_in, k, dummy_cost):  # pragma: no cover - compiled by numba
    # [bounds] the search is _solve_bounded's, never stopped
    col4row, _row4col, _v, _lb, finished = _solve_bounded(graph, n_in, k, dummy_cost, np.zeros(1, np.int8), -1)
    if not finished:  # cannot happen: every row has its dummy
        return col4row, np.inf
    return col4row, _total(graph, len(graph[0]) - 1, n_in, dummy_cost, col4row)


def _solve_bounded_py(graph, n_in, k, dummy_cost, stop, max_aug):  # pragma: no cover - compiled by numba
    """[bounds] The warm start and the searches; returns ``(col4row, row4col, v, lower, finished)``,
    ``lower`` the dual bound of the prices the warm start left (the row duals are their row minima)."""
    n = len(graph[0]) - 1
    m = 2 * n  # columns: n real ones, then row i's dummy at n + i
    scratch = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
    u = np.zeros(n)
    v = np.zeros(m)
    col4row = np.full(n, -1, np.int64)
    row4col = np.full(m, -1, np.int64)
    _warm_start(graph, n, k, dummy_cost, v, col4row, row4col, scratch, 4, stop)
    _row_duals(graph, n, k, dummy_cost, u, v, scratch)
    lower = u.sum() + v.sum()  # [bounds]
    st = (u, v, col4row, row4col, np.full(m, np.inf), np.full(m, -1, np.int64), np.zeros(m, np.bool_),
          np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m), np.empty(m, np.bool_),
          np.full(m, -1, np.int64))
    finished = _search_all(graph, n, k, dummy_cost, st, scratch, stop, max_aug)
    return col4row, row4col, v, lower, finished


def _lower_bound_py(graph, n, k, dummy_cost, v):  # pragma: no cover - compiled by numba
    """[bounds] The dual objective of prices ``v <= 0`` with the best row duals for them (a lower bound)."""
    scratch = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
    u = np.empty(n)
    _row_duals(graph, n, k, dummy_cost, u, v, scratch)
    return u.sum() + v.sum()


def _complete_py(graph, n, k, col4row, row4col):  # pragma: no cover - compiled by numba
    """[bounds] Each row left free, in index order, takes its cheapest free column among its stored
    (prefix) edges, else its dummy. Not the whole row: when the search stopped early most cheap
    columns are taken, and generating rows again made this step 7 s of a 200,000-neuron layer."""
    pcol, plen = graph[8], graph[10]
    for i in range(n):
        if col4row[i] != -1:
            continue
        col4row[i] = n + i
        for p in range(plen[i]):
            j = pcol[i * k + p]
            if row4col[j] == -1:
                col4row[i] = j
                break
        row4col[col4row[i]] = i


# Plain-Python stand-ins, replaced by their compiled versions in :func:`kernels` (the module imports without numba).
_ned1, _candidates, _sort_edges, _full_row, _edge = _ned1_py, _candidates_py, _sort_edges_py, _full_row_py, _edge_py
_gather = _gather_py
_prefix_rows = _prefix_rows_py
_warm_start, _row_duals, _scan, _pop, _finish = _warm_start_py, _row_duals_py, _scan_py, _pop_py, _finish_py
_search_all, _total = _search_all_py, _total_py
_solve_bounded, _lower_bound, _complete = _solve_bounded_py, _lower_bound_py, _complete_py  # [bounds]
_sift_up, _sift_down = _lap._sift_up_py, _lap._sift_down_py
