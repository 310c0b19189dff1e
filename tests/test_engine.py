"""The truly sparse training engine (``--engine truly-sparse``): its network, methods, loop and memory check."""

import csv
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from click.testing import CliRunner  # noqa: E402

from sparsetopo.cli import app  # noqa: E402
from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.models import SparseMLP  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402
from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402
from sparsetopo.truly_sparse import TrulySparseLinear  # noqa: E402
from sparsetopo.truly_sparse.model import TrulySparseMLP, sample_topology  # noqa: E402
from test_hardening import one_line_error  # noqa: E402

runner = CliRunner()
TIMING = {"seconds", "train_seconds", "update_seconds"}


def _cfg(data, **kw):
    base = dict(method="set", engine="truly-sparse", data_dir=str(data), hidden=[64, 64], epsilon=4, epochs=3,
                batch_size=32, lr=0.05, seed=0, limit_train=300)
    base.update(kw)
    return TrainConfig(**base)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _quiet(msg):
    pass


# ------------------------------------------------------------------ (a) gradients
@pytest.mark.parametrize("batch", [4, 32])  # scatter input gradient (<= 8) and the transposed structure (> 8)
def test_gradients_equal_the_masked_engine_on_the_same_network(batch):
    sizes = (20, 30, 25, 4)
    shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    topo = sample_topology(shapes, [120, 200, 100], seed=3)
    sparse = TrulySparseMLP(sizes, topo, init_seed=1)
    masked = SparseMLP(sizes, init_seed=2, sparse_kernel=False)
    masked.set_topology(topo, rescale=False)
    with torch.no_grad():
        for m, t in zip(masked.layers, sparse.layers):
            mask = m.weight_mask.bool()
            m.weight.zero_()
            m.weight[mask] = t.values  # boolean indexing walks row-major: CSR order
            m.bias.copy_(t.bias)
    x = torch.randn(batch, sizes[0], generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (batch,), generator=torch.Generator().manual_seed(1))
    for net in (sparse, masked):
        torch.nn.functional.cross_entropy(net(x), y).backward()
        net.mask_grads()
    for m, t in zip(masked.layers, sparse.layers):
        assert t.values.grad.shape == (t.n_connections,)
        torch.testing.assert_close(t.values.grad, m.weight.grad[m.weight_mask.bool()], atol=1e-6, rtol=0)
        torch.testing.assert_close(t.bias.grad, m.bias.grad, atol=1e-6, rtol=0)
        assert not m.weight.grad[~m.weight_mask.bool()].any()


def test_the_network_keeps_the_masked_contract_without_dense_tensors():
    sizes = (10, 12, 3)
    topo = sample_topology([(12, 10), (3, 12)], [30, 36], seed=0)
    net = TrulySparseMLP(sizes, topo)
    assert net.layer_shapes == [(12, 10), (3, 12)]
    assert net.n_connections() == [30, 36]
    assert net.topology() == topo
    assert all(isinstance(layer, TrulySparseLinear) for layer in net.masked_layers)
    other = sample_topology([(12, 10), (3, 12)], [20, 36], seed=1)
    net.set_topology(other)
    assert net.topology() == other and net.n_connections() == [20, 36]
    with torch.no_grad():
        net.layers[0].values[:5] = 0
    assert net.topology(nonzero=True).n_connections == (15, 36)
    with pytest.raises(SparsetopoError, match=r"topology shapes \[\(12, 10\)\] do not match"):
        net.set_topology(Topology([topo.layers[0]]))
    with pytest.raises(SparsetopoError, match="no dense weights"), net.dense_compute():
        pass


def test_the_sampled_topology_has_erdos_renyi_counts_and_a_full_output_layer():
    cfg = TrainConfig(method="set", engine="truly-sparse", hidden=[50, 40], epsilon=3)
    sizes = cfg.sizes(30, 5)
    shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    from sparsetopo.methods import get_method
    from sparsetopo.topology import erdos_renyi

    counts = get_method(cfg).target_counts(shapes)
    topo = sample_topology(shapes, counts, seed=7)
    assert topo.n_connections == erdos_renyi(sizes, 3, seed=7).n_connections
    assert topo.densities[-1] == 1.0
    assert sample_topology(shapes, counts, seed=7) == topo
    assert sample_topology(shapes, counts, seed=8) != topo


# ------------------------------------------------------------------ (b) a SET run
def _raw_layers(path):
    z = np.load(path)
    k = 0
    while f"l{k}_indptr" in z:
        yield z[f"l{k}_indptr"], z[f"l{k}_indices"]
        k += 1


