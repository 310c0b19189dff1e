"""Live logging (issue 19, item 2): TensorBoard and W&B trackers fed from the metrics.csv rows, per-layer
density, ITOP rate and NNSTD to the initial topology, resume without duplicate steps, sparsify's callback."""

import math
import sys
import types

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import sparsify  # noqa: E402
from sparsetopo.nnstd import nnstd  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402
from sparsetopo.tracking import MultiTracker, TensorBoardTracker, layer_stats, row_scalars  # noqa: E402
from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402

TIMING = {"seconds", "train_seconds", "update_seconds"}


def _cfg(data, **kw):
    base = dict(method="set", data_dir=str(data), hidden=[16, 16], epsilon=3, epochs=3, batch_size=32,
                lr=0.05, seed=0, limit_train=200, snapshot_every=1)
    base.update(kw)
    return TrainConfig(**base)


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _close(a, b) -> bool:  # TensorBoard stores float32
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)


def test_tensorboard_holds_metrics_csv_and_the_topology_stats(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tensorboard=str(tmp_path / "tb"))
    train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    rows, got = read_metrics(tmp_path / "run"), _scalars(tmp_path / "tb")
    columns = [k for k in rows[0] if k not in ("epoch", "phase")]
    assert {f"metrics/{k}" for k in columns} <= set(got)
    for k in columns:  # the very numbers of metrics.csv, each epoch once
        steps = got[f"metrics/{k}"]
        assert [s for s, _ in steps] == [r["epoch"] for r in rows]
        assert all(_close(v, float(r[k])) for (_, v), r in zip(steps, rows)), k
    shapes = [(16, 64), (16, 16), (4, 16)]
    itop_before = [0.0, 0.0, 0.0]
    for step, row in enumerate(rows, start=1):
        for k, shape in enumerate(shapes):
            at = dict(got[f"density/l{k}"])[step]
            assert _close(at, row[f"connections_l{k}"] / math.prod(shape))
            itop = dict(got[f"itop/l{k}"])[step]
            assert at - 1e-6 <= itop <= 1 and itop >= itop_before[k] - 1e-7  # ever-active: grows, covers the mask
            itop_before[k] = itop
        initial = Topology.load(tmp_path / "run/topology/epoch_000.npz")
        now = Topology.load(tmp_path / f"run/topology/epoch_{step:03d}.npz")
        expected = nnstd(initial, now).per_layer
        assert all(_close(dict(got[f"nnstd_initial/l{k}"])[step], float(v)) for k, v in enumerate(expected))
    assert itop_before[0] > dict(got["density/l0"])[3]  # SET moved connections: more positions were ever used
    assert dict(got["itop/l2"])[3] == 1.0  # the dense output layer


class _Stop(Exception):
    pass


def _stop_after_first_epoch(msg):
    if "epoch 1/" in msg:  # logged after epoch 1's checkpoint and its scalars
        raise _Stop


def test_a_resumed_run_logs_each_step_once_and_keeps_its_itop_record(tiny_data, tmp_path):
    cut = _cfg(tiny_data, tensorboard=str(tmp_path / "tb_cut"), dropout=0.2)
    with pytest.raises(_Stop):
        train(cut, tmp_path / "cut", progress=False, log=_stop_after_first_epoch)
    train(cut, tmp_path / "cut", progress=False, log=lambda m: None)
    whole = _cfg(tiny_data, tensorboard=str(tmp_path / "tb_whole"), dropout=0.2)
    train(whole, tmp_path / "whole", progress=False, log=lambda m: None)
    a, b = _scalars(tmp_path / "tb_cut"), _scalars(tmp_path / "tb_whole")
    assert set(a) == set(b)
    for tag in a:
        assert [s for s, _ in a[tag]] == [1, 2, 3], tag  # no step twice, none missing
        if tag.removeprefix("metrics/") not in TIMING:
            assert a[tag] == b[tag], tag  # the ITOP record came back from the checkpoint


def test_the_truly_sparse_engine_logs_densities_but_no_itop(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, engine="truly-sparse", tensorboard=str(tmp_path / "tb"), epochs=2)
    train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    got = _scalars(tmp_path / "tb")
    assert "density/l0" in got and "nnstd_initial/mean" in got
    assert not any(tag.startswith("itop/") for tag in got)


