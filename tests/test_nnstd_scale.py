"""The implicit-graph ``ssp`` solver (:mod:`sparsetopo._lap_implicit`): the explicit solver's matching
and total to the last bit, whatever part of each row it keeps."""

import numpy as np
import pytest
import scipy.sparse as ss

from sparsetopo import _lap_implicit
from sparsetopo.nnstd import layer_cost_matrix, match_layer
from sparsetopo.nnstd.solvers import _empty_pairs, _fill_dummies, _solve_ssp, _solve_ssp_explicit, int_csr
from sparsetopo.topology import Topology, erdos_renyi, perturb


def _pair(rng, trial):
    """Layers of many kinds: independent, near copies, many empty neurons, tiny and crowded."""
    n = int(rng.integers(1, 120))
    n_in = int(rng.integers(1, 120))
    d = float(rng.choice([0.01, 0.05, 0.2, 0.6]))
    a = ss.random(n, n_in, density=d, random_state=trial, format="csr") != 0
    kind = trial % 3
    if kind == 0:
        b = ss.random(n, n_in, density=d, random_state=trial + 10_000, format="csr") != 0
    elif kind == 1:
        b = perturb(Topology([a]), 0.2, seed=trial)[0]
    else:
        a = a.multiply(rng.random((n, 1)) < 0.6).tocsr()
        b = perturb(Topology([a]), 0.3, seed=trial)[0].multiply(rng.random((n, 1)) < 0.6).tocsr()
    return int_csr(ss.csr_matrix(a)), int_csr(ss.csr_matrix(b))


def _implicit(a, b, prefix):
    sa, sb = np.diff(a.indptr), np.diff(b.indptr)
    col, total = _lap_implicit.solve_implicit(
        a.indptr.astype(np.int64), a.indices.astype(np.int64), b.indptr.astype(np.int64),
        b.indices.astype(np.int64), a.shape[1], _empty_pairs(sa, sb), prefix=prefix)
    return total, _fill_dummies(col)


@pytest.mark.parametrize("prefix", [1, 3, _lap_implicit.PREFIX])  # 1 and 3: most rows generated again
def test_implicit_equals_the_explicit_solver_bit_for_bit(prefix):
    rng = np.random.default_rng(7)
    for trial in range(200):
        a, b = _pair(rng, trial)
        t_exp, c_exp = _solve_ssp_explicit(a, b)
        t_imp, c_imp = _implicit(a, b, prefix)
        np.testing.assert_array_equal(c_imp, c_exp, err_msg=f"trial {trial}")
        assert t_imp == t_exp, trial  # the same float, not merely close


def test_default_ssp_is_the_implicit_solver_and_exact():
    rng = np.random.default_rng(3)
    for trial in range(60):
        a, b = _pair(rng, trial)
        total, col = _solve_ssp(a, b)
        assert (total, col.tolist()) == (lambda r: (r[0], r[1].tolist()))(_solve_ssp_explicit(a, b))
        value, _ = match_layer(a, b, solver="dense")
        assert total / a.shape[0] == pytest.approx(value, abs=1e-12)
        cost = layer_cost_matrix(a, b)
        assert cost[np.arange(a.shape[0]), col].sum() == pytest.approx(total, abs=1e-9)


def test_a_dense_layer_keeps_its_neurons_in_place():
    """Every pairing of two full layers costs 0: the tie rule keeps the identity."""
    a = int_csr(ss.csr_matrix(np.ones((30, 12), dtype=bool)))
    total, col = _solve_ssp(a, a)
    assert total == 0.0 and col.tolist() == list(range(30))


def test_prefix_must_be_positive():
    a = int_csr(ss.csr_matrix(np.eye(3, dtype=bool)))
    with pytest.raises(ValueError, match="prefix must be >= 1; got 0"):
        _lap_implicit.solve_implicit(a.indptr, a.indices, a.indptr, a.indices, 3, np.full(3, -1), prefix=0)


def test_a_wide_sparse_layer_pair():
    """Layers as the scale bench draws them (epsilon 20), small enough for the explicit solver."""
    ta = erdos_renyi([3000, 3000], epsilon=20, seed=0, dense_output=False)
    tb = erdos_renyi([3000, 3000], epsilon=20, seed=1, dense_output=False)
    a, b = int_csr(ta[0]), int_csr(tb[0])
    assert _solve_ssp(a, b)[0] == _solve_ssp_explicit(a, b)[0]
