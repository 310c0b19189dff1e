"""Reading residual networks (issue 22, item 3): torch.fx tracing into graph topologies, masks, refusals."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from sparsetopo._torch_graph import trace_structure
from sparsetopo.models_resnet import CifarResNet, torchvision_resnet, wide_resnet
from sparsetopo.topology import Topology


def _writers(model) -> dict[str, set[str]]:
    """Per layer name, the names of all layers writing into the same stream."""
    names, streams = trace_structure(model)
    by_stream: dict[int, set[str]] = {}
    for name, (_, w) in zip(names, streams):
        by_stream.setdefault(w, set()).add(name)
    return {name: by_stream[w] for name, (_, w) in zip(names, streams)}


def _readers(model) -> dict[str, str]:
    """Per layer name, the first writer of the stream it reads ('input' for the network input)."""
    names, streams = trace_structure(model)
    first = {0: "input"}
    for name, (_, w) in zip(names, streams):
        first.setdefault(w, name)
    return {name: first[r] for name, (r, _) in zip(names, streams)}


def test_resnet18_layout_one_stream_per_stage():
    m = torchvision_resnet(18)
    w = _writers(m)
    assert w["conv1"] == {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    for g in (2, 3, 4):
        assert w[f"layer{g}.0.downsample.0"] == {f"layer{g}.0.conv2", f"layer{g}.0.downsample.0", f"layer{g}.1.conv2"}
    assert w["layer1.0.conv1"] == {"layer1.0.conv1"} and w["fc"] == {"fc"}
    r = _readers(m)
    assert r["layer2.0.conv1"] == r["layer2.0.downsample.0"] == r["layer1.1.conv1"] == "conv1"
    assert r["fc"] == "layer4.0.conv2"
    t = Topology.from_torch(m)
    assert len(t) == 21 and t.is_graph and t.blocks[-1] == 1  # global pooling: one unit per channel


def test_resnet50_layout_bottlenecks():
    m = torchvision_resnet(50)
    t = Topology.from_torch(m)
    assert len(t) == 54 and t.shapes[-1] == (1000, 2048)
    w = _writers(m)
    assert w["conv1"] == {"conv1"}  # layer1.0 projects 64 -> 256 channels: the stem's stream is its own
    assert w["layer1.0.conv3"] == {"layer1.0.downsample.0", "layer1.0.conv3", "layer1.1.conv3", "layer1.2.conv3"}
    assert w["layer4.0.conv3"] == {"layer4.0.downsample.0"} | {f"layer4.{b}.conv3" for b in range(3)}
    assert len({frozenset(s) for s in w.values() if len(s) > 1}) == 4  # one residual stream per stage


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_itself_reads_like_the_local_layout(depth):
    import torchvision

    real = getattr(torchvision.models, f"resnet{depth}")()
    assert trace_structure(real) == trace_structure(torchvision_resnet(depth))


@pytest.mark.parametrize("make,n_layers,n_residual", [
    (lambda: CifarResNet((3, 32, 32), 10, depth=20), 22, 3),
    (lambda: CifarResNet((3, 32, 32), 10, depth=32), 34, 3),
    (lambda: wide_resnet((3, 32, 32), 10, depth=22, widen=2), 23, 3),
])
def test_cifar_resnets_and_wrn(make, n_layers, n_residual):
    m = make()
    t = Topology.from_torch(m)
    assert len(t) == n_layers and t == m.topology()
    assert [layer for layer in m.masked_layers] == [m.get_submodule(n) for n in trace_structure(m)[0]]
    residual = {frozenset(s) for s in _writers(m).values() if len(s) > 1}
    assert len(residual) == n_residual
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_wrn_22_2_widths():
    t = Topology.from_torch(wide_resnet((3, 32, 32), 10))
    assert sorted({s[0] for s in t.shapes[:-1]}) == [16, 32, 64, 128]


def _small_resnet():
    torch.manual_seed(0)
    return torchvision_resnet(18, n_classes=4)


def test_masks_from_prune_buffers():
    m = _small_resnet()
    prune.random_unstructured(m.layer2[0].conv1, "weight", amount=0.7)
    prune.l1_unstructured(m.fc, "weight", amount=0.5)
    t = Topology.from_torch(m)
    names = trace_structure(m)[0]
    k = names.index("layer2.0.conv1")
    assert np.array_equal(t.layer_mask(k), m.layer2[0].conv1.weight_mask.numpy() != 0)
    assert t.n_connections[-1] == m.fc.weight.numel() // 2
    assert t.densities[0] == 1.0


def test_masks_from_a_checkpoints_exact_zeros_and_its_prune_buffers():
    m = _small_resnet()
    prune.random_unstructured(m.layer3[1].conv2, "weight", amount=0.9)
    pruned_state = m.state_dict()  # weight_orig + weight_mask
    plain = _small_resnet()
    with torch.no_grad():
        plain.layer1[0].conv2.weight[:, :10] = 0
    structure = torchvision_resnet(18, n_classes=4)
    names = trace_structure(structure)[0]
    from_zeros = Topology.from_torch(structure, state_dict=plain.state_dict())
    k = names.index("layer1.0.conv2")
    assert not from_zeros.layer_mask(k)[:, :10].any() and from_zeros.layer_mask(k)[:, 10:].all()
    from_buffers = Topology.from_torch(structure, state_dict=pruned_state)
    k = names.index("layer3.1.conv2")
    assert np.array_equal(from_buffers.layer_mask(k), pruned_state["layer3.1.conv2.weight_mask"].numpy() != 0)
    assert from_buffers.streams == from_zeros.streams == Topology.from_torch(structure).streams


def test_a_checkpoint_that_does_not_fit_is_refused_by_name():
    structure = torchvision_resnet(18, n_classes=4)
    state = dict(_small_resnet().state_dict())
    del state["layer2.0.conv1.weight"]
    with pytest.raises(ValueError, match=r"state_dict has no layer2.0.conv1.weight"):
        Topology.from_torch(structure, state_dict=state)
    state = dict(torchvision_resnet(18, n_classes=7).state_dict())
    with pytest.raises(ValueError, match=r"state_dict's fc.weight has shape \(7, 512\), but the model's layer 'fc'"):
        Topology.from_torch(structure, state_dict=state)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.out(h + self.b(h))


def test_a_residual_mlp_is_a_graph():
    t = Topology.from_torch(_Residual())
    assert t.streams == ((0, 1), (1, 1), (1, 2))


class _DenseNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        h = self.a(x)
        return torch.cat([h, self.b(h)], dim=1)


class _SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 4)

    def forward(self, x):
        h = self.conv(x)
        gate = torch.sigmoid(self.fc(h.mean((2, 3)))).view(-1, 4, 1, 1)
        return h * gate


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))


class _Dangling(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        self.b(h)
        return self.c(h)


@pytest.mark.parametrize("model,message", [
    (_DenseNetish(), r"call_function 'cat' \(node 'cat'\), which concatenates tensors \(DenseNet-style\)"),
    (_SqueezeExcite(), r"'mean'|multiplies two tensors"),
    (_Attention(), r"'scaled_dot_product_attention'.*\(attention\)"),
    (nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 1)), r"is a MultiheadAttention, which is not supported"),
    (_Dangling(), r"the output of layer 'b' never reaches the model's output"),
])
def test_what_mixes_channels_is_refused_by_name(model, message):
    with pytest.raises(ValueError, match=message):
        Topology.from_torch(model)


class _SEOnly(nn.Module):
    """A product of two tensors with no unknown operation before it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) * torch.sigmoid(self.b(x))


def test_a_product_of_tensors_is_refused_as_gating():
    with pytest.raises(ValueError, match=r"multiplies two tensors \(gating or attention"):
        Topology.from_torch(_SEOnly())


def test_a_residual_state_dict_alone_points_to_the_model():
    state = torchvision_resnet(18, n_classes=4).state_dict()
    with pytest.raises(ValueError, match=r"does not chain.*pass the model and the state dict, "
                                         r"Topology.from_torch\(model, state_dict=state\)"):
        Topology.from_torch(state)


class _AddsToItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.out(x + self.a(x))


def test_a_layer_adding_into_the_input_is_scored_by_identity():
    from sparsetopo.nnstd import nnstd

    t = Topology.from_torch(_AddsToItsInput())
    assert t.streams == ((0, 0), (0, 1))
    rng = np.random.default_rng(0)
    a, b = (Topology([rng.random(t.layer_mask(k).shape) < 0.5 for k in range(2)], streams=t.streams)
            for _ in range(2))
    res = nnstd(a, b)
    assert res.solvers[0] == "identity" and np.array_equal(res.matchings[0], np.arange(3))
