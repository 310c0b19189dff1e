"""Issue 20: the ``methods`` study (ten methods, densities, seeds, NNSTD map per density, MDS, findings)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from conftest import make_idx_dataset  # noqa: E402
from sparsetopo.cli import app  # noqa: E402
from sparsetopo.experiments import make_config  # noqa: E402
from sparsetopo.experiments.methods import ALL_METHODS, MapResult, plan, plan_config  # noqa: E402
from sparsetopo.experiments.methods_report import _seeds_closer, method_distances  # noqa: E402
from sparsetopo.nnstd import load_matrix  # noqa: E402
from sparsetopo.report import write_report  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402

REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
GLOBAL = {"snip", "grasp", "synflow"}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset, as CI runs it (the real Fashion-MNIST when installed, else a synthetic stand-in)."""
    root = tmp_path_factory.mktemp("methods")
    args = ["experiment", "methods", "--preset", "smoke", "--out", str(root / "out"), "-q", "-j", "2"]
    if not REAL.exists():
        d = make_idx_dataset(root / "fm", n_train=2000, n_test=500, side=28, n_classes=10)
        (root / "data.yaml").write_text(f"data_dir: {d}\n")
        args += ["--config", str(root / "data.yaml")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return root / "out", args


def test_smoke_covers_every_method_on_the_mlp_and_the_cnn_part(smoke):
    out, _ = smoke
    rows = _rows(out / "tables" / "accuracy.csv")
    assert [r["method"] for r in rows if r["model"] == "mlp"] == ALL_METHODS
    assert {r["method"] for r in rows if r["model"] == "cnn"} == {"static", "set", "snip", "magnitude"}
    for r in rows:
        assert 0 <= float(r["test_acc_mean"]) <= 1 and float(r["test_acc_std"]) >= 0 and r["seeds"] == "2"
        assert float(r["train_flops"]) > 0
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["density"]) == 1.0
    # training FLOPs: a method that trains dense first costs more than static at the same density
    flops = {r["method"]: float(r["train_flops"]) for r in rows if r["model"] == "mlp"}
    assert flops["magnitude"] > flops["static"] and flops["lottery"] > flops["static"]


def test_equal_connection_counts_layerwise_and_in_total_for_global_scopes(smoke):
    out, _ = smoke
    for part in ("mlp", "cnn"):
        static = Topology.load(out / "runs" / part / "static_d0.1_s0" / "topology" / "epoch_002.npz")
        for d in sorted((out / "runs" / part).glob("*_d0.1_s0")):
            epochs = sorted((d / "topology").glob("epoch_*.npz"))
            t = Topology.load(epochs[-1])
            method = d.name.split("_d")[0]
            assert sum(t.n_connections) == sum(static.n_connections), d.name
            if method not in GLOBAL:
                assert t.n_connections == static.n_connections, d.name
    layer = _rows(out / "tables" / "layer_densities.csv")
    snip = next(r for r in layer if (r["model"], r["method"]) == ("mlp", "snip"))
    static = next(r for r in layer if (r["model"], r["method"]) == ("mlp", "static"))
    assert snip["layer_0"] != static["layer_0"]  # global scope ends with other per-layer densities
    assert static["layer_3"] == ""  # the MLP has three layers, the CNN four: blanks, not zeros


def test_nnstd_map_per_density_is_a_distance_matrix_ordered_by_method(smoke):
    out, _ = smoke
    d, names = load_matrix(out / "nnstd" / "mlp_d0.1.npz")
    assert names[:2] == ["static/s0", "static/s1"] and "dense/s0" not in names
    assert [n.split("/")[0] for n in names] == [m for m in ALL_METHODS if m != "dense" for _ in range(2)]
    assert np.all((d >= 0) & (d <= 1))
    np.testing.assert_array_equal(d, d.transpose(1, 0, 2))
    assert np.all(d[np.arange(len(d)), np.arange(len(d))] == 0)
    assert np.all(d[:, :, -1] == 0)  # the dense output layer
    assert (out / "nnstd" / "cnn_d0.1.npz").exists()
    moved = {(r["model"], r["method"]): float(r["nnstd_from_initial_mean"])
             for r in _rows(out / "tables" / "from_initial.csv")}
    assert moved[("mlp", "static")] == 0.0 and moved[("mlp", "set")] > 0.05 and moved[("mlp", "rigl")] > 0
    assert ("mlp", "gmp") not in moved  # starts dense: no sparse initial topology


