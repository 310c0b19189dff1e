"""What a run needs from the machine: the memory estimates of the two engines (masked: dense
tensors; truly sparse: per connection) and the check, before anything is built, that the run fits
in what is available."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import SparsetopoError

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig

__all__ = ["available_memory", "check_memory", "estimate_memory", "estimate_truly_sparse_memory"]

#: Batches above this make a truly sparse layer build its transposed (CSC) structure for the input
#: gradient (``sparsetopo.truly_sparse.kernels.SCATTER_MAX_BATCH``; not imported: that loads numba).
_SCATTER_MAX_BATCH = 8
#: Batches RigL captures for its grow criterion (``loop._captured_batches``).
_RIGL_BATCHES = 4


def estimate_memory(config: TrainConfig, n_features: int, n_classes: int,
                    image_shape: tuple[int, int, int] | None = None) -> int:
    """Bytes that training ``config``'s network needs in its engine (a lower bound, no allocation):
    :func:`estimate_truly_sparse_memory` for ``engine="truly-sparse"``, else the masked engine's, below.

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
    if getattr(config, "engine", "masked") == "truly-sparse":
        return estimate_truly_sparse_memory(config, n_features, n_classes)
    layers = []  # per layer: (weight entries, biases, outputs per sample)
    if config.model == "cnn":
        if image_shape is None:
            raise SparsetopoError("estimate_memory: image_shape must be given for a config with model 'cnn'; got None")
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


def _state_tensors(config: TrainConfig) -> int:
    return 2 if config.optimizer == "adam" else (1 if config.momentum > 0 else 0)


def estimate_truly_sparse_memory(config: TrainConfig, n_features: int, n_classes: int) -> int:
    """Bytes that training ``config``'s MLP needs on the truly sparse engine (a lower bound, no allocation).

    Per connection (the method's counts, :meth:`~sparsetopo.methods.Method.target_counts`): its float32
    value and gradient, its int32 column index, the optimizer's state (SGD momentum: one float, Adam: two)
    and, above batch 8, the transposed structure of the input gradient (row index and position, 2 x 4 B).
    Per neuron: the CSR row pointer (8 B), bias, its gradient and state. A topology update needs, for the
    largest layer, temporaries of about 40 B per connection plus a copy of its values and state.
    Activations: four float32 values per neuron and sample of a batch (pre-activation, activation,
    gradient and the kernels' transposed copy); RigL also keeps the inputs and output gradients of
    4 batches per layer.
    """
    from ..methods import method_class

    sizes = [int(n_features), *(int(v) for v in config.hidden), int(n_classes)]
    shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    counts = method_class(config.method)(config).target_counts(shapes)
    state = _state_tensors(config)
    per_connection = 4 * (3 + state) + (8 if config.batch_size > _SCATTER_MAX_BATCH else 0)
    neurons = sum(sizes[1:])
    per_neuron = 8 + 4 * (2 + state)
    update = (40 + 4 * (1 + state)) * max(counts)
    activations = 4 * 4 * config.batch_size * neurons
    if method_class(config.method).needs_dense_gradients:
        activations += 4 * _RIGL_BATCHES * config.batch_size * sum(a + b for b, a in shapes)
    return sum(counts) * per_connection + neurons * per_neuron + update + activations


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


def check_memory(config: TrainConfig, data) -> None:
    """Refuse, before building anything, a network whose training would not fit in memory, naming the
    truly sparse engine as the way out where it would fit (and the method runs on it)."""
    from ..methods import METHODS, method_class

    have = available_memory()
    if have is None:
        return
    if config.engine == "truly-sparse":
        need = estimate_truly_sparse_memory(config, data.n_features, data.n_classes)
        if need > have:
            raise SparsetopoError(_truly_sparse_refusal(config, need, have))
        return
    need = estimate_memory(config, data.n_features, data.n_classes, getattr(data, "image_shape", None))
    if need <= have:
        return
    hidden = " ".join(map(str, config.hidden))
    head = (f"--hidden {hidden}: training this network needs about {_gib(need)} of memory (the masked engine holds "
            f"dense float32 weights, gradients, masks and optimizer state for every layer, plus activations for "
            f"--batch-size {config.batch_size}), but {_gib(have)} is available; ")
    sparse = estimate_truly_sparse_memory(config, data.n_features, data.n_classes) if config.model == "mlp" else None
    if "truly-sparse" not in method_class(config.method).engines or sparse is None:
        why = "runs on --engine masked only" if config.model == "mlp" else "with --model cnn needs it"
        able = ", ".join(n for n, c in METHODS.items() if "truly-sparse" in c.engines)
        raise SparsetopoError(head + "use a smaller --hidden width or a lower --batch-size (--engine truly-sparse "
                                     f"holds memory only for the connections, for MLPs with --method {able}; "
                                     f"--method {config.method} {why})")
    if sparse <= have:
        raise SparsetopoError(head + f"use --engine truly-sparse (memory only for the connections: about "
                                     f"{_gib(sparse)}), a smaller --hidden width or a lower --batch-size")
    raise SparsetopoError(head + f"even --engine truly-sparse would need about {_gib(sparse)}: use a smaller --hidden "
                                 "width, a lower --epsilon or --density, or a lower --batch-size")


def _truly_sparse_refusal(config: TrainConfig, need: int, have: int) -> str:
    hidden = " ".join(map(str, config.hidden))
    return (f"--hidden {hidden}: training this network on --engine truly-sparse needs about {_gib(need)} of memory "
            f"(per connection: value, index, gradient and optimizer state; activations for --batch-size "
            f"{config.batch_size}), but {_gib(have)} is available; use a smaller --hidden width, a lower --epsilon "
            "or --density, or a lower --batch-size")
