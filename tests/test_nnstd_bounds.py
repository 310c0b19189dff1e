"""The bounds mode of NNSTD (issue 21 item 2): ``nnstd(..., max_seconds=T)`` and the stopped ``ssp`` search.

The stops are made deterministic with the search's private ``max_aug`` / ``stop_after`` knob (stop
after that many augmenting paths); the timer path is checked with budgets far from the layer's time.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as ss

from sparsetopo import erdos_renyi, nnstd, pairwise_nnstd, perturbation_chain
from sparsetopo.errors import SparsetopoError
from sparsetopo.nnstd import NNSTDResult, layer_cost_matrix, load_matrix, save_matrix
from sparsetopo.nnstd.core import STATUSES, _match_layers, _reindex_inputs
from sparsetopo.nnstd.solvers import _empty_pairs, _solve_dense, _solve_ssp, int_csr, solve_ssp_bounded
from sparsetopo.topology import Topology


def _layer(rng, n, n_in, density):
    m = ss.random(n, n_in, density=density, random_state=rng, format="csr").astype(bool)
    return int_csr(m)


def _perturbed(rng, m, fraction):
    """``m`` with about ``fraction`` of its connections moved to random positions."""
    d = m.toarray().astype(bool)
    on = np.argwhere(d)
    move = on[rng.random(len(on)) < fraction]
    d[move[:, 0], move[:, 1]] = False
    d[move[:, 0], rng.integers(0, d.shape[1], len(move))] = True
    return int_csr(ss.csr_matrix(d))


def _pairs(seed=0, count=150):
    """Small random layer pairs: various sizes and densities (empty neurons included), identical,
    perturbed, permuted-perturbed and independent."""
    rng = np.random.default_rng(seed)
    for t in range(count):
        n, n_in = int(rng.integers(3, 70)), int(rng.integers(3, 90))
        density = float(rng.choice([0.02, 0.05, 0.1, 0.3]))
        a = _layer(rng, n, n_in, density)
        kind = t % 4
        if kind == 0:
            b = a.copy()
        elif kind == 1:
            b = _perturbed(rng, a, 0.2)
        elif kind == 2:
            b = _perturbed(rng, a, 0.5)[rng.permutation(n)]
        else:
            b = _layer(rng, n, n_in, density)
        yield a, b


def _cost_of(a, b, col):
    return float(layer_cost_matrix(a, b)[np.arange(a.shape[0]), col].sum())


def test_stopped_search_brackets_the_minimum():
    stopped = 0
    for a, b in _pairs():
        exact = _solve_dense(a, b)[0]
        ssp_total, ssp_col = _solve_ssp(a, b)
        for max_aug in range(0, 12):
            upper, col, lower, finished = solve_ssp_bounded(a, b, None, max_aug)
            assert np.array_equal(np.sort(col), np.arange(a.shape[0]))  # a complete one-to-one matching
            assert lower <= exact + 1e-9
            assert exact <= upper + 1e-9
            assert upper == pytest.approx(_cost_of(a, b, col), abs=1e-9)  # the matching returned
            if finished:
                assert lower == upper == ssp_total  # bit for bit the exact solver's
                assert np.array_equal(col, ssp_col)
                break
            stopped += 1
    assert stopped > 100  # the stops really happened: the bounds were tested, not only exact runs


def test_no_time_left_stops_before_the_warm_start():
    """With no time left nothing runs: the bound is the one of zero prices (each row's cheapest
    cost, at most its dummy's 1) and the matching is the greedy completion alone."""
    checked = 0
    for a, b in _pairs(seed=3, count=60):
        upper, col, lower, finished = solve_ssp_bounded(a, b, 0.0)
        costs = layer_cost_matrix(a, b)
        exact = _solve_dense(a, b)[0]
        if costs.min(axis=1).max(initial=0.0) == 0.0 and exact == 0.0:
            continue  # nothing to bound: every row has a free zero-cost partner
        assert not finished
        assert np.array_equal(np.sort(col), np.arange(a.shape[0]))
        # zero prices: row i's bound is its cheapest cost, except that an empty neuron has only
        # the empty partner pairing assigned to it (or its dummy)
        forced = _empty_pairs(np.diff(a.indptr), np.diff(b.indptr))
        empty = np.diff(a.indptr) == 0
        rows = np.where(empty, np.where(forced >= 0, 0.0, 1.0), np.minimum(costs.min(axis=1), 1.0))
        assert lower == pytest.approx(rows.sum(), abs=1e-9)
        assert lower <= exact + 1e-9 <= upper + 2e-9
        assert upper == pytest.approx(_cost_of(a, b, col), abs=1e-9)
        checked += 1
    assert checked > 30


def test_warm_start_stops_on_the_flag():
    """A stop flag already set keeps the warm start from seating any row (the kernel checks it per row)."""
    from sparsetopo import _lap_implicit as L

    a, b = next(_pairs(seed=4, count=4))
    a_ptr, b_ptr = a.indptr.astype(np.int64), b.indptr.astype(np.int64)
    graph, k = L._graph(a_ptr, a.indices, b_ptr, b.indices, a.shape[1],
                        _empty_pairs(np.diff(a_ptr), np.diff(b_ptr)), None, 1.0)
    L.kernels()
    n = a.shape[0]
    for flag in (1, 0):
        v, col4row, row4col = np.zeros(2 * n), np.full(n, -1, np.int64), np.full(2 * n, -1, np.int64)
        scratch = (np.full(1, -1, np.int64), np.zeros(n, np.int32), np.empty(n, np.int64), np.empty(n))
        L._warm_start(graph, n, k, 1.0, v, col4row, row4col, scratch, 4, np.full(1, flag, np.int8))
        seated = int((col4row >= 0).sum())
        assert seated == 0 if flag else seated > n // 2  # unset, it seats most rows (as the exact solver does)
        assert np.array_equal(row4col[col4row[col4row >= 0]], np.flatnonzero(col4row >= 0))
        assert (v <= 0).all()


def _chain_pair(seed, sizes=(40, 50, 60, 30, 10), density=0.1):
    a = erdos_renyi(list(sizes), density=density, seed=seed)
    b = perturbation_chain(a, 2, 0.3, seed=seed + 100)[1] if seed % 2 else erdos_renyi(list(sizes), density=density,
                                                                                         seed=seed + 1)
    return a, b


def test_layers_after_a_bounded_one_are_conditional_and_bound_their_own_assignment():
    seen = set()
    rng = np.random.default_rng(5)
    for seed in range(12):
        a, b = _chain_pair(seed)
        stop_after = [int(x) for x in rng.integers(-1, 3, len(a))]
        res = _match_layers(a, b, "ssp", True, stop_after=stop_after)
        seen.update(res.status)
        upstream = False
        previous = None
        for k in range(len(a)):
            la = int_csr(a.layers[k])
            lb = _reindex_inputs(int_csr(b.layers[k]), previous, a.blocks[k])
            n = la.shape[0]
            given = _solve_dense(la, lb)[0] / n  # this layer's minimum given the matching carried in
            s = res.status[k]
            assert s == (("conditional" if s == "conditional" else "conditional-bounded") if upstream
                         else ("exact" if s == "exact" else "bounded"))
            assert res.lower[k] <= given + 1e-12 <= res.upper[k] + 2e-12
            assert res.per_layer[k] == res.upper[k]
            assert res.per_layer[k] == pytest.approx(_cost_of(la, lb, res.matchings[k]) / n, abs=1e-12)
            if s in ("exact", "conditional"):
                assert res.lower[k] == res.upper[k] == res.per_layer[k]
                assert res.per_layer[k] == pytest.approx(given, abs=1e-12)
            upstream = upstream or s in ("bounded", "conditional-bounded")
            previous = res.matchings[k]
        assert res.exact == all(s == "exact" for s in res.status)
    assert seen == set(STATUSES)  # every status was exercised


def test_generous_budget_is_bit_identical_to_no_budget():
    for seed in range(4):
        a, b = _chain_pair(seed)
        for match_outputs in (True, False):
            plain = nnstd(a, b, match_outputs=match_outputs)
            timed = nnstd(a, b, match_outputs=match_outputs, max_seconds=600)
            assert timed.exact and timed.status == ("exact",) * len(a)
            assert np.array_equal(plain.per_layer, timed.per_layer)
            assert np.array_equal(timed.lower, timed.per_layer) and np.array_equal(timed.upper, timed.per_layer)
            assert all(np.array_equal(x, y) for x, y in zip(plain.matchings, timed.matchings))
            assert plain.solvers == timed.solvers
            assert timed.value == plain.value


def test_a_budget_too_short_gives_certified_bounds():
    from sparsetopo.truly_sparse.model import sample_topology

    n = 2000
    a, b = (sample_topology([(n, n)], [40 * n], seed=s) for s in (0, 1))
    res = nnstd(a, b, max_seconds=1e-9)  # over long before the edge lists are built
    assert res.status == ("bounded",)
    assert not res.exact
    la, lb = int_csr(a.layers[0]), int_csr(b.layers[0])
    if a.fingerprint() > b.fingerprint():
        la, lb = lb, la
    exact = _solve_dense(la, lb)[0] / n
    assert res.lower[0] <= exact + 1e-12 < res.upper[0] == res.per_layer[0]
    assert 0 < res.gap[0] < 0.05 * res.upper[0]
    assert "bounded" in repr(res)


def test_result_defaults_reversed_and_pickle():
    a, b = _chain_pair(0)
    res = _match_layers(a, b, "ssp", True, stop_after=[0, -1, -1, -1])
    assert res.status[0] == "bounded"
    back = res.reversed()
    assert back.status == res.status
    assert np.array_equal(back.lower, res.lower) and np.array_equal(back.upper, res.upper)
    again = pickle.loads(pickle.dumps(res))
    assert again.status == res.status and np.array_equal(again.lower, res.lower)
    plain = NNSTDResult(per_layer=np.array([0.5, 0.25]), matchings=(np.arange(2), np.arange(2)),
                        solvers=("ssp", "ssp"))
    assert plain.exact and plain.status == ("exact", "exact")
    assert np.array_equal(plain.lower, plain.per_layer) and np.array_equal(plain.gap, [0, 0])
    with pytest.raises(SparsetopoError, match="status must name one of exact, bounded"):
        NNSTDResult(per_layer=np.array([0.5]), matchings=(np.arange(2),), solvers=("ssp",), status=("close",))
    assert set(STATUSES) == {"exact", "bounded", "conditional", "conditional-bounded"}


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_max_seconds_is_refused(bad):
    a, b = _chain_pair(0)
    with pytest.raises(SparsetopoError, match=r"max_seconds must be a positive, finite number of seconds; got"):
        nnstd(a, b, max_seconds=bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"solver": "dense"}, "max_seconds needs solver 'auto' or 'ssp'.*got solver 'dense'"),
    ({"solver": "sparse"}, "got solver 'sparse'"),
    ({"reference": True}, "max_seconds cannot be combined with reference mode"),
])
def test_max_seconds_with_a_solver_that_cannot_stop_is_refused(kwargs, message):
    a, b = _chain_pair(0)
    with pytest.raises(SparsetopoError, match=message):
        nnstd(a, b, max_seconds=5, **kwargs)


