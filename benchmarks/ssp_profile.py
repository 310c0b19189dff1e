"""Where the implicit ``ssp`` solver's time goes (issue 21): one independent layer pair at epsilon 20.

Times the phases of :mod:`sparsetopo._lap_implicit` one by one (B's inverted index, the prefixes,
the warm start, the row duals, the searches, the total) and counts, in an instrumented copy of the
search loop, the rows left free after the warm start, rows scanned, edges read and relaxed, and rows
generated again beyond the prefix. The instrumented copy is only for counting; its matching is
checked against the solver's. Each phase's wall time and the process's CPU time (``*_cpu_s``: on a
shared machine the wall time is mostly waiting; the prefixes are built on threads).

    python benchmarks/ssp_profile.py [--sizes 5000,10000,20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _instrumented():
    """Counting copies of ``_edge``/``_scan``/``_search_all`` (compiled), built on the module's kernels."""
    import numba

    from sparsetopo import _lap_implicit as L

    L.kernels()
    full_row, sift_up, sift_down = L._full_row, L._sift_up, L._sift_down

    @numba.njit
    def edge(graph, i, p, k, scratch, stats):
        a_ptr, a_idx, bt_ptr, bt_idx, _b_ptr, _b_idx, sb, _forced, pcol, pcost, plen, _deg = graph
        cache_row, cnt, cols, costs = scratch
        if p < plen[i]:
            return pcol[i * k + p], pcost[i * k + p]
        if cache_row[0] != i:
            full_row(i, a_ptr, a_idx, bt_ptr, bt_idx, sb, cnt, cols, costs)
            cache_row[0] = i
            stats[3] += 1
        return cols[p], costs[p]

    @numba.njit
    def search_all(graph, n, k, dummy_cost, st, scratch, stats):
        u, v, col4row, row4col, dist, pred, scanned, touched, heap, hkey, hfree, pos = st
        scanned_rows = np.empty(n + 1, np.int64)
        order = np.argsort(u, kind="mergesort")
        for rr in range(n):
            r = order[rr]
            if col4row[r] != -1:
                continue
            stats[0] += 1
            n_touched, n_rows, size, i, min_val, sink, best_free = 0, 0, 0, r, 0.0, -1, np.inf
            while sink == -1:
                scanned_rows[n_rows] = i
                n_rows += 1
                stats[1] += 1
                base = min_val - u[i]
                end = graph[11][i]
                for p in range(end + 1):
                    if p < end:
                        j, c = edge(graph, i, p, k, scratch, stats)
                    else:
                        j = n + i
                        c = dummy_cost
                    if base + c >= best_free:
                        break
                    stats[2] += 1
                    if p >= k:
                        stats[6] += 1
                    if scanned[j]:
                        continue
                    rc = base + c - v[j]
                    if rc < dist[j] and rc < best_free:
                        stats[4] += 1
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
                        sift_up(heap, hkey, hfree, pos, at, j, rc, free_j)
                j = heap[0]
                pos[j] = -1
                size -= 1
                if size > 0:
                    sift_down(heap, hkey, hfree, pos, size)
                min_val = dist[j]
                scanned[j] = True
                if row4col[j] == -1:
                    sink = j
                else:
                    i = row4col[j]
            stats[5] = max(stats[5], n_rows)
            stats[7] += n_touched
            L._finish(r, sink, min_val, n_rows, n_touched, st, scanned_rows)
        return True

    return search_all


def profile(n: int, search_all) -> dict:
    from sparsetopo import _lap_implicit as L
    from sparsetopo.nnstd.solvers import _empty_pairs
    from sparsetopo.truly_sparse.model import sample_topology

    a, b = (sample_topology([(n, n)], [40 * n], seed=s)[0] for s in (0, 1))
    a_ptr, a_idx = a.indptr.astype(np.int64), a.indices.astype(np.int64)
    b_ptr, b_idx = b.indptr.astype(np.int64), b.indices.astype(np.int64)
    sa, sb = np.diff(a_ptr), np.diff(b_ptr)
    forced = _empty_pairs(sa, sb)
    k, dummy = L.PREFIX, 1.0
    out = {"n": n}
    t, c = time.perf_counter(), time.process_time()
    order = np.argsort(b_idx, kind="stable")
    bt_idx = np.repeat(np.arange(n, dtype=np.int64), sb)[order]
    bt_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(b_idx, minlength=n), out=bt_ptr[1:])
    out["inverted_s"], out["inverted_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    build, _solve = L.kernels()
    t, c = time.perf_counter(), time.process_time()
    pcol, pcost, plen, deg = build(a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, k, dummy)
    out["prefix_s"], out["prefix_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["edges_per_row"] = float(deg.mean())
    graph = (a_ptr, a_idx, bt_ptr, bt_idx, b_ptr, b_idx, sb, forced, pcol, pcost, plen, deg)
    m = 2 * n

    def fresh():
        scratch = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
        u, v = np.zeros(n), np.zeros(m)
        col4row, row4col = np.full(n, -1, np.int64), np.full(m, -1, np.int64)
        st = (u, v, col4row, row4col, np.full(m, np.inf), np.full(m, -1, np.int64), np.zeros(m, np.bool_),
              np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m), np.empty(m, np.bool_),
              np.full(m, -1, np.int64))
        return scratch, st

    scratch, st = fresh()
    u, v, col4row, row4col = st[:4]
    t, c = time.perf_counter(), time.process_time()
    L._warm_start(graph, n, k, dummy, v, col4row, row4col, scratch, 4, np.zeros(1, np.int8))
    out["warm_s"], out["warm_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["free_after_warm"] = int((col4row == -1).sum())
    t, c = time.perf_counter(), time.process_time()
    L._row_duals(graph, n, k, dummy, u, v, scratch)
    out["duals_s"], out["duals_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    state = [x.copy() for x in st]
    t, c = time.perf_counter(), time.process_time()
    L._search_all(graph, n, k, dummy, st, scratch, np.zeros(1, np.int8), -1)
    out["search_s"], out["search_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    total = L._total(graph, n, n, dummy, col4row)
    out["total_s"], out["total_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    # The counting copy from the same state.
    stats = np.zeros(8, np.int64)
    st2 = tuple(state)
    scratch2 = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
    t, c = time.perf_counter(), time.process_time()
    search_all(graph, n, k, dummy, st2, scratch2, stats)
    out["search_instrumented_s"], out["search_instrumented_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    assert np.array_equal(st2[2], col4row), "the counting copy must find the same matching"
    names = ["searches", "rows_scanned", "edges_read", "rows_regenerated", "edges_relaxed", "max_rows_one_search",
             "edges_read_beyond_prefix", "columns_touched"]
    out.update({nm: int(x) for nm, x in zip(names, stats)})
    out["total"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000")
    args = parser.parse_args()
    search_all = _instrumented()
    profile(300, search_all)  # compile outside the timings
    for n in (int(s) for s in args.sizes.split(",")):
        r = profile(n, search_all)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
