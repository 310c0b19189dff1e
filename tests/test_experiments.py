import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from conftest import make_idx_dataset  # noqa: E402
from sparsetopo.cli import EXPERIMENT_NAMES, app  # noqa: E402
from sparsetopo.experiments import EXPERIMENTS, make_config  # noqa: E402
from sparsetopo.nnstd import load_matrix  # noqa: E402
from sparsetopo.report import write_report  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402

REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture(scope="module")
def data_config(tmp_path_factory):
    """The smoke presets run on the real Fashion-MNIST when it is installed, else on a synthetic stand-in."""
    cfg = tmp_path_factory.mktemp("cfg") / "data.yaml"
    if REAL.exists():
        cfg.write_text("{}\n")
    else:
        d = make_idx_dataset(tmp_path_factory.mktemp("data") / "fm", n_train=2000, n_test=500, side=28,
                             n_classes=10)
        cfg.write_text(f"data_dir: {d}\n")
    return cfg


@pytest.fixture(scope="module")
def results(tmp_path_factory, data_config):
    root = tmp_path_factory.mktemp("exp")
    runner = CliRunner()
    for name in EXPERIMENT_NAMES:
        res = runner.invoke(app, ["experiment", name, "--preset", "smoke", "--config", str(data_config),
                                  "--out", str(root / name), "-q", "-j", "2"])
        assert res.exit_code == 0, res.output
    return root


def test_cli_names_match_registry():
    assert EXPERIMENT_NAMES == list(EXPERIMENTS)


def _check_matrix(d):
    assert np.all((d >= 0) & (d <= 1))
    np.testing.assert_array_equal(d, d.transpose(1, 0, 2))
    assert np.all(d[np.arange(len(d)), np.arange(len(d))] == 0)


def test_evolution_outputs(results):
    out = results / "evolution"
    summary = json.loads((out / "summary.json").read_text())
    cfg = summary["config"]
    # the dense output layer is named and left out of the means
    assert f"Layer {len(cfg['hidden'])} is dense (NNSTD 0 by construction): left out of the heatmaps and means." \
        in summary["findings"]
    epochs = sorted(cfg["snapshot_epochs"])
    mats = {}
    for e in epochs:
        d, names = load_matrix(str(out / "nnstd" / f"epoch_{e:03d}.npz"))
        assert d.shape == (cfg["networks"], cfg["networks"], len(cfg["hidden"]) + 1)
        assert names == [f"net{i}" for i in range(cfg["networks"])]
        _check_matrix(d)
        assert (out / "nnstd" / f"epoch_{e:03d}.csv").is_file()
        mats[e] = d
    d0 = mats[0][:, :, 0]
    # the chain: NNSTD grows with the distance in the chain
    assert np.all(np.diff(d0[0, 1:]) > 0)
    # neighbours before training: close to what moving 1 % of the connections implies, i.e. the
    # distance under the identity matching (an upper bound that the optimal matching barely improves)
    initial = [Topology.load(out / "initial" / f"net{i}.npz") for i in range(cfg["networks"])]
    for i in range(cfg["networks"] - 1):
        a, b = initial[i][0], initial[i + 1][0]
        identity = np.mean([1 - len(set(a[r].indices) & set(b[r].indices)) / len(set(a[r].indices) | set(b[r].indices))
                            if a[r].nnz + b[r].nnz else 0 for r in range(a.shape[0])])
        assert 0.8 * identity <= d0[i, i + 1] <= identity + 1e-12
    # the run's snapshots are the perturbed chain before training
    assert Topology.load(out / "runs" / "net1" / "topology" / "epoch_000.npz") == initial[1]
    # shared_init: every network starts from the same weights, so they agree on every shared connection
    from sparsetopo.training import load_weights

    w = [load_weights(out / "runs" / f"net{i}" / "weights" / "epoch_000.npz")[0][0] for i in range(2)]
    both = initial[0][0].multiply(initial[1][0]).tocoo()
    np.testing.assert_array_equal(np.asarray(w[0][both.row, both.col]), np.asarray(w[1][both.row, both.col]))
    assert len(both.row) > 0 and np.asarray(w[0][both.row, both.col]).std() > 0
    # The output layer is dense in this study: no heatmap, not in the means.
    assert summary["hidden_layers"] == list(range(len(cfg["hidden"])))
    assert not (out / "figures" / f"heatmaps_layer{len(cfg['hidden'])}.png").exists()
    for k in summary["hidden_layers"]:
        w, h = png_size(out / "figures" / f"heatmaps_layer{k}.png")
        n_panels = len(epochs)
        assert w == round(((2.4 + 0.08 * cfg["networks"]) * n_panels + 0.8) * 150)  # one panel per epoch
        assert 300 < h < w / 2
    for fig in ("mean_nnstd_vs_epoch.png", "drift_from_initial.png"):
        assert png_size(out / "figures" / fig) == (750, 540)
    fidelity = (out / "tables" / "fidelity.csv").read_text().splitlines()
    assert fidelity[0] == "statistic,layer,published_epoch,published,our_epoch,ours,difference"
    # published epoch 0 is compared with our state after two epochs of training (snapshot before the update)
    assert any(line.startswith("mean NNSTD,0,0,0.318,2,") for line in fidelity)
    assert png_size(out / "figures" / "fidelity.png")[0] > 1000


