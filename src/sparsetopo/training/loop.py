"""The training loop: :func:`train` prepares a run (data, model, method, optimizer), opens or
resumes its directory, and runs the epochs; each epoch trains, evaluates, lets the method
update the topology, snapshots and checkpoints.

Both engines (``TrainConfig.engine``) run through the same loop: ``masked`` trains a
:class:`~sparsetopo.models.SparseMLP` / :class:`~sparsetopo.models.SparseCNN` (dense tensors with masks,
:class:`~sparsetopo.optim.MaskedSGD` or Adam), ``truly-sparse`` a
:class:`~sparsetopo.truly_sparse.model.TrulySparseMLP` (weights, gradients and optimizer state per
connection; SGD or Adam fused over values and biases, :mod:`sparsetopo.truly_sparse.optim`; updates through the
method's truly sparse rule, regrowth drawn from a NumPy Generator of the regrowth seed, checkpointed).
Under the truly sparse engine the loop runs with torch's intra-op threads set to 1 (restored afterwards):
the numba kernels use every core themselves and torch's thread pool fights them for the cores.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import check_value
from ..errors import FileFormatError, SparsetopoError
from ..fileio import atomic_write, file_sha256, write_csv, write_text_atomic
from ..schedule import UpdateSchedule
from . import resources, watching
from .config import LOSSES, TRULY_SPARSE_CPU_ONLY, TrainConfig
from .device import resolve_device
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
    kernels' sparse gradients (the same update as ``torch.optim.SGD``, on the mask only);
    on the truly sparse engine :class:`~sparsetopo.truly_sparse.optim.ValuesSGD` / ``ValuesAdam``,
    torch's SGD / Adam in one fused pass over the per-connection values (that module says why)."""
    if config.engine == "truly-sparse":
        from ..truly_sparse.optim import ValuesAdam, ValuesSGD

        if config.optimizer == "adam":
            return ValuesAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return ValuesSGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)

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


#: Evaluation batches hold at most about this many activations per layer (2,000 samples up to
#: 8,192-wide layers, as before; fewer beyond, so a 100,000-wide truly sparse network does not
#: hold several 2,000 x 100,000 float tensors at once: 0.8 GB each).
EVAL_ACTIVATIONS = 2000 * 8192


def eval_batch_size(widths) -> int:
    """Samples per evaluation batch for layers of these widths (see ``EVAL_ACTIVATIONS``)."""
    return max(1, min(2000, EVAL_ACTIVATIONS // max(widths)))


def _evaluate(model, x, y, loss_fn, batch: int | None = None) -> tuple[float, float]:
    import torch

    if batch is None:
        batch = eval_batch_size([max(shape[:2]) for shape in model.layer_shapes])
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
    regrowth_rng: Any  # numpy Generator of the regrowth seed (truly sparse engine), else None
    total: int
    snapshots: set[int]
    schedule: UpdateSchedule
    device: Any = None  # the torch.device the model and data are on
    rows: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)  # resources.csv: peak memory per epoch
    start: int = 0
    resumed_from: int | None = None
    watcher: Any = None  # a training.watching.RunWatcher when tensorboard / wandb logging is on
    itop_state: Any = None  # the checkpoint's ITOP record, for the watcher of a resumed run
    tensors: dict[str, Any] = field(default_factory=dict)  # the data splits as tensors on the device

    def data_tensor(self, name: str):
        """The data array ``name`` (``x_train``, ``y_test``...) as a tensor on the run's device, made once
        (on the CPU it shares the array's memory, as before devices existed)."""
        import torch

        if name not in self.tensors:
            self.tensors[name] = torch.from_numpy(getattr(self.data, name)).to(self.device)
        return self.tensors[name]
    pending_flops: float = 0.0  # spent before the first epoch (pruning at initialisation): counted in its row

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
    with engine_threads(config.engine):
        run = _prepare(config, out, dataset)  # everything that can fail on bad input, before anything is written
        with run_lock(out, command):
            _open_run_dir(run, command)
            _start_or_resume(run, log)
            with watching.open_watcher(config, out, run.model, start=run.start, itop_state=run.itop_state) as w:
                run.watcher = w
                for epoch in range(run.start + 1, run.total + 1):
                    _train_epoch(run, epoch, progress, log)
                return _finish(run)


@contextlib.contextmanager
def engine_threads(engine: str):
    """Torch's intra-op threads for ``engine`` inside the block: 1 for ``truly-sparse`` (its numba kernels
    use every core themselves, and torch's pool spinning beside them slows a run down by up to 2x on two
    cores), unchanged for ``masked``; the previous value is restored on leaving."""
    import torch

    if engine != "truly-sparse":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepare(config: TrainConfig, out: Path, dataset) -> _Run:
    """Load the data and build the model, method and optimizer; writes nothing."""
    import torch

    from ..data import load_dataset
    from ..methods import get_method

    data = dataset or load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction,
                                   seed=config.named_seed("data"), limit_train=config.limit_train,
                                   limit_test=config.limit_test, input_scaling=config.input_scaling)
    method = get_method(config)
    device = resolve_device(config.device, cpu_only=TRULY_SPARSE_CPU_ONLY if config.engine == "truly-sparse"
                            else None)
    resources.check_memory(config, data)  # the tensors' sizes are known: refuse before allocating them
    model = _build_network(config, method, data).to(device)  # built on the CPU from the seeds, then moved
    shapes = model.layer_shapes
    total = method.total_epochs(shapes)
    snapshots = set(config.snapshot_epochs) | {0, total}
    if config.snapshot_every:
        snapshots |= set(range(0, total + 1, config.snapshot_every))
    truly_sparse = config.engine == "truly-sparse"
    schedule = config.update_schedule()
    method.bind_schedule(schedule, total_steps=math.ceil(len(data.y_train) / config.batch_size) * total,
                         name=lambda f: "--" + f.replace("_", "-"))
    return _Run(config=config, out=out, name=out.name, data=data, method=method, model=model,
                optimizer=_make_optimizer(config, model), loss_fn=loss_function(config.loss),
                data_gen=torch.Generator().manual_seed(config.named_seed("data")),
                regrowth_gen=torch.Generator().manual_seed(config.named_seed("regrowth")),
                regrowth_rng=np.random.default_rng(config.named_seed("regrowth")) if truly_sparse else None,
                total=total, snapshots=snapshots, schedule=schedule, device=device)


