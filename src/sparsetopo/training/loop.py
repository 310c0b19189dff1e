"""The training loop: :func:`train` prepares a run (data, model, method, optimizer), opens or
resumes its directory, and runs the epochs; each epoch trains, evaluates, lets the method
update the topology, snapshots and checkpoints.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import check_value
from ..errors import FileFormatError, SparsetopoError
from ..fileio import atomic_write, file_sha256, write_csv, write_text_atomic
from ..schedule import UpdateSchedule
from . import resources
from .config import LOSSES, TrainConfig
from .rundir import reusable_run, run_lock
from .weights import save_weights

__all__ = ["DIVERGED_LOSS", "RunResult", "loss_function", "train"]

#: A mean batch loss above this is divergence, not learning: cross-entropy starts
#: at log(classes) ~ 2.3 and SET's squared error is at most 5 for ten classes.
DIVERGED_LOSS = 1e4


@dataclass
class RunResult:
    """What :func:`train` returns: the run directory, its metrics rows (``final`` is the last),
    the epoch it resumed after (``None``: a fresh run) and whether it was already complete."""

    out_dir: Path
    metrics: list[dict[str, Any]]
    resumed_from: int | None = None
    skipped: bool = False

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1]


# ------------------------------------------------------------------ helpers
def _make_optimizer(config: TrainConfig, model):
    """The configured optimizer. SGD is :class:`MaskedSGD`, which takes the sparse
    kernels' sparse gradients (the same update as ``torch.optim.SGD``, on the mask only)."""
    import torch

    from ..optim import MaskedSGD

    sgd = config.optimizer == "sgd"
    for layer in model.masked_layers:
        layer.sparse_grad = sgd
    if not sgd:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return MaskedSGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def loss_function(name: str):
    """``fn(logits, y, reduction)`` for a loss ``name`` (one of :data:`~sparsetopo.training.config.LOSSES`).

    ``mse`` is SET's original loss: sigmoid outputs, squared error to the
    one-hot labels summed over classes and halved, averaged over the batch
    (its gradient is SET's ``(y_pred - y_true) * sigmoid'``).
    """
    import torch
    import torch.nn.functional as F

    check_value("loss", name, str, {"choices": LOSSES})
    if name == "cross_entropy":
        return F.cross_entropy

    def mse(logits, y, reduction: str = "mean"):
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        per_sample = 0.5 * (torch.sigmoid(logits) - target).pow(2).sum(1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    return mse


def _evaluate(model, x, y, loss_fn, batch: int = 2000) -> tuple[float, float]:
    import torch

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += float(loss_fn(out, y[i:i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
    model.train()
    return loss / len(x), correct / len(x)


def _snapshot(model, out: Path, epoch: int, config: TrainConfig, run_name: str) -> None:
    topo = model.topology(nonzero=config.snapshot_connections == "nonzero", epoch=epoch, method=config.method,
                          run=run_name, timing=config.snapshot_timing)
    topo.with_name(f"{run_name}@{epoch}").save(out / "topology" / f"epoch_{epoch:03d}.npz")
    if config.snapshot_weights:
        save_weights(model, out / "weights" / f"epoch_{epoch:03d}.npz")


# --------------------------------------------------------------------- train
@dataclass
class _Run:
    """Everything a run holds while it trains: built by :func:`_prepare`, advanced by the epoch steps."""

    config: TrainConfig
    out: Path
    name: str
    data: Any
    method: Any
    model: Any
    optimizer: Any
    loss_fn: Any
    data_gen: Any
    regrowth_gen: Any
    total: int
    snapshots: set[int]
    schedule: UpdateSchedule
    rows: list[dict[str, Any]] = field(default_factory=list)
    start: int = 0
    resumed_from: int | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"


def train(config: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True, log=None,
          command: str | None = None, dataset=None) -> RunResult:
    """Train one network as configured, writing a resumable run directory.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path
        The run directory; an existing one with the same config resumes (or,
        when complete, is returned without training).
    progress : bool
        Show a progress bar per epoch; otherwise one log line per epoch.
    log : callable, optional
        Where log lines go (default: stderr).
    dataset : Dataset, optional
        Pre-loaded data (experiments share one copy across runs).
    """
    config.validate()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory (a run directory was expected)",
                                 str(out))
    finished = reusable_run(out, config)
    if finished is not None:
        return RunResult(out, finished, skipped=True)
    run = _prepare(config, out, dataset)  # everything that can fail on bad input, before anything is written
    with run_lock(out, command):
        _open_run_dir(run, command)
        _start_or_resume(run, log)
        for epoch in range(run.start + 1, run.total + 1):
            _train_epoch(run, epoch, progress, log)
        return _finish(run)


def _prepare(config: TrainConfig, out: Path, dataset) -> _Run:
    """Load the data and build the model, method and optimizer; writes nothing."""
    import torch

    from ..data import load_dataset
    from ..methods import get_method

    data = dataset or load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction,
                                   seed=config.named_seed("data"), limit_train=config.limit_train,
                                   limit_test=config.limit_test, input_scaling=config.input_scaling)
    method = get_method(config)
    resources.check_memory(config, data)  # the dense tensors' sizes are known: refuse before allocating them
    model = config.build_model(data)
    shapes = model.layer_shapes
    if config.initial_topology:
        from ..topology import Topology

        topo = Topology.load(config.initial_topology)
        flat = tuple((s[0], math.prod(s[1:])) for s in shapes)
        if topo.shapes != flat:
            raise SparsetopoError(f"--initial-topology {config.initial_topology} has layers {list(topo.shapes)}, "
                                  f"the network {list(flat)}")
    else:
        topo = method.initial_topology(shapes, config.named_seed("topology"))
    if topo is not None:
        model.set_topology(topo)
    total = method.total_epochs(shapes)
    snapshots = set(config.snapshot_epochs) | {0, total}
    if config.snapshot_every:
        snapshots |= set(range(0, total + 1, config.snapshot_every))
    return _Run(config=config, out=out, name=out.name, data=data, method=method, model=model,
                optimizer=_make_optimizer(config, model), loss_fn=loss_function(config.loss),
                data_gen=torch.Generator().manual_seed(config.named_seed("data")),
                regrowth_gen=torch.Generator().manual_seed(config.named_seed("regrowth")),
                total=total, snapshots=snapshots, schedule=config.update_schedule())


def _open_run_dir(run: _Run, command: str | None) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    if not (run.out / "config.yaml").exists():
        write_text_atomic(run.out / "config.yaml", yaml.safe_dump(run.config.to_dict(), sort_keys=False))
    with open(run.out / "command.txt", "a") as f:
        f.write((command or " ".join(sys.argv)) + "\n")


def _start_or_resume(run: _Run, log) -> None:
    """Restore the last checkpoint, or snapshot the initial topology of a fresh run."""
    import torch

    if not run.checkpoint.exists():
        run.method.on_start(run.model)
        _snapshot(run.model, run.out, 0, run.config, run.name)
        return
    way_out = ("delete it to restart this run from epoch 0 (its metrics and snapshots are rewritten), "
               "or put back a good copy")
    try:
        # Our own file, written atomically by this run; weights_only=False for its generator states.
        ckpt = torch.load(run.checkpoint, weights_only=False)
    except Exception as exc:  # torch raises many kinds on a damaged file; all mean the same to a user
        raise FileFormatError(run.checkpoint, f"unreadable checkpoint ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())[:200]}); {way_out}") from None
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer = _make_optimizer(run.config, run.model)
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.method.load_state_dict(ckpt["method"])
        run.data_gen.set_state(ckpt["rng"]["data"])
        run.regrowth_gen.set_state(ckpt["rng"]["regrowth"])
        run.model.dropout_generator.set_state(ckpt["rng"]["dropout"])
        run.rows = list(ckpt["metrics"])
        run.start = run.resumed_from = int(ckpt["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise FileFormatError(run.checkpoint, f"checkpoint does not fit this run ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())[:200]}); {way_out}") from None
    if not 0 <= run.start <= run.total or len(run.rows) != run.start:
        raise FileFormatError(run.checkpoint, f"checkpoint claims epoch {run.start} with {len(run.rows)} metric rows "
                                              f"(run of {run.total} epochs); {way_out}")
    if run.rows:  # the checkpoint holds the metrics: a damaged metrics.csv heals on resume
        write_csv(run.out / "metrics.csv", run.rows)
    log(f"[{run.name}] resuming after epoch {run.start} of {run.total}")


def _train_steps(run: _Run, epoch: int, x_tr, y_tr, progress: bool) -> tuple[float, int]:
    """The epoch's optimizer steps (and step-scheduled topology updates); returns the summed loss
    and the correct predictions."""
    import torch
    from tqdm.auto import tqdm

    cfg, model = run.config, run.model
    n = len(x_tr)
    order = torch.randperm(n, generator=run.data_gen)
    starts = range(0, n, cfg.batch_size)
    bar = tqdm(starts, desc=f"{run.name} epoch {epoch}/{run.total}", disable=not progress,
               leave=False, dynamic_ncols=True, file=sys.stderr)
    loss_sum, correct = 0.0, 0
    model.train()
    for b, i in enumerate(bar):
        idx = order[i:i + cfg.batch_size]
        xb, yb = x_tr[idx], y_tr[idx]
        run.optimizer.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = run.loss_fn(logits, yb)
        loss.backward()
        model.mask_grads()
        run.optimizer.step()
        model.apply_masks()
        loss_value = loss.item()
        if not math.isfinite(loss_value) or loss_value > DIVERGED_LOSS:
            raise SparsetopoError(
                f"{run.out}: training diverged at epoch {epoch} (loss {loss_value}); the run stops here and is "
                f"not marked complete. Lower --lr (now {cfg.lr:g}) or the initial weight scale, and train in a "
                "new --out directory")
        loss_sum += loss_value * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
        step = (epoch - 1) * len(starts) + b + 1  # optimizer steps so far: the same on resume
        if run.schedule.should_update(step):
            # epoch `step` of `step + 1`: past the per-epoch rule's "no update after the last epoch".
            _update_topology(run, step, x_tr, y_tr, total=step + 1,
                             fraction=run.schedule.drop_fraction(cfg.zeta, step))
        if progress:
            seen = min(i + cfg.batch_size, n)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    bar.close()
    return loss_sum, correct


def _train_epoch(run: _Run, epoch: int, progress: bool, log) -> None:
    """One epoch: training steps, the method's topology update, evaluation, snapshot, checkpoint."""
    import torch

    cfg, model = run.config, run.model
    x_tr, y_tr = torch.from_numpy(run.data.x_train), torch.from_numpy(run.data.y_train)
    n = len(x_tr)
    t0 = time.perf_counter()
    connections = model.n_connections()
    loss_sum, correct = _train_steps(run, epoch, x_tr, y_tr, progress)
    train_seconds = time.perf_counter() - t0
    flops = (run.rows[-1]["train_flops"] if run.rows else 0.0) + 6.0 * sum(connections) * n  # fwd + bwd, live only

    # The trained network is evaluated before its topology update (as SET does):
    # the update prunes a fraction of small weights and adds zero-valued ones.
    row = _evaluate_epoch(run, epoch, loss_sum / n, correct / n)
    if epoch in run.snapshots and cfg.snapshot_timing == "before_update":
        _snapshot(model, run.out, epoch, cfg, run.name)
    t1 = time.perf_counter()
    if not run.schedule.per_step:
        _update_topology(run, epoch, x_tr, y_tr)
    update_seconds = time.perf_counter() - t1
    for k, c in enumerate(model.n_connections()):
        row[f"connections_l{k}"] = c
    row.update(train_flops=flops, train_seconds=train_seconds, update_seconds=update_seconds,
               seconds=time.perf_counter() - t0)
    run.rows.append(row)
    write_csv(run.out / "metrics.csv", run.rows)
    if epoch in run.snapshots and cfg.snapshot_timing == "after_update":
        _snapshot(model, run.out, epoch, cfg, run.name)
    _checkpoint(run, epoch)
    _log_epoch(run, epoch, row, progress, log)


def _evaluate_epoch(run: _Run, epoch: int, train_loss: float, train_acc: float) -> dict[str, Any]:
    """The epoch's metrics row so far: phase, training and test (and validation) loss and accuracy."""
    import torch

    data, model = run.data, run.model
    test_loss, test_acc = _evaluate(model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test), run.loss_fn)
    row: dict[str, Any] = {"epoch": epoch, "phase": run.method.phase(epoch, model.layer_shapes),
                           "train_loss": train_loss, "train_acc": train_acc,
                           "test_loss": test_loss, "test_acc": test_acc}
    if data.x_val is not None:
        row["val_loss"], row["val_acc"] = _evaluate(model, torch.from_numpy(data.x_val),
                                                    torch.from_numpy(data.y_val), run.loss_fn)
    return row