def test_max_seconds_on_a_graph_is_refused():
    eye = ss.csr_matrix(np.eye(4, dtype=bool))
    a = Topology([eye] * 4, streams=((0, 1), (1, 2), (2, 1), (1, 3)))  # layer 2 adds into stream 1
    assert a.is_graph
    with pytest.raises(SparsetopoError, match="not supported for graph topologies"):
        nnstd(a, a, max_seconds=5)


def _wide(n=1500, count=3):
    from sparsetopo.truly_sparse.model import sample_topology

    return [sample_topology([(n, n)], [40 * n], seed=s) for s in range(count)]


def test_pairwise_generous_budget_equals_plain_and_caches(tmp_path):
    a, b = _chain_pair(0)
    c = perturbation_chain(a, 2, 0.1, seed=9)[1]
    plain = pairwise_nnstd([a, b, c])
    timed = pairwise_nnstd([a, b, c], max_seconds=600, cache_dir=tmp_path)
    assert np.array_equal(np.asarray(plain), np.asarray(timed))
    assert timed.exact.all() and (timed.status == "exact").all()
    assert np.array_equal(timed.lower, plain) and np.array_equal(timed.upper, plain)
    assert len(list(tmp_path.iterdir())) == 3  # exact pairs are cached


def test_pairwise_tiny_budget_is_labelled_and_not_cached(tmp_path):
    nets = _wide()
    d = pairwise_nnstd(nets, max_seconds=1e-9, cache_dir=tmp_path)
    off = ~np.eye(3, dtype=bool)
    assert not d.exact[off].any() and d.exact[~off].all()
    assert (d.status[off] == "bounded").all()
    assert np.array_equal(np.asarray(d), d.upper)
    assert (d.lower[off] < d.upper[off]).all() and (d.upper[off] - d.lower[off] < 0.05).all()
    assert list(tmp_path.iterdir()) == []  # a bounded value is never cached as NNSTD
    back = pickle.loads(pickle.dumps(d))
    assert np.array_equal(back.lower, d.lower) and (back.status == d.status).all()
    out, csv = tmp_path / "D.npz", tmp_path / "D.csv"
    save_matrix(d, d.names, npz=str(out), csv=str(csv))
    z = np.load(out)
    assert np.array_equal(z["lower"], d.lower) and (z["status"] == d.status).all()
    assert csv.read_text().splitlines()[0] == "a,b,layer,nnstd,lower,upper,status"
    assert ",bounded" in csv.read_text()
    back, names = load_matrix(str(out))
    assert np.array_equal(back, np.asarray(d)) and names == d.names
    assert np.array_equal(back.lower, d.lower) and np.array_equal(back.upper, d.upper)
    assert (back.status == d.status).all() and not back.exact[off].any()
    assert back.sparse_layers == d.sparse_layers