def test_set_run_on_the_truly_sparse_engine(tiny_data, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--engine", "truly-sparse", "--method", "set", "--data-dir", str(tiny_data),
                              "--hidden", "64", "64", "--epochs", "3", "--limit-train", "300", "--epsilon", "4",
                              "--batch-size", "32", "--lr", "0.05", "--snapshot-every", "1", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rows = read_metrics(out)
    first = Topology.load(out / "topology" / "epoch_000.npz")
    shapes = [(64, 64), (64, 64), (4, 64)]
    from sparsetopo.methods import get_method

    expected = get_method(TrainConfig(epsilon=4)).target_counts(shapes)
    assert list(first.n_connections) == expected
    for r in rows:
        assert [r[f"connections_l{k}"] for k in range(3)] == expected
    snaps = [Topology.load(out / "topology" / f"epoch_{e:03d}.npz") for e in range(4)]
    assert all(s.n_connections == first.n_connections for s in snaps)
    assert snaps[1] != snaps[0] and snaps[2] != snaps[1]  # SET moved connections
    for e in range(4):
        for indptr, indices in _raw_layers(out / "topology" / f"epoch_{e:03d}.npz"):
            for i in range(len(indptr) - 1):
                assert np.all(np.diff(indices[indptr[i]:indptr[i + 1]]) > 0)  # sorted, no duplicates
    assert rows[-1]["test_acc"] > 0.5
    state = torch.load(out / "model_final.pt")
    assert {"layers.0.values", "layers.0.indptr", "layers.0.indices", "layers.0.bias"} <= set(state)
    assert not any(v.dim() == 2 for v in state.values())  # no n_out x n_in tensor anywhere
    with open(out / "resources.csv") as f:
        res_rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in res_rows] == [1, 2, 3]
    assert all(r["engine"] == "truly-sparse" and float(r["peak_rss_mb"]) > 10 for r in res_rows)


def test_nonzero_snapshots_weights_and_step_updates(tiny_data, tmp_path):
    from sparsetopo.training import load_weights

    cfg = _cfg(tiny_data, snapshot_connections="nonzero", snapshot_weights=True, update_every=3, epochs=2)
    assert cfg.snapshot_connections == "nonzero"
    train(cfg, tmp_path / "r", progress=False, log=_quiet)
    final = Topology.load(tmp_path / "r" / "topology" / "epoch_002.npz")
    weights, biases = load_weights(tmp_path / "r" / "weights" / "epoch_002.npz")
    assert [w.shape for w in weights] == list(final.shapes)
    assert list(final.n_connections) == [int((w.data != 0).sum()) for w in weights]
    rows = read_metrics(tmp_path / "r")
    first = Topology.load(tmp_path / "r" / "topology" / "epoch_000.npz")
    assert [rows[-1][f"connections_l{k}"] for k in range(3)] == list(first.n_connections)
    import scipy.sparse as ss

    structure = Topology([ss.csr_matrix((np.ones(w.nnz, bool), w.indices, w.indptr), shape=w.shape)
                          for w in weights])  # every stored entry, zeros included
    assert structure.n_connections == first.n_connections and structure != first  # step updates moved some


def test_threads_are_one_inside_and_restored_after(tiny_data, tmp_path):
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(_cfg(tiny_data, epochs=1), tmp_path / "r", progress=False, log=lambda m: seen.append(
            torch.get_num_threads()))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ (c) resume
class _Stop(Exception):
    pass


