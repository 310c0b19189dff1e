"""A run's live logging (``tensorboard``, ``wandb``): :class:`RunWatcher` turns each finished epoch -- its
``metrics.csv`` row, the network's per-layer state and, at snapshots, the NNSTD to the initial topology --
into scalars for the run's :class:`~sparsetopo.tracking.Tracker`.

It is given the row after it has gone to ``metrics.csv`` and the checkpoint, so a resumed run logs each
epoch once, from the one after the checkpoint. The ITOP record is kept on the masked engine only (a
boolean per position; the truly sparse engine would need a set of every position ever used, so it logs
no ITOP rate).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

from ..tracking import (
    ItopRecord,
    MultiTracker,
    TensorBoardTracker,
    WandbTracker,
    layer_stats,
    nnstd_scalars,
    row_scalars,
)
from .config import TrainConfig

__all__ = ["RunWatcher", "open_watcher"]


def _snapshot_file(out: Path, epoch: int) -> Path:
    return out / "topology" / f"epoch_{epoch:03d}.npz"


class RunWatcher:
    """Feeds ``tracker`` from a training run (see the module docstring)."""

    def __init__(self, tracker, model, out: Path, *, engine: str, itop_state=None):
        self.tracker = tracker
        self.out = out
        self.itop = None if engine == "truly-sparse" else ItopRecord(model.masks())
        if self.itop is not None and itop_state is not None:
            self.itop.load(itop_state)
        self._initial = None

    def after_update(self, model) -> None:
        """Record the connections a topology update made (call after each one: step-scheduled ones too)."""
        if self.itop is not None:
            self.itop.update(model.masks())

    def epoch(self, epoch: int, row: dict[str, Any], model, snapshot: bool) -> dict[str, float]:
        """Log epoch ``epoch``: its metrics row, per-layer stats and, when it was snapshotted, the NNSTD
        of its snapshot to epoch 0's; returns what was logged."""
        scalars = row_scalars(row)
        scalars.update(layer_stats(model.layer_shapes, model.n_connections(),
                                   None if self.itop is None else self.itop.rates()))
        if snapshot:
            scalars.update(self._nnstd(epoch))
        self.tracker.log_scalars(epoch, scalars)
        return scalars

    def _nnstd(self, epoch: int) -> dict[str, float]:
        from ..topology import Topology

        if self._initial is None:
            self._initial = Topology.load(_snapshot_file(self.out, 0))
        return nnstd_scalars(self._initial, Topology.load(_snapshot_file(self.out, epoch)))

    def state(self):
        """What a checkpoint keeps (the ITOP record), or ``None``."""
        return None if self.itop is None else self.itop.state()

    def close(self) -> None:
        self.tracker.close()


def _trackers(config: TrainConfig, out: Path, start: int) -> list:
    trackers = []
    if config.tensorboard:
        trackers.append(TensorBoardTracker(config.tensorboard, purge_step=start + 1 if start else None))
    if config.wandb:
        run_id = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]  # one W&B run per run directory
        trackers.append(WandbTracker(name=out.name, run_dir=out, run_id=run_id, config=config.to_dict()))
    return trackers


@contextlib.contextmanager
def open_watcher(config: TrainConfig, out: Path, model, *, start: int, itop_state=None):
    """A :class:`RunWatcher` for the trackers ``config`` asks for (``None`` when it asks for none), closed
    on leaving. ``start``: the epoch the run resumes after (0: fresh)."""
    trackers = _trackers(config, out, start)
    if not trackers:
        yield None
        return
    tracker = trackers[0] if len(trackers) == 1 else MultiTracker(trackers)
    watcher = RunWatcher(tracker, model, out, engine=config.engine, itop_state=itop_state)
    try:
        yield watcher
    finally:
        watcher.close()
