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

import contextlib
import csv
import dataclasses
import errno
import functools
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import check_config, load_yaml_mapping, option, registry
from .errors import FileFormatError, SparsetopoError
from .fileio import atomic_write, file_sha256, write_csv, write_text_atomic
from .methods import LotterySettings, check_method_settings, method_class, methods_help, settings_class
from .schedule import DROP_SCHEDULES, UpdateSchedule
from .sparsity import SparsitySettings

__all__ = ["TrainConfig", "RunResult", "train", "load_config_file", "loss_function", "SEED_PURPOSES", "read_metrics",
           "reusable_run", "estimate_memory", "available_memory"]

SEED_PURPOSES = ("topology", "init", "data", "regrowth", "dropout")
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("cross_entropy", "mse")
SNAPSHOT_TIMINGS = ("after_update", "before_update")
SNAPSHOT_CONNECTIONS = ("mask", "nonzero")


_SEED = dict(min=0, max=2**32 - 1)


@dataclass
class TrainConfig(LotterySettings, SparsitySettings):
    """Everything that defines a training run: the sparsity settings a method reads
    (:class:`~sparsetopo.sparsity.SparsitySettings`, whose fields come first), the
    built-in methods' own settings (lottery's :class:`~sparsetopo.methods.LotterySettings`),
    the step schedule and the data, model, optimizer, seeds and snapshots. Field names are
    the YAML keys and, with dashes, the CLI flags; the ``help`` metadata is the flag's help
    and the other metadata its allowed values (checked by :meth:`validate`). A method
    registered later brings its settings as flat keys too (:meth:`from_dict`)."""

    method: str = option("set", help=methods_help() + ".", choices=registry("methods", "METHODS"))

    dataset: str = option("fashion-mnist", help="fashion-mnist, mnist or cifar10.",
                          choices=registry("data", "DATASETS"))
    data_dir: str | None = option(None, help="Data directory (default: $SPARSETOPO_DATA/<dataset>, else the dataset's "
                                            "standard location).")
    input_scaling: str = option("standardize", choices=registry("data", "INPUT_SCALINGS"),
                               help="standardize (per-pixel mean/std of the training split) or unit (pixels / 255).")
    model: str = option("mlp", choices=registry("models", "MODELS"),
                       help="mlp (fully connected: --hidden) or cnn (a small VGG-style network: 3x3 convolutions "
                            "--channels with a 2x2 max-pool after every second one, then --hidden fully connected "
                            "layers; e.g. --model cnn --hidden 128).")
    hidden: list[int] = option(factory=lambda: [1000, 1000, 1000], min=1, max=1_000_000, nonempty=True,
                              help="Hidden layer sizes, e.g. --hidden 1000 1000 1000 (with --model cnn: the fully "
                                   "connected layers after the convolutions).")
    channels: list[int] = option(factory=lambda: [16, 16, 32, 32], min=1, max=100_000, nonempty=True,
                                help="--model cnn: output channels of the 3x3 convolutions.")
    activation: str = option("relu", help="relu, tanh, sigmoid, gelu or leaky_relu.",
                            choices=registry("models", "ACTIVATIONS"))
    dropout: float = option(0.0, min=0.0, lt=1.0, help="Dropout after each hidden layer, in [0, 1).")
    initial_topology: str | None = option(None, help="Start from this saved topology (.npz) instead of a random "
                                                    "Erdős–Rényi one (methods that accept one: static, "
                                                    "set, rigl).")
    init: str = option("he", choices=registry("models", "INITS"),
                      help="Weight initialisation: he (He-uniform rescaled to each neuron's fan-in) or normal "
                           "(N(0, init_std^2), zero biases: SET's original code).")
    loss: str = option("cross_entropy", choices=LOSSES,
                      help="cross_entropy (softmax) or mse (sigmoid outputs, squared error to one-hot labels: "
                           "SET's NumPy code).")
    snapshot_timing: str = option("after_update", choices=SNAPSHOT_TIMINGS,
                                 help="Topology snapshot of epoch E: after_update (after E epochs and the E-th "
                                      "drop-and-grow) or before_update (after E epochs of training, before that "
                                      "update: only connections that trained).")
    batch_size: int = option(128, min=1, help="Mini-batch size.")
    optimizer: str = option("sgd", choices=OPTIMIZERS, help="sgd or adam.")
    lr: float = option(0.01, gt=0.0, help="Learning rate.")
    momentum: float = option(0.9, min=0.0, lt=1.0, help="SGD momentum, in [0, 1).")
    weight_decay: float = option(2e-4, min=0.0, help="L2 weight decay.")
    seed: int = option(0, **_SEED, help="Base seed; each named seed left unset derives from it.")
    topology_seed: int | None = option(None, **_SEED, help="Seed of the initial topology.")
    init_seed: int | None = option(None, **_SEED, help="Seed of the weight initialisation.")
    data_seed: int | None = option(None, **_SEED, help="Seed of the data order (and validation split).")
    regrowth_seed: int | None = option(None, **_SEED, help="Seed of SET's random regrowth.")
    dropout_seed: int | None = option(None, **_SEED, help="Seed of the dropout masks.")
    val_fraction: float = option(0.0, min=0.0, lt=1.0, help="Fraction of the training set held out for validation.")
    snapshot_epochs: list[int] = option(factory=list, min=0,
                                       help="Epochs whose topology is saved (0 and the last are always saved).")
    snapshot_every: int = option(0, min=0, help="Also snapshot every N epochs (0: off).")
    snapshot_connections: str = option("mask", choices=SNAPSHOT_CONNECTIONS,
                                      help="Connections in a topology snapshot: mask (every connection) or nonzero "
                                           "(only those whose weight is not exactly zero, as in a saved weight matrix "
                                           "like the paper's published files).")
    snapshot_weights: bool = option(False, help="With each topology snapshot also save the weights and biases "
                                               "(weights/epoch_XXX.npz).")
    sparse_kernel: bool | None = option(None, help="Sparse CSR kernels for the masked layers (default: for layers at "
                                                  "most 2 % dense).")
    limit_train: int | None = option(None, min=1, help="Use only the first N training samples.")
    limit_test: int | None = option(None, min=1, help="Use only the first N test samples.")
    update_every: int | None = option(None, min=1, help="Update the topology every N optimizer steps instead of "
                                                        "after each epoch (methods that work with sparsify).")
    drop_schedule: str = option("constant", choices=DROP_SCHEDULES,
                                help="With --update-every: the fraction moved per update, constant (--zeta) or "
                                     "cosine (--zeta decaying to 0 at --end-step, RigL's schedule).")
    end_step: int | None = option(None, min=1, help="With --update-every: no topology update from this optimizer "
                                                    "step on.")

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
        """The MLP's layer sizes (``model="mlp"``)."""
        return [n_features, *self.hidden, n_classes]

    def build_model(self, data):
        """The network this config describes, for ``data`` (a :class:`~sparsetopo.data.Dataset`):
        the builder registered under ``model`` in :data:`sparsetopo.models.MODELS`."""
        from .models import MODELS

        return MODELS[self.model](self, data)

    def update_schedule(self) -> UpdateSchedule:
        return UpdateSchedule(self.update_every, self.end_step, self.drop_schedule)

    # ------------------------------------------------------------ validation
    def validate(self, *, flags: bool = True) -> TrainConfig:
        """Check every field (type and range, from its annotation and metadata), then the
        rules that tie fields together; raise :class:`SparsetopoError` naming the option,
        what is allowed and what was given."""
        check_method_settings(super().validate(flags=flags), flags=flags)
        method = method_class(self.method)
        if self.initial_topology is not None:
            if not method.accepts_initial_topology:
                able = ", ".join(k for k, c in _methods().items() if c.accepts_initial_topology)
                raise SparsetopoError(f"--initial-topology applies to {able}, not --method {self.method}")
            if not Path(self.initial_topology).is_file():
                raise SparsetopoError(f"--initial-topology: {self.initial_topology} is not a file")
        if self.update_every is not None and not method.works_with_sparsify:
            raise SparsetopoError(f"--update-every applies to methods with step updates, not --method {self.method}")
        try:
            self.update_schedule()
        except SparsetopoError as exc:
            msg = str(exc)
            for key in ("update_every", "end_step", "drop_schedule"):
                msg = msg.replace(key, "--" + key.replace("_", "-") if flags else key)
            raise SparsetopoError(msg) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A config from YAML-style keys; unknown keys and values of the wrong type are errors naming ``source``.

        The keys of the method's own settings (its ``settings_cls``) are allowed too: a method
        registered after this class was declared gets a config class with them."""
        method = data.get("method", cls.method)
        if isinstance(method, str) and method in _methods():
            cls = settings_class(cls, method)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SparsetopoError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(sorted(names))}")
        config = cls(**data)
        try:
            check_config(config, flags=True)
        except SparsetopoError as exc:
            raise SparsetopoError(f"{source}: {exc}") from None
        return config


#: A mean batch loss above this is divergence, not learning: cross-entropy starts
#: at log(classes) ~ 2.3 and SET's squared error is at most 5 for ten classes.
DIVERGED_LOSS = 1e4

def _methods():
    from .methods import METHODS

    return METHODS


# Fields that do not change a run's results; they may differ when resuming.
_NON_SEMANTIC = {"data_dir"}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict (keys as in :class:`TrainConfig`, dashes allowed).

    Duplicate keys, non-mapping files and unreadable files are errors naming the file.
    """
    return load_yaml_mapping(path)


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


