"""Issue 19: one mean (over the sparse layers) everywhere, labelled results, short labels, the chain command."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparsetopo.cli import _labels, app
from sparsetopo.errors import SparsetopoError
from sparsetopo.experiments.base import sparse_layers as study_sparse_layers
from sparsetopo.nnstd import PairwiseNNSTD, load_matrix, nnstd, pairwise_nnstd, sparse_layers
from sparsetopo.topology import Topology, erdos_renyi, perturb

runner = CliRunner()


def _with_dense_output(t: Topology, name: str) -> Topology:
    """``t`` with its last layer fully connected (the usual dense output layer)."""
    masks = t.to_dense()
    masks[-1] = np.ones_like(masks[-1])
    return Topology.from_masks(masks, name=name)


@pytest.fixture
def pair():
    base = erdos_renyi([40, 30, 20, 10, 5], epsilon=3, seed=0)
    return _with_dense_output(base, "a"), _with_dense_output(perturb(base, 0.3, seed=1), "b")


# ------------------------------------------------------------------ the rule and NNSTDResult

def test_sparse_layers_counts_a_layer_sparse_in_either_network(pair):
    a, b = pair
    assert sparse_layers(a) == sparse_layers(a, b) == [0, 1, 2]
    dense_everywhere = Topology.from_masks([np.ones((30, 40)), np.ones((20, 30)), np.ones((5, 20))])
    half = Topology.from_masks([np.ones((30, 40)), np.eye(20, 30), np.ones((5, 20))])
    assert sparse_layers(dense_everywhere) == []
    assert sparse_layers(dense_everywhere, half) == [1]
    assert study_sparse_layers(a) == sparse_layers(a)  # the experiments use the same rule
    with pytest.raises(SparsetopoError, match="sparse_layers needs at least one topology"):
        sparse_layers()


def test_value_is_the_mean_over_sparse_layers_and_repr_is_short(pair):
    res = nnstd(*pair)
    assert res.per_layer[3] == 0.0 and res.per_layer[:3].min() > 0
    assert res.sparse_layers == (0, 1, 2)
    assert res.value == pytest.approx(res.per_layer[:3].mean())
    assert res.mean_all == pytest.approx(res.per_layer.mean())
    assert res.value > res.mean_all
    text = repr(res)
    assert f"value={res.value:.4f} over layers [0, 1, 2]" in text and f"mean_all={res.mean_all:.4f}" in text
    assert "array" not in text and "matchings" not in text and len(text) < 200
    assert nnstd(pair[1], pair[0]).sparse_layers == res.sparse_layers  # kept through the canonical reversal


def test_value_of_fully_dense_networks_is_zero():
    dense = Topology.from_masks([np.ones((6, 8)), np.ones((3, 6))])
    res = nnstd(dense, dense)
    assert res.sparse_layers == () and res.value == 0.0 and res.mean_all == 0.0


# ------------------------------------------------------------------ PairwiseNNSTD

@pytest.fixture
def matrix3(pair):
    return pairwise_nnstd([*pair, perturb(pair[0], 0.5, seed=2).with_name("c")])


def test_pairwise_result_is_labelled_and_stays_an_array(matrix3, pair):
    d = matrix3
    assert isinstance(d, PairwiseNNSTD) and isinstance(d, np.ndarray) and d.shape == (3, 3, 4)
    assert d.names == ["a", "b", "c"] and d.sparse_layers == [0, 1, 2]
    np.testing.assert_allclose(d.value, np.asarray(d)[:, :, :3].mean(axis=2))
    np.testing.assert_allclose(d.mean_all, np.asarray(d).mean(axis=2))
    assert d.value[0, 1] == pytest.approx(nnstd(*pair).value)
    # what is computed from it is a plain array: the labels would not describe it
    for derived in (d.mean(axis=2), d[:, :, 0], d + 1, d[0]):
        assert type(derived) is np.ndarray
    back = pickle.loads(pickle.dumps(d))
    assert back.names == d.names and back.sparse_layers == d.sparse_layers and np.array_equal(back, d)
    assert repr(d).startswith("PairwiseNNSTD(3 networks [a, b, c] x 4 layers, sparse layers [0, 1, 2]")


def test_names_must_match_the_topologies(pair):
    with pytest.raises(SparsetopoError, match=r"names must give one name per topology \(2\); got 1"):
        pairwise_nnstd(list(pair), names=["x"])
    assert pairwise_nnstd(list(pair), names=["x", "y"]).names == ["x", "y"]


def test_to_dataframe_square_and_long(matrix3):
    pd = pytest.importorskip("pandas")
    d = matrix3
    df = d.to_dataframe()
    assert list(df.index) == list(df.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(df.to_numpy(), d.value)
    assert df.loc["a", "c"] == pytest.approx(d.value[0, 2])
    np.testing.assert_allclose(d.to_dataframe(1).to_numpy(), np.asarray(d)[:, :, 1])
    np.testing.assert_allclose(d.to_dataframe("mean_all").to_numpy(), d.mean_all)
    long = d.to_dataframe("long")
    assert list(long.columns) == ["a", "b", "layer", "nnstd"] and len(long) == 3 * 3 * 4
    back = long.pivot_table(index=["a", "b"], columns="layer", values="nnstd")
    np.testing.assert_array_equal(back.to_numpy().reshape(3, 3, 4), np.asarray(d))
    assert isinstance(long, pd.DataFrame)
    with pytest.raises(SparsetopoError, match=r"layer must be .*'long' or a layer index \(this matrix has 4 "
                                              r"layers\); got 7"):
        d.to_dataframe(7)


def test_to_dataframe_without_pandas_names_the_install(matrix3, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails as if it were absent
    with pytest.raises(ImportError, match=r"needs pandas.*pip install pandas"):
        matrix3.to_dataframe()


# ------------------------------------------------------------------ the command line

@pytest.fixture
def saved_pair(pair, tmp_path):
    return [t.save(tmp_path / f"{t.name}.npz") for t in pair]


def test_distance_shows_both_means_labelled(saved_pair, pair):
    res = nnstd(*pair)
    out = runner.invoke(app, ["distance", *map(str, saved_pair)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    dense_row = next(line for line in lines if line.split()[:1] == ["3"])
    assert "dense in both" in dense_row and "not in the first mean" in dense_row
    sparse_line = next(line for line in lines if line.startswith("mean over the sparse layers (0, 1, 2"))
    all_line = next(line for line in lines if line.startswith("mean over all 4 layers"))
    assert sparse_line.endswith(f"{res.value:.4f}") and all_line.endswith(f"{res.mean_all:.4f}")
    data = json.loads(runner.invoke(app, ["distance", *map(str, saved_pair), "--json"]).output)
    assert data["nnstd"] == data["mean_sparse_layers"] == pytest.approx(res.value)
    assert data["mean_all_layers"] == pytest.approx(res.mean_all) and data["sparse_layers"] == [0, 1, 2]


@pytest.mark.parametrize("paths,labels", [
    (["runs/net0/topology/epoch_010.npz", "runs/net1/topology/epoch_010.npz"], ["net0", "net1"]),
    (["runs/net0/topology/epoch_010.npz", "runs/net1/topology/epoch_020.npz"],
     ["net0/epoch_010", "net1/epoch_020"]),
    (["a/x.npz", "b/x.npz", "c/x.npz"], ["a", "b", "c"]),
    (["net0.npz", "net1.npz"], ["net0", "net1"]),
    (["exp/runs/net0", "exp/other/net0"], ["runs", "other"]),
    (["r/a/t.npz", "r/b/c/t.npz"], ["a", "b/c"]),  # different depths: common ends stripped
    (["same.npz", "same.npz"], ["same.npz", "same.npz"]),  # nothing tells them apart: the paths
])
def test_labels_are_the_shortest_distinguishing_names(paths, labels):
    assert _labels([Path(p) for p in paths]) == labels


def _run_matrix(saved, tmp_path, monkeypatch, *extra):
    seen = {}

    def fake_grid(d, labels, layers, *, path=None, suptitle=None):
        seen.update(labels=list(labels), layers=list(layers))
        Path(path).write_bytes(b"png")

    monkeypatch.setattr("sparsetopo.plots.layer_matrix_grid", fake_grid)
    res = runner.invoke(app, ["matrix", *map(str, saved), "--plot", str(tmp_path / "h.png"), "-q", "-j", "1",
                              *extra])
    assert res.exit_code == 0, res.output
    return seen, res.output


def test_matrix_plot_leaves_dense_layers_out_unless_asked(saved_pair, tmp_path, monkeypatch):
    seen, output = _run_matrix(saved_pair, tmp_path, monkeypatch)
    assert seen == {"labels": ["a", "b"], "layers": [0, 1, 2]}
    assert "mean off-diagonal NNSTD over the sparse layers (0, 1, 2)" in output
    seen, _ = _run_matrix(saved_pair, tmp_path, monkeypatch, "--include-dense")
    assert seen["layers"] == [0, 1, 2, 3]


def test_include_dense_needs_plot(saved_pair, tmp_path):
    res = runner.invoke(app, ["matrix", *map(str, saved_pair), "--out", str(tmp_path / "D.npz"),
                              "--include-dense"])
    assert res.exit_code == 2 and "--include-dense changes the --plot figure; give --plot too" in res.output


def test_layer_matrix_grid_wraps_many_layers_into_rows(tmp_path):
    from sparsetopo.plots import layer_matrix_grid

    d = np.random.default_rng(0).uniform(size=(3, 3, 9))
    fig = layer_matrix_grid(d, ["x", "y", "z"], list(range(8)), path=tmp_path / "g.png")
    panels = [ax for ax in fig.axes if ax.get_title()]
    # titles wrap to fit their panel (plots._fit): compare the words
    assert " ".join(panels[-1].get_title().split()) == "mean of layers 0, 1, 2, 3, 4, 5, 6, 7"
    assert len(panels) == 9
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    assert len(rows) == 3  # 9 panels: a 3 x 3 grid, not one strip
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["x", "y", "z"]
    np.testing.assert_allclose(panels[-1].images[0].get_array(), d[:, :, :8].mean(axis=2))
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SparsetopoError, match=r"layers must be a non-empty list of indices in \[0, 9\); got \[9\]"):
        layer_matrix_grid(d, ["x", "y", "z"], [9])


def test_chain_defaults_to_chain_out_and_demo_is_a_deprecated_alias(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["chain", "-q", "--networks", "2", "-j", "1"])
    assert res.exit_code == 0, res.output
    d, names = load_matrix("chain_out/nnstd.npz")
    assert names == ["net0", "net1"]
    old = runner.invoke(app, ["demo", "-q", "--networks", "2", "-j", "1", "--out", "old"])
    assert old.exit_code == 0, old.output
    assert "'sparsetopo demo' is deprecated" in old.stderr and "use 'sparsetopo chain'" in old.stderr
    assert "deprecated" not in old.stdout
    np.testing.assert_array_equal(load_matrix("old/nnstd.npz")[0], d)  # the same chain, computed by chain
    assert not Path("demo_out").exists()
    assert "demo" not in runner.invoke(app, ["--help"]).output  # hidden: new users see chain only


_NO_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` fails, as without PyTorch installed
from sparsetopo.cli import app
app(sys.argv[1:], prog_name="sparsetopo")
"""


