import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import official_dir
from sparsetopo.cli import app
from sparsetopo.nnstd import load_matrix, nnstd
from sparsetopo.topology import Topology, erdos_renyi, perturb

runner = CliRunner()


@pytest.fixture
def saved(tmp_path):
    base = erdos_renyi([60, 50, 40, 4], epsilon=3, seed=0)
    paths = []
    for i in range(3):
        t = base if i == 0 else perturb(base, 0.2 * i, seed=i)
        paths.append(t.save(tmp_path / f"net{i}.npz"))
    return paths


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("distance", "matrix", "chain"):
        assert cmd in res.output


def test_distance_json_matches_api(saved, tmp_path):
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[2]), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    expected = nnstd(Topology.load(saved[0]), Topology.load(saved[2]))
    assert out["per_layer"] == pytest.approx(expected.per_layer.tolist(), abs=0)
    assert out["nnstd"] == pytest.approx(expected.value)
    table = runner.invoke(app, ["distance", str(saved[0]), str(saved[2])])
    assert table.exit_code == 0 and "mean" in table.output and f"{expected.value:.4f}" in table.output


def test_distance_reads_official_layout(tmp_path):
    t = erdos_renyi([30, 20, 5], epsilon=2, seed=0)
    d = official_dir(tmp_path / "e" / "epoch_000", t.to_dense())
    p = t.save(tmp_path / "t.npz")
    res = runner.invoke(app, ["distance", str(d), str(p), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["nnstd"] == 0.0


def test_matrix_writes_npz_csv_plot(saved, tmp_path):
    out, csv, png = tmp_path / "D.npz", tmp_path / "D.csv", tmp_path / "h.png"
    res = runner.invoke(app, ["matrix", *map(str, saved), "--out", str(out), "--csv", str(csv),
                              "--plot", str(png), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    d, names = load_matrix(str(out))
    assert names == ["net0", "net1", "net2"]
    assert d.shape == (3, 3, 3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert csv.read_text().startswith("a,b,layer,nnstd")


@pytest.mark.parametrize("args,msg", [
    (["distance", "nope.npz", "nope2.npz"], "nope.npz: no such file (a sparsetopo topology expected)"),
    (["matrix", "x.npz", "--out", "o.npz"], "at least two topologies"),
    (["chain", "--networks", "1"], "--networks must be >= 2, got 1"),
    (["chain", "--fraction", "2"], r"--fraction must be in (0, 1], got 2.0"),
])
def test_bad_input_is_one_clear_line(args, msg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert msg in res.output
    assert "Traceback" not in res.output


def test_bad_solver_and_mismatched_shapes(saved, tmp_path):
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[1]), "--solver", "magic"])
    assert res.exit_code == 2 and "'magic' is not one of 'auto', 'ssp', 'dense', 'sparse'" in res.output
    other = erdos_renyi([60, 51, 40, 4], epsilon=3, seed=0).save(tmp_path / "other.npz")
    res = runner.invoke(app, ["distance", str(saved[0]), str(other)])
    assert res.exit_code == 2 and "different shapes" in res.output


def test_chain(tmp_path):
    res = runner.invoke(app, ["chain", "--out", str(tmp_path / "demo"), "-q", "--networks", "4", "-j", "1"])
    assert res.exit_code == 0, res.output
    d, names = load_matrix(str(tmp_path / "demo" / "nnstd.npz"))
    assert names == ["net0", "net1", "net2", "net3"]
    # NNSTD grows with the distance in the chain
    assert d[0, 1, 0] < d[0, 2, 0] < d[0, 3, 0]
    assert (tmp_path / "demo" / "heatmap.png").stat().st_size > 10_000
    assert len(list((tmp_path / "demo" / "topologies").glob("*.npz"))) == 4
    assert np.isfinite(d).all()


@pytest.fixture(scope="module")
def wide_pair(tmp_path_factory):
    """A 1500-neuron layer pair at 40 inputs per neuron: its search cannot finish in a nanosecond."""
    from sparsetopo.truly_sparse.model import sample_topology

    d = tmp_path_factory.mktemp("wide")
    return [sample_topology([(1500, 1500)], [60_000], seed=s).save(d / f"w{s}.npz") for s in (0, 1)]


def test_distance_max_seconds_labels_bounded_layers(wide_pair):
    res = runner.invoke(app, ["distance", *map(str, wide_pair), "--max-seconds", "1e-9"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.strip().startswith("0 "))
    assert "bounded" in row and "gap" in row and "%" in row
    assert "not exact: layer(s) 0 stopped at --max-seconds" in res.output
    out = json.loads(runner.invoke(app, ["distance", *map(str, wide_pair), "--max-seconds", "1e-9", "--json"]).output)
    assert out["status"] == ["bounded"] and out["exact"] is False
    assert out["lower"][0] < out["upper"][0] == out["per_layer"][0]


def test_distance_max_seconds_generous_is_exact_and_unchanged(saved):
    plain = json.loads(runner.invoke(app, ["distance", str(saved[0]), str(saved[2]), "--json"]).output)
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[2]), "--max-seconds", "600", "--json"])
    out = json.loads(res.output)
    assert out["exact"] is True and out["status"] == ["exact"] * 3
    assert out["per_layer"] == plain["per_layer"] == out["lower"] == out["upper"]
    table = runner.invoke(app, ["distance", str(saved[0]), str(saved[2]), "--max-seconds", "600"])
    assert table.exit_code == 0 and "status" in table.output and "exact" in table.output
    assert "not exact" not in table.output


@pytest.mark.parametrize("value, message", [
    ("0", "--max-seconds must be a positive, finite number of seconds; got 0.0"),
    ("-3", "--max-seconds must be a positive, finite number of seconds; got -3.0"),
    ("nan", "--max-seconds must be a positive, finite number of seconds; got nan"),
    ("abc", "'abc' is not a valid float"),
])
def test_distance_bad_max_seconds(saved, value, message):
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[1]), "--max-seconds", value])
    assert res.exit_code == 2 and message in res.output, res.output


def test_distance_max_seconds_with_dense_solver_is_refused(saved):
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[1]), "--max-seconds", "5", "--solver", "dense"])
    assert res.exit_code == 2 and "--max-seconds needs solver 'auto' or 'ssp'" in res.output, res.output
    res = runner.invoke(app, ["distance", str(saved[0]), str(saved[1]), "--max-seconds", "5", "--reference"])
    assert res.exit_code == 2 and "--max-seconds cannot be combined with reference mode" in res.output
