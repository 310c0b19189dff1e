"""NNSTD on graph topologies (issue 22, item 2): identity, permutation invariance, symmetry, the joint
matching of a residual stream against brute force, and the README's worked example."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from sparsetopo._torch_graph import trace_structure
from sparsetopo.models_resnet import CifarResNet, torchvision_resnet
from sparsetopo.nnstd import nnstd
from sparsetopo.nnstd.solvers import layer_cost_matrix
from sparsetopo.topology import Topology, layer_densities, random_topology
from sparsetopo.topology.graph import openers

ROOT = Path(__file__).resolve().parents[1]


def _erk(model, density, seed, distribution="erk"):
    names, streams = trace_structure(model)
    shapes = [tuple(model.get_submodule(n).weight.shape) for n in names]
    d = layer_densities(shapes, list(range(len(shapes))), distribution, density=density)
    return random_topology(shapes, d, seed, streams=streams)


@pytest.fixture(scope="module")
def resnet20():
    return CifarResNet((3, 32, 32), 10, depth=20)


def _permuted(t: Topology, seed: int, keep_output: bool = False) -> tuple[Topology, dict[int, np.ndarray]]:
    """``t`` with every stream's channels permuted (one permutation per stream; the input kept)."""
    rng = np.random.default_rng(seed)
    n_streams = max(max(s) for s in t.streams) + 1
    sizes = {w: t.shapes[k][0] for k, (_, w) in enumerate(t.streams)}
    perms = {s: rng.permutation(sizes[s]) for s in range(1, n_streams)}
    perms[0] = np.arange(t.shapes[0][1] // t.blocks[0])
    if keep_output:
        out = t.streams[-1][1]
        perms[out] = np.arange(sizes[out])
    layers = []
    for k, (r, w) in enumerate(t.streams):
        m = t.layers[k].toarray()[perms[w]]
        m = m.reshape(m.shape[0], -1, t.blocks[k])[:, perms[r]].reshape(m.shape[0], -1)
        layers.append(m)
    return Topology(layers, kernels=t.kernels, streams=t.streams), perms


def test_identity_gives_zero_in_every_layer(resnet20):
    a = _erk(resnet20, 0.1, 0)
    for solver in ("auto", "dense"):
        res = nnstd(a, a, solver=solver)
        assert np.array_equal(res.per_layer, np.zeros(len(a)))
        assert all(np.array_equal(m, np.arange(len(m))) for m in res.matchings)


@pytest.mark.parametrize("match_outputs", [True, False])
def test_consistently_permuted_resnet20_gives_zero_and_finds_the_permutation(resnet20, match_outputs):
    # uniform densities: ERK makes the stem dense, and a dense layer's channels are all alike (every
    # matching costs 0 there), so its permutation could only be told from later layers, which NNSTD
    # (layer by layer, as in the paper) does not look at
    a = _erk(resnet20, 0.3, 1, "uniform")
    b, perms = _permuted(a, 2, keep_output=not match_outputs)
    res = nnstd(a, b, match_outputs=match_outputs)
    assert np.array_equal(res.per_layer, np.zeros(len(a)))
    for k, (_, w) in enumerate(a.streams):
        assert np.array_equal(perms[w][res.matchings[k]], np.arange(len(perms[w])))  # A's i is B's perm^-1(i)
    assert res.solvers.count("joint") == 4 and res.solvers.count("carried") == 7  # 2 projection, 7 identity blocks
    assert (res.solvers[-1] == "identity") == (not match_outputs)


def test_consistently_permuted_resnet18_layout_gives_zero():
    a = _erk(torchvision_resnet(18, n_classes=10), 0.3, 3, "uniform")
    b, _ = _permuted(a, 4)
    assert np.array_equal(nnstd(a, b).per_layer, np.zeros(len(a)))


def test_symmetric(resnet20):
    a, b = _erk(resnet20, 0.1, 5), _erk(resnet20, 0.1, 6)
    ab, ba = nnstd(a, b), nnstd(b, a)
    assert np.array_equal(ab.per_layer, ba.per_layer)
    assert all(np.array_equal(np.argsort(m), n) for m, n in zip(ab.matchings, ba.matchings))
    assert 0 < ab.value < 1


def test_graphs_of_different_structure_are_refused():
    layers = [np.ones((4, 4)), np.ones((4, 4)), np.ones((2, 4))]
    chain, graph = Topology(layers), Topology(layers, streams=[(0, 1), (1, 1), (1, 2)])
    with pytest.raises(ValueError, match=r"cannot compare topologies of different graphs: A has streams "
                                         r"\(\(0, 1\), \(1, 1\), \(1, 2\)\), B has None"):
        nnstd(graph, chain)


def _small_graph(seed):
    """stem -> s1 (4); block: s1 -> s2 -> s3 with a projection s1 -> s3; an identity block on s3; classifier."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 5), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (2, 4)]
    streams = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4), (4, 3), (3, 5)]
    return Topology([rng.random(s) < 0.5 for s in shapes], streams=streams)


def _reindexed(t_b: Topology, k: int, col):
    """B's layer ``k`` with its inputs renamed by the matching ``col`` of the stream it reads."""
    m = t_b.layers[k].toarray()
    if col is None:
        return m
    inverse = np.argsort(col)
    out = np.zeros_like(m)
    out[:, inverse] = m
    return out


@pytest.mark.parametrize("seed", range(8))
def test_a_streams_joint_matching_is_the_brute_force_minimum_and_later_writers_are_scored_under_it(seed):
    a, b = _small_graph(seed), _small_graph(100 + seed)
    res = nnstd(a, b, symmetric=False)
    match = {0: None}
    for k, (_, w) in enumerate(a.streams):
        match.setdefault(w, res.matchings[k])
    opening = openers(a.streams)
    for w, ks in opening.items():
        costs = [layer_cost_matrix(a.layers[k], _reindexed(b, k, match[a.streams[k][0]])) for k in ks]
        total = sum(costs)
        best = min(total[np.arange(4 if w != 5 else 2), list(p)].sum()
                   for p in itertools.permutations(range(total.shape[0])))
        got = total[np.arange(total.shape[0]), match[w]].sum()
        assert got == pytest.approx(best, abs=1e-12)
        for k, c in zip(ks, costs):  # each opener's own distance under the joint matching
            assert res.per_layer[k] == pytest.approx(c[np.arange(c.shape[0]), match[w]].mean(), abs=1e-12)
    carried = 5  # writes s3 after s3 is read: scored under s3's matching, which it did not choose
    assert res.solvers[carried] == "carried" and np.array_equal(res.matchings[carried], match[3])
    c = layer_cost_matrix(a.layers[carried], _reindexed(b, carried, match[4]))
    assert res.per_layer[carried] == pytest.approx(c[np.arange(4), match[3]].mean(), abs=1e-12)


def test_a_chain_given_as_streams_is_todays_nnstd():
    rng = np.random.default_rng(9)
    shapes = [(6, 5), (6, 6), (3, 6)]
    la, lb = ([rng.random(s) < 0.4 for s in shapes] for _ in range(2))
    plain = nnstd(Topology(la), Topology(lb))
    given = nnstd(Topology(la, streams=[(0, 1), (1, 2), (2, 3)]), Topology(lb, streams=[(0, 1), (1, 2), (2, 3)]))
    assert np.array_equal(plain.per_layer, given.per_layer) and plain.solvers == given.solvers


def _readme_example():
    """The README's worked example (section "NNSTD on residual networks")."""
    streams = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4)]

    def net(sets):
        layers = []
        for rows, n_in in zip(sets, (3, 2, 2, 2, 2)):
            m = np.zeros((len(rows), n_in), dtype=bool)
            for i, row in enumerate(rows):
                m[i, list(row)] = True
            layers.append(m)
        return Topology(layers, streams=streams)

    a = net([[{0}, {1}], [{0}, {1}], [{0}, {0, 1}], [{0}, {1}], [{0, 1}]])
    b = net([[{1}, {0}], [{1}, {0}], [{0, 1}, {0}], [{1}, {0}], [{0}]])
    return a, b


def test_the_readme_example():
    a, b = _readme_example()
    res = nnstd(a, b, symmetric=False)
    assert res.per_layer.tolist() == [0.0, 0.0, 0.5, 0.0, 0.5]
    assert res.solvers == ("ssp", "ssp", "joint", "joint", "ssp")
    assert [m.tolist() for m in res.matchings] == [[1, 0], [0, 1], [0, 1], [0, 1], [0]]
    assert nnstd(a, b).per_layer.tolist() == res.per_layer.tolist()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "per_layer = [0, 0, 0.5, 0, 0.5]" in readme
    assert "streams = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4)]" in readme