@pytest.mark.parametrize("args", [["train", "--epochs", "1"], ["experiment", "evolution", "--preset", "smoke", "-q"]])
def test_missing_torch_is_one_line_exit_2(args, tmp_path):
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, *args, "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env={"PYTHONPATH": src, "PATH": ""}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"Error: sparsetopo {args[0]} needs PyTorch, which is not installed; "
                               "install it with pip install torch")


def test_another_missing_module_stays_unexpected(tmp_path, monkeypatch):
    def broken(path):
        raise ModuleNotFoundError("No module named 'yaml2'", name="yaml2")

    monkeypatch.setattr("sparsetopo.report.write_report", broken)
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1 and "unexpected ModuleNotFoundError" in res.output


def test_saved_matrix_mean_is_over_sparse_layers(matrix3, tmp_path):
    from sparsetopo.nnstd import save_matrix

    save_matrix(matrix3, matrix3.names, npz=str(tmp_path / "d.npz"), csv=str(tmp_path / "d.csv"))
    z = np.load(tmp_path / "d.npz")
    np.testing.assert_allclose(z["mean"], matrix3.value)
    np.testing.assert_allclose(z["mean_all"], matrix3.mean_all)
    assert z["sparse_layers"].tolist() == [0, 1, 2]
    assert load_matrix(str(tmp_path / "d.npz"))[1] == ["a", "b", "c"]
    rows = [r.split(",") for r in (tmp_path / "d.csv").read_text().splitlines()[1:]]
    assert [r[2] for r in rows[:6]] == ["0", "1", "2", "3", "mean", "mean_all"]
    plain = np.asarray(matrix3)  # a plain array: every layer counts, as before
    save_matrix(plain, matrix3.names, npz=str(tmp_path / "p.npz"))
    np.testing.assert_allclose(np.load(tmp_path / "p.npz")["mean"], plain.mean(axis=2))
    assert "sparse_layers" not in np.load(tmp_path / "p.npz")
