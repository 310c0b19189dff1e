"""sparsify on a residual network: its topology and snapshots carry the streams, and the CLI reads them."""

import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from sparsetopo.cli import app  # noqa: E402
from sparsetopo.methods import sparsify  # noqa: E402
from sparsetopo.models_resnet import CifarResNet  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402


def test_a_sparsified_resnet_snapshots_a_graph_topology_that_distance_reads(tmp_path):
    nets = []
    for seed in (0, 1):
        model = CifarResNet((3, 16, 16), 10, width=4)
        sp = sparsify(model, "set", density=0.3, distribution="erk", seed=seed)
        topo = sp.topology()
        assert topo.is_graph and topo == Topology.from_torch(model)  # the same streams and masks
        sp.snapshot(tmp_path / f"net{seed}.npz")
        saved = Topology.load(tmp_path / f"net{seed}.npz")
        assert saved == topo and saved.streams == topo.streams
        nets.append(saved)
    res = CliRunner().invoke(app, ["distance", str(tmp_path / "net0.npz"), str(tmp_path / "net0.npz"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mean_all_layers"] == 0.0
    res = CliRunner().invoke(app, ["distance", str(tmp_path / "net0.npz"), str(tmp_path / "net1.npz"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mean_sparse_layers"] > 0