def _stop_after_first_epoch(msg):
    if "epoch 1/" in msg:  # logged after epoch 1's checkpoint was written
        raise _Stop


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_resume_is_bit_identical(tiny_data, tmp_path, method):
    cfg = _cfg(tiny_data, method=method, optimizer="adam" if method == "rigl" else "sgd", lr=0.01,
               regrow_init="normal" if method == "set" else "zero", dropout=0.2, snapshot_every=1)
    with pytest.raises(_Stop):
        train(cfg, tmp_path / "cut", progress=False, log=_stop_after_first_epoch)
    assert len(read_metrics(tmp_path / "cut")) == 1 and not (tmp_path / "cut" / "result.json").exists()
    resumed = train(cfg, tmp_path / "cut", progress=False, log=_quiet)
    assert resumed.resumed_from == 1
    whole = train(cfg, tmp_path / "whole", progress=False, log=_quiet)
    assert _strip(resumed.metrics) == _strip(whole.metrics)
    a, b = torch.load(tmp_path / "cut" / "model_final.pt"), torch.load(tmp_path / "whole" / "model_final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for e in range(4):
        name = f"epoch_{e:03d}.npz"
        assert Topology.load(tmp_path / "cut/topology" / name) == Topology.load(tmp_path / "whole/topology" / name)
    with open(tmp_path / "cut" / "resources.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_old_run_directories_without_engine_still_resume(tiny_data, tmp_path):
    cfg = TrainConfig(method="set", data_dir=str(tiny_data), hidden=[16], epsilon=3, epochs=1, batch_size=32,
                      limit_train=100)
    train(cfg, tmp_path / "old", progress=False, log=_quiet)
    path = tmp_path / "old" / "config.yaml"
    text = path.read_text()
    assert "engine: masked\n" in text
    path.write_text(text.replace("engine: masked\n", ""))
    assert train(cfg, tmp_path / "old", progress=False, log=_quiet).skipped


# ------------------------------------------------------------------ (d) methods
def test_static_and_rigl_on_the_engine(tiny_data, tmp_path):
    for method in ("static", "rigl"):
        res = train(_cfg(tiny_data, method=method), tmp_path / method, progress=False, log=_quiet)
        first = Topology.load(tmp_path / method / "topology" / "epoch_000.npz")
        final = Topology.load(tmp_path / method / "topology" / "epoch_003.npz")
        assert final.n_connections == first.n_connections
        assert [res.final[f"connections_l{k}"] for k in range(3)] == list(first.n_connections)
        assert (first == final) == (method == "static")
        assert res.final["test_acc"] > 0.5


def test_the_initial_topology_file_is_used(tiny_data, tmp_path):
    topo = sample_topology([(64, 64), (64, 64), (4, 64)], [100, 150, 256], seed=5)
    topo.save(tmp_path / "t.npz")
    train(_cfg(tiny_data, method="static", epochs=1, initial_topology=str(tmp_path / "t.npz")), tmp_path / "r",
          progress=False, log=_quiet)
    assert Topology.load(tmp_path / "r" / "topology" / "epoch_001.npz") == topo


@pytest.mark.parametrize("args,fragments", [
    (["--method", "lottery"], ["--method lottery needs dense training (it prunes a trained dense network) and runs "
                               "on --engine masked only; got --engine truly-sparse"]),
    (["--method", "dense"], ["--method dense is the fully connected baseline", "runs on --engine masked only; got "
                             "--engine truly-sparse"]),
    (["--model", "cnn"], ["--engine truly-sparse trains fully connected networks only (--model mlp); got --model cnn"]),
    (["--engine", "sparse"], ["--engine must be one of masked, truly-sparse; got 'sparse'"]),
])
def test_unsupported_combinations_are_refused(tiny_data, tmp_path, args, fragments):
    base = ["train", "--data-dir", str(tiny_data), "--engine", "truly-sparse", "--epochs", "1", "--out",
            str(tmp_path / "r"), "-q"]
    one_line_error(runner.invoke(app, base + args), *fragments)
    assert not (tmp_path / "r").exists()


def test_yaml_engine_key(tiny_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"engine: truly-sparse\nmethod: lottery\ndata_dir: {tiny_data}\n")
    res = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "-q"])
    one_line_error(res, "lottery", "--engine masked only; got --engine truly-sparse")


# ------------------------------------------------------------------ (e) memory
def _no_build(monkeypatch):
    def no_build(self, data, topology=None):
        raise AssertionError("the model was built")

    monkeypatch.setattr(TrainConfig, "build_model", no_build)


def test_masked_refusal_names_the_truly_sparse_engine_and_its_estimate(tiny_data, tmp_path, monkeypatch):
    import sparsetopo.training.resources as resources

    _no_build(monkeypatch)
    monkeypatch.setattr(resources, "available_memory", lambda: 8 * 2**30)
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--method", "set", "--hidden", "100000", "100000",
                              "--epochs", "1", "--out", str(tmp_path / "r"), "-q"])
    line = one_line_error(res, "--hidden 100000 100000: training this network needs about", "8.0 GiB is available",
                          "use --engine truly-sparse (memory only for the connections: about")
    cfg = TrainConfig(method="set", engine="truly-sparse", hidden=[100000, 100000])
    assert f"about {resources._gib(resources.estimate_truly_sparse_memory(cfg, 64, 4))})" in line


def test_a_network_too_large_even_truly_sparse_is_refused_with_its_size(tiny_data, tmp_path, monkeypatch):
    import sparsetopo.training.resources as resources

    _no_build(monkeypatch)
    monkeypatch.setattr(resources, "available_memory", lambda: 8 * 2**30)
    args = ["train", "--data-dir", str(tiny_data), "--method", "set", "--hidden", *["1000000"] * 4, "--epochs", "1",
            "--out", str(tmp_path / "r"), "-q"]
    one_line_error(runner.invoke(app, args), "even --engine truly-sparse would need about", "GiB")
    one_line_error(runner.invoke(app, args + ["--engine", "truly-sparse"]),
                   "--hidden 1000000 1000000 1000000 1000000: training this network on --engine truly-sparse needs "
                   "about", "GiB of memory", "but 8.0 GiB is available", "use a smaller --hidden width")
    assert not (tmp_path / "r").exists()


