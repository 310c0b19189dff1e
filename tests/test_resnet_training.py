"""Training a residual network (issue 22, item 4): --model resnet20 with ERK and every method, the CLI and
the evolution study."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import make_idx_dataset
from sparsetopo.cli import app
from sparsetopo.methods import METHODS
from sparsetopo.models_resnet import CifarResNet
from sparsetopo.nnstd import nnstd
from sparsetopo.topology import Topology
from sparsetopo.topology.graph import LayerShapes
from sparsetopo.training import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_idx_dataset(tmp_path_factory.mktemp("data") / "d", n_train=120, n_test=40, side=8, n_classes=4)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_a_resnet20_with_erk(tmp_path, tiny_data, method):
    cfg = TrainConfig(method=method, model="resnet20", channels=[4], distribution="erk", density=0.3, epochs=2,
                      batch_size=40, round_epochs=1, prune_rate=0.5, data_dir=str(tiny_data), seed=0)
    res = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    first = Topology.load(tmp_path / "run" / "topology" / "epoch_000.npz")
    last = Topology.load(tmp_path / "run" / "topology" / f"epoch_{res.final['epoch']:03d}.npz")
    expected = Topology.from_torch(CifarResNet((1, 8, 8), 4, width=4)).streams
    assert first.is_graph and first.streams == last.streams == expected
    assert len(first) == 22 and first.shapes[-1] == (4, 16)
    # Dense at epoch 0: dense itself, and lottery tickets, gmp and magnitude (pruned from a dense network
    # later); pruning at initialisation (snip, grasp, synflow) is sparse before the first epoch.
    if not METHODS[method].starts_sparse and method not in ("snip", "grasp", "synflow"):
        assert first.density == 1.0
    else:
        assert abs(first.density - 0.3) < 0.01 and first.densities[-1] == 1.0  # the classifier stays dense
    if method == "lottery":
        assert last.density < 1.0
    moved = nnstd(first, last)
    # Moving: drop-and-grow, and pruning from the dense start; static and pruning at init keep theirs.
    assert (moved.value > 0) == (method in ("set", "rigl", "lottery", "gmp", "magnitude"))


def test_the_resnets_layer_shapes_carry_its_streams():
    m = CifarResNet((3, 32, 32), 10, width=4)
    shapes = m.layer_shapes
    assert isinstance(shapes, LayerShapes) and shapes.streams == m.streams
    assert shapes == [tuple(layer.weight.shape) for layer in m.masked_layers]


def test_a_resnets_masks_train_and_stay_zero(tiny_data):
    m = CifarResNet((1, 8, 8), 4, width=4)
    topo = Topology.from_torch(m)
    rng = np.random.default_rng(0)
    sparse = Topology([(rng.random(topo.layer_mask(k).shape) < 0.5) for k in range(len(topo))],
                      streams=topo.streams)
    m.set_topology(sparse)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.randn(8, 64)).sum().backward()
    m.mask_grads()
    opt.step()
    m.apply_masks()
    assert m.topology() == sparse and m.topology(nonzero=True).n_connections <= sparse.n_connections


def test_train_command_with_resnet20(tmp_path, tiny_data):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--model", "resnet20", "--channels", "4", "--method", "set",
                                   "--distribution", "erk", "--density", "0.3", "--epochs", "1", "--batch-size", "40",
                                   "--data-dir", str(tiny_data), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert Topology.load(out / "topology" / "epoch_001.npz").is_graph


def test_bad_resnet_depth_is_refused_by_name():
    with pytest.raises(ValueError, match=r"depth must be 6k\+2 \(8, 14, 20, 32, 44, 56, 110\); got 21"):
        CifarResNet((3, 32, 32), 10, depth=21)
    with pytest.raises(ValueError, match=r"depth must be 6k\+4 \(10, 16, 22, 28, 40\); got 20"):
        CifarResNet((3, 32, 32), 10, depth=20, preact=True)


def test_evolution_study_on_resnet20(tmp_path, tiny_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tiny_data}\nnetworks: 2\nepochs: 1\nsnapshot_epochs: [0, 1]\n"
                   "limit_train: 120\nlimit_test: 40\nbatch_size: 40\n")
    out = tmp_path / "evo"
    res = CliRunner().invoke(app, ["experiment", "evolution", "--model", "resnet20", "--preset", "smoke",
                                   "--config", str(cfg), "--out", str(out), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == "resnet20"
    a = Topology.load(out / "runs" / "net0" / "topology" / "epoch_000.npz")
    b = Topology.load(out / "runs" / "net1" / "topology" / "epoch_000.npz")
    assert a.is_graph and 0 < nnstd(a, b).value < 0.2  # neighbours in the 1 % perturbation chain
