"""Hostile run and experiment directories (issue 16): every read is validated; a clean error or a correct result."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from conftest import make_idx_dataset  # noqa: E402
from sparsetopo.cli import app  # noqa: E402
from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.nnstd import load_matrix, save_matrix  # noqa: E402
from sparsetopo.training import TrainConfig, estimate_memory, train  # noqa: E402
from test_hardening import one_line_error  # noqa: E402

runner = CliRunner()
HERE = Path(__file__).resolve().parent


def experiment_error(res, *fragments):
    """An experiment's failure: its log lines, then one red 'Error:' line naming what it should; exit 2."""
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: ") and not any(ln.startswith("Error: ") for ln in lines[:-1]), res.output
    for f in fragments:
        assert f in lines[-1], (f, lines[-1])
    return lines[-1]


def _train(out, data, *extra):
    return runner.invoke(app, ["train", "--data-dir", str(data), "--hidden", "16", "16", "--epsilon", "2",
                               "--epochs", "2", "--batch-size", "100", "--out", str(out), "-q", *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = make_idx_dataset(root / "data")
    res = _train(root / "run", data)
    assert res.exit_code == 0, res.output
    return data, root / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path):
    data, run = finished_run
    shutil.copytree(run, tmp_path / "run")
    return data, tmp_path / "run"


# ---------------------------------------------------------------- 1. finished runs
def _truncate_mid_row(text):
    return text[: len(text) - len(text.splitlines()[-1]) // 2 - 1]


@pytest.mark.parametrize("damage,message", [
    (lambda t: "", "metrics.csv: empty (no header)"),
    (_truncate_mid_row, "line 3 has"),
    (lambda t: "\n".join(t.splitlines()[:2]) + "\n", "1 epoch rows for a finished run of 2 epochs"),
    (lambda t: t.replace("train_loss", "trainloss", 1), "header must name the columns"),
    (lambda t: t.replace("\n2,", "\n3,", 1), "epochs must run 1, 2, ..."),
    (lambda t: t.splitlines()[0] + "\n" + t.splitlines()[1].replace(",", ",x", 3) + "\n"
     + t.splitlines()[2] + "\n", "is not a number"),
])
def test_damaged_metrics_of_a_finished_run_are_named_and_heal_from_the_checkpoint(run_copy, damage, message):
    data, out = run_copy
    good = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(damage(good))
    one_line_error(_train(out, data), str(out / "metrics.csv"), message, "delete the run's result.json")
    # the way out the message names works: the checkpoint holds the metrics
    (out / "result.json").unlink()
    res = _train(out, data)
    assert res.exit_code == 0, res.output
    assert (out / "metrics.csv").read_text() == good


def test_a_changed_metrics_file_is_told_by_its_checksum(run_copy):
    data, out = run_copy
    text = (out / "metrics.csv").read_text()
    last = text.splitlines()[-1]
    cells = last.split(",")
    cells[5] = "0.999"  # a test accuracy that the run never had: well-formed, but not the run's
    (out / "metrics.csv").write_text(text.replace(last, ",".join(cells)))
    one_line_error(_train(out, data), str(out / "metrics.csv"), "changed since the run finished")


@pytest.mark.parametrize("content,message", [
    ("[1, 2]", "must be a JSON object with an integer 'epochs'"),
    ('{"epochs": "2"}', "must be a JSON object with an integer 'epochs'"),
    ("{not json", "not valid JSON"),
])
def test_result_json_that_is_not_a_result_is_named(run_copy, content, message):
    data, out = run_copy
    (out / "result.json").write_text(content)
    one_line_error(_train(out, data), str(out / "result.json"), message, "delete it")


def test_reused_run_with_intact_files_is_skipped(run_copy):
    data, out = run_copy
    res = _train(out, data)
    assert res.exit_code == 0 and "already complete" in res.output


def test_a_foreign_finished_run_is_not_used_as_a_study_network(tmp_path, finished_run):
    from sparsetopo.experiments.runner import run_trainings

    data, run = finished_run
    exp = tmp_path / "exp"
    shutil.copytree(run, exp / "runs" / "net0")
    wanted = TrainConfig(data_dir=str(data), hidden=[16, 16], epsilon=2, epochs=2, batch_size=100, lr=0.1)
    with pytest.raises(SparsetopoError) as err:
        run_trainings([(wanted, exp / "runs" / "net0")], n_jobs=1, progress=False, anchor=exp)
    text = str(err.value)
    assert text.startswith(f"{exp / 'runs' / 'net0'}: holds a run with another configuration (lr: 0.01 -> 0.1)")
    assert "(setting: recorded -> wanted)" in text and "delete it or choose another --out" in text


def test_a_moved_experiment_directory_still_reuses_its_runs(tmp_path, tiny_data):
    from sparsetopo.experiments.runner import run_trainings
    from sparsetopo.topology import erdos_renyi

    def config(exp):
        return TrainConfig(data_dir=str(tiny_data), method="static", hidden=[16], epochs=1, batch_size=100,
                           initial_topology=str((exp / "initial" / "net0.npz").resolve()))

    first = tmp_path / "first"
    erdos_renyi([64, 16, 4], epsilon=2, seed=0).save(first / "initial" / "net0.npz")
    run_trainings([(config(first), first / "runs" / "net0")], n_jobs=1, progress=False, anchor=first)
    moved = tmp_path / "moved"
    first.rename(moved)
    stamp = (moved / "runs" / "net0" / "metrics.csv").stat().st_mtime_ns
    run_trainings([(config(moved), moved / "runs" / "net0")], n_jobs=1, progress=False, anchor=moved)
    assert (moved / "runs" / "net0" / "metrics.csv").stat().st_mtime_ns == stamp


# ------------------------------------------------------------ 2. experiment dirs
@pytest.fixture(scope="module")
def tiny_evolution(tmp_path_factory):
    root = tmp_path_factory.mktemp("evo")
    data = make_idx_dataset(root / "data")
    cfg = root / "tiny.yaml"
    cfg.write_text(f"data_dir: {data}\nhidden: [16, 16]\ndensity: 0.3\nnetworks: 3\nlimit_train: 600\n"
                   "limit_test: 200\n")
    res = runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(cfg),
                              "--out", str(root / "evo"), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    return cfg, root / "evo"


@pytest.fixture
def evo_copy(tiny_evolution, tmp_path):
    cfg, evo = tiny_evolution
    shutil.copytree(evo, tmp_path / "evo")
    return cfg, tmp_path / "evo"


def _experiment(cfg, out):
    return runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(cfg),
                               "--out", str(out), "-q", "-j", "1"])