def test_sparse_vs_dense_table(results):
    import csv

    out = results / "sparse-vs-dense"
    cfg = json.loads((out / "summary.json").read_text())["config"]
    rows = list(csv.DictReader(open(out / "tables" / "accuracy.csv")))
    keys = {(r["method"], r["epsilon"]) for r in rows}
    expected = {("dense", ""), ("dense-wide", "")} | {(m, f"{e:g}") for m in cfg["methods"] for e in cfg["epsilons"]}
    assert keys == expected and len(rows) == len(expected)
    for r in rows:
        assert 0 < float(r["density"]) <= 1 and 0 <= float(r["test_acc_mean"]) <= 1
        assert int(r["seeds"]) == cfg["seeds"]
    dense = {r["method"]: float(r["density"]) for r in rows}
    assert dense["dense"] == 1.0
    assert "± " in (out / "tables" / "accuracy.md").read_text()
    assert png_size(out / "figures" / "accuracy_vs_density.png")[0] > 500
    # a claim that did not show names the budget that would test it
    findings = " ".join(json.loads((out / "summary.json").read_text())["findings"])
    assert ("does NOT beat" in findings) == ("epochs 1 (paper preset: 200)" in findings)


def test_budget_gap_names_what_falls_short():
    from sparsetopo.experiments.base import budget_gap
    from sparsetopo.experiments.sparse_vs_dense import PRESETS, SparseVsDenseConfig

    small = SparseVsDenseConfig(**PRESETS["small"])
    text = budget_gap(small, PRESETS["paper"], ("hidden", "epochs", "seeds", "limit_train"))
    assert "hidden [300, 300, 300] (paper preset: [1000, 1000, 1000])" in text
    assert "epochs 12 (paper preset: 200)" in text and "seeds 2 (paper preset: 5)" in text
    assert "limit_train" not in text  # both use all the data
    limited = SparseVsDenseConfig(**{**PRESETS["paper"], "limit_train": 500})
    assert budget_gap(limited, PRESETS["paper"], ("epochs", "limit_train")) == (
        "This run's budget is smaller than the paper's: limit_train 500 (paper preset: None). "
        "The paper preset is the budget that would test the claim.")
    assert budget_gap(SparseVsDenseConfig(**PRESETS["paper"]), PRESETS["paper"], ("epochs",)).startswith(
        "This run had")