def test_load_matrix_refuses_inconsistent_bounds(tmp_path):
    d = pairwise_nnstd(_wide(count=2), max_seconds=1e-9)
    good = {"nnstd": np.asarray(d), "names": np.array(d.names), "lower": d.lower, "upper": d.upper,
            "status": d.status}
    cases = {"only 'lower'": ({"lower": d.lower}, "needs 'lower', 'upper' and 'status'"),
             "bad status": ({**good, "status": np.where(d.status == "bounded", "roughly", d.status)},
                            "'status' values must be among exact, bounded"),
             "crossed": ({**good, "lower": d.upper + 0.01}, "lower <= upper"),
             "shape": ({**good, "upper": d.upper[:1]}, "'upper' must be a float array of shape")}
    for label, (arrays, message) in cases.items():
        path = tmp_path / f"{label}.npz"
        np.savez(path, **{"nnstd": np.asarray(d), "names": np.array(d.names), **arrays})
        with pytest.raises(SparsetopoError, match=message) as info:
            load_matrix(str(path))
        assert str(path) in str(info.value), label
    # a matrix without bounds reads back all exact, every layer counting when it names none
    np.savez(tmp_path / "plain.npz", nnstd=np.asarray(d), names=np.array(d.names))
    plain = load_matrix(str(tmp_path / "plain.npz"))[0]
    assert plain.exact.all() and plain.sparse_layers == list(range(d.shape[2]))


