"""Issue 19 (8): every bar says what it counts, no empty bars, a one-line plan and an honest estimate."""

import time

import pytest

from sparsetopo.experiments import runner
from sparsetopo.experiments.runner import _EpochProgress, plan_line, run_trainings
from sparsetopo.nnstd import pairwise_nnstd
from sparsetopo.parallel import map_tasks
from sparsetopo.topology import erdos_renyi, perturbation_chain
from sparsetopo.training import TrainConfig


def test_no_bar_for_nothing_to_do(capsys):
    assert list(map_tasks(str, [], progress=True, desc="NNSTD pairs")) == []
    assert capsys.readouterr().err == ""


def test_nnstd_bar_names_what_it_counts(capsys):
    tops = perturbation_chain(erdos_renyi([12, 10, 3], density=0.4, seed=0), 3, 0.2, seed=1)
    pairwise_nnstd(tops, progress=True, desc="NNSTD epoch 10")
    err = capsys.readouterr().err
    assert "NNSTD epoch 10" in err and "pair" in err
    pairwise_nnstd([tops[0], tops[0]], progress=True, desc="NNSTD epoch 20")  # identical: no pair to compute
    assert "NNSTD epoch 20" not in capsys.readouterr().err


def _configs(n, epochs=10):
    return [TrainConfig(method="set", epochs=epochs, seed=i) for i in range(n)]


def test_plan_line_counts_trainings_epochs_and_reuse():
    runs = _configs(12)
    assert plan_line(runs, runs[8:], 40, "4 NNSTD matrices") == (
        "plan: 12 trainings x 10 epochs (40 epochs to train, 8 reused), then 4 NNSTD matrices; "
        "estimate after the first epoch")
    mixed = _configs(1, 5) + _configs(1, 20)
    assert plan_line(mixed, mixed, 25) == ("plan: 2 trainings x 5-20 epochs (25 epochs to train); "
                                           "estimate after the first epoch")
    assert plan_line(runs[:1], [], 0).endswith("(0 epochs to train, 1 reused); nothing to train")


def test_run_trainings_logs_the_plan_first(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "reusable_run", lambda d, c, anchor=None: {"epoch": 10})  # every run finished
    lines = []
    runs = [(c, tmp_path / f"r{i}") for i, c in enumerate(_configs(2))]
    run_trainings(runs, n_jobs=1, progress=True, log=lines.append, then="4 NNSTD matrices")
    assert lines == ["plan: 2 trainings x 10 epochs (0 epochs to train, 2 reused), then 4 NNSTD matrices; "
                     "nothing to train"]


def test_estimate_rule(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d, seconds in zip(dirs, ("2.5", "3.5")):
        d.mkdir()
        (d / "metrics.csv").write_text(f"epoch,seconds\n1,{seconds}\n")
    tracker = _EpochProgress([(c, d) for c, d in zip(_configs(2), dirs)], "runs", enabled=False, workers=2)
    assert tracker.epoch_seconds() == pytest.approx(3.0)  # measured by the runs: start-up excluded
    # 18 epochs left, 2 at a time: 9 rounds of 3 s
    assert tracker.estimate(3.0, 18) == ("estimate: ~27 s of training left (18 epochs, 2 at a time, 3.0 s each as "
                                         "measured so far; each run's start-up comes on top)")
    assert tracker.estimate(60.0, 5).startswith("estimate: ~3 min of training left")
    assert _EpochProgress([(_configs(1)[0], tmp_path / "none")], "runs", enabled=False).epoch_seconds() is None


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _first_epoch(tracker, run_dir):
    (run_dir / "metrics.csv").write_text("epoch,loss,seconds\n1,0.5,2.0\n")


def test_first_epoch_brings_one_estimate_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = []
    with _EpochProgress([(_configs(1, 4)[0], run_dir)], "runs", enabled=False, every=0.02, log=lines.append):
        _first_epoch(None, run_dir)
        _wait_for(lambda: lines)
        (run_dir / "metrics.csv").write_text("epoch,loss,seconds\n1,0.5,2.0\n2,0.4,2.0\n")
        time.sleep(0.1)  # later epochs bring no more lines
    assert len(lines) == 1 and lines[0].startswith("estimate: ~") and "(3 epochs, 1 at a time, 2.0 s each" in lines[0]


def test_bar_says_starting_until_the_first_epoch_then_writes_the_estimate(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracker = _EpochProgress([(_configs(1, 4)[0], run_dir)], "runs", enabled=True, every=0.02, log=print)
    err = []
    with tracker:
        assert tracker.bar.postfix == _EpochProgress.STARTING  # what happens while the count is 0
        assert tracker.bar.unit == "epoch" and tracker.bar.desc.startswith("runs (epochs)")
        _first_epoch(tracker, run_dir)
        _wait_for(lambda: err.append(capsys.readouterr().err) or "estimate: ~" in "".join(err))
        _wait_for(lambda: not tracker.bar.postfix)  # the count moves: the starting note goes
        assert tracker.bar.n == 1
