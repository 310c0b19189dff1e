import itertools

import numpy as np
import pytest
import scipy.sparse as ss
from scipy.optimize import linear_sum_assignment

from conftest import random_topology
from sparsetopo.nnstd import layer_cost_matrix, load_matrix, match_layer, nnstd, pairwise_nnstd, save_matrix
from sparsetopo.topology import Topology, erdos_renyi, perturb


# ---------------------------------------------------------------- references
def reference_ned(a: set, b: set) -> float:
    """Normalized edit distance exactly as the paper's code: int / int."""
    if not a and not b:
        return 0
    if not (a & b):
        return 1
    return (len(a - b) + len(b - a)) / len(a | b)


def reference_nnstd(ta: Topology, tb: Topology) -> np.ndarray:
    """Set operations and a Python double loop, as the reference implementation."""
    out = []
    perm = None
    for la, lb in zip(ta.to_dense(), tb.to_dense()):
        if perm is not None:
            lb = lb[:, perm]  # B's input perm[i] becomes input i
        sets_a = [set(np.flatnonzero(r)) for r in la]
        sets_b = [set(np.flatnonzero(r)) for r in lb]
        cost = np.zeros((len(sets_a), len(sets_b)))
        for i, sa in enumerate(sets_a):
            for j, sb in enumerate(sets_b):
                cost[i, j] = reference_ned(sa, sb)
        row, col = linear_sum_assignment(cost)
        out.append(cost[row, col].sum() / len(sets_a))
        perm = col
    return np.array(out)


def brute_force_layer(la: np.ndarray, lb: np.ndarray) -> float:
    n = la.shape[0]
    cost = np.array([[reference_ned(set(np.flatnonzero(x)), set(np.flatnonzero(y))) for y in lb] for x in la])
    return min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n))) / n


# -------------------------------------------------------------------- tests
def test_ned_cost_matrix_values():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1]])
    c = layer_cost_matrix(ss.csr_matrix(a), ss.csr_matrix(b))
    # {0,1} vs {0,2}: sym diff 2, union 3; {} vs {}: 0; disjoint: 1
    assert c[0, 0] == 2 / 3
    assert c[1, 1] == 0.0
    assert c[0, 2] == 1.0 and c[1, 0] == 1.0
    assert c[2, 0] == 1 / 2


@pytest.mark.parametrize("seed", range(6))
def test_brute_force_every_layer(seed):
    rng = np.random.default_rng(seed)
    sizes = [6, 7, 5, 4]
    ta = random_topology(rng, sizes, 0.35, empty_rows=1)
    tb = random_topology(rng, sizes, 0.35)
    for solver in ("dense", "sparse"):
        res = nnstd(ta, tb, solver=solver)
        perm = None
        for k, (la, lb) in enumerate(zip(ta.to_dense(), tb.to_dense())):
            if perm is not None:
                lb = lb[:, perm]
            assert res.per_layer[k] == pytest.approx(brute_force_layer(la, lb), abs=1e-12)
            perm = res.matchings[k]


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_pure_python_reference(seed):
    rng = np.random.default_rng(100 + seed)
    sizes = [30, 40, 35, 25, 5]
    ta = random_topology(rng, sizes, 0.08, empty_rows=2)
    tb = perturb(ta, 0.3, seed=seed) if seed % 2 else random_topology(rng, sizes, 0.08, empty_rows=3)
    ours = nnstd(ta, tb, solver="dense", symmetric=False)
    ref = reference_nnstd(ta, tb)
    np.testing.assert_allclose(ours.per_layer, ref, rtol=0, atol=1e-12)
    assert ours.value == pytest.approx(ref.mean(), abs=1e-12)


def test_permuting_hidden_neurons_gives_zero():
    rng = np.random.default_rng(1)
    ta = random_topology(rng, [20, 30, 25, 6], 0.15)
    layers = ta.to_dense()
    p1, p2 = rng.permutation(30), rng.permutation(25)
    permuted = [layers[0][p1], layers[1][p2][:, p1], layers[2][:, p2]]
    tb = Topology.from_masks(permuted)
    assert tb != ta
    res = nnstd(ta, tb)
    np.testing.assert_array_equal(res.per_layer, 0.0)
    # Matching recovers the permutation (row i of A is row p^-1(i) of B).
    assert np.array_equal(p1[res.matchings[0]], np.arange(30))


def test_permuting_input_neurons_is_seen():
    rng = np.random.default_rng(2)
    ta = random_topology(rng, [20, 30, 6], 0.2)
    layers = ta.to_dense()
    q = rng.permutation(20)
    tb = Topology.from_masks([layers[0][:, q], layers[1]])
    assert nnstd(ta, tb).per_layer[0] > 0.1


@pytest.mark.parametrize("seed", range(4))
def test_sparse_solver_same_minimum_per_layer(seed):
    rng = np.random.default_rng(200 + seed)
    n_in, n = 60, 80
    a = ss.csr_matrix(rng.random((n, n_in)) < 0.05)
    b = ss.csr_matrix(rng.random((n, n_in)) < 0.05)
    dense_value, dense_col = match_layer(a, b, solver="dense")
    sparse_value, sparse_col = match_layer(a, b, solver="sparse")
    assert sparse_value == pytest.approx(dense_value, abs=1e-12)
    assert sorted(sparse_col) == list(range(n))  # a permutation
    # the value returned is the cost of the matching returned
    cost = layer_cost_matrix(a, b)
    assert cost[np.arange(n), sparse_col].sum() / n == pytest.approx(sparse_value, abs=1e-12)