def _log_epoch(run: _Run, epoch: int, row: dict[str, Any], progress: bool, log) -> None:
    # One line per epoch, with or without progress bars (tqdm.write keeps a live bar intact).
    from tqdm.auto import tqdm

    val = f" val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""
    line = (f"[{run.name}] epoch {epoch}/{run.total} ({row['phase']}) loss {row['train_loss']:.4f} "
            f"train_acc {row['train_acc']:.4f} test_acc {row['test_acc']:.4f}{val} ({row['seconds']:.1f}s)")
    if progress:
        tqdm.write(line, file=sys.stderr)
    else:
        log(line)


def _update_topology(run: _Run, epoch: int, x_tr, y_tr, *, total: int | None = None,
                     fraction: float | None = None) -> None:
    """The method's drop-and-grow (or pruning) after ``epoch`` (or, step-scheduled, after step ``epoch``
    of ``total``, moving ``fraction``)."""
    from ..methods import UpdateContext

    dense_grads = functools.cache(functools.partial(
        _dense_gradients, run.model, x_tr, y_tr, run.data_gen, run.config.batch_size, run.loss_fn))
    ctx = UpdateContext(model=run.model, optimizer=run.optimizer, epoch=epoch,
                        total_epochs=run.total if total is None else total, regrowth=run.regrowth_gen,
                        dense_grads=dense_grads, drop_fraction=fraction)
    if run.method.after_epoch(ctx).reset_optimizer:
        run.optimizer = _make_optimizer(run.config, run.model)


