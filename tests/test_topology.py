import numpy as np
import pytest
import scipy.sparse as ss

from conftest import official_dir
from sparsetopo.topology import (
    Topology,
    epsilon_for_density,
    er_density,
    erdos_renyi,
    perturb,
    perturbation_chain,
)


def test_from_masks_orientation_and_properties():
    m0 = np.array([[1, 0, 1], [0, 0, 0]])  # 2 outputs, 3 inputs
    m1 = np.array([[1, 1]])
    t = Topology.from_masks([m0, ss.csr_matrix(m1)], name="x")
    assert t.shapes == ((2, 3), (1, 2))
    assert t.sizes == (3, 2, 1)
    assert t.n_connections == (2, 2)
    assert t[0].dtype == bool
    assert t[0].indices.tolist() == [0, 2]
    assert t.density == pytest.approx(4 / 8)


def test_layers_must_chain_error_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"layer 1 .*\(2, 4\).*layer 0 .*\(3, 5\)"):
        Topology.from_masks([np.ones((3, 5)), np.ones((2, 4))])


def test_topology_is_immutable():
    t = Topology.from_masks([np.eye(3)])
    with pytest.raises(ValueError):
        t[0].indices[0] = 2
    with pytest.raises(AttributeError):
        t.layers = ()


def test_nan_weights_rejected():
    with pytest.raises(ValueError, match="NaN"):
        Topology.from_masks([np.array([[1.0, np.nan]])])


def test_save_load_round_trip(tmp_path, rng, make_topology):
    t = make_topology(rng, [20, 15, 10, 3], 0.2).with_name("net", epoch=3)
    path = t.save(tmp_path / "t.npz")
    back = Topology.load(path)
    assert back == t
    assert back.name == "net" and back.metadata["epoch"] == 3
    assert not list(tmp_path.glob("*.tmp*")), "temporary file left behind"


