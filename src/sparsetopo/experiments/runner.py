"""Shared machinery of the experiments: training many runs and NNSTD over their snapshots."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
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
    train(TrainConfig(**config_dict), out_dir, progress=False, log=lambda msg: None,
          command=f"sparsetopo experiment (run {Path(out_dir).name})")
    return out_dir


def run_trainings(runs: Sequence[tuple[TrainConfig, Path]], *, n_jobs: int = -1, cluster: str | None = None,
                  progress: bool = True, desc: str = "training runs", anchor: Path | None = None) -> list[Path]:
    """Train every ``(config, out_dir)``; complete runs are skipped, partial ones resume.

    Every run directory is checked before anything trains (:func:`~sparsetopo.training.reusable_run`):
    a finished run is reused only when its recorded settings are the ones wanted and its
    results are intact, so a foreign or damaged run is refused, never used as one of the
    study's networks. ``anchor`` is the experiment directory (it may have been moved).

    Runs go to separate processes (joblib) or Dask workers, one torch thread
    each, so two cores train two networks at once.
    """
    runs = [(c.validate(), Path(d)) for c, d in runs]
    pending = [(c, d) for c, d in runs if reusable_run(d, c, anchor=anchor) is None]
    workers = min(n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1), max(len(pending), 1))
    # Worker processes train with one torch thread each; a run trained in this
    # process leaves torch's thread setting alone.
    threads = 1 if (cluster is not None or workers > 1) else 0
    todo = [(c.to_dict(), str(d), threads) for c, d in pending]
    with _EpochProgress(pending, desc, enabled=progress and bool(pending)):
        for _ in map_tasks(_train_one, todo, n_jobs=workers, backend="processes", cluster=cluster,
                           progress=False, desc=desc):
            pass
    return [Path(d) for _, d in runs]


class _EpochProgress:
    """A progress bar over the epochs of all pending runs, fed by their metrics.csv files.

    Runs train in other processes (or on a cluster); each writes one metrics
    row per epoch, so counting rows every couple of seconds shows progress
    epoch by epoch instead of once per finished run (hours at ``paper``).
    """

    def __init__(self, pending, desc: str, *, enabled: bool, every: float = 2.0):
        self.paths = [d / "metrics.csv" for _, d in pending]
        self.total = sum(_planned_epochs(c) for c, _ in pending)
        self.desc, self.enabled, self.every = desc, enabled, every
        self._stop = threading.Event()

    def _done(self) -> int:
        n = 0
        for p in self.paths:
            try:
                with open(p, "rb") as f:
                    n += max(sum(1 for _ in f) - 1, 0)
            except OSError:
                pass
        return n

    def _poll(self, bar) -> None:
        while not self._stop.wait(self.every):
            bar.n = self._done()
            bar.refresh()

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self._done(), desc=f"{self.desc} (epochs)", unit="epoch",
                            dynamic_ncols=True, leave=False)
            self.thread = threading.Thread(target=self._poll, args=(self.bar,), daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self.thread.join()
            self.bar.n = self._done()
            self.bar.close()


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