def test_tickets_outputs(results):
    import csv

    out = results / "tickets"
    cfg = json.loads((out / "summary.json").read_text())["config"]
    d, names = load_matrix(str(out / "nnstd" / "finals.npz"))
    _check_matrix(d)
    assert names == ["initial"] + [f"set_s{i}" for i in range(cfg["set_runs"])] + \
        [f"lottery_s{i}" for i in range(cfg["lottery_runs"])]
    # all SET runs share their initial topology
    firsts = [Topology.load(out / "runs" / f"set_s{i}" / "topology" / "epoch_000.npz") for i in range(cfg["set_runs"])]
    assert all(t == firsts[0] for t in firsts)
    # lottery tickets end with the same connection count per layer as the SET subnetworks
    final_set = Topology.load(max((out / "runs" / "set_s0" / "topology").glob("*.npz")))
    final_lot = Topology.load(max((out / "runs" / "lottery_s0" / "topology").glob("*.npz")))
    assert final_set.n_connections == final_lot.n_connections
    cost = {r["subnetwork"]: r for r in csv.DictReader(open(out / "tables" / "cost.csv"))}
    assert float(cost["lottery_s0"]["train_flops"]) > float(cost["set_s0"]["train_flops"])
    assert int(cost["lottery_s0"]["epochs"]) > int(cost["set_s0"]["epochs"])
    acc = list(csv.DictReader(open(out / "tables" / "accuracy.csv")))
    assert len(acc) == cfg["set_runs"] + cfg["lottery_runs"]
    # the mean NNSTD among SET subnetworks is over the sparse layers only (the dense output layer is 0)
    findings = " ".join(json.loads((out / "summary.json").read_text())["findings"])
    set_i = [names.index(f"set_s{i}") for i in range(cfg["set_runs"])]
    expected = np.mean([d[i, j, :-1].mean() for a, i in enumerate(set_i) for j in set_i[a + 1:]])
    assert f"subnetworks (sparse layers): {expected:.3f}" in findings
    assert "Layer 2 is dense (NNSTD 0 by construction)" in findings
    snaps, snap_names = load_matrix(str(out / "nnstd" / "snapshots.npz"))
    _check_matrix(snaps)
    assert png_size(out / "figures" / "mds_trajectories.png")[0] > 500


def test_rerun_skips_finished_work(results, data_config):
    out = results / "tickets"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}
    cache_files = set((out / "nnstd_cache").iterdir())
    res = CliRunner().invoke(app, ["experiment", "tickets", "--preset", "smoke", "--config", str(data_config),
                                   "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")} == stamps
    assert set((out / "nnstd_cache").iterdir()) == cache_files
    other = CliRunner().invoke(app, ["experiment", "tickets", "--preset", "small", "--out", str(out), "-q"])
    assert other.exit_code == 2 and "other settings" in other.output


def test_report(results):
    md, page = write_report(results)
    text = md.read_text()
    for title in ("Topology evolution", "Sparse vs dense", "lottery tickets"):
        assert title in text
    assert "Fidelity: this run beside the paper's published networks" in text
    assert "| mean NNSTD | 0 | 0 | 0.318 | 2 |" in text  # the published value beside ours
    html = page.read_text()
    assert html.count("data:image/png;base64,") == text.count("![")
    assert "src=\"figures/" not in html  # self-contained
    res = CliRunner().invoke(app, ["report", str(results)])
    assert res.exit_code == 0 and "report.html" in res.output


def test_bad_experiment_input(tmp_path, data_config):
    runner = CliRunner()
    res = runner.invoke(app, ["experiment", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "'nope' is not one of" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("netwrks: 3\n")
    res = runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(bad),
                              "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "unknown key(s) for evolution: netwrks" in res.output
    bad.write_text("zeta: 2\n")
    res = runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(bad),
                              "--out", str(tmp_path / "z")])
    assert res.exit_code == 2 and "bad.yaml: zeta must be a number in (0, 1); got 2" in res.output
    res = runner.invoke(app, ["experiment", "evolution", "--cluster", "nonsense", "--out", str(tmp_path / "w")])
    assert res.exit_code == 2 and "--cluster must be a Dask scheduler address" in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no such directory" in res.output


