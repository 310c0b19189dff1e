import csv

import numpy as np
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from conftest import make_idx_dataset  # noqa: E402
from sparsetopo.cli import app  # noqa: E402


def test_evolution_study_reports_network_statistics_recomputable_from_its_snapshots(tmp_path):
    from sparsetopo.experiments.fidelity import training_inputs
    from sparsetopo.experiments.network_stats import network_stats
    from sparsetopo.training import load_weights

    data = make_idx_dataset(tmp_path / "fm", n_train=300, n_test=100, side=28, n_classes=10)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {data}\nnetworks: 2\nhidden: [32, 32]\nepochs: 3\nsnapshot_epochs: [0, 1, 2, 3]\n"
                   "density: 0.1\nbatch_size: 50\nlimit_test: 100\n")
    out = tmp_path / "evo"
    res = CliRunner().invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(cfg),
                                   "--out", str(out), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    with open(out / "tables" / "network_stats.csv", newline="") as f:
        table = {(int(r["epoch"]), int(r["layer"])): r for r in csv.DictReader(f)}
    assert set(table) == {(e, k) for e in (0, 1, 2, 3) for k in (0, 1)}
    # the table is the mean over the networks of what their weights snapshots show
    for (e, k), row in table.items():
        per_net = []
        for i in range(2):
            run = out / "runs" / f"net{i}"
            w, b = load_weights(run / "weights" / f"epoch_{e:03d}.npz")
            per_net.append(network_stats(w, b, training_inputs(run), layers=[k])[0])
        for col in ("dead_neurons", "zero_valued", "into_dead", "no_input_neurons"):
            assert float(row[col]) == pytest.approx(np.mean([s[col] for s in per_net])), (e, k, col)
    # epochs 0 and 1 are before the first SET update (snapshot before the update): it moves
    # ~zeta of the connections (plus the zero-valued ones) between epochs 1 and 2, nothing between 0 and 1
    assert float(table[(0, 0)]["moved"]) == 0.0
    assert float(table[(1, 0)]["moved"]) >= 0.2 - 0.02
    assert table[(3, 0)]["moved"] == ""  # no epoch-4 snapshot
