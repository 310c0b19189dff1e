"""The exact sparse assignment solver (solver="ssp", the default) against scipy."""

import numpy as np
import pytest
import scipy.sparse as ss
from scipy.optimize import linear_sum_assignment

from sparsetopo import _lap
from sparsetopo.nnstd import layer_cost_matrix, match_layer, nnstd
from sparsetopo.topology import Topology, erdos_renyi, perturb


def _random_graph(rng, n, density, levels=None):
    """A sparse cost graph (at most one entry per column in a row), costs in [0, 1), zeros kept."""
    rows, cols = np.nonzero(rng.random((n, n)) < density)
    costs = rng.integers(0, levels, size=len(rows)) / levels if levels else rng.random(len(rows))
    return ss.csr_matrix((costs, (rows, cols)), shape=(n, n))


@pytest.mark.parametrize("levels", [None, 3])  # continuous costs, and heavy ties
def test_sparse_lap_equals_scipy_on_the_dense_equivalent(levels):
    rng = np.random.default_rng(0)
    for trial in range(150):
        n = int(rng.integers(1, 40))
        g = _random_graph(rng, n, float(rng.choice([0.05, 0.2, 0.6])), levels)
        col, total = _lap.solve_sparse_lap(g.indptr, g.indices, g.data, 1.0)
        dense = np.ones((n, n))  # non-edges cost the dummy's 1
        coo = g.tocoo()
        dense[coo.row, coo.col] = coo.data
        r, c = linear_sum_assignment(dense)
        assert total == pytest.approx(dense[r, c].sum(), abs=1e-9), trial
        real = col < n
        assert len(set(col[real])) == real.sum()  # each real column at most once
        recomputed = sum(dense[i, col[i]] if col[i] < n else 1.0 for i in range(n))
        assert recomputed == pytest.approx(total, abs=1e-9)


def _layers(rng, trial):
    n = int(rng.integers(1, 80))
    d = float(rng.choice([0.01, 0.03, 0.1, 0.3]))
    a = erdos_renyi([n, n], density=d, seed=trial, dense_output=False)[0]
    kind = trial % 3
    if kind == 0:
        b = erdos_renyi([n, n], density=d, seed=trial + 10_000, dense_output=False)[0]
    elif kind == 1:
        b = perturb(Topology([a]), 0.2, seed=trial)[0]
    else:  # many empty neurons on both sides, in different places
        a = a.multiply(rng.random((n, 1)) < 0.6).tocsr()
        b = perturb(Topology([a]), 0.3, seed=trial)[0].multiply(rng.random((n, 1)) < 0.6).tocsr()
    return a, b


def test_ssp_layer_minimum_equals_scipy_dense_and_sparse():
    rng = np.random.default_rng(1)
    for trial in range(300):
        a, b = _layers(rng, trial)
        n = a.shape[0]
        v_ssp, col = match_layer(a, b, solver="ssp")
        v_dense, _ = match_layer(a, b, solver="dense")
        v_sparse, _ = match_layer(a, b, solver="sparse")
        assert v_ssp == pytest.approx(v_dense, abs=1e-12) and v_ssp == pytest.approx(v_sparse, abs=1e-12), trial
        assert sorted(col) == list(range(n))  # a permutation
        cost = layer_cost_matrix(a, b)
        assert cost[np.arange(n), col].sum() / n == pytest.approx(v_ssp, abs=1e-12)  # the value of what it returns


def test_auto_uses_ssp_and_layer0_matches_the_reference_direction():
    ta = erdos_renyi([120, 100, 100, 10], density=0.04, seed=0)
    tb = erdos_renyi([120, 100, 100, 10], density=0.04, seed=1)
    auto = nnstd(ta, tb)
    assert auto.solvers == ("ssp",) * 3
    dense = nnstd(ta, tb, solver="dense")
    assert auto.per_layer[0] == pytest.approx(dense.per_layer[0], abs=1e-12)
    assert np.all((auto.per_layer >= 0) & (auto.per_layer <= 1))
    same = nnstd(ta, ta)
    np.testing.assert_array_equal(same.per_layer, np.zeros(3))


def test_kernel_releases_the_gil_and_caches():
    kernel = _lap.solver()
    assert kernel.targetoptions.get("nogil") is True and kernel._cache is not None


def test_unwritable_cache_directories_are_said_once(monkeypatch):
    from sparsetopo import _numba_cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(_numba_cache, "_writable", lambda path: False)
    with pytest.warns(RuntimeWarning, match="the compiled NNSTD solver are not cached: each process compiles"):
        _lap._solver.__wrapped__()  # the set-up itself, past the lock and the cache


def test_a_read_only_package_caches_kernels_in_the_user_cache(monkeypatch, tmp_path):
    """Both compiled parts (the NNSTD solver, the truly sparse kernels) choose their cache here."""
    import os

    from sparsetopo import _numba_cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    package = tmp_path / "site-packages" / "sparsetopo"
    monkeypatch.setattr(_numba_cache, "_writable", lambda path: not str(path).startswith(str(package)))
    try:
        _numba_cache.choose_cache_dir(package, "the kernels")
        assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "sparsetopo" / "numba")
    finally:  # numba re-read its config for the choice: let it forget the test's directory
        import numba

        os.environ.pop("NUMBA_CACHE_DIR", None)
        numba.core.config.reload_config()
