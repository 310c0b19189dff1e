"""Shared machinery of the experiments: training many runs and NNSTD over their snapshots."""

from __future__ import annotations

import csv
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import FileFormatError
from ..parallel import map_tasks
from ..topology import Topology
from ..training import TrainConfig, reusable_run


def _train_one(task: tuple[dict, str, int]) -> str:
    """Train one run in a worker. Top-level so that joblib and Dask can pickle it."""
    config_dict, out_dir, threads = task
    import torch

    from ..training import train

    if threads:
        torch.set_num_threads(threads)
    # from_dict: a method's own settings (a pruning method's scope...) are keys of its composed config class.
    train(TrainConfig.from_dict(config_dict, source=out_dir), out_dir, progress=False, log=lambda msg: None,
          command=f"sparsetopo experiment (run {Path(out_dir).name})")
    return out_dir


def run_trainings(runs: Sequence[tuple[TrainConfig, Path]], *, n_jobs: int = -1, cluster: str | None = None,
                  progress: bool = True, desc: str = "training runs", anchor: Path | None = None,
                  log: Callable[[str], None] | None = None, then: str | None = None) -> list[Path]:
    """Train every ``(config, out_dir)``; complete runs are skipped, partial ones resume.

    Every run directory is checked before anything trains (:func:`~sparsetopo.training.reusable_run`):
    a finished run is reused only when its recorded settings are the ones wanted and its
    results are intact, so a foreign or damaged run is refused, never used as one of the
    study's networks. ``anchor`` is the experiment directory (it may have been moved).

    Runs go to separate processes (joblib) or Dask workers, one torch thread
    each, so two cores train two networks at once.

    With ``log``, a one-line plan comes first (:func:`plan_line`; ``then`` names what the
    study does after training, e.g. ``"4 NNSTD matrices"``), and an estimate of the time
    left once the first epoch is done (:meth:`_EpochProgress.estimate`).
    """
    runs = [(c.validate(), Path(d)) for c, d in runs]
    pending = [(c, d) for c, d in runs if reusable_run(d, c, anchor=anchor) is None]
    workers = min(n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1), max(len(pending), 1))
    if cluster is not None:
        workers = max(len(pending), 1)  # a cluster's size is not known here: the estimate assumes one per run
    # Worker processes train with one torch thread each; a run trained in this
    # process leaves torch's thread setting alone.
    threads = 1 if (cluster is not None or workers > 1) else 0
    todo = [(c.to_dict(), str(d), threads) for c, d in pending]
    tracker = _EpochProgress(pending, desc, enabled=progress and bool(pending), workers=workers,
                             log=log if pending else None)
    if log is not None:
        log(plan_line([c for c, _ in runs], [c for c, _ in pending], tracker.total - tracker.done(), then))
    with tracker:
        for _ in map_tasks(_train_one, todo, n_jobs=workers, backend="processes", cluster=cluster,
                           progress=False, desc=desc):
            pass
    return [Path(d) for _, d in runs]


def plan_line(runs: Sequence[TrainConfig], pending: Sequence[TrainConfig], epochs_left: int,
              then: str | None = None) -> str:
    """``plan: 12 trainings x 10 epochs (120 epochs to train, 8 reused), then 4 NNSTD matrices; ...``.

    The time is estimated only once an epoch has been measured: before that any figure would be
    a guess (start-up, data, width and engine all vary), so the line says when it will come.
    """
    per_run = sorted({_planned_epochs(c) for c in runs})
    epochs = f"{per_run[0]}" if len(per_run) == 1 else f"{per_run[0]}-{per_run[-1]}"
    noun = "training" if len(runs) == 1 else "trainings"
    reused = len(runs) - len(pending)
    detail = f"{epochs_left} epochs to train" + (f", {reused} reused" if reused else "")
    estimate = "estimate after the first epoch" if epochs_left else "nothing to train"
    return (f"plan: {len(runs)} {noun} x {epochs} epochs ({detail})" + (f", then {then}" if then else "")
            + f"; {estimate}")