def test_a_stale_nnstd_matrix_is_recomputed_with_a_log_line(evo_copy):
    cfg, out = evo_copy
    path = out / "nnstd" / "epoch_001.npz"
    good, names = load_matrix(str(path))
    save_matrix(np.zeros((2, 2, 3)), ["net0", "net1"], npz=str(path))  # an earlier study with fewer networks
    res = _experiment(cfg, out)
    assert res.exit_code == 0, res.output
    assert "recomputing epoch_001.npz" in res.output and "this study 3 x 3" in res.output
    d, again = load_matrix(str(path))
    assert again == names and np.allclose(d, good)
    path.write_bytes(b"PK\x03\x04 damaged")
    res = _experiment(cfg, out)
    assert res.exit_code == 0 and "recomputing epoch_001.npz" in res.output
    assert np.allclose(load_matrix(str(path))[0], good)


def test_a_snapshot_of_other_layers_is_refused_naming_it(evo_copy):
    from sparsetopo.topology import erdos_renyi

    cfg, out = evo_copy
    path = out / "runs" / "net1" / "topology" / "epoch_002.npz"
    erdos_renyi([64, 8, 4], epsilon=2, seed=0).save(path)
    experiment_error(_experiment(cfg, out), str(path), "has layers [(8, 64), (4, 8)], the study's networks")


def test_damaged_experiment_yaml_is_a_clean_error(evo_copy):
    cfg, out = evo_copy
    (out / "experiment.yaml").write_text("experiment: evolution\npreset: smoke\nconfig: [1, 2]\n")
    experiment_error(_experiment(cfg, out), str(out), "other settings", "setting: recorded -> wanted")


def _report(root):
    return runner.invoke(app, ["report", str(root)])


