"""Live logging of a training run to TensorBoard and Weights & Biases.

One small protocol, :class:`Tracker` (``log_scalars(step, scalars)``, ``close()``), with a TensorBoard
(:class:`TensorBoardTracker`), a W&B (:class:`WandbTracker`) and a fan-out (:class:`MultiTracker`)
implementation. ``train`` feeds them the very rows it writes to ``metrics.csv`` (:func:`row_scalars`), so
the two cannot disagree: ``metrics.csv`` stays the source of truth, a tracker is a view of it. Besides the
rows they get per layer the density and connection count (:func:`layer_stats`), the in-time
over-parameterization rate (:class:`ItopRecord`) and, at each topology snapshot, the NNSTD to the initial
topology (:func:`nnstd_scalars`, computed on the CPU like every NNSTD). :func:`sparsetopo.methods.sparsify`
hands the same per-layer statistics to its ``callback`` after each update; a tracker's ``log_scalars`` is
such a callback.

Nothing here imports torch, tensorboard or wandb before a tracker is made.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import SparsetopoError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .topology import Topology

__all__ = ["ItopRecord", "MultiTracker", "TensorBoardTracker", "Tracker", "WandbTracker", "layer_stats",
           "nnstd_scalars", "require_wandb", "row_scalars"]


@runtime_checkable
class Tracker(Protocol):
    """Where scalars go: ``log_scalars(step, {tag: value})`` for each step, in increasing order, then ``close()``."""

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` (tag -> number) at ``step``."""

    def close(self) -> None:
        """Flush and release the tracker's files or connection."""


class TensorBoardTracker:
    """Scalars to a TensorBoard event file in ``log_dir`` (``torch.utils.tensorboard``).

    ``purge_step``: on resume, the first step to be logged again; events a stopped process wrote at
    that step or later are hidden by TensorBoard, so a resumed run shows each step once.
    """

    def __init__(self, log_dir: str | os.PathLike, *, purge_step: int | None = None):
        log_dir = Path(log_dir)
        if log_dir.exists() and not log_dir.is_dir():
            raise SparsetopoError(f"tensorboard: {log_dir} exists and is not a directory (a log directory was "
                                  "expected)")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), global_step=int(step))
        self.writer.flush()  # one flush per step: a run stopped at any moment keeps what it logged

    def close(self) -> None:
        self.writer.close()


def require_wandb(label: str = "wandb"):
    """The ``wandb`` module, or a :class:`SparsetopoError` naming ``label`` and ``pip install wandb``."""
    try:
        import wandb
    except ImportError:
        raise SparsetopoError(f"{label} needs the wandb package, which is not installed: pip install wandb "
                              "(or leave out " + label + ")") from None
    return wandb


class WandbTracker:
    """Scalars to a Weights & Biases run.

    The run works offline (``mode="offline"``, files under ``run_dir/wandb``, upload later with ``wandb
    sync``) unless the environment sets ``WANDB_MODE``. ``run_id`` names the W&B run, so a resumed training
    run continues the same W&B run (``resume="allow"``); its steps go on from the resumed epoch.
    """

    def __init__(self, *, name: str, run_dir: str | os.PathLike, run_id: str, config: Mapping[str, Any] | None = None,
                 project: str = "sparsetopo"):
        wandb = require_wandb()
        mode = os.environ.get("WANDB_MODE", "offline")  # no network needed unless the user asks for it
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow", dir=str(run_dir),
                              config=dict(config or {}), mode=mode)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def close(self) -> None:
        self.run.finish()


class MultiTracker:
    """Every scalar to each of ``trackers``; ``close`` closes all of them, even when one fails."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_scalars(step, scalars)

    def close(self) -> None:
        errors = []
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as exc:  # close the others first, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]


def row_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.csv`` row as tags ``metrics/<column>`` (``epoch`` is the step itself and
    ``phase`` is text, so both are left out)."""
    return {f"metrics/{k}": float(v) for k, v in row.items()
            if k not in ("epoch", "phase") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def layer_stats(shapes: Sequence[tuple[int, ...]], connections: Sequence[int],
                itop: Sequence[float] | None = None) -> dict[str, float]:
    """Per layer ``k``: ``density/l{k}`` (connections over positions), ``connections/l{k}`` and, when
    ``itop`` (per-layer ITOP rates) is given, ``itop/l{k}`` and the whole network's ``itop/all``."""
    sizes = [math.prod(s) for s in shapes]
    out: dict[str, float] = {}
    for k, (size, c) in enumerate(zip(sizes, connections)):
        out[f"density/l{k}"] = c / size
        out[f"connections/l{k}"] = float(c)
    if itop is not None:
        for k, rate in enumerate(itop):
            out[f"itop/l{k}"] = float(rate)
        out["itop/all"] = sum(r * s for r, s in zip(itop, sizes)) / sum(sizes)
    return out


class ItopRecord:
    """In-time over-parameterization (Liu et al., ICML 2021): per layer, every position that has been a
    connection at least once so far (a running boolean OR of the masks: one bool per position, the mask's
    memory and device). Its rate is the fraction of positions ever active."""

    def __init__(self, masks: Sequence[torch.Tensor]):
        self.seen = [m.detach() != 0 for m in masks]

    def update(self, masks: Sequence[torch.Tensor]) -> None:
        """Add the positions active in ``masks`` (one per layer, as at construction)."""
        for seen, m in zip(self.seen, masks):
            seen |= m.detach().to(seen.device) != 0

    def rates(self) -> list[float]:
        return [int(s.count_nonzero()) / s.numel() for s in self.seen]

    def state(self) -> list[torch.Tensor]:
        """The record on the CPU (for a checkpoint)."""
        return [s.cpu() for s in self.seen]

    def load(self, state: Sequence[torch.Tensor]) -> None:
        """Restore :meth:`state`; a record of other shapes is refused naming the layer."""
        if len(state) != len(self.seen):
            raise SparsetopoError(f"ITOP record holds {len(state)} layers, the network {len(self.seen)}")
        for k, (s, mine) in enumerate(zip(state, self.seen)):
            if tuple(s.shape) != tuple(mine.shape):
                raise SparsetopoError(f"ITOP record layer {k} has shape {tuple(s.shape)}, the network "
                                      f"{tuple(mine.shape)}")
        self.seen = [s.to(mine.device) != 0 for s, mine in zip(state, self.seen)]


def nnstd_scalars(initial: Topology, current: Topology, **nnstd_options) -> dict[str, float]:
    """NNSTD of ``current`` to ``initial`` (:func:`sparsetopo.nnstd.nnstd`, on the CPU): ``nnstd_initial/l{k}``
    per layer and ``nnstd_initial/mean``."""
    from .nnstd import nnstd

    result = nnstd(initial, current, **nnstd_options)
    out = {f"nnstd_initial/l{k}": float(v) for k, v in enumerate(result.per_layer)}
    out["nnstd_initial/mean"] = result.value
    return out