def _checkpoint(run: _Run, epoch: int) -> None:
    import torch

    state = {
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "method": run.method.state_dict(),
        "rng": {"data": run.data_gen.get_state(), "regrowth": run.regrowth_gen.get_state(),
                "dropout": run.model.dropout_generator.get_state()},
        "metrics": run.rows,
    }
    with atomic_write(run.checkpoint) as f:
        torch.save(state, f)


def _finish(run: _Run) -> RunResult:
    import torch

    with atomic_write(run.out / "model_final.pt") as f:
        torch.save(run.model.state_dict(), f)
    # The checksum lets a later reuse tell a metrics.csv changed or damaged since the run finished.
    write_text_atomic(run.out / "result.json", json.dumps({"final": run.rows[-1], "epochs": run.total,
                                                           "metrics_sha256": file_sha256(run.out / "metrics.csv")},
                                                          indent=2))
    return RunResult(run.out, run.rows, resumed_from=run.resumed_from)


def _dense_gradients(model, x, y, generator, batch_size: int, loss_fn, n_batches: int = 4):
    """Gradients of the loss w.r.t. each layer's full weight, on a few random batches
    (:func:`sparsetopo.masking.dense_gradients`: RigL's grow criterion)."""
    import torch

    def backward():
        idx = torch.randperm(len(x), generator=generator)[: batch_size * n_batches]
        for i in range(0, len(idx), batch_size):
            b = idx[i:i + batch_size]
            (loss_fn(model(x[b]), y[b]) * len(b) / len(idx)).backward()

    return model.dense_gradients(backward)