def test_one_layer_read_alone_equals_the_loaded_layer(tmp_path, rng, make_topology):
    from sparsetopo.topology.io import read_npz_layer

    t = make_topology(rng, [20, 15, 10, 3], 0.2)
    path = t.save(tmp_path / "t.npz")
    for k in range(len(t)):
        layer = read_npz_layer(path, k)
        assert layer.shape == t.layers[k].shape and (layer != t.layers[k]).nnz == 0
    with pytest.raises(ValueError, match=r"t\.npz.*l3_indptr"):
        read_npz_layer(path, 3)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        Topology.load(missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        Topology.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(ValueError, match="other.npz.*not a sparsetopo topology"):
        Topology.load(other)


def test_official_layout_round_trip(tmp_path, rng, make_topology):
    t = make_topology(rng, [12, 9, 9, 4], 0.3)
    d = official_dir(tmp_path / "epoch_000", t.to_dense())
    back = Topology.from_official_npz(d)
    assert back == t
    assert back.name == "epoch_000"
    assert Topology.read(d) == t


def test_official_layout_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*weight_l0.npz"):
        Topology.from_official_npz(empty)
    gap = official_dir(tmp_path / "gap", [np.ones((3, 4)), np.ones((2, 3)), np.ones((2, 2))])
    (gap / "weight_l1.npz").unlink()
    with pytest.raises(ValueError, match="weight_l1.npz is missing"):
        Topology.from_official_npz(gap)
    bad = official_dir(tmp_path / "bad", [np.ones((3, 4))])
    (bad / "weight_l0.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"weight_l0.npz: a text file; a weight matrix of the official NNSTD layout"):
        Topology.from_official_npz(bad)
    nan = tmp_path / "nan"
    nan.mkdir()
    w = np.ones((5, 3))
    w[1, 1] = np.nan
    ss.save_npz(nan / "weight_l0.npz", ss.csr_matrix(w))
    with pytest.raises(ValueError, match=r"weight_l0.npz: contains NaN"):
        Topology.from_official_npz(nan)
    chain = official_dir(tmp_path / "chain", [np.ones((3, 4)), np.ones((2, 5))])
    with pytest.raises(ValueError, match="chain.*does not chain"):
        Topology.from_official_npz(chain)


def test_from_torch_module_state_dict_and_prune():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    with torch.no_grad():
        net[0].weight[net[0].weight.abs() < 0.2] = 0
    t = Topology.from_torch(net)
    assert t.shapes == ((5, 6), (3, 5))
    assert np.array_equal(t.to_dense()[0], (net[0].weight != 0).numpy())
    assert Topology.from_torch(net.state_dict()) == t
    # torch.nn.utils.prune leaves weight_orig and a weight_mask buffer: the mask wins.
    prune.random_unstructured(net[2], "weight", amount=0.5)
    t2 = Topology.from_torch(net)
    assert np.array_equal(t2.to_dense()[1], net[2].weight_mask.numpy() != 0)
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Topology.from_torch(net)
    with pytest.raises(TypeError, match="Module or a state dict"):
        Topology.from_torch(42)


def test_erdos_renyi_density_and_counts():
    t = erdos_renyi([784, 300, 100, 10], epsilon=20, seed=0)
    for (n_out, n_in), nnz in zip(t.shapes[:-1], t.n_connections[:-1]):
        assert nnz == round(er_density(n_in, n_out, 20) * n_in * n_out)
    assert t.densities[-1] == 1.0  # dense output layer
    sparse_out = erdos_renyi([50, 40, 10], epsilon=2, seed=0, dense_output=False)
    assert sparse_out.densities[-1] < 1.0
    assert erdos_renyi([50, 40, 10], epsilon=2, seed=7) == erdos_renyi([50, 40, 10], epsilon=2, seed=7)
    assert erdos_renyi([50, 40, 10], epsilon=2, seed=7) != erdos_renyi([50, 40, 10], epsilon=2, seed=8)
    # capped at 1
    assert erdos_renyi([4, 4, 2], epsilon=100, seed=0).densities == (1.0, 1.0)


def test_erdos_renyi_target_density():
    sizes = [784, 784, 784, 784, 10]
    t = erdos_renyi(sizes, density=0.006, seed=0)
    sparse = t.n_connections[:-1]
    assert sum(sparse) / (3 * 784 * 784) == pytest.approx(0.006, rel=1e-3)
    eps = epsilon_for_density(sizes, 0.006)
    assert eps == pytest.approx(0.006 * 784 / 2, rel=1e-6)


@pytest.mark.parametrize("kwargs,msg", [
    ({"epsilon": -1}, "epsilon must be > 0"),
    ({}, "exactly one of epsilon and density"),
    ({"epsilon": 1, "density": 0.1}, "exactly one"),
    ({"density": 1.5}, r"density must be in \(0, 1\]"),
])
def test_erdos_renyi_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        erdos_renyi([10, 10, 2], seed=0, **kwargs)


def test_perturb_moves_exactly_the_fraction():
    t = erdos_renyi([784, 784, 784, 10], density=0.01, seed=0)
    p = perturb(t, 0.01, seed=1)
    assert p.n_connections == t.n_connections
    for a, b, nnz in zip(t.layers[:-1], p.layers[:-1], t.n_connections):
        moved = round(0.01 * nnz)
        assert (a.astype(int) - b.astype(int)).count_nonzero() == 2 * moved
    assert p[-1].nnz == t[-1].nnz and (p[-1] != t[-1]).nnz == 0  # dense layer: no room to move
    assert perturb(t, 0.01, seed=1) == p
    with pytest.raises(ValueError, match="fraction"):
        perturb(t, 1.5, seed=0)


def test_perturbation_chain_names_and_growth():
    base = erdos_renyi([100, 100, 10], epsilon=5, seed=0)
    chain = perturbation_chain(base, 4, 0.05, seed=3)
    assert [t.name for t in chain] == ["net0", "net1", "net2", "net3"]
    assert chain[0] == base
    diffs = [(base[0].astype(int) - t[0].astype(int)).count_nonzero() for t in chain]
    assert diffs[0] == 0 and diffs[1] < diffs[3]