@pytest.mark.parametrize("overrides,msg", [
    ({"solver": "fast"}, "solver must be one of auto, ssp, dense, sparse; got 'fast'"),
    ({"networks": 1}, r"networks must be an integer in \[2, 1000\]; got 1"),
    ({"epsilons": [1], "seeds": 0}, r"seeds must be an integer in \[1, 1000\]; got 0"),
    ({"methods": ["set", "magic"]}, r"methods must be a non-empty list of static, set, rigl; got \['set', 'magic'\]"),
    ({"perturb_fraction": 0}, r"perturb_fraction must be a number in \(0, 1\]; got 0"),
    ({"epochs": 1.7}, r"epochs must be an integer >= 1; got 1.7"),
    ({"snapshot_weights": "no"}, r"snapshot_weights must be true or false; got 'no'"),
    ({"lr": float("nan")}, r"lr must be a finite number > 0; got nan"),
])
def test_experiment_config_validation(overrides, msg):
    name = "sparse-vs-dense" if {"seeds", "methods"} & set(overrides) else "evolution"
    with pytest.raises(ValueError, match=msg):
        make_config(name, "smoke", overrides)


def test_presets_are_valid():
    for name in EXPERIMENTS:
        for preset in ("smoke", "small", "paper"):
            make_config(name, preset)


def test_evolution_on_a_cnn(tmp_path, data_config):
    out = tmp_path / "cnn"
    res = CliRunner().invoke(app, ["experiment", "evolution", "--model", "cnn", "--preset", "smoke", "--config",
                                   str(data_config), "--out", str(out), "-q", "-j", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == "cnn"
    t = Topology.load(out / "runs" / "net0" / "topology" / "epoch_002.npz")
    assert t.kernels[:2] == ((3, 3), (3, 3))
    for k in summary["hidden_layers"]:
        assert png_size(out / "figures" / f"heatmaps_layer{k}.png")[0] > 300
    assert not (out / "tables" / "fidelity.csv").exists()  # the published networks are MLPs
    bad = CliRunner().invoke(app, ["experiment", "evolution", "--model", "cnn", "--preset", "paper",
                                   "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--preset paper is not available with --model cnn (presets: smoke, small)" \
        in bad.output
    bad = CliRunner().invoke(app, ["experiment", "tickets", "--model", "cnn", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "tickets runs on model mlp; got 'cnn'" in bad.output


def test_report_tables_round_for_readers_and_keep_text():
    from sparsetopo.report import _html_table

    html = _html_table([{"statistic": "mean NNSTD", "ours": "0.318893", "connections": "3772", "flops": "1.39536e+11",
                         "difference": "-0.0024943"}])
    assert "<td>0.3189</td>" in html and "<td>3772</td>" in html and "<td>1.395e+11</td>" in html
    assert "<td>-0.002494</td>" in html and "<td class=\"text\">mean NNSTD</td>" in html  # text cells align left


def test_unlearning_flags_a_training_loss_that_rose_after_its_minimum():
    from sparsetopo.experiments.base import unlearning

    def rows(losses):
        return [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]

    # SET at epsilon 1 on 1000-wide layers (the 30-epoch study): down, then up for good
    assert unlearning(rows([0.998, 0.853, 0.887, 0.96, 1.016, 1.104])) == (
        "training loss rose from 0.853 (epoch 2) to 1.104 (epoch 6): the network unlearned")
    assert unlearning(rows([0.9, 0.7, 0.6, 0.62, 0.61])) is None  # noise near the minimum
    assert unlearning(rows([0.9, 0.5, 2.0, 0.5])) is None  # recovered by the end
    assert unlearning(rows([0.9, 1.5])) is None  # too short to tell
