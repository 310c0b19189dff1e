"""Sparse training of CNNs: masked convolutions, ERK, SET/RigL/lottery, the trainer and sparsify."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import make_idx_dataset, with_method  # noqa: E402
from sparsetopo.methods import UpdateContext, sparsify  # noqa: E402
from sparsetopo.models import SparseCNN  # noqa: E402
from sparsetopo.topology import Topology, layer_densities  # noqa: E402
from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402

REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def test_erk_densities_follow_rigls_formula_and_hit_the_target():
    shapes = [(16, 1, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (10, 3136)]
    d = layer_densities(shapes, [0, 1, 2], "erk", density=0.1)
    assert d[3] == 1.0
    numel = [np.prod(s) for s in shapes[:3]]
    assert sum(x * n for x, n in zip(d[:3], numel)) / sum(numel) == pytest.approx(0.1, rel=1e-6)
    scale = [(s[0] + s[1] + s[2] + s[3]) / np.prod(s) for s in shapes[:3]]
    uncapped = [k for k in range(3) if d[k] < 1]
    ratios = {d[k] / scale[k] for k in uncapped}
    assert max(ratios) == pytest.approx(min(ratios))  # density proportional to the ERK scale
    assert d[0] == 1.0  # the 144-weight first convolution would need more than all its weights


def _cnn_and_method(method="set", **kw):
    cfg = TrainConfig(method=method, model="cnn", channels=[4, 8], hidden=[16], distribution="erk", density=0.3,
                      zeta=0.3, **kw)
    return with_method(cfg, SparseCNN((1, 8, 8), 4, channels=[4, 8], hidden=[16], init_seed=0))


def test_set_on_a_conv_layer_keeps_the_count_and_moves_connections():
    _, method, model = _cnn_and_method("set")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(8, 64)).sum().backward()
    model.mask_grads()
    opt.step()
    model.apply_masks()
    conv = model.layers[1]
    before, counts = conv.weight_mask.clone(), model.n_connections()
    res = method.after_epoch(UpdateContext(model=model, optimizer=opt, epoch=1, total_epochs=5,
                                           regrowth=torch.Generator().manual_seed(0), dense_grads=lambda: None))
    assert 1 in res.changed_layers and model.n_connections() == counts
    assert not torch.equal(before, conv.weight_mask)
    assert torch.count_nonzero(conv.weight[conv.weight_mask == 0]) == 0
    topo = model.topology()
    assert topo.kernels[:2] == ((3, 3), (3, 3)) and topo.sizes == (1, 4, 8, 16, 4)


@pytest.mark.parametrize("method", ["static", "set", "rigl", "lottery"])
def test_every_method_trains_a_cnn(tmp_path, method):
    data = make_idx_dataset(tmp_path / "d", n_train=300, n_test=100, side=8, n_classes=4)
    cfg = TrainConfig(method=method, model="cnn", channels=[4, 8], hidden=[16], distribution="erk", density=0.4,
                      epochs=2, batch_size=50, round_epochs=1, prune_rate=0.5, data_dir=str(data), seed=0)
    res = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    topo = Topology.load(tmp_path / "run" / "topology" / f"epoch_{res.final['epoch']:03d}.npz")
    assert topo.kernels[:2] == ((3, 3), (3, 3))
    assert 0.3 < topo.density < 0.7 if method != "static" else abs(topo.density - 0.4) < 0.05


def test_sparsify_a_users_cnn():
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 2 * 2, 3))
    sp = sparsify(model, "set", distribution="erk", density=0.3, seed=0, update_every=2)
    assert model[3].weight_mask.shape == (16, 8, 3, 3) and float(model[3].weight_mask.mean()) < 1
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counts = [int(m.weight_mask.sum()) for m in sp.masked_layers]
    before = model[3].weight_mask.clone()
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(4, 1, 8, 8)).sum().backward()
        opt.step()
        sp.step(opt)
    assert [int(m.weight_mask.sum()) for m in sp.masked_layers] == counts
    assert not torch.equal(before, model[3].weight_mask)
    assert sp.topology() == Topology.from_torch(model)
    assert sp.topology().kernels == ((3, 3), (3, 3), None)


@pytest.mark.skipif(not REAL.exists(), reason="Fashion-MNIST not installed")
def test_one_epoch_cnn_on_fashion_mnist_reaches_a_sane_accuracy(tmp_path):
    cfg = TrainConfig(method="set", model="cnn", hidden=[128], distribution="erk", density=0.2, epochs=1,
                      limit_train=12000, limit_test=2000, seed=0)
    res = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert res.final["test_acc"] > 0.7
    assert read_metrics(tmp_path / "run")[0]["connections_l1"] < 16 * 16 * 9
