"""One training loop for every method, with topology snapshots, checkpoints and resume.

A run directory holds::

    config.yaml          the resolved configuration (every field, named seeds included)
    command.txt          the command line that started or resumed the run
    metrics.csv          one row per epoch
    topology/epoch_XXX.npz   snapshots (sparsetopo's Topology format)
    checkpoint.pt        model, optimizer, masks, method state, RNG states, metrics
    model_final.pt       the final state dict
    result.json          written last: its presence marks the run as complete

Re-running the same configuration on the same directory resumes from the
checkpoint and gives the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ._util import atomic_path, write_csv, write_text_atomic

__all__ = ["TrainConfig", "RunResult", "train", "load_config_file", "SEED_PURPOSES"]

SEED_PURPOSES = ("topology", "init", "data", "regrowth", "dropout")
OPTIMIZERS = ("sgd", "adam")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Field names are the YAML keys and,
    with dashes, the CLI flags; the ``help`` metadata is the flag's help."""

    method: str = field(default="set", metadata={"help": "dense, static, set, rigl or lottery."})
    dataset: str = field(default="fashion-mnist", metadata={"help": "fashion-mnist, mnist or cifar10."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Data directory (default: $SPARSETOPO_DATA, else the dataset's standard location)."})
    hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000],
                              metadata={"help": "Hidden layer sizes, e.g. --hidden 1000 1000 1000."})
    activation: str = field(default="relu", metadata={"help": "relu, tanh, sigmoid, gelu or leaky_relu."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout after each hidden layer, in [0, 1)."})
    epsilon: float | None = field(default=20.0, metadata={
        "help": "SET's Erdős–Rényi sparsity parameter: layer density epsilon(n_in + n_out)/(n_in n_out)."})
    density: float | None = field(default=None, metadata={
        "help": "Target density of the sparse layers, in (0, 1]; overrides --epsilon."})
    initial_topology: str | None = field(default=None, metadata={
        "help": "Start from this saved topology (.npz) instead of a random Erdős–Rényi one (static, set, rigl)."})
    zeta: float = field(default=0.3, metadata={"help": "Fraction of connections dropped and regrown per epoch."})
    dense_output: bool = field(default=True, metadata={"help": "Keep the output layer fully connected."})
    epochs: int = field(default=100, metadata={"help": "Training epochs (for lottery: of the final ticket)."})
    batch_size: int = field(default=128, metadata={"help": "Mini-batch size."})
    optimizer: str = field(default="sgd", metadata={"help": "sgd or adam."})
    lr: float = field(default=0.01, metadata={"help": "Learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=2e-4, metadata={"help": "L2 weight decay."})
    seed: int = field(default=0, metadata={"help": "Base seed; each named seed left unset derives from it."})
    topology_seed: int | None = field(default=None, metadata={"help": "Seed of the initial topology."})
    init_seed: int | None = field(default=None, metadata={"help": "Seed of the weight initialisation."})
    data_seed: int | None = field(default=None, metadata={"help": "Seed of the data order (and validation split)."})
    regrowth_seed: int | None = field(default=None, metadata={"help": "Seed of SET's random regrowth."})
    dropout_seed: int | None = field(default=None, metadata={"help": "Seed of the dropout masks."})
    val_fraction: float = field(default=0.0, metadata={
        "help": "Fraction of the training set held out for validation."})
    snapshot_epochs: list[int] = field(default_factory=list, metadata={
        "help": "Epochs whose topology is saved (0 and the last are always saved)."})
    snapshot_every: int = field(default=0, metadata={"help": "Also snapshot every N epochs (0: off)."})
    prune_rate: float = field(default=0.2, metadata={"help": "Lottery: fraction pruned per round, in (0, 1)."})
    round_epochs: int | None = field(default=None, metadata={
        "help": "Lottery: epochs per pruning round (default --epochs)."})
    rewind_epoch: int = field(default=0, metadata={"help": "Lottery: rewind to the weights of this epoch (0: init)."})
    sparse_kernel: bool | None = field(default=None, metadata={
        "help": "Sparse CSR kernels for the masked layers (default: for layers at most 2 % dense)."})
    limit_train: int | None = field(default=None, metadata={"help": "Use only the first N training samples."})
    limit_test: int | None = field(default=None, metadata={"help": "Use only the first N test samples."})

    # ----------------------------------------------------------------- seeds
    def named_seed(self, purpose: str) -> int:
        """The seed for one purpose: set explicitly, or derived from ``seed``.

        Derived seeds come from ``SeedSequence([seed, i])`` so the streams of
        different purposes are independent even though one number was given.
        """
        explicit = getattr(self, f"{purpose}_seed")
        if explicit is not None:
            return int(explicit)
        return int(np.random.SeedSequence([self.seed, SEED_PURPOSES.index(purpose)]).generate_state(1)[0])

    def sizes(self, n_features: int, n_classes: int) -> list[int]:
        return [n_features, *self.hidden, n_classes]

    # ------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the option, allowed values and value given."""
        from .data import DATASETS
        from .methods import METHODS
        from .models import ACTIVATIONS

        def choice(name, value, allowed):
            if value not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}; got {value!r}")

        choice("method", self.method, list(METHODS))
        choice("dataset", self.dataset, DATASETS)
        choice("activation", self.activation, list(ACTIVATIONS))
        choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"--hidden must list positive layer sizes, got {self.hidden}")
        if self.density is None and (self.epsilon is None or not self.epsilon > 0):
            raise ValueError(f"--epsilon must be > 0 (or give --density), got {self.epsilon}")
        if self.density is not None and not 0 < self.density <= 1:
            raise ValueError(f"--density must be in (0, 1], got {self.density}")
        if not 0 < self.zeta < 1:
            raise ValueError(f"--zeta must be in (0, 1), got {self.zeta}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.prune_rate < 1:
            raise ValueError(f"--prune-rate must be in (0, 1), got {self.prune_rate}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.round_epochs is not None and self.round_epochs < 1:
            raise ValueError(f"--round-epochs must be >= 1, got {self.round_epochs}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        round_epochs = self.round_epochs or self.epochs
        if self.rewind_epoch < 0 or (self.method == "lottery" and self.rewind_epoch > round_epochs):
            raise ValueError(f"--rewind-epoch must be in [0, round epochs], got {self.rewind_epoch}")
        if self.initial_topology is not None:
            if self.method not in ("static", "set", "rigl"):
                raise ValueError(f"--initial-topology applies to static, set and rigl, not --method {self.method}")
            if not Path(self.initial_topology).is_file():
                raise ValueError(f"--initial-topology: {self.initial_topology} is not a file")
        if any(e < 0 for e in self.snapshot_epochs) or self.snapshot_every < 0:
            raise ValueError("--snapshot-epochs and --snapshot-every must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        return cls(**data)


# Fields that do not change a run's results; they may differ when resuming.
_NON_SEMANTIC = {"data_dir"}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict (keys as in :class:`TrainConfig`, dashes allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


@dataclass
class RunResult:
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

    from .optim import MaskedSGD

    sgd = config.optimizer == "sgd"
    for layer in model.masked_layers:
        layer.sparse_grad = sgd
    if not sgd:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return MaskedSGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _evaluate(model, x, y, batch: int = 2000) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
    model.train()
    return loss / len(x), correct / len(x)


def _snapshot(model, out: Path, epoch: int, config: TrainConfig, run_name: str) -> None:
    topo = model.topology(epoch=epoch, method=config.method, run=run_name)
    topo.with_name(f"{run_name}@{epoch}").save(out / "topology" / f"epoch_{epoch:03d}.npz")


def _check_same_config(out: Path, config: TrainConfig) -> None:
    saved = load_config_file(out / "config.yaml")
    current = config.to_dict()
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in _NON_SEMANTIC and saved.get(k) != current.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise ValueError(
            f"{out}: holds a run with another configuration ({detail}); "
            "use a new --out directory or the same settings to resume"
        )


# --------------------------------------------------------------------- train
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
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from .data import load_dataset
    from .methods import UpdateContext, get_method
    from .models import SparseMLP

    config.validate()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    run_name = out.name
    if (out / "config.yaml").exists():
        _check_same_config(out, config)
        if (out / "result.json").exists():
            return RunResult(out, read_metrics(out), skipped=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    cmd = command or " ".join(sys.argv)
    with open(out / "command.txt", "a") as f:
        f.write(cmd + "\n")

    data = dataset or load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction,
                                   seed=config.named_seed("data"), limit_train=config.limit_train,
                                   limit_test=config.limit_test)
    sizes = config.sizes(data.n_features, data.n_classes)
    method = get_method(config)
    model = SparseMLP(sizes, activation=config.activation, dropout=config.dropout,
                      init_seed=config.named_seed("init"), dropout_seed=config.named_seed("dropout"),
                      sparse_kernel=config.sparse_kernel)
    if config.initial_topology:
        from .topology import Topology

        topo = Topology.load(config.initial_topology)
        if list(topo.sizes) != sizes:
            raise ValueError(f"--initial-topology {config.initial_topology} has layer sizes {list(topo.sizes)}, "
                             f"the network {sizes}")
    else:
        topo = method.initial_topology(sizes, config.named_seed("topology"))
    if topo is not None:
        model.set_topology(topo)
    optimizer = _make_optimizer(config, model)
    data_gen = torch.Generator().manual_seed(config.named_seed("data"))
    regrowth_gen = torch.Generator().manual_seed(config.named_seed("regrowth"))
    total = method.total_epochs(sizes)
    snapshots = set(config.snapshot_epochs) | {0, total}
    if config.snapshot_every:
        snapshots |= set(range(0, total + 1, config.snapshot_every))

    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_te, y_te = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    has_val = data.x_val is not None
    if has_val:
        x_va, y_va = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)

    rows: list[dict[str, Any]] = []
    start = 0
    resumed_from = None
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer = _make_optimizer(config, model)
        optimizer.load_state_dict(ckpt["optimizer"])
        method.load_state_dict(ckpt["method"])
        data_gen.set_state(ckpt["rng"]["data"])
        regrowth_gen.set_state(ckpt["rng"]["regrowth"])
        model.dropout_generator.set_state(ckpt["rng"]["dropout"])
        rows = ckpt["metrics"]
        start = resumed_from = ckpt["epoch"]
        log(f"[{run_name}] resuming after epoch {start} of {total}")
    else:
        method.on_start(model)
        _snapshot(model, out, 0, config, run_name)

    n = len(x_tr)
    flops = rows[-1]["train_flops"] if rows else 0.0
    for epoch in range(start + 1, total + 1):
        t0 = time.perf_counter()
        connections = model.n_connections()
        order = torch.randperm(n, generator=data_gen)
        batches = range(0, n, config.batch_size)
        bar = tqdm(batches, desc=f"{run_name} epoch {epoch}/{total}", disable=not progress, leave=False,
                   dynamic_ncols=True, file=sys.stderr)
        loss_sum, correct = 0.0, 0
        model.train()
        for i in bar:
            idx = order[i:i + config.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            model.mask_grads()
            optimizer.step()
            model.apply_masks()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            if progress:
                bar.set_postfix(loss=f"{loss_sum / min(i + config.batch_size, n):.4f}",
                                acc=f"{correct / min(i + config.batch_size, n):.4f}", refresh=False)
        bar.close()
        train_seconds = time.perf_counter() - t0
        flops += 6.0 * sum(connections) * n  # forward + backward over existing connections only

        t1 = time.perf_counter()
        dense_grads = functools.cache(functools.partial(
            _dense_gradients, model, x_tr, y_tr, data_gen, config.batch_size))
        ctx = UpdateContext(model=model, optimizer=optimizer, epoch=epoch, total_epochs=total,
                            regrowth=regrowth_gen, dense_grads=dense_grads)
        update = method.after_epoch(ctx)
        if update.reset_optimizer:
            optimizer = _make_optimizer(config, model)
        update_seconds = time.perf_counter() - t1

        test_loss, test_acc = _evaluate(model, x_te, y_te)
        row: dict[str, Any] = {
            "epoch": epoch,
            "phase": method.phase(epoch, sizes),
            "train_loss": loss_sum / n,
            "train_acc": correct / n,
            "test_loss": test_loss,
            "test_acc": test_acc,
        }
        if has_val:
            row["val_loss"], row["val_acc"] = _evaluate(model, x_va, y_va)
        for k, c in enumerate(model.n_connections()):
            row[f"connections_l{k}"] = c
        row["train_flops"] = flops
        row["train_seconds"] = train_seconds
        row["update_seconds"] = update_seconds
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        write_csv(out / "metrics.csv", rows)
        if epoch in snapshots:
            _snapshot(model, out, epoch, config, run_name)
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "method": method.state_dict(),
            "rng": {"data": data_gen.get_state(), "regrowth": regrowth_gen.get_state(),
                    "dropout": model.dropout_generator.get_state()},
            "metrics": rows,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        if not progress:
            val = f" val_acc {row['val_acc']:.4f}" if has_val else ""
            log(f"[{run_name}] epoch {epoch}/{total} ({row['phase']}) loss {row['train_loss']:.4f} "
                f"train_acc {row['train_acc']:.4f} test_acc {test_acc:.4f}{val} ({row['seconds']:.1f}s)")

    with atomic_path(out / "model_final.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    write_text_atomic(out / "result.json", json.dumps({"final": rows[-1], "epochs": total}, indent=2))
    return RunResult(out, rows, resumed_from=resumed_from)


def _dense_gradients(model, x, y, generator, batch_size: int, n_batches: int = 4):
    """Gradients of the loss w.r.t. each layer's full weight, on a few random batches.

    The masked weights are zero outside the mask, so the gradient there tells
    how much a new connection would help (RigL's grow criterion).
    """
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    idx = torch.randperm(len(x), generator=generator)[: batch_size * n_batches]
    with model.dense_compute():
        for i in range(0, len(idx), batch_size):
            b = idx[i:i + batch_size]
            (F.cross_entropy(model(x[b]), y[b]) * len(b) / len(idx)).backward()
    grads = [layer.weight.grad.detach().clone() for layer in model.masked_layers]
    model.zero_grad(set_to_none=True)
    return grads


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (empty before the first epoch)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k == "phase":
                continue
            try:
                r[k] = int(v) if v.lstrip("-").isdigit() else float(v)
            except ValueError:
                pass
    return rows
