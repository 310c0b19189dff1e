"""Shared machinery of the experiments: training many runs and NNSTD over their snapshots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..parallel import map_tasks
from ..topology import Topology
from ..training import TrainConfig


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
                  progress: bool = True, desc: str = "training runs") -> list[Path]:
    """Train every ``(config, out_dir)``; complete runs are skipped, partial ones resume.

    Runs go to separate processes (joblib) or Dask workers, one torch thread
    each, so two cores train two networks at once.
    """
    runs = list(runs)
    pending = [(c.validate().to_dict(), str(d)) for c, d in runs if not (Path(d) / "result.json").exists()]
    workers = min(n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1), max(len(pending), 1))
    # Worker processes train with one torch thread each; a run trained in this
    # process leaves torch's thread setting alone.
    threads = 1 if (cluster is not None or workers > 1) else 0
    todo = [(c, d, threads) for c, d in pending]
    for _ in map_tasks(_train_one, todo, n_jobs=workers, backend="processes", cluster=cluster,
                       progress=progress, desc=desc):
        pass
    return [Path(d) for _, d in runs]


def snapshot_path(run_dir: Path, epoch: int, kind: str = "topology") -> Path:
    """A run's snapshot file of one epoch: ``kind`` "topology" (masks) or "weights"."""
    return Path(run_dir) / kind / f"epoch_{epoch:03d}.npz"


def load_snapshot(run_dir: Path, epoch: int, name: str | None = None) -> Topology:
    t = Topology.load(snapshot_path(run_dir, epoch))
    return t.with_name(name or f"{Path(run_dir).name}@{epoch}")