@pytest.mark.parametrize("summary,message", [
    ([1, 2], "must be a JSON object (an experiment summary), got list"),
    ("evolution", "must be a JSON object (an experiment summary), got str"),
    ({"experiment": 3}, "'experiment' must be a JSON string, got int"),
    ({"experiment": "x", "tables": ["a.csv"]}, "'tables' must be a JSON object, got list"),
    ({"experiment": "x", "findings": [1]}, "'findings' must be a list of strings"),
    ({"experiment": "x", "figures": {"f": "/etc/passwd"}}, "must name a file inside the experiment directory"),
    ({"experiment": "x", "tables": {"t": "../../x.csv"}}, "must name a file inside the experiment directory"),
])
def test_summaries_that_are_not_summaries_are_named(tmp_path, summary, message):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "summary.json").write_text(json.dumps(summary))
    one_line_error(_report(tmp_path), str(tmp_path / "e" / "summary.json"), message)


@pytest.mark.parametrize("damage,message", [
    (_truncate_mid_row, "(truncated?)"),
    (lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "(truncated?)"),
    (lambda t: "", "empty table"),
    (lambda t: t.replace("0", "1", 1), "changed since the experiment wrote it"),
])
def test_damaged_tables_are_named_by_the_report(evo_copy, damage, message):
    _, out = evo_copy
    path = out / "tables" / "accuracy.csv"
    path.write_text(damage(path.read_text()))
    one_line_error(_report(out), str(path), message, "re-run the `sparsetopo experiment` command")


def test_damaged_and_missing_figures_are_named_by_the_report(evo_copy):
    _, out = evo_copy
    fig = out / "figures" / "drift_from_initial.png"
    fig.write_bytes(b"GIF89a")
    one_line_error(_report(out), str(fig), "not a PNG image")
    fig.unlink()
    one_line_error(_report(out), str(fig))


def test_evolution_at_density_1_runs_and_says_there_is_nothing_to_evolve(tmp_path, tiny_data):
    cfg = tmp_path / "dense.yaml"
    cfg.write_text(f"data_dir: {tiny_data}\nhidden: [16, 16]\ndensity: 1.0\nnetworks: 2\nlimit_train: 600\n"
                   "limit_test: 200\n")
    res = _experiment(cfg, tmp_path / "evo")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "evo" / "summary.json").read_text())
    assert summary["hidden_layers"] == [] and summary["figures"] == {}
    assert summary["findings"][0].startswith("Every layer is dense at density 1 (NNSTD 0 by construction)")
    assert "tables/evolution.csv" not in summary["tables"].values()
    rows = (tmp_path / "evo" / "tables" / "accuracy.csv").read_text().splitlines()
    assert len(rows) == 3  # both networks trained
    assert _report(tmp_path / "evo").exit_code == 0


# --------------------------------------------------------------- 3. resources
def test_memory_estimate_of_a_small_network_by_hand():
    # 4 -> 3 -> 2, SGD with momentum, batch 10:
    # 18 weights x (value, grad, momentum, mask) x 4 B = 288; 5 biases x 3 x 4 B = 60;
    # activations 3 x 4 B x 10 samples x (3 + 2) neurons = 600
    assert estimate_memory(TrainConfig(hidden=[3], batch_size=10), 4, 2) == 948
    # Adam keeps two state tensors; no momentum, none
    assert estimate_memory(TrainConfig(hidden=[3], batch_size=10, optimizer="adam"), 4, 2) == 948 + 18 * 4 + 5 * 4
    assert estimate_memory(TrainConfig(hidden=[3], batch_size=10, momentum=0.0), 4, 2) == 948 - 18 * 4 - 5 * 4
    # cnn, one 3x3 conv of 2 channels on 1x4x4 images, then 32 -> 3 -> 2:
    # weights 18 + 96 + 6 = 120, biases 2 + 3 + 2 = 7, outputs per sample 32 + 3 + 2 = 37
    cnn = TrainConfig(model="cnn", channels=[2], hidden=[3], batch_size=1)
    assert estimate_memory(cnn, 16, 2, (1, 4, 4)) == 120 * 16 + 7 * 12 + 37 * 12


def test_a_network_too_large_for_memory_is_refused_before_allocating(tmp_path, tiny_data, monkeypatch):
    def no_build(self, data):
        raise AssertionError("the model was built")

    monkeypatch.setattr(TrainConfig, "build_model", no_build)
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--method", "dense", "--hidden", "200000",
                              "200000", "--epochs", "1", "--limit-train", "100", "--out", str(out), "-q"])
    one_line_error(res, "--hidden 200000 200000: training this network needs about", "GiB is available",
                   "use a smaller --hidden width or a lower --batch-size", "--engine truly-sparse holds memory only",
                   "--method static, set, rigl; --method dense runs on --engine masked only")
    assert not out.exists()


