"""Convolutional topologies: the model, from_torch with its chain check, and NNSTD over channels."""

import itertools

import numpy as np
import pytest

from sparsetopo.nnstd import layer_cost_matrix, nnstd
from sparsetopo.topology import Topology

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


def _cnn_masks(rng):
    conv1 = rng.random((4, 2, 3, 3)) < 0.4
    conv2 = rng.random((5, 4, 3, 3)) < 0.3
    fc1 = rng.random((6, 5 * 4)) < 0.3  # after a flatten of 5 channels x 2 x 2
    fc2 = rng.random((3, 6)) < 0.6
    return [conv1, conv2, fc1, fc2]


def _permute(masks, p1, p2, p3, consistent=True):
    conv1, conv2, fc1, fc2 = (m.copy() for m in masks)
    conv1 = conv1[p1]
    conv2 = conv2[:, p1] if consistent else conv2
    conv2 = conv2[p2]
    fc1 = fc1.reshape(6, 5, 4)[:, p2].reshape(6, 20)[p3]
    fc2 = fc2[:, p3]
    return [conv1, conv2, fc1, fc2]


def test_conv_topology_model_and_round_trip(tmp_path):
    t = Topology.from_masks(_cnn_masks(np.random.default_rng(0)))
    assert t.kernels == ((3, 3), (3, 3), None, None)
    assert t.blocks == (9, 9, 4, 1) and t.sizes == (2, 4, 5, 6, 3) and t.is_convolutional
    assert t.shapes == ((4, 18), (5, 36), (6, 20), (3, 6))
    np.testing.assert_array_equal(t.layer_mask(1), _cnn_masks(np.random.default_rng(0))[1])
    back = Topology.load(t.save(tmp_path / "cnn.npz"))
    assert back == t and back.kernels == t.kernels and back.blocks == t.blocks
    assert back.fingerprint() == t.fingerprint() != Topology([m.reshape(m.shape[0], -1) for m in
                                                              _cnn_masks(np.random.default_rng(1))],
                                                             kernels=t.kernels).fingerprint()
    with pytest.raises(ValueError, match=r"layer 1 does not chain with layer 0: .*expects 3 input units"):
        Topology.from_masks([np.ones((4, 2, 3, 3)), np.ones((5, 3, 3, 3))])


def test_consistent_channel_permutation_gives_zero_in_every_layer():
    rng = np.random.default_rng(1)
    masks = _cnn_masks(rng)
    a = Topology.from_masks(masks)
    p1, p2, p3 = rng.permutation(4), rng.permutation(5), rng.permutation(6)
    b = Topology.from_masks(_permute(masks, p1, p2, p3))
    for solver in ("ssp", "dense", "sparse"):
        np.testing.assert_array_equal(nnstd(a, b, solver=solver).per_layer, np.zeros(4))
    c = Topology.from_masks(_permute(masks, p1, p2, p3, consistent=False))  # conv2's inputs not moved
    res = nnstd(a, c, solver="dense")
    assert res.per_layer[0] == 0 and res.per_layer[1] > 0


def test_layer0_of_a_tiny_conv_equals_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(20):
        conv = rng.random((5, 2, 2, 2)) < 0.5
        other = rng.random((5, 2, 2, 2)) < 0.5
        a, b = Topology.from_masks([conv]), Topology.from_masks([other])
        cost = layer_cost_matrix(a[0], b[0])
        best = min(cost[np.arange(5), list(p)].mean() for p in itertools.permutations(range(5)))
        assert nnstd(a, b).per_layer[0] == pytest.approx(best, abs=1e-12)


def test_from_torch_reads_conv_chains_with_flatten_pooling_and_groups():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5408, 10))
    t = Topology.from_torch(model)
    assert t.kernels == ((3, 3), None) and t.blocks == (9, 26 * 26) and t.sizes == (1, 8, 10)
    vgg = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.1), nn.Linear(8, 3))
    t = Topology.from_torch(vgg)
    assert t.kernels == ((3, 3), (3, 3), None) and t.sizes == (1, 4, 8, 3)
    grouped = t.layer_mask(1)
    assert grouped.shape == (8, 4, 3, 3)
    assert not grouped[:4, 2:].any() and not grouped[4:, :2].any() and grouped[:4, :2].all()

    class Viewer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            return self.fc(x.view(x.size(0), -1))

    assert Topology.from_torch(Viewer()).blocks == (9, 36)


class _Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


@pytest.mark.parametrize("model,message", [
    # a residual addition is a graph topology now (tests/test_resnet_topology.py)
    (_Concat(), r"call_function 'cat' \(node 'cat'\), which concatenates tensors \(DenseNet-style\)"),
    (nn.Sequential(nn.Linear(4, 4), nn.Upsample(scale_factor=2)), r"is a Upsample, which is not supported"),
    (nn.Sequential(nn.ReLU()), "found no Linear or Conv2d layer"),
])
def test_from_torch_refuses_what_is_not_a_chain_by_name(model, message):
    with pytest.raises(ValueError, match=message):
        Topology.from_torch(model)


def test_ties_of_a_dense_layer_keep_neurons_in_place():
    """A dense first layer costs 0 under every pairing; the default solver must not scramble the next
    layer's inputs (ties go to the identity), so two topologies that differ only in layer 1 are close."""
    rng = np.random.default_rng(3)
    conv1 = np.ones((8, 1, 3, 3), dtype=bool)
    conv2 = rng.random((16, 8, 3, 3)) < 0.2
    other = conv2.copy()
    on = np.argwhere(other)[0]
    other[tuple(on)] = False  # move one connection
    off = np.argwhere(~other)[0]
    other[tuple(off)] = True
    a, b = Topology.from_masks([conv1, conv2]), Topology.from_masks([conv1, other])
    for solver in ("auto", "dense"):
        res = nnstd(a, b, solver=solver)
        assert res.per_layer[0] == 0 and res.per_layer[1] < 0.05, solver
        np.testing.assert_array_equal(res.matchings[0], np.arange(8))


def test_the_readme_worked_example():
    a = np.zeros((2, 2, 2, 2), bool)
    a[0, 0, 0, 0] = a[0, 1, 1, 1] = a[1, 0, 1, 1] = True
    b = np.zeros((2, 2, 2, 2), bool)
    b[0, 0, 1, 1] = b[1, 0, 0, 0] = b[1, 1, 1, 1] = True
    res = nnstd(Topology.from_masks([a]), Topology.from_masks([b]))
    assert res.per_layer[0] == 0 and list(res.matchings[0]) == [1, 0]
