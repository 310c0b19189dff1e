import csv
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from sparsetopo.cli import app  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402
from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402

TIMING = {"seconds", "train_seconds", "update_seconds"}


def _cfg(data, **kw):
    base = dict(method="set", dataset="fashion-mnist", data_dir=str(data), hidden=[32, 32], epsilon=4,
                epochs=3, batch_size=32, lr=0.05, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.mark.parametrize("method", ["dense", "static", "set", "rigl", "lottery"])
def test_every_method_trains_and_writes_a_run_directory(tiny_data, tmp_path, method):
    cfg = _cfg(tiny_data, method=method, snapshot_epochs=[1], round_epochs=1, prune_rate=0.5)
    res = train(cfg, tmp_path / method, progress=False, log=lambda m: None)
    out = tmp_path / method
    for name in ("config.yaml", "command.txt", "metrics.csv", "checkpoint.pt", "model_final.pt", "result.json"):
        assert (out / name).is_file(), name
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["test_acc"] > 0.5  # the tiny task is learnable
    snaps = sorted(p.name for p in (out / "topology").glob("*.npz"))
    assert snaps[0] == "epoch_000.npz" and f"epoch_{len(rows):03d}.npz" in snaps and "epoch_001.npz" in snaps
    final = Topology.load(out / "topology" / f"epoch_{len(rows):03d}.npz")
    assert list(final.n_connections) == [rows[-1][f"connections_l{k}"] for k in range(3)]
    first = Topology.load(out / "topology" / "epoch_000.npz")
    if method == "dense":
        assert first.density == 1.0
    elif method == "lottery":
        assert first.density == 1.0 and final.densities[0] < 0.5
        assert rows[-1]["phase"] == "ticket" and rows[0]["phase"] == "prune-round-1"
    else:
        assert first.n_connections == final.n_connections  # count per layer preserved
        assert first.densities[0] < 0.5
    if method == "static":
        assert first == final
    if method == "set":
        assert first != final
    assert rows[-1]["train_flops"] > rows[0]["train_flops"] > 0
    assert res.final["epoch"] == len(rows)


def test_same_seeds_same_results_and_named_seeds_separate(tiny_data, tmp_path):
    a = train(_cfg(tiny_data), tmp_path / "a", progress=False, log=lambda m: None)
    b = train(_cfg(tiny_data), tmp_path / "b", progress=False, log=lambda m: None)
    assert _strip(a.metrics) == _strip(b.metrics)
    for e in (0, 3):
        assert Topology.load(tmp_path / "a/topology" / f"epoch_{e:03d}.npz") == \
            Topology.load(tmp_path / "b/topology" / f"epoch_{e:03d}.npz")
    # another regrowth seed: same initial topology, different evolution
    c = train(_cfg(tiny_data, regrowth_seed=123), tmp_path / "c", progress=False, log=lambda m: None)
    t0 = lambda d, e: Topology.load(tmp_path / d / "topology" / f"epoch_{e:03d}.npz")  # noqa: E731
    assert t0("a", 0) == t0("c", 0)
    assert t0("a", 3) != t0("c", 3)
    assert c.metrics[0]["train_loss"] == a.metrics[0]["train_loss"]  # same init and data order in epoch 1
    # another topology seed: another initial topology
    train(_cfg(tiny_data, topology_seed=77), tmp_path / "d", progress=False, log=lambda m: None)
    assert t0("a", 0) != t0("d", 0)
    # the named seeds derived from one base seed differ from each other
    cfg = _cfg(tiny_data)
    assert len({cfg.named_seed(p) for p in ("topology", "init", "data", "regrowth", "dropout")}) == 5


def test_completed_run_is_skipped_and_other_config_refused(tiny_data, tmp_path):
    train(_cfg(tiny_data), tmp_path / "r", progress=False, log=lambda m: None)
    again = train(_cfg(tiny_data), tmp_path / "r", progress=False, log=lambda m: None)
    assert again.skipped
    with pytest.raises(ValueError, match=r"another configuration \(lr: 0.05 -> 0.1\)"):
        train(_cfg(tiny_data, lr=0.1), tmp_path / "r", progress=False)


def test_resume_after_kill_equals_uninterrupted_run(tiny_data, tmp_path):
    from conftest import make_idx_dataset

    data = make_idx_dataset(tmp_path / "bigger", n_train=4000, n_test=200, side=16)
    args = ["-m", "sparsetopo.cli", "train", "--method", "set", "--data-dir", str(data), "--hidden", "128", "128",
            "--epsilon", "8", "--epochs", "12", "--batch-size", "16", "--lr", "0.02", "--quiet", "--threads", "1",
            "--snapshot-every", "2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *args, "--out", str(killed)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "metrics.csv").exists() and len((killed / "metrics.csv").read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_metrics(killed))
    assert 3 <= done_before < 12
    assert not (killed / "result.json").exists()
    subprocess.run([sys.executable, *args, "--out", str(killed)], check=True, stderr=subprocess.DEVNULL)
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, *args, "--out", str(whole)], check=True, stderr=subprocess.DEVNULL)
    assert _strip(read_metrics(killed)) == _strip(read_metrics(whole))
    a = torch.load(killed / "model_final.pt")
    b = torch.load(whole / "model_final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for snap in (whole / "topology").glob("*.npz"):
        assert Topology.load(snap) == Topology.load(killed / "topology" / snap.name)
    assert len((killed / "command.txt").read_text().splitlines()) == 2


@pytest.mark.parametrize("args,msg", [
    (["--epsilon", "-1"], "--epsilon must be a number > 0; got -1.0"),
    (["--zeta", "1.5"], r"--zeta must be a number in (0, 1); got 1.5"),
    (["--zeta", "0"], r"--zeta must be a number in (0, 1); got 0.0"),
    (["--density", "1.2"], r"--density must be a number in (0, 1]; got 1.2"),
    (["--method", "magic"], "--method must be one of dense, static, set, rigl, lottery, gmp, magnitude, snip, grasp, "
                                "synflow; got 'magic'"),
    (["--optimizer", "rmsprop"], "--optimizer must be one of sgd, adam; got 'rmsprop'"),
    (["--hidden", "10", "0"], "--hidden must be a list of integers in [1, 1000000]; got [10, 0]"),
    (["--momentum", "-1"], "--momentum must be a number in [0, 1); got -1.0"),
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295]; got -1"),
    (["--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    (["--limit-train", "0"], "--limit-train must be an integer >= 1; got 0"),
    (["--limit-train", "-5"], "--limit-train must be an integer >= 1; got -5"),
])
def test_bad_config_fails_before_training(args, msg, tmp_path, tiny_data):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert msg in res.output
    assert not out.exists()


def test_yaml_config_with_cli_override(tmp_path, tiny_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: static\nhidden: [16, 16]\nepochs: 1\nepsilon: 3\ndata-dir: {tiny_data}\nlr: 0.5\n")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--lr", "0.05", "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 0, res.output
    import yaml

    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["method"] == "static" and saved["hidden"] == [16, 16] and saved["lr"] == 0.05
    with open(tmp_path / "r" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("methd: set\n")
    res = CliRunner().invoke(app, ["train", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown key(s) methd" in res.output


def test_example_configs_are_valid():
    from pathlib import Path

    from sparsetopo.experiments import make_config
    from sparsetopo.training import load_config_file

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted(root.glob("train-*.yaml")):
        TrainConfig.from_dict(load_config_file(path), source=str(path)).validate()
    make_config("evolution", "small", load_config_file(root / "evolution-longer-small.yaml"))