def _initial_topology_file(config: TrainConfig, shapes):
    """``--initial-topology``, checked against the network's layer ``shapes``."""
    from ..topology import Topology

    topo = Topology.load(config.initial_topology)
    flat = tuple((s[0], math.prod(s[1:])) for s in shapes)
    if topo.shapes != flat:
        raise SparsetopoError(f"--initial-topology {config.initial_topology} has layers {list(topo.shapes)}, "
                              f"the network {list(flat)}")
    return topo


def _build_network(config: TrainConfig, method, data):
    """The model on its initial topology: ``--initial-topology`` or the method's random one. The truly
    sparse engine builds its layers on the topology directly (sampled without any dense matrix)."""
    if config.engine == "truly-sparse":
        sizes = config.sizes(data.n_features, data.n_classes)
        shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
        topo = _initial_topology_file(config, shapes) if config.initial_topology else None
        return config.build_model(data, topology=topo)
    model = config.build_model(data)
    shapes = model.layer_shapes
    if config.initial_topology:
        topo = _initial_topology_file(config, shapes)
    else:
        topo = method.initial_topology(shapes, config.named_seed("topology"))
    if topo is not None:
        model.set_topology(topo)
    return model


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
        run.pending_flops = run.method.prune_at_init(run.model, _scoring_batches(run), run.loss_fn)
        _snapshot(run.model, run.out, 0, run.config, run.name)
        return
    way_out = ("delete it to restart this run from epoch 0 (its metrics and snapshots are rewritten), "
               "or put back a good copy")
    try:
        # Our own file, written atomically by this run; weights_only=False for its generator states.
        ckpt = torch.load(run.checkpoint, weights_only=False, map_location="cpu")  # load_state_dict moves it
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
        if run.regrowth_rng is not None:
            run.regrowth_rng.bit_generator.state = ckpt["rng"]["regrowth_numpy"]
        run.model.dropout_generator.set_state(ckpt["rng"]["dropout"])
        run.rows = list(ckpt["metrics"])
        run.resources = list(ckpt.get("resources", []))  # absent in checkpoints written before it was recorded
        run.start = run.resumed_from = int(ckpt["epoch"])
        run.itop_state = ckpt.get("itop")  # kept only while tensorboard / wandb logging was on
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise FileFormatError(run.checkpoint, f"checkpoint does not fit this run ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())[:200]}); {way_out}") from None
    if not 0 <= run.start <= run.total or len(run.rows) != run.start:
        raise FileFormatError(run.checkpoint, f"checkpoint claims epoch {run.start} with {len(run.rows)} metric rows "
                                              f"(run of {run.total} epochs); {way_out}")
    if run.rows:  # the checkpoint holds the metrics: a damaged metrics.csv heals on resume
        write_csv(run.out / "metrics.csv", run.rows)
    if run.resources:
        write_csv(run.out / "resources.csv", run.resources)
    log(f"[{run.name}] resuming after epoch {run.start} of {run.total}")


