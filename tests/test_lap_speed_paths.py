"""The implicit ``ssp`` solver's faster paths (issue 21): threaded prefixes, partial sorting, int32 indices.

Each path must leave the matching and the total exactly as the explicit solver's
(:func:`sparsetopo.nnstd.solvers._solve_ssp_explicit`), so these tests compare bit for bit.
"""

import numpy as np
import pytest
import scipy.sparse as ss

from sparsetopo import _lap_implicit
from sparsetopo.nnstd.solvers import _empty_pairs, _fill_dummies, _ned, _solve_ssp, _solve_ssp_explicit, int_csr
from sparsetopo.topology import Topology, perturb


def _pair(rng, n, n_in, d, kind):
    a = ss.random(n, n_in, density=d, random_state=int(rng.integers(1 << 30)), format="csr") != 0
    if kind == "independent":
        b = ss.random(n, n_in, density=d, random_state=int(rng.integers(1 << 30)), format="csr") != 0
    else:
        b = perturb(Topology([a]), 0.1, seed=int(rng.integers(1 << 30)))[0]
    return int_csr(ss.csr_matrix(a)), int_csr(ss.csr_matrix(b))


def _inverted(b, n_in):
    order = np.argsort(b.indices, kind="stable")
    bt_idx = np.repeat(np.arange(b.shape[0], dtype=np.int32), np.diff(b.indptr))[order]
    bt_ptr = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(np.bincount(b.indices, minlength=n_in), out=bt_ptr[1:])
    return bt_ptr, bt_idx


def _build(a, b, k, threads):
    _lap_implicit.kernels()
    bt_ptr, bt_idx = _inverted(b, a.shape[1])
    sb = np.diff(b.indptr).astype(np.int64)
    forced = _empty_pairs(np.diff(a.indptr), sb)
    return _lap_implicit._prefixes(a.indptr.astype(np.int64), a.indices, bt_ptr, bt_idx, sb, forced, k, 1.0,
                                   threads=threads)


def _reference_prefix(a, b, i, k):
    """Row ``i``'s first ``k`` edges in the explicit solver's order: cost, column ``i`` first among
    its ties, then column -- from the dense product, with numpy."""
    sa, sb = np.diff(a.indptr).astype(np.int64), np.diff(b.indptr).astype(np.int64)
    inter = np.asarray((a[i] @ b.T).todense()).ravel().astype(np.int64)
    cols = np.flatnonzero(inter)
    costs = _ned(sa[i], sb[cols], inter[cols])
    order = np.lexsort((cols, cols != i, costs))
    return cols[order][:k], costs[order][:k], len(cols)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_prefixes_are_each_rows_cheapest_edges_in_search_order(k):
    rng = np.random.default_rng(11)
    a, b = _pair(rng, 150, 60, 0.15, "independent")  # ~35 overlaps per row, many tied costs
    pcol, pcost, plen, deg = _build(a, b, k, threads=1)
    for i in range(a.shape[0]):
        cols, costs, m = _reference_prefix(a, b, i, k)
        if np.diff(a.indptr)[i] == 0:
            continue  # an empty neuron: a forced pair or no edge, not an overlap
        assert deg[i] == m and plen[i] == min(k, m), i
        np.testing.assert_array_equal(pcol[i * k:i * k + plen[i]], cols, err_msg=f"row {i}")
        np.testing.assert_array_equal(pcost[i * k:i * k + plen[i]], costs, err_msg=f"row {i}")


def test_threaded_prefixes_equal_one_thread():
    rng = np.random.default_rng(12)
    a, b = _pair(rng, 301, 90, 0.1, "independent")
    one = _build(a, b, 8, threads=1)
    for threads in (2, 3, 7):
        many = _build(a, b, 8, threads=threads)
        for x, y in zip(one, many):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("many_threads", [False, True])
def test_fast_paths_give_the_explicit_solvers_matching_bit_for_bit(monkeypatch, many_threads):
    """Layers from tiny to a few hundred neurons, sparse to half full, independent and near copies; the
    default prefix, prefixes shorter than most rows, and threaded building."""
    if many_threads:
        monkeypatch.setattr(_lap_implicit, "PREFIX_THREADS_FROM", 1)
        monkeypatch.setattr(_lap_implicit, "PREFIX_THREADS", 3)
    rng = np.random.default_rng(14 + many_threads)
    for trial in range(60):
        n = int(rng.integers(2, 300))
        n_in = int(rng.integers(2, 200))
        d = float(rng.choice([0.01, 0.03, 0.1, 0.4]))
        a, b = _pair(rng, n, n_in, d, ("independent", "perturbed")[trial % 2])
        t_exp, c_exp = _solve_ssp_explicit(a, b)
        t_def, c_def = _solve_ssp(a, b)
        np.testing.assert_array_equal(c_def, c_exp, err_msg=f"trial {trial}")
        assert t_def == t_exp, trial
        sa, sb = np.diff(a.indptr), np.diff(b.indptr)
        for prefix in (2, 16):
            col, total = _lap_implicit.solve_implicit(a.indptr, a.indices, b.indptr, b.indices, n_in,
                                                      _empty_pairs(sa, sb), prefix=prefix)
            np.testing.assert_array_equal(_fill_dummies(col), c_exp, err_msg=f"trial {trial}, prefix {prefix}")
            assert total == t_exp, (trial, prefix)


def test_int64_and_int32_indices_give_the_same_result():
    rng = np.random.default_rng(15)
    a, b = _pair(rng, 120, 80, 0.1, "independent")
    sa, sb = np.diff(a.indptr), np.diff(b.indptr)
    forced = _empty_pairs(sa, sb)
    r32 = _lap_implicit.solve_implicit(a.indptr, a.indices, b.indptr, b.indices, 80, forced)
    r64 = _lap_implicit.solve_implicit(*(x.astype(np.int64) for x in (a.indptr, a.indices, b.indptr, b.indices)),
                                       80, forced)
    np.testing.assert_array_equal(r32[0], r64[0])
    assert r32[1] == r64[1]