# ------------------------------------------------------------------ W&B through a fake module
class _FakeRun:
    def __init__(self, calls, kwargs):
        self.calls = calls
        calls.append(("init", kwargs))

    def log(self, data, step=None):
        self.calls.append(("log", step, dict(data)))

    def finish(self):
        self.calls.append(("finish",))


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []
    module = types.ModuleType("wandb")
    module.init = lambda **kwargs: _FakeRun(calls, kwargs)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_gets_the_same_rows_offline_by_default(tiny_data, tmp_path, fake_wandb, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(_cfg(tiny_data, wandb=True, epochs=2), tmp_path / "run", progress=False, log=lambda m: None)
    kind, init = fake_wandb[0]
    assert kind == "init" and init["mode"] == "offline" and init["name"] == "run" and init["resume"] == "allow"
    assert init["config"]["method"] == "set" and init["dir"] == str(tmp_path / "run")
    logs = [c for c in fake_wandb if c[0] == "log"]
    rows = read_metrics(tmp_path / "run")
    assert [c[1] for c in logs] == [1, 2]
    for (_, _, data), row in zip(logs, rows):
        assert data["metrics/test_acc"] == row["test_acc"] and data["metrics/train_loss"] == row["train_loss"]
        assert "itop/all" in data and "nnstd_initial/mean" in data
    assert fake_wandb[-1] == ("finish",)


def test_wandb_mode_set_by_the_user_is_kept(tiny_data, tmp_path, fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    train(_cfg(tiny_data, wandb=True, epochs=1), tmp_path / "run", progress=False, log=lambda m: None)
    assert fake_wandb[0][1]["mode"] == "disabled"


def test_wandb_without_the_package_is_a_clear_error(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(SparsetopoError, match=r"^--wandb needs the wandb package, which is not installed: "
                                              r"pip install wandb"):
        train(_cfg(tiny_data, wandb=True), tmp_path / "run", progress=False, log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_the_train_cli_has_the_logging_flags(tiny_data, tmp_path):
    from click.testing import CliRunner

    from sparsetopo.cli import app

    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--hidden", "8", "--epochs", "1",
                                   "--limit-train", "100", "--device", "cpu", "--tensorboard", str(tmp_path / "tb"),
                                   "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    assert [s for s, _ in _scalars(tmp_path / "tb")["metrics/test_acc"]] == [1]


# ------------------------------------------------------------------ the pieces
def test_row_scalars_and_layer_stats():
    row = {"epoch": 3, "phase": "train", "test_acc": 0.5, "connections_l0": 12}
    assert row_scalars(row) == {"metrics/test_acc": 0.5, "metrics/connections_l0": 12.0}
    stats = layer_stats([(4, 5), (2, 4)], [10, 8], [0.75, 1.0])
    assert stats == {"density/l0": 0.5, "connections/l0": 10.0, "density/l1": 1.0, "connections/l1": 8.0,
                     "itop/l0": 0.75, "itop/l1": 1.0, "itop/all": (15 + 8) / 28}


def test_multitracker_closes_every_tracker_even_when_one_fails():
    closed = []

    class Bad:
        def log_scalars(self, step, scalars):
            closed.append(("log", step))

        def close(self):
            closed.append("bad")
            raise OSError("disk full")

    class Good(Bad):
        def close(self):
            closed.append("good")

    multi = MultiTracker([Bad(), Good()])
    multi.log_scalars(1, {"a": 1.0})
    with pytest.raises(OSError, match="disk full"):
        multi.close()
    assert closed == [("log", 1), ("log", 1), "bad", "good"]


def test_a_tensorboard_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SparsetopoError, match=r"f exists and is not a directory"):
        TensorBoardTracker(tmp_path / "f")


def test_sparsify_calls_back_after_each_update_with_the_layer_stats(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))
    got = []
    sp = sparsify(model, "set", epsilon=3, seed=0, callback=lambda step, stats: got.append((step, stats)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in (1, 2):
        opt.zero_grad()
        model(torch.randn(8, 20, generator=torch.Generator().manual_seed(epoch))).sum().backward()
        opt.step()
        sp.end_epoch(opt, epoch, 3)
    assert [s for s, _ in got] == [1, 2]
    stats = got[-1][1]
    assert stats == sp.layer_stats()
    assert stats["connections/l0"] == sp.n_connections()[0] and stats["itop/l0"] == sp.itop_rate()[0]
    assert stats["density/l1"] == 1.0 and stats["itop/l0"] > stats["density/l0"]
    # a tracker's log_scalars is such a callback
    tb = TensorBoardTracker(tmp_path / "tb")
    sp2 = sparsify(torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Linear(30, 5)), "set", callback=tb.log_scalars)
    sp2.end_epoch(torch.optim.SGD(sp2.model.parameters(), lr=0.1), 1, 3)
    tb.close()
    assert [s for s, _ in _scalars(tmp_path / "tb")["density/l0"]] == [1]
    with pytest.raises(SparsetopoError, match=r"^sparsify: callback must be a function \(step, stats\); got 3"):
        sparsify(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)), "set", callback=3)