def _scoring_batches(run: _Run):
    """Batches of the training split in an order drawn with the topology seed (what pruning at
    initialisation scores on: the topology seed is the seed of the initial topology); lazy."""
    import torch

    x, y = torch.from_numpy(run.data.x_train), torch.from_numpy(run.data.y_train)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(run.config.named_seed("topology")))
    return ((x[b], y[b]) for b in order.split(run.config.batch_size))


def _train_steps(run: _Run, epoch: int, x_tr, y_tr, progress: bool) -> tuple[float, int, float]:
    """The epoch's optimizer steps (and step-scheduled topology updates); returns the summed loss,
    the correct predictions and the training FLOPs (forward and backward on the live connections
    of each step: a step-scheduled pruning lowers them within the epoch)."""
    import torch
    from tqdm.auto import tqdm

    cfg, model = run.config, run.model
    n = len(x_tr)
    order = torch.randperm(n, generator=run.data_gen)
    starts = range(0, n, cfg.batch_size)
    # The first batch of a process may be slow (kernels compile, caches warm up): say so rather than sit at 0.
    bar = tqdm(starts, desc=f"{run.name} epoch {epoch}/{run.total}", unit="batch", disable=not progress,
               leave=False, dynamic_ncols=True, file=sys.stderr,
               postfix="first batch (warm-up)" if epoch == run.start + 1 else None)
    loss_sum, correct, flops = 0.0, 0, 0.0
    live = sum(model.n_connections())
    model.train()
    for b, i in enumerate(bar):
        idx = order[i:i + cfg.batch_size]
        xb, yb = x_tr[idx.to(x_tr.device)], y_tr[idx.to(y_tr.device)]
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
        flops += 6.0 * live * len(idx)  # fwd + bwd, live only
        step = (epoch - 1) * len(starts) + b + 1  # optimizer steps so far: the same on resume
        if run.schedule.per_step and run.method.updates_after_step(step):
            # epoch `step` of `step + 1`: past the per-epoch rule's "no update after the last epoch".
            _update_topology(run, step, x_tr, y_tr, total=step + 1,
                             fraction=run.schedule.drop_fraction(cfg.zeta, step))
            live = sum(model.n_connections())
        if progress:
            seen = min(i + cfg.batch_size, n)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    bar.close()
    return loss_sum, correct, flops


def _train_epoch(run: _Run, epoch: int, progress: bool, log) -> None:
    """One epoch: training steps, the method's topology update, evaluation, snapshot, checkpoint."""
    cfg, model = run.config, run.model
    x_tr, y_tr = run.data_tensor("x_train"), run.data_tensor("y_train")
    n = len(x_tr)
    t0 = time.perf_counter()
    loss_sum, correct, epoch_flops = _train_steps(run, epoch, x_tr, y_tr, progress)
    train_seconds = time.perf_counter() - t0
    flops = (run.rows[-1]["train_flops"] if run.rows else 0.0) + run.pending_flops + epoch_flops
    run.pending_flops = 0.0

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
    run.resources.append({"epoch": epoch, "engine": cfg.engine, "device": str(run.device),
                          "peak_rss_mb": peak_rss_mb(), "seconds": row["seconds"]})
    write_csv(run.out / "resources.csv", run.resources)
    if epoch in run.snapshots and cfg.snapshot_timing == "after_update":
        _snapshot(model, run.out, epoch, cfg, run.name)
    if cfg.optimizer_reset == "epoch":  # before the checkpoint, so a resumed run starts the same way
        run.optimizer = _make_optimizer(cfg, model)
    _checkpoint(run, epoch)
    if run.watcher is not None:  # after the checkpoint: a resumed run logs each epoch once
        run.watcher.epoch(epoch, row, model, snapshot=epoch in run.snapshots)
    _log_epoch(run, epoch, row, progress, log)


