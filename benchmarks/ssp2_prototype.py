"""Prototype ``ssp2`` (issue 21; NOT a solver of the package): auction prices, then the exact ssp finish.

The default ``ssp`` spends its time in shortest-path searches for the rows that Jonker-Volgenant's
warm start leaves free (at 20,000 neurons and 40 inputs per neuron: 6,129 rows, ~3,700 rows scanned
per search; both grow with ``n``). This prototype first runs a Gauss-Seidel auction with epsilon
scaling on the same implicit graph (:mod:`sparsetopo._lap_implicit`, every row stored whole) to
get near-optimal column prices, then the default's exact pipeline from those prices:

1. the augmenting row reduction (``_warm_start``, zero increments, so every row it seats is tight);
2. every free column gets price 0 (complementary slackness of the asymmetric problem), row duals
   ``u_i = min_j (c_ij - v_j)`` are recomputed and rows whose column is no longer the minimum are
   set free, until no free column has a negative price;
3. the default's shortest-path searches (``_search_all``) for the rows left free.

Reduced costs stay non-negative and the matching tight, so the result is optimal; among equally
cheap matchings it is in general *not* ssp's (another tie breaking), so it is not the default.

Measured (2 cores, heavily loaded, 2026-12-02): the totals equal ssp's (5,000 neurons: 4755.765592682386
both), but it is not faster: the auction leaves priced columns free once the row reduction re-seats
the rows, and setting them to price 0 un-seats rows in a cascade (all 5,000 rows free after step 2),
so step 3 does all of ssp's work again. What would be needed: an auction whose prices end with every
free column at 0 (a forward-reverse auction for the asymmetric problem), or an exactness argument
that needs no final search. Kept as the measured record of that attempt.

    python benchmarks/ssp2_prototype.py [--sizes 5000,10000,20000] [--compare]

``--compare`` also runs the default solver on the same layers and prints both totals.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _kernels():
    import numba

    from sparsetopo import _lap_implicit as L

    L.kernels()
    edge = L._edge

    @numba.njit(nogil=True)
    def auction(graph, n, k, dummy_cost, v, scratch, eps0, factor, eps_min, stats):
        """Epsilon-scaling auction (minimisation: a bid lowers the column's price by w2 - w1 + eps)."""
        deg = graph[11]
        free = np.empty(n, np.int64)
        col4row = np.full(n, -1, np.int64)
        row4col = np.full(2 * n, -1, np.int64)
        eps = eps0
        while True:
            col4row[:] = -1
            row4col[:] = -1
            for i in range(n):
                free[i] = i
            head, tail, size = 0, n, n
            while size > 0:
                i = free[head % n]
                head += 1
                size -= 1
                w1 = dummy_cost - v[n + i]
                j1 = n + i
                w2 = np.inf
                for p in range(deg[i]):
                    j, c = edge(graph, i, p, k, scratch)
                    if c >= w2:  # prices are <= 0: no later edge is cheaper than w2
                        break
                    h = c - v[j]
                    if h < w2:
                        if h < w1:
                            w2 = w1
                            w1, j1 = h, j
                        else:
                            w2 = h
                stats[0] += 1
                if j1 < n:  # a private dummy has no competitor: its price stays
                    v[j1] -= (eps if w2 == np.inf else w2 - w1 + eps)
                owner = row4col[j1]
                if owner >= 0:
                    col4row[owner] = -1
                    free[tail % n] = owner
                    tail += 1
                    size += 1
                row4col[j1] = i
                col4row[i] = j1
            stats[1] += 1
            if eps <= eps_min:
                break
            eps = max(eps / factor, eps_min)

    @numba.njit(nogil=True)
    def settle(graph, n, k, dummy_cost, u, v, col4row, row4col, scratch, stats):
        """Free columns at price 0, row duals, rows whose column is not their minimum set free; repeat."""
        deg = graph[11]
        while True:
            changed = False
            for j in range(2 * n):
                if row4col[j] == -1 and v[j] != 0.0:
                    v[j] = 0.0
                    changed = True
            if not changed:
                break
            stats[2] += 1
            for i in range(n):
                best = dummy_cost - v[n + i]
                bj = n + i
                for p in range(deg[i]):
                    j, c = edge(graph, i, p, k, scratch)
                    if c >= best:
                        break
                    h = c - v[j]
                    if h < best:
                        best = h
                        bj = j
                u[i] = best
                j = col4row[i]
                if j >= 0 and j != bj:
                    # its own edge's value: tight only if equal to the minimum
                    if j >= n:
                        own = dummy_cost - v[j]
                    else:
                        own = np.inf
                        for p in range(deg[i]):
                            jj, c = edge(graph, i, p, k, scratch)
                            if jj == j:
                                own = c - v[j]
                                break
                    if own != best:
                        row4col[j] = -1
                        col4row[i] = -1
        return int((col4row == -1).sum())

    return auction, settle


def solve_ssp2(a, b, kernels, eps0=1 / 64, factor=8.0, eps_min=1e-9):
    """The prototype on int CSR masks ``a``, ``b``: (total, col4row, timings and counts)."""
    from sparsetopo import _lap_implicit as L
    from sparsetopo.nnstd.solvers import _empty_pairs

    auction, settle = kernels
    n = a.shape[0]
    a_ptr, b_ptr = a.indptr.astype(np.int64), b.indptr.astype(np.int64)
    a_idx, b_idx = a.indices.astype(np.int32), b.indices.astype(np.int32)
    sb = np.diff(b_ptr)
    forced = _empty_pairs(np.diff(a_ptr), sb)
    order = np.argsort(b_idx, kind="stable")
    bt_idx = np.repeat(np.arange(n, dtype=np.int32), sb)[order]
    bt_ptr = np.zeros(a.shape[1] + 1, dtype=np.int64)
    np.cumsum(np.bincount(b_idx, minlength=a.shape[1]), out=bt_ptr[1:])
    info = {}
    t = time.perf_counter()
    build, _ = L.kernels()
    # Whole rows (memory is not the prototype's point): the longest row's length, then every row to it.
    k = int(build(a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, 1, 1.0)[3].max(initial=1))
    pcol, pcost, plen, deg = build(a_ptr, a_idx, bt_ptr, bt_idx, sb, forced, k, 1.0)
    info["prefix_s"] = time.perf_counter() - t
    graph = (a_ptr, a_idx, bt_ptr, bt_idx, b_ptr, b_idx, sb, forced, pcol, pcost, plen, deg)
    m = 2 * n
    scratch = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
    u, v = np.zeros(n), np.zeros(m)
    col4row, row4col = np.full(n, -1, np.int64), np.full(m, -1, np.int64)
    stats = np.zeros(3, np.int64)
    t = time.perf_counter()
    auction(graph, n, k, 1.0, v, scratch, eps0, factor, eps_min, stats)
    info["auction_s"] = time.perf_counter() - t
    info["bids"], info["phases"] = int(stats[0]), int(stats[1])
    t = time.perf_counter()
    L._warm_start(graph, n, k, 1.0, v, col4row, row4col, scratch, 4, np.zeros(1, np.int8))
    info["free_after_arr"] = int((col4row == -1).sum())
    info["free_after_settle"] = settle(graph, n, k, 1.0, u, v, col4row, row4col, scratch, stats)
    info["settle_rounds"] = int(stats[2])
    info["arr_settle_s"] = time.perf_counter() - t
    t = time.perf_counter()
    st = (u, v, col4row, row4col, np.full(m, np.inf), np.full(m, -1, np.int64), np.zeros(m, np.bool_),
          np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m), np.empty(m, np.bool_),
          np.full(m, -1, np.int64))
    assert L._search_all(graph, n, k, 1.0, st, scratch, np.zeros(1, np.int8), -1)
    info["search_s"] = time.perf_counter() - t
    total = L._total(graph, n, a.shape[1], 1.0, col4row)
    return total, col4row, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--factor", type=float, default=8.0)
    parser.add_argument("--eps0", type=float, default=1 / 64)
    parser.add_argument("--eps-min", type=float, default=1e-9)
    args = parser.parse_args()
    from sparsetopo.nnstd.solvers import _solve_ssp, int_csr
    from sparsetopo.truly_sparse.model import sample_topology

    kernels = _kernels()
    tiny = int_csr(sample_topology([(60, 60)], [600], seed=0)[0])
    solve_ssp2(tiny, tiny, kernels)
    for n in (int(s) for s in args.sizes.split(",")):
        a, b = (int_csr(sample_topology([(n, n)], [40 * n], seed=s)[0]) for s in (0, 1))
        t = time.perf_counter()
        total, _col, info = solve_ssp2(a, b, kernels, eps0=args.eps0, factor=args.factor, eps_min=args.eps_min)
        line = f"n={n} ssp2 {time.perf_counter() - t:.2f} s total={total!r} " + " ".join(
            f"{key}={val:.2f}" if isinstance(val, float) else f"{key}={val}" for key, val in info.items())
        if args.compare:
            t = time.perf_counter()
            ref, _ = _solve_ssp(a, b)
            line += f" | ssp {time.perf_counter() - t:.2f} s total={ref!r} diff={total - ref:.3g}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