def test_matrix_cli_max_seconds(tmp_path):
    from click.testing import CliRunner

    from sparsetopo.cli import app

    paths = [t.save(tmp_path / f"w{i}.npz") for i, t in enumerate(_wide(count=2))]
    res = CliRunner().invoke(app, ["matrix", *map(str, paths), "--out", str(tmp_path / "D.npz"), "-q", "-j", "1",
                                   "--max-seconds", "1e-9"])
    assert res.exit_code == 0, res.output
    assert "bounds: 0 of 1 pairs exact; 1 not exact" in res.output and "largest gap" in res.output
    res = CliRunner().invoke(app, ["matrix", *map(str, paths), "--out", str(tmp_path / "E.npz"), "-q",
                                   "--max-seconds", "-1"])
    assert res.exit_code == 2 and "--max-seconds must be a positive, finite number of seconds" in res.output


def test_matrix_cli_generous_budget_says_all_exact(tmp_path):
    from click.testing import CliRunner

    from sparsetopo.cli import app

    paths = [t.save(tmp_path / f"n{i}.npz") for i, t in enumerate(_chain_pair(0))]
    res = CliRunner().invoke(app, ["matrix", *map(str, paths), "--csv", str(tmp_path / "D.csv"), "-q", "-j", "1",
                                   "--max-seconds", "600"])
    assert res.exit_code == 0, res.output
    assert "bounds: all 1 pairs exact" in res.output
    assert (tmp_path / "D.csv").read_text().splitlines()[0] == "a,b,layer,nnstd"  # the exact file, unchanged