def test_the_memory_check_uses_what_is_available(tmp_path, tiny_data, monkeypatch):
    import sparsetopo.training.resources as training

    cfg = TrainConfig(data_dir=str(tiny_data), hidden=[16], epochs=1, batch_size=100)
    need = estimate_memory(cfg, 64, 4)
    monkeypatch.setattr(training, "available_memory", lambda: need - 1)
    with pytest.raises(SparsetopoError, match="needs about 0 MiB of memory"):
        train(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    monkeypatch.setattr(training, "available_memory", lambda: need)
    assert not train(cfg, tmp_path / "b", progress=False, log=lambda m: None).skipped


# -------------------------------------------------------------------- 4. fuzz
FUZZ = r"""
import json, random, shutil, sys, traceback
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from click.testing import CliRunner
from sparsetopo.cli import app

run, exp, cfg, data, tmp = (Path(a) for a in sys.argv[2:7])
rng = random.Random(0)
runner = CliRunner()
outcomes = {}

def check(res, path, target):
    text = res.output
    assert "Traceback" not in text, (path, text[-2000:])
    if res.exit_code == 0:
        return "ok"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert res.exit_code == 2 and lines[-1].startswith("Error: "), (path, res.exit_code, text[-2000:], res.exc_info)
    assert str(path) in lines[-1] or str(path.parent) in lines[-1] or str(target) in lines[-1], (path, lines[-1])
    return "clean error"

def damage(path):
    raw = bytearray(path.read_bytes())
    if rng.random() < 0.3 or not raw:
        raw = raw[: rng.randrange(len(raw) + 1)]
    else:
        for _ in range(rng.choice((1, 1, 3))):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(raw))

def fuzz(pristine, files, trials, command, label):
    for rel in files:
        for _ in range(trials):
            work = tmp / label
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            damage(work / rel)
            res = command(work)
            outcome = check(res, work / rel, work)
            if outcome == "ok" and label == "run":  # a correct result: the run's own metrics, as they were
                assert (work / "metrics.csv").read_bytes() == (pristine / "metrics.csv").read_bytes(), rel
            key = f"{label}:{rel}: {outcome}"
            outcomes[key] = outcomes.get(key, 0) + 1

train = lambda out: runner.invoke(app, ["train", "--data-dir", str(data), "--hidden", "16", "16", "--epsilon", "2",
                                        "--epochs", "2", "--batch-size", "100", "--out", str(out), "-q"])
fuzz(run, ["metrics.csv", "config.yaml", "checkpoint.pt", "result.json", "topology/epoch_002.npz"], 6, train, "run")
report = lambda out: runner.invoke(app, ["report", str(out)])
tables = sorted(str(p.relative_to(exp)) for p in (exp / "tables").glob("*.csv"))
fuzz(exp, ["summary.json", *tables, "figures/drift_from_initial.png"], 4, report, "report")
experiment = lambda out: runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(cfg),
                                             "--out", str(out), "-q", "-j", "1"])
fuzz(exp, ["experiment.yaml", "runs/net1/metrics.csv", "runs/net1/result.json", "runs/net1/config.yaml",
           "runs/net2/topology/epoch_001.npz", "nnstd/epoch_002.npz", "initial/net0.npz"], 2, experiment, "experiment")
print(json.dumps(outcomes))
"""


def test_fuzzed_run_and_experiment_directories_give_clean_errors_or_correct_results(tmp_path, finished_run,
                                                                                     tiny_evolution):
    """Flip bytes of and truncate every kind of file a run or experiment directory holds, then train, report
    or re-run the experiment on it: a clean one-line error naming the file or its directory, or success."""
    data, run = finished_run
    cfg, evo = tiny_evolution
    res = subprocess.run([sys.executable, "-c", FUZZ, str(HERE), str(run), str(evo), str(cfg), str(data),
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr[-6000:].replace("\\n", "\n"))
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    errors = {k.rsplit(": ", 1)[0] for k in counts if k.endswith("clean error")}
    # damage that matters is caught in each family (a flipped bit in a checkpoint nobody reads is harmless)
    for rel in ("run:metrics.csv", "run:result.json", "report:summary.json", "report:tables/accuracy.csv",
                "experiment:runs/net1/metrics.csv"):
        assert rel in errors, (rel, counts)
