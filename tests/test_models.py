import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sparsetopo.models import SparseMLP  # noqa: E402
from sparsetopo.topology import Topology, erdos_renyi  # noqa: E402


def _train_steps(model, optimizer, steps=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, model.sizes[0], generator=g)
        y = torch.randint(0, model.sizes[-1], (32,), generator=g)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        model.mask_grads()
        optimizer.step()
        model.apply_masks()


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_weights_outside_mask_stay_exactly_zero(opt):
    model = SparseMLP([20, 30, 30, 5], dropout=0.2, init_seed=1, dropout_seed=2)
    model.set_topology(erdos_renyi(model.sizes, epsilon=2, seed=0, dense_output=False))
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-2)
    _train_steps(model, optimizer)
    for layer in model.layers:
        outside = layer.weight_mask == 0
        assert outside.any()
        assert torch.count_nonzero(layer.weight[outside]) == 0
        inside = layer.weight[~outside]
        assert torch.count_nonzero(inside) == inside.numel()  # trained weights did move


def test_masks_are_buffers_in_state_dict_and_read_back():
    model = SparseMLP([12, 10, 3], init_seed=0)
    topo = erdos_renyi(model.sizes, epsilon=1.5, seed=3)
    model.set_topology(topo)
    sd = model.state_dict()
    assert "layers.0.weight_mask" in sd
    assert Topology.from_torch(sd) == topo
    assert model.topology() == topo
    clone = SparseMLP([12, 10, 3], init_seed=99)
    clone.load_state_dict(sd)
    assert clone.topology() == topo


def test_init_seed_and_fan_in_rescaling():
    a = SparseMLP([50, 40, 5], init_seed=4)
    b = SparseMLP([50, 40, 5], init_seed=4)
    c = SparseMLP([50, 40, 5], init_seed=5)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    topo = erdos_renyi([50, 40, 5], epsilon=2, seed=0)
    a.set_topology(topo)
    # He initialisation for each neuron's actual fan-in: bound sqrt(6 / fan_in)
    fan_in = a.layers[0].weight_mask.sum(1)
    w = a.layers[0].weight.abs().max(1).values
    rows = fan_in > 0
    assert torch.all(w[rows] <= torch.sqrt(6 / fan_in[rows]) + 1e-6)
    with pytest.raises(ValueError, match="^activation must be one of relu, tanh, .*; got .swishy.$"):
        SparseMLP([3, 2], activation="swishy")
    with pytest.raises(ValueError, match="do not match"):
        a.set_topology(erdos_renyi([50, 41, 5], epsilon=2, seed=0))


def test_dropout_is_seeded_and_off_in_eval():
    x = torch.ones(4, 10)
    m1 = SparseMLP([10, 50, 2], dropout=0.5, init_seed=0, dropout_seed=7)
    m2 = SparseMLP([10, 50, 2], dropout=0.5, init_seed=0, dropout_seed=7)
    assert torch.equal(m1(x), m2(x))
    m1.eval()
    assert torch.equal(m1(x), m1(x))
    np.testing.assert_allclose(m1.drop(torch.ones(3)).numpy(), 1.0)


@pytest.mark.parametrize("density", [0.01, 0.2])
def test_sparse_kernel_matches_dense_matmul(density):
    sizes = [60, 50, 40, 5]
    dense = SparseMLP(sizes, init_seed=3, sparse_kernel=False)
    sparse = SparseMLP(sizes, init_seed=3, sparse_kernel=True)
    topo = erdos_renyi(sizes, density=density, seed=1)
    dense.set_topology(topo)
    sparse.set_topology(topo)
    x = torch.randn(16, 60, generator=torch.Generator().manual_seed(0))
    out_d, out_s = dense(x), sparse(x)
    torch.testing.assert_close(out_s, out_d, rtol=1e-5, atol=1e-5)
    out_d.square().sum().backward()
    out_s.square().sum().backward()
    for ld, ls in zip(dense.layers, sparse.layers):
        m = ld.weight_mask.bool()
        torch.testing.assert_close(ls.weight.grad[m], ld.weight.grad[m], rtol=1e-4, atol=1e-5)
        assert torch.count_nonzero(ls.weight.grad[~m]) == 0  # the sparse kernel's gradient lives on the mask
        torch.testing.assert_close(ls.bias.grad, ld.bias.grad, rtol=1e-4, atol=1e-5)
    # a changed mask is picked up (the cached CSR pattern is rebuilt)
    new = erdos_renyi(sizes, density=density, seed=2)
    dense.set_topology(new, rescale=False)
    sparse.set_topology(new, rescale=False)
    torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-5)
    # dense_compute gives gradients everywhere (RigL)
    sparse.zero_grad()
    with sparse.dense_compute():
        sparse(x).sum().backward()
    last_sparse = sparse.layers[1]  # feeds the dense output layer, so gradients reach it
    assert torch.count_nonzero(last_sparse.weight.grad[~last_sparse.weight_mask.bool()]) > 0
    assert not sparse.layers[0].force_dense


def test_sparse_kernel_chosen_by_density():
    model = SparseMLP([100, 100, 10], init_seed=0)
    model.set_topology(erdos_renyi(model.sizes, density=0.01, seed=0))
    assert model.layers[0]._use_sparse() and not model.layers[1]._use_sparse()  # output layer dense


def test_sparse_kernel_choice_follows_mask_changes():
    model = SparseMLP([100, 100, 10], init_seed=0)
    model.set_topology(erdos_renyi(model.sizes, density=0.01, seed=0))
    assert model.layers[0]._use_sparse()
    model.set_topology(erdos_renyi(model.sizes, density=0.3, seed=0), rescale=False)
    assert not model.layers[0]._use_sparse()