def _evaluate_epoch(run: _Run, epoch: int, train_loss: float, train_acc: float) -> dict[str, Any]:
    """The epoch's metrics row so far: phase, training and test (and validation) loss and accuracy."""
    data, model = run.data, run.model
    test_loss, test_acc = _evaluate(model, run.data_tensor("x_test"), run.data_tensor("y_test"), run.loss_fn)
    row: dict[str, Any] = {"epoch": epoch, "phase": run.method.phase(epoch, model.layer_shapes),
                           "train_loss": train_loss, "train_acc": train_acc,
                           "test_loss": test_loss, "test_acc": test_acc}
    if data.x_val is not None:
        row["val_loss"], row["val_acc"] = _evaluate(model, run.data_tensor("x_val"), run.data_tensor("y_val"),
                                                    run.loss_fn)
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
    captured = functools.cache(functools.partial(
        _captured_batches, run.model, x_tr, y_tr, run.data_gen, run.config.batch_size, run.loss_fn))
    ctx = UpdateContext(model=run.model, optimizer=run.optimizer, epoch=epoch,
                        total_epochs=run.total if total is None else total, regrowth=run.regrowth_gen,
                        dense_grads=dense_grads, drop_fraction=fraction, regrowth_rng=run.regrowth_rng,
                        captured=captured)
    if run.method.after_epoch(ctx).reset_optimizer:
        run.optimizer = _make_optimizer(run.config, run.model)
    if run.watcher is not None:
        run.watcher.after_update(run.model)


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
        "resources": run.resources,
    }
    if run.regrowth_rng is not None:
        state["rng"]["regrowth_numpy"] = run.regrowth_rng.bit_generator.state
    if run.watcher is not None and run.watcher.state() is not None:
        state["itop"] = run.watcher.state()
    with atomic_write(run.checkpoint) as f:
        torch.save(state, f)


def _finish(run: _Run) -> RunResult:
    import torch

    with atomic_write(run.out / "model_final.pt") as f:
        torch.save(run.model.state_dict(), f)
    # The checksum lets a later reuse tell a metrics.csv changed or damaged since the run finished.
    write_text_atomic(run.out / "result.json", json.dumps({"final": run.rows[-1], "epochs": run.total,
                                                           "metrics_sha256": file_sha256(run.out / "metrics.csv"),
                                                           "device": str(run.device)}, indent=2))
    return RunResult(run.out, run.rows, resumed_from=run.resumed_from)


def _dense_gradients(model, x, y, generator, batch_size: int, loss_fn, n_batches: int = 4):
    """Gradients of the loss w.r.t. each layer's full weight, on a few random batches
    (:func:`sparsetopo.masking.dense_gradients`: RigL's grow criterion)."""
    import torch

    def backward():
        idx = torch.randperm(len(x), generator=generator)[: batch_size * n_batches].to(x.device)
        for i in range(0, len(idx), batch_size):
            b = idx[i:i + batch_size]
            (loss_fn(model(x[b]), y[b]) * len(b) / len(idx)).backward()

    return model.dense_gradients(backward)


def _captured_batches(model, x, y, generator, batch_size: int, loss_fn, n_batches: int = 4):
    """Per layer of a truly sparse network, ``(x, gy)``: its inputs and output gradients over a few random
    batches (:meth:`~sparsetopo.truly_sparse.TrulySparseLinear.capture`; ``gy^T x`` is the dense weight
    gradient, RigL's grow criterion, which :func:`~sparsetopo.truly_sparse.evolve.rigl_update` forms block by
    block). The same batches and scaling as :func:`_dense_gradients`; parameter gradients are cleared."""
    import torch

    layers = model.masked_layers
    idx = torch.randperm(len(x), generator=generator)[: batch_size * n_batches]
    model.zero_grad(set_to_none=True)
    try:
        with contextlib.ExitStack() as stack:
            caps = [stack.enter_context(layer.capture()) for layer in layers]
            for i in range(0, len(idx), batch_size):
                b = idx[i:i + batch_size]
                (loss_fn(model(x[b]), y[b]) * len(b) / len(idx)).backward()
        return [cap.tensors() for cap in caps]
    finally:
        model.zero_grad(set_to_none=True)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (``getrusage`` ``ru_maxrss``: KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
