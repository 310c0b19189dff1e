"""How dense each layer is: SET's Erdős–Rényi rule, RigL's ERK, uniform, and the epsilon for a target.

Pure arithmetic on shapes; drawing the connections is :mod:`.generators`'s job.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ..errors import SparsetopoError

__all__ = ["DISTRIBUTIONS", "check_density", "check_epsilon", "epsilon_for_density", "er_density",
           "layer_densities"]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_density(density, name: str = "density") -> float:
    """``density`` as a float, or :class:`SparsetopoError` unless it is a number in (0, 1].

    The one check of a density anywhere in the package; ``name`` is what the message
    calls it (the CLI passes ``"--density"``): ``density must be in (0, 1]; got 2``.
    """
    if not _is_number(density) or not 0 < density <= 1:  # NaN fails the comparison too
        raise SparsetopoError(f"{name} must be in (0, 1]; got {density!r}")
    return float(density)


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """``epsilon`` (SET's sparsity parameter) as a float, or :class:`SparsetopoError` unless it is > 0."""
    if not _is_number(epsilon) or not epsilon > 0:
        raise SparsetopoError(f"{name} must be > 0; got {epsilon!r}")
    return float(epsilon)


def er_density(n_in: int, n_out: int, epsilon: float) -> float:
    """SET's Erdős–Rényi density ``epsilon (n_in + n_out) / (n_in n_out)``, capped at 1."""
    epsilon = check_epsilon(epsilon)
    return min(1.0, epsilon * (n_in + n_out) / (n_in * n_out))


def epsilon_for_density(sizes: Sequence[int], density: float, *, dense_output: bool = True) -> float:
    """The epsilon whose Erdős–Rényi network has the given density over its sparse layers.

    Solved by bisection because the per-layer cap at 1 makes the map non-linear.
    """
    density = check_density(density)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    if dense_output:
        pairs = pairs[:-1]
    if not pairs:
        raise SparsetopoError("a network with only a dense output layer has no sparse layer to size")
    return _epsilon_for([(a + b) / (a * b) for a, b in pairs], [a * b for a, b in pairs], density)


#: How sparsity is spread over layers: ``erdos_renyi`` (SET: density proportional to
#: (n_in + n_out) / (n_in n_out), from ``epsilon`` or solved for a target density),
#: ``erk`` (RigL's Erdős–Rényi-Kernel: for a convolution (n_in + n_out + kh + kw) /
#: (n_in n_out kh kw), for a fully connected layer the same as erdos_renyi; always
#: solved for the target density) and ``uniform`` (one density for every sparse layer).
DISTRIBUTIONS = ("erdos_renyi", "erk", "uniform")


def _layer_scale(shape, distribution: str) -> float:
    """The density a layer gets per unit of epsilon: ``(n_in + n_out) / (n_in n_out)`` (+ kernel for ERK)."""
    n_out, n_in = shape[0], shape[1]
    if len(shape) == 4 and distribution == "erk":
        kh, kw = shape[2], shape[3]
        return (n_in + n_out + kh + kw) / (n_in * n_out * kh * kw)
    return (n_in + n_out) / (n_in * n_out)


def layer_densities(shapes: Sequence[tuple[int, ...]], sparse: Sequence[int], distribution: str = "erdos_renyi",
                    *, epsilon: float | None = None, density: float | None = None) -> list[float]:
    """Density of each layer (weight shape ``(n_out, n_in)`` or ``(out, in, kh, kw)``); layers not in
    ``sparse`` stay dense (1.0).

    ``erdos_renyi`` takes ``epsilon`` or ``density`` (the density over the sparse
    layers); ``erk`` and ``uniform`` take ``density``.
    """
    if distribution not in DISTRIBUTIONS:
        raise SparsetopoError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}")
    out = [1.0] * len(shapes)
    if not sparse:
        return out
    if density is None and distribution != "erdos_renyi":
        raise SparsetopoError(f"distribution {distribution!r} needs density in (0, 1]; got None")
    if density is not None:
        density = check_density(density)
    if distribution == "uniform":
        for k in sparse:
            out[k] = density
        return out
    scales = [_layer_scale(shapes[k], distribution) for k in sparse]
    numels = [int(np.prod(shapes[k])) for k in sparse]
    if density is not None:
        eps = _epsilon_for(scales, numels, density)
    elif epsilon is not None:
        eps = check_epsilon(epsilon)
    else:
        raise SparsetopoError("give epsilon or density")
    for k, scale in zip(sparse, scales):
        out[k] = min(1.0, eps * scale)
    return out


def _epsilon_for(scales: Sequence[float], numels: Sequence[int], density: float) -> float:
    """The epsilon whose capped densities ``min(1, eps * scale)`` give ``density`` over all the weights.

    Solved by bisection because the per-layer cap at 1 makes the map non-linear. ``density``
    is already checked (:func:`check_density`) by the public callers.
    """
    possible = sum(numels)

    def total(eps: float) -> float:
        return sum(min(1.0, eps * s) * n for s, n in zip(scales, numels)) / possible

    lo, hi = 0.0, 1.0
    while total(hi) < density and hi < 1e12:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid > 0 and total(mid) < density:
            lo = mid
        else:
            hi = mid
    return hi
