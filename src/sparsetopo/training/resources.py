"""What a run needs from the machine: the memory estimate of the masked engine and the
check, before anything is built, that it fits in what is available."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import SparsetopoError

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig

__all__ = ["available_memory", "check_memory", "estimate_memory"]


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