class _EpochProgress:
    """A progress bar over the epochs of all pending runs, fed by their metrics.csv files.

    Runs train in other processes (or on a cluster); each writes one metrics
    row per epoch, so counting rows every couple of seconds shows progress
    epoch by epoch instead of once per finished run (hours at ``paper``).
    Until the first epoch is done the bar says what is going on: the workers
    start (import PyTorch, load the data, build the networks) and train it --
    on two cores that alone takes tens of seconds, with the count still at 0.
    """

    STARTING = "starting workers: PyTorch, data, first epoch"

    def __init__(self, pending, desc: str, *, enabled: bool, every: float = 2.0, workers: int = 1, log=None):
        self.paths = [d / "metrics.csv" for _, d in pending]
        self.total = sum(_planned_epochs(c) for c, _ in pending)
        self.desc, self.enabled, self.every = desc, enabled, every
        self.workers, self.log = max(workers, 1), log
        self._stop = threading.Event()
        self.bar = None

    def done(self) -> int:
        n = 0
        for p in self.paths:
            try:
                with open(p, "rb") as f:
                    n += max(sum(1 for _ in f) - 1, 0)
            except OSError:
                pass
        return n

    def epoch_seconds(self) -> float | None:
        """The mean duration of the epochs done so far, as the runs measured them (metrics.csv's
        ``seconds``: training, update and evaluation, start-up excluded); ``None`` before any."""
        times = []
        for p in self.paths:
            try:
                with open(p, newline="") as f:
                    times += [float(r["seconds"]) for r in csv.DictReader(f) if r.get("seconds")]
            except (OSError, ValueError, KeyError):
                pass
        return sum(times) / len(times) if times else None

    def estimate(self, epoch_seconds: float, remaining: int) -> str:
        """The time left by a simple rule: every remaining epoch takes as long as the epochs measured so
        far, and the workers train ``workers`` of them at a time (``ceil(remaining / workers)`` rounds).
        Start-up is not counted (it is behind us) nor is the NNSTD that follows."""
        left = epoch_seconds * math.ceil(remaining / self.workers)
        return (f"estimate: ~{_duration(left)} of training left ({remaining} epochs, {self.workers} at a time, "
                f"{epoch_seconds:.1f} s each as measured so far; each run's start-up comes on top)")

    def _say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        elif self.log is not None:
            self.log(message)

    def _poll(self, initial: int) -> None:
        estimated = False
        while not self._stop.wait(self.every):
            n = self.done()
            if self.bar is not None:
                self.bar.n = n
                if n > initial and self.bar.postfix:
                    self.bar.set_postfix_str("", refresh=False)
                self.bar.refresh()
            if n > initial and not estimated and (seconds := self.epoch_seconds()) is not None:
                estimated = True
                if self.log is not None:
                    self._say(self.estimate(seconds, self.total - n))

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.done(), desc=f"{self.desc} (epochs)", unit="epoch",
                            dynamic_ncols=True, leave=False, postfix=self.STARTING)
        if self.enabled or self.log is not None:
            # The epochs already done are counted now, not when the thread first runs.
            self.thread = threading.Thread(target=self._poll, args=(self.done(),), daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled or self.log is not None:
            self._stop.set()
            self.thread.join()
        if self.bar is not None:
            self.bar.n = self.done()
            self.bar.close()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _planned_epochs(config: TrainConfig) -> int:
    """Epochs a run will train, as its method counts them (lottery's pruning rounds included). The
    shapes are an MLP's on the usual 784- or 3072-input data: only the progress bar's total depends on it."""
    from ..methods import get_method

    sizes = [3072 if config.dataset == "cifar10" else 784, *config.hidden, 10]
    return get_method(config).total_epochs([(b, a) for a, b in zip(sizes[:-1], sizes[1:])])


def initial_topology(config: TrainConfig, seed: int) -> Topology | None:
    """The topology a run of ``config`` starts from when it is given none: its method's
    :meth:`~sparsetopo.methods.Method.initial_topology` for the network on the data, drawn from ``seed``
    (``None``: the method starts dense). Studies that share one starting topology make it here, once."""
    from ..data import load_dataset
    from ..methods import get_method

    probe = load_dataset(config.dataset, config.data_dir, limit_train=64, limit_test=16)  # only its shapes count
    return get_method(config).initial_topology(config.build_model(probe).layer_shapes, seed)


def snapshot_path(run_dir: Path, epoch: int, kind: str = "topology") -> Path:
    """A run's snapshot file of one epoch: ``kind`` "topology" (masks) or "weights"."""
    return Path(run_dir) / kind / f"epoch_{epoch:03d}.npz"


def load_snapshot(run_dir: Path, epoch: int, name: str | None = None, *, shapes=None) -> Topology:
    """A run's topology snapshot of ``epoch`` (validated by :meth:`Topology.load`), named ``name``.

    ``shapes``: the layer shapes the study's networks have; a snapshot with others is refused naming the file.
    """
    path = snapshot_path(run_dir, epoch)
    t = Topology.load(path)
    if shapes is not None and t.shapes != tuple(shapes):
        raise FileFormatError(path, f"has layers {list(t.shapes)}, the study's networks {list(shapes)}; delete the "
                                    "run directory to train it again")
    return t.with_name(name or f"{Path(run_dir).name}@{epoch}")