def loss_function(name: str):
    """``fn(logits, y, reduction)`` for a ``--loss`` name.

    ``mse`` is SET's original loss: sigmoid outputs, squared error to the
    one-hot labels summed over classes and halved, averaged over the batch
    (its gradient is SET's ``(y_pred - y_true) * sigmoid'``).
    """
    import torch
    import torch.nn.functional as F

    if name == "cross_entropy":
        return F.cross_entropy

    def mse(logits, y, reduction: str = "mean"):
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        per_sample = 0.5 * (torch.sigmoid(logits) - target).pow(2).sum(1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    if name == "mse":
        return mse
    raise SparsetopoError(f"--loss must be one of {', '.join(LOSSES)}; got {name!r}")


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


def save_weights(model, path: str | os.PathLike) -> Path:
    """Save each layer's weights at its mask's positions (zeros included) and its biases.

    The file holds, per layer ``k``, ``w{k}`` (values in the row-major order of
    the mask's positions, float32) and ``b{k}``; :func:`load_weights` returns
    them as scipy CSR matrices of shape ``(n_out, n_in)`` whose stored entries
    are exactly the mask.
    """
    arrays = {}
    for k, layer in enumerate(model.masked_layers):
        mask = layer.weight_mask.detach().cpu().numpy() != 0
        arrays[f"w{k}"] = layer.weight.detach().cpu().numpy()[mask].astype(np.float32)
        arrays[f"m{k}_indptr"] = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int64)
        arrays[f"m{k}_indices"] = np.nonzero(mask)[1].astype(np.int32)
        arrays[f"m{k}_shape"] = np.array(mask.shape, dtype=np.int64)
        arrays[f"b{k}"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    path = Path(path)
    with atomic_write(path) as f:
        np.savez_compressed(f, n_layers=np.array(len(model.masked_layers)), **arrays)
    return path


def load_weights(path: str | os.PathLike) -> tuple[list, list[np.ndarray]]:
    """The ``(weights, biases)`` saved by :func:`save_weights`: CSR matrices over the mask, bias vectors."""
    import scipy.sparse as ss

    from ._npz import check_csr_arrays, check_shape, int_array, read_npz

    what = "a sparsetopo weights snapshot"
    z = read_npz(path, what)
    try:
        n = int(z["n_layers"][()])
        weights, biases = [], []
        for k in range(n):
            shape = check_shape(path, z[f"m{k}_shape"], f"layer {k}")
            indptr, indices = int_array(path, z, f"m{k}_indptr", what), int_array(path, z, f"m{k}_indices", what)
            check_csr_arrays(path, f"layer {k}", indptr, indices, shape)
            w, b = z[f"w{k}"], z[f"b{k}"]
            if w.shape != (len(indices),) or b.shape != (shape[0],) or not (np.isfinite(w).all()
                                                                             and np.isfinite(b).all()):
                raise FileFormatError(path, f"layer {k}: weights or biases of the wrong length or not finite")
            weights.append(ss.csr_matrix((w, indices, indptr), shape=shape))
            biases.append(b)
    except FileFormatError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise FileFormatError(path, f"not a weights snapshot ({type(exc).__name__}: {exc})") from None
    return weights, biases


def _check_same_config(out: Path, config: TrainConfig, *, anchor: Path | None = None) -> None:
    """Refuse a run directory whose recorded settings (config.yaml) differ from ``config``.

    ``anchor`` is the experiment directory the run belongs to: there an ``initial_topology``
    is the same setting when it names the same file of that directory, wherever the
    directory now lies (experiment directories can be moved).
    """
    # A key missing from an older run's config.yaml had the field's default then.
    saved = {**type(config)().to_dict(), **load_config_file(out / "config.yaml")}
    current = config.to_dict()
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in _NON_SEMANTIC and not _same_setting(k, saved.get(k), current.get(k), anchor))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise SparsetopoError(
            f"{out}: holds a run with another configuration ({detail}) than wanted (setting: recorded -> wanted); "
            "delete it or choose another --out directory, or use the same settings to resume"
        )