def test_truly_sparse_estimate_follows_the_connections():
    from sparsetopo.training.resources import estimate_memory, estimate_truly_sparse_memory

    small = TrainConfig(engine="truly-sparse", hidden=[10000, 10000], epsilon=10)
    more = TrainConfig(engine="truly-sparse", hidden=[10000, 10000], epsilon=20)
    assert estimate_memory(small, 784, 10) == estimate_truly_sparse_memory(small, 784, 10)
    extra = estimate_truly_sparse_memory(more, 784, 10) - estimate_truly_sparse_memory(small, 784, 10)
    assert extra > 0
    masked = estimate_memory(TrainConfig(hidden=[10000, 10000], epsilon=10), 784, 10)
    assert estimate_truly_sparse_memory(small, 784, 10) < masked / 20
    from sparsetopo.training import resources
    from sparsetopo.truly_sparse import kernels
    assert resources._SCATTER_MAX_BATCH == kernels.SCATTER_MAX_BATCH


# ------------------------------------------------------------------ (f) no densifying
def test_a_million_neuron_snapshot_is_written_without_densifying(tmp_path):
    n = 10**6
    topo = sample_topology([(n, n)], [50], seed=0)
    net = TrulySparseMLP((n, n), topo)
    tracemalloc.start()
    try:
        snap = net.topology(epoch=0)
        snap.save(tmp_path / "big.npz")
        back = Topology.load(tmp_path / "big.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back == topo and back.n_connections == (50,)
    assert peak < 200 * 2**20  # a dense mask would be 10^12 bytes; the CSR row pointers are 8 MB


# ------------------------------------------------------------------ sparsify
def _user_model():
    model = torch.nn.Sequential(torch.nn.Linear(20, 40), torch.nn.ReLU(), torch.nn.Linear(40, 30), torch.nn.ReLU(),
                                torch.nn.Linear(30, 4))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3, generator=g)
    return model


def test_sparsify_on_the_truly_sparse_engine_is_the_masked_network(tmp_path):
    import copy

    from sparsetopo.methods import sparsify

    model = _user_model()
    twin = copy.deepcopy(model)
    sp = sparsify(model, "set", epsilon=3, seed=4, engine="truly-sparse")
    masked = sparsify(twin, "set", epsilon=3, seed=4)
    assert all(isinstance(model[i], TrulySparseLinear) for i in (0, 2, 4))
    assert sp.topology() == masked.topology() and sp.n_connections() == masked.n_connections()
    x = torch.randn(16, 20, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(x), twin(x), atol=1e-6, rtol=0)
    y = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = sp.topology()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert sp.end_epoch(opt, 1, 3) == [0, 1]
    assert sp.n_connections() == list(before.n_connections) and sp.topology() != before
    state = sp.state_dict()
    again = sparsify(copy.deepcopy(_user_model()), "set", epsilon=3, seed=4, engine="truly-sparse")
    again.load_state_dict(state)
    assert again.regrowth_rng.bit_generator.state == sp.regrowth_rng.bit_generator.state
    with pytest.raises(SparsetopoError, match="ITOP record is kept on engine 'masked' only"):
        sp.itop_rate()


def test_sparsify_rigl_and_refusals_on_the_truly_sparse_engine():
    from sparsetopo.methods import sparsify

    model = _user_model()
    sp = sparsify(model, "rigl", epsilon=3, seed=0, engine="truly-sparse", zeta=0.5)
    x = torch.randn(32, 20, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before = sp.topology()
    with pytest.raises(SparsetopoError, match="rigl needs loss_closure"):
        sp.end_epoch(opt, 1, 3)
    assert sp.end_epoch(opt, 1, 3, loss_closure=lambda: torch.nn.functional.cross_entropy(model(x), y)) == [0, 1]
    assert sp.topology() != before and sp.topology().n_connections == before.n_connections
    with pytest.raises(SparsetopoError, match=r"sparsify: engine must be one of masked, truly-sparse; got 'fast'"):
        sparsify(_user_model(), "set", engine="fast")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    with pytest.raises(SparsetopoError, match=r"layer '0' is an nn.Conv2d .*use engine='masked'"):
        sparsify(conv, "set", engine="truly-sparse")


def test_evaluation_batches_shrink_for_very_wide_layers():
    """Up to 8,192-wide layers evaluation keeps its 2,000-sample batches; beyond, a batch holds at most
    ``EVAL_ACTIVATIONS`` activations per layer (a 100,000-wide network peaked at 2.9 GB in evaluation
    with 2,000-sample batches, 0.8 GB with the shrunk ones)."""
    from sparsetopo.training.loop import EVAL_ACTIVATIONS, eval_batch_size

    assert eval_batch_size([784, 1000, 10]) == 2000 and eval_batch_size([8192]) == 2000
    assert eval_batch_size([100_000, 784]) == EVAL_ACTIVATIONS // 100_000 == 163
    assert eval_batch_size([10**9]) == 1
