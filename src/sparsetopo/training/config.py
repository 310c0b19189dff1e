"""The schema of a training run: :class:`TrainConfig` (every field a YAML key and, with
dashes, a CLI flag), its named seeds and the config-file reader.

This module imports neither torch nor the registries (field choices are looked up when a
value is checked), so declaring a config and ``--help`` stay cheap.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import check_config, load_yaml_mapping, option, registry
from ..data import check_dataset, datasets_help
from ..errors import SparsetopoError
from ..methods import LotterySettings, check_method_settings, method_class, methods_help, settings_class
from ..schedule import DROP_SCHEDULES, UpdateSchedule
from ..sparsity import SparsitySettings

__all__ = ["ENGINES", "LOSSES", "OPTIMIZERS", "SEED_PURPOSES", "SNAPSHOT_CONNECTIONS", "SNAPSHOT_TIMINGS",
           "TrainConfig", "load_config_file"]

SEED_PURPOSES = ("topology", "init", "data", "regrowth", "dropout")
OPTIMIZERS = ("sgd", "adam")
#: When the optimizer's state (momentum, Adam's moments) starts afresh: never, or after every epoch
#: (SET's Keras code compiles a new SGD optimizer at the start of every epoch).
OPTIMIZER_RESETS = ("never", "epoch")
LOSSES = ("cross_entropy", "mse")
SNAPSHOT_TIMINGS = ("after_update", "before_update")
SNAPSHOT_CONNECTIONS = ("mask", "nonzero")
#: ``masked``: dense weight tensors with masks (:mod:`sparsetopo.models`); ``truly-sparse``: weights,
#: gradients and optimizer state only for the connections (:mod:`sparsetopo.truly_sparse`).
ENGINES = ("masked", "truly-sparse")


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

    # Checked in validate() (data.check_dataset): a registered name, or an existing .mat / .npz file.
    dataset: str = option("fashion-mnist", help=datasets_help() + "; or a tabular data file: a path ending in .mat "
                                            "(scikit-feature's X and Y) or .npz (arrays X and y), split 2/3 for "
                                            "training and 1/3 for testing by the data seed.")
    data_dir: str | None = option(None, help="Data directory (default: $SPARSETOPO_DATA/<dataset>, else the dataset's "
                                            "standard location).")
    input_scaling: str = option("standardize", choices=registry("data", "INPUT_SCALINGS"),
                               help="standardize (per-pixel mean/std of the training split) or unit (pixels / 255).")
    model: str = option("mlp", choices=registry("models_resnet", "MODELS"),  # models' and the ResNets
                       help="mlp (fully connected: --hidden); cnn (a small VGG-style network: 3x3 convolutions "
                            "--channels with a 2x2 max-pool after every second one, then --hidden fully connected "
                            "layers; e.g. --model cnn --hidden 128); resnet20, resnet32 or resnet (CIFAR-style "
                            "ResNets of depth 20, 32 or --depth, groups of W, 2W and 4W channels, W = --width); "
                            "wrn (WideResNet WRN-d-k, d = --depth, k = --width).")
    engine: str = option("masked", choices=ENGINES,
                        help="masked (dense weight tensors with masks: every method, MLPs and CNNs) or truly-sparse "
                             "(weights, gradients and optimizer state only for the existing connections, so memory "
                             "and time follow the connections: --model mlp with static, set or rigl).")
    hidden: list[int] = option(factory=lambda: [1000, 1000, 1000], min=1, max=1_000_000, nonempty=True,
                              help="Hidden layer sizes, e.g. --hidden 1000 1000 1000 (with --model cnn: the fully "
                                   "connected layers after the convolutions).")
    channels: list[int] = option(factory=lambda: [16, 16, 32, 32], min=1, max=100_000, nonempty=True,
                                help="--model cnn: output channels of the 3x3 convolutions. (The ResNets read "
                                     "its first value as --width when --width is not given.)")
    width: int | None = option(None, min=1, max=100_000,
                              help="--model resnet20, resnet32, resnet: the first group's channels W (groups of "
                                   "W, 2W, 4W; 16 by default, He et al.'s); --model wrn: the widening factor k "
                                   "(groups of 16k, 32k, 64k channels; 2 by default, WRN-22-2).")
    depth: int | None = option(None, min=1, max=1202,
                              help="--model resnet: layers, 6k+2 (8, 14, 20, 32, 44, 56, 110; 20 by default); "
                                   "--model wrn: 6k+4 (10, 16, 22, 28, 40; 22 by default). resnet20 and resnet32 "
                                   "have their depth: a different --depth is refused (use --model resnet).")
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
    optimizer_reset: str = option("never", choices=OPTIMIZER_RESETS,
                                  help="never (default) or epoch: a fresh optimizer, momentum zero, after every "
                                       "epoch, as SET's Keras code builds a new SGD each epoch.")
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
    # Where and how a run is watched; none of these changes its numbers (so a run may resume with others).
    device: str = option("auto", help="Where the network trains: auto (CUDA when torch sees it, else the CPU), cpu, "
                                      "cuda, cuda:N or mps. Random draws come from the seeded CPU generators on "
                                      "every device; NNSTD and --engine truly-sparse run on the CPU.")
    tensorboard: str | None = option(None, help="Also log to TensorBoard in this directory: the metrics.csv "
                                                "columns, per-layer density, in-time over-parameterization rate "
                                                "and NNSTD to the initial topology at each snapshot.")
    wandb: bool = option(False, help="Also log the same to Weights & Biases (needs `pip install wandb`; offline "
                                     "unless WANDB_MODE is set).")

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

    def build_model(self, data, topology=None):
        """The network this config describes, for ``data`` (a :class:`~sparsetopo.data.Dataset`):
        the builder registered under ``model`` in :data:`sparsetopo.models.MODELS`, or, with
        ``engine="truly-sparse"``, a :class:`~sparsetopo.truly_sparse.model.TrulySparseMLP` built on
        ``topology`` (default: the method's random initial topology, sampled without any dense matrix)."""
        if self.engine == "truly-sparse":
            return _truly_sparse_mlp(self, data, topology)
        from ..models_resnet import MODELS  # models.MODELS with the ResNets registered

        return MODELS[self.model](self, data)

    def update_schedule(self) -> UpdateSchedule:
        return UpdateSchedule(self.update_every, self.end_step, self.drop_schedule)

    # ------------------------------------------------------------ validation
    def validate(self, *, flags: bool = True) -> TrainConfig:
        """Check every field (type and range, from its annotation and metadata), then the
        rules that tie fields together; raise :class:`SparsetopoError` naming the option,
        what is allowed and what was given."""
        check_method_settings(super().validate(flags=flags), flags=flags)

        def name(field: str) -> str:  # as the caller writes it: a --flag or the key
            return "--" + field.replace("_", "-") if flags else field

        check_dataset(self.dataset, name("dataset"))
        method = method_class(self.method)
        if self.initial_topology is not None:
            if not method.accepts_initial_topology:
                able = ", ".join(k for k, c in _methods().items() if c.accepts_initial_topology)
                raise SparsetopoError(f"{name('initial_topology')} applies to {able}, not {name('method')} "
                                      f"{self.method}")
            if not Path(self.initial_topology).is_file():
                raise SparsetopoError(f"{name('initial_topology')}: {self.initial_topology} is not a file")
        _check_engine(self, method, name)
        _check_regrow_where(self, name)
        from ..models_resnet import check_residual_options  # the model registry's rules (imports torch)

        check_residual_options(self, name)
        _check_watching(self, name)
        if self.update_every is not None and not method.works_with_sparsify:
            raise SparsetopoError(f"{name('update_every')} applies to methods with step updates, not "
                                  f"{name('method')} {self.method}")
        try:
            self.update_schedule()
        except SparsetopoError as exc:  # UpdateSchedule names its parameters, which are these fields
            msg = str(exc)
            for key in ("update_every", "end_step", "drop_schedule"):
                msg = msg.replace(key, name(key))
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


def _truly_sparse_mlp(config: TrainConfig, data, topology):
    from ..truly_sparse.model import TrulySparseMLP, sample_topology

    sizes = config.sizes(data.n_features, data.n_classes)
    if topology is None:
        shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
        counts = method_class(config.method)(config).target_counts(shapes)
        topology = sample_topology(shapes, counts, config.named_seed("topology"))
    return TrulySparseMLP(sizes, topology, activation=config.activation, dropout=config.dropout,
                          init_seed=config.named_seed("init"), dropout_seed=config.named_seed("dropout"),
                          init=config.init, init_std=config.init_std)


def _check_engine(config: TrainConfig, method, name) -> None:
    """Refuse an engine the method does not run on, and the truly sparse engine for anything but an MLP."""
    if config.engine not in method.engines:
        why = f" {method.engine_note} and" if getattr(method, "engine_note", "") else ""
        raise SparsetopoError(f"{name('method')} {config.method}{why} runs on {name('engine')} "
                              f"{' or '.join(method.engines)} only; got {name('engine')} {config.engine}")
    if config.engine == "truly-sparse" and config.model != "mlp":
        raise SparsetopoError(f"{name('engine')} truly-sparse trains fully connected networks only ({name('model')} "
                              f"mlp); got {name('model')} {config.model}: use {name('engine')} masked for it")


def _check_regrow_where(config: TrainConfig, name) -> None:
    """``regrow_where live`` runs where its test of a dead neuron holds: the masked engine, inputs >= 0."""
    if config.engine == "truly-sparse" and config.regrow_where != "anywhere":
        raise SparsetopoError(f"{name('regrow_where')} {config.regrow_where} runs on {name('engine')} masked only; "
                              f"got {name('engine')} truly-sparse")
    if config.regrow_where == "live" and (config.model, config.input_scaling, config.activation) != (
            "mlp", "unit", "relu"):
        # Its test (no positive weight or bias: cannot fire) holds only when every layer's inputs are >= 0
        # and reach it unshifted (a ResNet's batch norm shifts them).
        raise SparsetopoError(f"{name('regrow_where')} live needs non-negative inputs to every layer: "
                              f"{name('model')} mlp, {name('input_scaling')} unit and {name('activation')} relu; "
                              f"got {name('model')} {config.model}, {name('input_scaling')} {config.input_scaling}, "
                              f"{name('activation')} {config.activation}")


#: Why the truly sparse engine computes on the CPU only (``--device`` errors).
TRULY_SPARSE_CPU_ONLY = "the truly sparse engine's kernels (numba) run on the CPU only"


def _check_watching(config: TrainConfig, name) -> None:
    """``device``: spelled as a device and present on this machine (the CPU and ``auto`` need no torch);
    ``wandb``: the package is installed."""
    from .device import check_device_spelling, resolve_device

    check_device_spelling(config.device, name("device"))
    if config.device not in ("auto", "cpu"):
        resolve_device(config.device, name("device"),
                       cpu_only=TRULY_SPARSE_CPU_ONLY if config.engine == "truly-sparse" else None)
    if config.wandb:
        from ..tracking import require_wandb

        require_wandb(name("wandb"))


def _methods():
    from ..methods import METHODS

    return METHODS


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict (keys as in :class:`TrainConfig`, dashes allowed).

    Duplicate keys, non-mapping files and unreadable files are errors naming the file.
    """
    return load_yaml_mapping(path)