def _same_setting(key: str, recorded: Any, wanted: Any, anchor: Path | None) -> bool:
    if recorded == wanted:
        return True
    if key != "initial_topology" or anchor is None or not isinstance(recorded, str) or not isinstance(wanted, str):
        return False
    try:
        inside = Path(wanted).resolve().relative_to(Path(anchor).resolve())
    except ValueError:
        return False
    return Path(recorded).parts[-len(inside.parts):] == inside.parts


def reusable_run(out: str | os.PathLike, config: TrainConfig, *, anchor: str | os.PathLike | None = None):
    """The validated metrics of the finished run in ``out`` if it is this ``config``'s, else ``None``.

    ``None`` means the run still has to be trained (or resumed). A directory holding a run
    with other recorded settings, or a finished run whose config.yaml, result.json or
    metrics.csv is missing or damaged, is refused with an error naming the file and the
    way out, so that a foreign or damaged run is never used as this one.

    Parameters
    ----------
    out : path
        The run directory.
    config : TrainConfig
        The settings the caller would train with.
    anchor : path, optional
        The experiment directory holding the run (see :func:`_check_same_config`).
    """
    out = Path(out)
    if (out / "config.yaml").exists():
        _check_same_config(out, config, anchor=None if anchor is None else Path(anchor))
    result_path = out / "result.json"
    if not result_path.exists():
        return None
    if not (out / "config.yaml").exists():
        raise FileFormatError(out / "config.yaml", "missing from a finished run (result.json is there), so its "
                                                   "settings are unknown; delete the run directory to train it again")
    way_out = "delete it to rewrite it from the run's checkpoint, or delete the run directory to train it again"
    try:
        result = json.loads(result_path.read_text())
    except ValueError:
        raise FileFormatError(result_path, f"not valid JSON; {way_out}") from None
    epochs = result.get("epochs") if isinstance(result, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise FileFormatError(result_path, "must be a JSON object with an integer 'epochs' >= 1 (the run's "
                                           f"length), got {' '.join(json.dumps(result).split())[:80]}; {way_out}")
    rows = read_metrics(out, epochs=epochs, validation=config.val_fraction > 0)
    recorded = result.get("metrics_sha256")  # absent in runs finished before it was recorded
    if recorded is not None and recorded != file_sha256(out / "metrics.csv"):
        raise FileFormatError(out / "metrics.csv", "changed since the run finished (its checksum is not the one "
                                                   f"result.json records); {_METRICS_WAY_OUT}")
    return rows


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


@contextlib.contextmanager
def run_lock(out: Path, command: str | None = None):
    """Hold the run directory's lock (``.lock``) for the body; refuse a directory another process holds.

    The lock is an ``flock`` on ``out/.lock``, which the kernel releases when
    its process dies, so a killed run never leaves a stale lock; the file names
    the holder for the message a second process gets.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise SparsetopoError(f"{out}: in use by another training run ({holder}); wait for it to finish "
                                  "or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{command or ' '.join(sys.argv)}".encode(), 0)
        yield
    finally:
        os.close(fd)


def estimate_memory(config: TrainConfig, n_features: int, n_classes: int,
                    image_shape: tuple[int, int, int] | None = None) -> int:
    """Bytes that training ``config``'s network needs in the masked engine (a lower bound, no allocation).

    The masked engine keeps every layer as dense ``n_out x n_in`` (x 3 x 3) float32 tensors:
    the weight, its gradient and its mask (float32 too), plus the optimizer's state per
    parameter (SGD with momentum: one tensor, Adam: two); biases likewise. Activations
    are counted for one training batch: three float32 values (pre-activation, activation,
    gradient) per neuron and sample.

    Parameters
    ----------
    config : TrainConfig
    n_features, n_classes : int
        The data's input size and number of classes.
    image_shape : (channels, height, width), optional
        Required for ``model="cnn"``.

    Returns
    -------
    int
        Bytes.
    """
    layers = []  # per layer: (weight entries, biases, outputs per sample)
    if config.model == "cnn":
        if image_shape is None:
            raise SparsetopoError("estimate_memory: --model cnn needs the data's image shape")
        c, h, w = (int(v) for v in image_shape)
        for k, out in enumerate(int(v) for v in config.channels):
            layers.append((out * c * 9, out, out * h * w))
            c = out
            if k % 2 == 1:
                h, w = h // 2, w // 2
        n_features = c * h * w
    sizes = [int(n_features), *(int(v) for v in config.hidden), int(n_classes)]
    layers += [(a * b, b, b) for a, b in zip(sizes[:-1], sizes[1:])]
    state = 2 if config.optimizer == "adam" else (1 if config.momentum > 0 else 0)
    weights = sum(w for w, _, _ in layers)
    biases = sum(b for _, b, _ in layers)
    per_param = 4 * (2 + state)  # float32 value, gradient, optimizer state
    activations = 3 * 4 * config.batch_size * sum(o for _, _, o in layers)
    return weights * (per_param + 4) + biases * per_param + activations


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def _check_memory(config: TrainConfig, data) -> None:
    """Refuse, before building anything, a network whose training would not fit in memory."""
    need = estimate_memory(config, data.n_features, data.n_classes, getattr(data, "image_shape", None))
    have = available_memory()
    if have is None or need <= have:
        return
    hidden = " ".join(map(str, config.hidden))
    raise SparsetopoError(
        f"--hidden {hidden}: training this network needs about {_gib(need)} of memory (the masked engine holds "
        f"dense float32 weights, gradients, masks and optimizer state for every layer, plus activations for "
        f"--batch-size {config.batch_size}), but {_gib(have)} is available; use a smaller --hidden width or a "
        "lower --batch-size (the coming truly sparse engine will need memory only for the connections)")


def _prepare(config: TrainConfig, out: Path, dataset) -> _Run:
    """Load the data and build the model, method and optimizer; writes nothing."""
    import torch

    from .data import load_dataset
    from .methods import get_method

    data = dataset or load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction,
                                   seed=config.named_seed("data"), limit_train=config.limit_train,
                                   limit_test=config.limit_test, input_scaling=config.input_scaling)
    method = get_method(config)
    _check_memory(config, data)  # the dense tensors' sizes are known: refuse before allocating them
    model = config.build_model(data)
    shapes = model.layer_shapes
    if config.initial_topology:
        from .topology import Topology

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
    from .methods import UpdateContext

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


_METRICS_WAY_OUT = ("delete the run's result.json to rewrite metrics.csv from its checkpoint, or delete the run "
                    "directory to train it again")

#: Columns every metrics.csv has (validation columns with --val-fraction, connection counts per layer).
METRIC_COLUMNS = ("epoch", "phase", "train_loss", "train_acc", "test_loss", "test_acc")


def read_metrics(run_dir: str | os.PathLike, *, epochs: int | None = None,
                 validation: bool = False) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed, validated (empty before the first epoch).

    The header must hold :data:`METRIC_COLUMNS` (and ``val_loss``, ``val_acc`` with
    ``validation``), every row a number in every column but ``phase``, and the epochs
    must run 1, 2, ... (up to ``epochs`` when given: a finished run has all of them).
    Anything else raises :class:`FileFormatError` naming the file.
    """
    path = Path(run_dir) / "metrics.csv"
    way_out = _METRICS_WAY_OUT
    if not path.exists():
        if epochs is not None:
            raise FileFormatError(path, f"missing from a finished run; {way_out}")
        return []
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except (ValueError, csv.Error) as exc:  # undecodable bytes, NUL characters
        raise FileFormatError(path, f"not a metrics table ({exc}); {way_out}") from None
    if not table:
        raise FileFormatError(path, f"empty (no header); {way_out}")
    header = table[0]
    required = METRIC_COLUMNS + (("val_loss", "val_acc") if validation else ())
    missing = [c for c in required if c not in header]
    if missing or len(set(header)) != len(header):
        raise FileFormatError(path, f"header must name the columns {', '.join(required)} once each; "
                                    f"got {repr(','.join(header)[:200])[1:-1]}; {way_out}")
    rows = [_metrics_row(path, header, cells, line, way_out) for line, cells in enumerate(table[1:], start=2)]
    got = [r["epoch"] for r in rows]
    if got != list(range(1, len(rows) + 1)):
        raise FileFormatError(path, f"epochs must run 1, 2, ... one row each; got {got[:20]}; {way_out}")
    if epochs is not None and len(rows) != epochs:
        raise FileFormatError(path, f"{len(rows)} epoch rows for a finished run of {epochs} epochs; {way_out}")
    return rows


def _metrics_row(path: Path, header: list[str], cells: list[str], line: int, way_out: str) -> dict[str, Any]:
    if len(cells) != len(header):
        raise FileFormatError(path, f"line {line} has {len(cells)} cells for {len(header)} columns "
                                    f"(truncated?); {way_out}")
    row: dict[str, Any] = {}
    for k, v in zip(header, cells):
        if k == "phase":
            if not v:
                raise FileFormatError(path, f"line {line}: empty phase; {way_out}")
            row[k] = v
            continue
        try:
            row[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            raise FileFormatError(path, f"line {line}, column {k}: {v[:40]!r} is not a number; {way_out}") from None
    if not isinstance(row["epoch"], int):
        raise FileFormatError(path, f"line {line}: epoch {row['epoch']!r} is not an integer; {way_out}")
    return row