def test_summary_findings_and_report_section(smoke, tmp_path):
    out, _ = smoke
    s = json.loads((out / "summary.json").read_text())
    text = " ".join(s["findings"])
    for needle in ("MLP at density 10 %, test accuracy best first", "seeds of one method are",
                   "the most similar subnetworks come from", "from its own initial topology", "global scope",
                   "cannot be set beside ours"):
        assert needle in text
    assert set(s["figures"].values()) >= {"figures/accuracy_vs_density.png", "figures/accuracy_vs_flops.png",
                                          "figures/nnstd_mlp_d0.1.png", "figures/mds_mlp_d0.1.png",
                                          "figures/mds_cnn_d0.1.png"}
    settings = {r["setting"]: r for r in _rows(out / "tables" / "settings.csv")}
    assert "Frankle" in settings["prune_rate"]["paper preset: source"]
    assert "global" in settings["methods"]["paper preset: source"]
    _, page = write_report(out.parent)
    html = Path(page).read_text()
    assert "A topological map of sparse training and pruning methods" in html
    assert "the most similar subnetworks come from" in html


def test_smoke_resumes_without_training_again(smoke):
    out, args = smoke
    before = (out / "runs" / "mlp" / "set_d0.1_s0" / "metrics.csv").stat().st_mtime_ns
    res = CliRunner().invoke(app, args[:-3] + ["-j", "2"])
    assert res.exit_code == 0, res.output
    assert (out / "runs" / "mlp" / "set_d0.1_s0" / "metrics.csv").stat().st_mtime_ns == before


def test_each_method_gets_its_own_settings_and_the_same_seed_per_seed_index():
    cfg = make_config("methods", "small")
    syn = plan_config(cfg, "mlp", "synflow", 0.05, 1)
    assert syn.rounds == cfg.rounds and syn.scope == "global" and syn.seed == cfg.seed + 1
    mag = plan_config(cfg, "mlp", "magnitude", 0.05, 1)
    assert mag.finetune_epochs == cfg.finetune_epochs and mag.scope == "layerwise" and mag.seed == syn.seed
    assert not hasattr(plan_config(cfg, "mlp", "snip", 0.05, 0), "rounds")
    cnn = plan_config(cfg, "cnn", "static", 0.05, 0)
    assert (cnn.model, cnn.distribution, cnn.channels) == ("cnn", "erk", cfg.cnn_channels)
    runs = plan(make_config("methods", "paper"), Path("x"))
    # paper: dense once per seed, nine methods x three densities x three seeds, on both models
    assert len(runs) == 2 * (3 + 9 * 3 * 3)


def test_presets_fit_the_issue():
    paper = make_config("methods", "paper")
    assert paper.hidden == [1000, 1000, 1000] and paper.densities == [0.1, 0.05, 0.02]
    assert paper.methods == ALL_METHODS == paper.cnn_methods
    small = make_config("methods", "small")
    assert small.seeds >= 2 and small.methods == ALL_METHODS


@pytest.mark.parametrize("overrides, msg", [
    ({"densities": [1.5]}, r"densities must be a list of numbers in \(0, 1\); got \[1.5\]"),
    ({"methods": ["nope"]}, r"methods must be a non-empty list of dense, .*; got \['nope'\]"),
    ({"seeds": 0}, r"seeds must be an integer in \[1, 1000\]; got 0"),
])
def test_bad_settings_are_named(overrides, msg):
    with pytest.raises(ValueError, match=msg):
        make_config("methods", "smoke", overrides)


def _map(matrix, methods):
    class F:
        def __init__(self, m, s):
            self.run = type("R", (), {"method": m, "name": f"{m}/s{s}"})()
    finals = [F(m, i) for i, m in enumerate(methods)]
    d = np.asarray(matrix, float)[:, :, None]
    return MapResult("mlp", 0.1, finals, d, [0], np.zeros((len(methods), 2)))


def test_method_distances_and_closer_seeds_against_a_hand_computed_matrix():
    # a/s0, a/s1, b/s2, b/s3: a's seeds are 0.1 apart, b's 0.6; a-b pairs 0.5
    m = _map([[0, .1, .5, .5], [.1, 0, .5, .5], [.5, .5, 0, .6], [.5, .5, .6, 0]], ["a", "a", "b", "b"])
    within, between = method_distances(m)
    assert within == pytest.approx({"a": 0.1, "b": 0.6}) and between == pytest.approx({("a", "b"): 0.5})
    assert _seeds_closer(m) == ["a"]