def test_sparse_solver_whole_network_on_larger_topologies():
    ta = erdos_renyi([300, 300, 300, 10], density=0.01, seed=0)
    tb = erdos_renyi([300, 300, 300, 10], density=0.01, seed=1)
    d = nnstd(ta, tb, solver="dense")
    s = nnstd(ta, tb, solver="sparse")
    assert s.per_layer[0] == pytest.approx(d.per_layer[0], abs=1e-12)
    # later layers may differ through ties, never by much, and stay in range
    assert np.all((s.per_layer >= 0) & (s.per_layer <= 1))
    assert s.solvers == ("sparse",) * 3
    # auto uses the exact sparse solver: the same layer-0 minimum
    auto = nnstd(ta, tb)
    assert auto.solvers == ("ssp",) * 3 and auto.per_layer[0] == pytest.approx(d.per_layer[0], abs=1e-12)


def test_identical_and_disjoint_topologies():
    t = erdos_renyi([50, 40, 30, 5], epsilon=3, seed=0)
    assert nnstd(t, t).value == 0.0
    a = Topology.from_masks([np.eye(4, dtype=bool)])
    b = Topology.from_masks([np.roll(np.eye(4, dtype=bool), 1, axis=1)])
    # one layer whose rows are each single inputs: a permutation maps one onto the other
    assert nnstd(a, b).value == 0.0
    c = Topology.from_masks([np.ones((4, 4), dtype=bool)])
    assert nnstd(a, c).value == pytest.approx(3 / 4)


def test_identity_outputs():
    rng = np.random.default_rng(3)
    ta = random_topology(rng, [10, 12, 4], 0.4)
    layers = ta.to_dense()
    tb = Topology.from_masks([layers[0], layers[1][[1, 0, 2, 3]]])  # swap two class units
    assert nnstd(ta, tb).per_layer[1] == 0.0
    res = nnstd(ta, tb, match_outputs=False)
    assert res.per_layer[1] > 0 and res.solvers[-1] == "identity"
    assert np.array_equal(res.matchings[-1], np.arange(4))


def test_shape_mismatch_and_bad_solver():
    a = erdos_renyi([10, 8, 2], epsilon=2, seed=0)
    b = erdos_renyi([10, 9, 2], epsilon=2, seed=0)
    with pytest.raises(ValueError, match=r"different shapes.*\(8, 10\).*\(9, 10\)"):
        nnstd(a, b)
    with pytest.raises(ValueError, match="solver must be one of auto, ssp, dense, sparse; got 'fast'"):
        nnstd(a, a, solver="fast")


def test_pairwise_matrix_properties_and_parallel_equality(tmp_path):
    base = erdos_renyi([100, 80, 60, 5], epsilon=4, seed=0)
    tops = [base] + [perturb(base, 0.1 * i, seed=i) for i in range(1, 5)]
    d1 = pairwise_nnstd(tops, n_jobs=1)
    d2 = pairwise_nnstd(tops, n_jobs=2)
    assert d1.shape == (5, 5, 3)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(d1, d1.transpose(1, 0, 2))
    assert np.all(d1[np.arange(5), np.arange(5)] == 0)
    assert np.all((d1 >= 0) & (d1 <= 1))
    # more perturbation, further from the base
    assert np.all(np.diff(d1[0, :, 0]) > 0)
    names = [f"n{i}" for i in range(5)]
    save_matrix(d1, names, npz=str(tmp_path / "d.npz"), csv=str(tmp_path / "d.csv"))
    back, back_names = load_matrix(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(back, d1)
    assert back_names == names
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == "a,b,layer,nnstd"
    assert len(lines) == 1 + 5 * 5 * 5  # 3 layers, "mean" (over the sparse layers) and "mean_all" (issue 19)
    rows = [line.split(",") for line in lines[1:]]
    mean_01 = next(float(r[3]) for r in rows if r[:3] == ["n0", "n1", "mean"])
    all_01 = next(float(r[3]) for r in rows if r[:3] == ["n0", "n1", "mean_all"])
    assert mean_01 == pytest.approx(d1.value[0, 1]) and all_01 == pytest.approx(d1.mean_all[0, 1])
    with pytest.raises(ValueError, match="same layer shapes"):
        pairwise_nnstd([base, erdos_renyi([100, 81, 60, 5], epsilon=4, seed=0)])


def test_topology_and_nnstd_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, sparsetopo, sparsetopo.topology, sparsetopo.nnstd, sparsetopo.cli; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nnstd_is_direction_independent_and_matchings_go_from_a_to_b():
    # Random topologies with many ties (few inputs per neuron) differ by direction beyond layer 0.
    ta = erdos_renyi([60, 60, 60, 60, 5], density=0.03, seed=3)
    tb = erdos_renyi([60, 60, 60, 60, 5], density=0.03, seed=4)
    ab, ba = nnstd(ta, tb, solver="dense"), nnstd(tb, ta, solver="dense")
    np.testing.assert_array_equal(ab.per_layer, ba.per_layer)
    # the directed values are what the reference computes in each direction
    fwd, back = nnstd(ta, tb, solver="dense", symmetric=False), nnstd(tb, ta, solver="dense", symmetric=False)
    assert fwd.per_layer[0] == pytest.approx(back.per_layer[0], abs=1e-12)  # layer 0: the same minimum
    np.testing.assert_array_equal(ab.per_layer, (fwd if ta.fingerprint() < tb.fingerprint() else back).per_layer)
    # matchings map A's neurons to B's: layer 0's cost recomputed from it is the layer-0 distance
    cost = layer_cost_matrix(ta[0], tb[0])
    assert cost[np.arange(60), ab.matchings[0]].mean() == pytest.approx(ab.per_layer[0], abs=1e-12)
    assert cost.T[np.arange(60), ba.matchings[0]].mean() == pytest.approx(ba.per_layer[0], abs=1e-12)
