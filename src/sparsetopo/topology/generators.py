"""Random topologies: SET's Erdős–Rényi networks, given per-layer densities, and perturbations of one.

Every generator takes a ``seed`` (an int, a SeedSequence or a NumPy Generator,
threaded through as is) and never touches NumPy's global state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError
from ..seeding import SeedLike, as_generator
from .core import Topology
from .densities import check_epsilon, epsilon_for_density, er_density

__all__ = ["erdos_renyi", "perturb", "perturbation_chain", "random_topology"]


def random_topology(shapes: Sequence[tuple[int, ...]], densities: Sequence[float], seed: SeedLike = None, *,
                    name: str | None = None, streams: Sequence[tuple[int, int]] | None = None) -> Topology:
    """Layers with ``round(density * size)`` connections each, placed uniformly at random.

    ``shapes`` are weight shapes: ``(n_out, n_in)`` or ``(out, in, kh, kw)``
    (convolutions keep their kernels); ``streams`` makes a graph topology (``Topology``'s
    parameter, e.g. a ResNet's ``Topology.from_torch(model).streams``), by default those of
    ``shapes`` when it is a :class:`~sparsetopo.topology.graph.LayerShapes`.
    """
    if streams is None:
        streams = getattr(shapes, "streams", None)
    rng = as_generator(seed)
    layers, kernels = [], []
    for shape, d in zip(shapes, densities):
        n_out, rest = int(shape[0]), int(np.prod(shape[1:]))
        count = int(round(d * n_out * rest))
        flat = _sample_positions(rng, n_out * rest, count)
        rows, cols = np.divmod(flat, rest)
        layers.append(ss.csr_matrix((np.ones(count, dtype=bool), (rows, cols)), shape=(n_out, rest)))
        kernels.append(tuple(shape[2:]) if len(shape) == 4 else None)
    return Topology(layers, name=name, kernels=kernels, streams=streams,
                    metadata={"generator": "random", "densities": [float(d) for d in densities]})


def _sample_positions(rng: np.random.Generator, total: int, k: int,
                      exclude: np.ndarray | None = None) -> np.ndarray:
    """``k`` distinct flat positions in ``range(total)``, none in sorted ``exclude``.

    Rejection sampling in batches: the layers here are large and sparse, so
    enumerating the free cells would cost far more memory than drawing.
    """
    n_excl = 0 if exclude is None else len(exclude)
    free = total - n_excl
    if k > free:
        raise SparsetopoError(f"cannot place {k} connections in {free} free positions")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if total <= 4_000_000 or k > free // 4:
        # Small or crowded layer: enumerate the free cells, draw without replacement.
        free_mask = np.ones(total, dtype=bool)
        if n_excl:
            free_mask[exclude] = False
        cells = np.flatnonzero(free_mask)
        return np.sort(rng.choice(cells, size=k, replace=False))
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < k:
        need = k - len(chosen)
        draw = rng.integers(0, total, size=int(need * 1.2) + 16)
        if n_excl:
            pos = np.searchsorted(exclude, draw)
            pos[pos == n_excl] = 0
            draw = draw[exclude[pos] != draw]
        # keep first occurrences in draw order so the sample stays uniform
        merged = np.concatenate([chosen, draw])
        _, first = np.unique(merged, return_index=True)
        chosen = merged[np.sort(first)]
    return np.sort(chosen[:k])


def erdos_renyi(sizes: Sequence[int], epsilon: float | None = None, seed: SeedLike = None, *,
                density: float | None = None, dense_output: bool = True,
                name: str | None = None) -> Topology:
    """SET's Erdős–Rényi random topology.

    Layer ``k`` (``n_in -> n_out``) gets ``round(p_k n_in n_out)`` connections
    placed uniformly at random, with ``p_k = epsilon (n_in + n_out) / (n_in n_out)``
    capped at 1. Exactly that many are drawn (rather than one Bernoulli trial
    per cell) so that networks built from different seeds have equal counts.

    Parameters
    ----------
    sizes : sequence of int
        Neuron counts, input first, e.g. ``(784, 784, 784, 784, 10)``.
    epsilon : float, optional
        SET's sparsity parameter; exactly one of ``epsilon`` and ``density``.
    seed : int or numpy Generator
        The topology seed.
    density : float, optional
        Target overall density of the sparse layers; converted to an epsilon.
    dense_output : bool
        Make the last layer fully connected, as in the paper's networks.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise SparsetopoError(f"sizes must list at least two positive layer sizes; got {sizes}")
    if (epsilon is None) == (density is None):
        raise SparsetopoError("give exactly one of epsilon and density")
    if density is not None:
        epsilon = epsilon_for_density(sizes, density, dense_output=dense_output)
    epsilon = check_epsilon(epsilon)
    rng = as_generator(seed)
    layers = []
    n_layers = len(sizes) - 1
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        if dense_output and k == n_layers - 1:
            layers.append(ss.csr_matrix(np.ones((n_out, n_in), dtype=bool)))
            continue
        p = er_density(n_in, n_out, epsilon)
        count = int(round(p * n_in * n_out))
        flat = _sample_positions(rng, n_in * n_out, count)
        rows, cols = np.divmod(flat, n_in)
        layers.append(ss.csr_matrix((np.ones(count, dtype=bool), (rows, cols)), shape=(n_out, n_in)))
    return Topology(layers, name=name, metadata={"generator": "erdos_renyi", "epsilon": epsilon})


def perturb(topology: Topology, fraction: float, seed: SeedLike = None, *,
            name: str | None = None) -> Topology:
    """Move ``fraction`` of each layer's connections to random empty positions.

    ``round(fraction * nnz)`` connections per layer are removed and as many are
    placed in positions that were empty before the move, so the count per
    layer is preserved and exactly that many connections differ. A layer with
    fewer empty positions than that (a dense output layer) moves only as many
    as it has room for.
    """
    if not 0 <= fraction <= 1:
        raise SparsetopoError(f"fraction must be in [0, 1]; got {fraction!r}")
    rng = as_generator(seed)
    layers = []
    for m in topology.layers:
        n_out, n_in = m.shape
        coo = m.tocoo()
        flat = np.sort(coo.row.astype(np.int64) * n_in + coo.col)
        n_move = min(int(round(fraction * len(flat))), n_in * n_out - len(flat))
        if n_move == 0:
            layers.append(m)
            continue
        keep = np.delete(flat, rng.choice(len(flat), size=n_move, replace=False))
        new = _sample_positions(rng, n_in * n_out, n_move, exclude=flat)
        merged = np.concatenate([keep, new])
        rows, cols = np.divmod(merged, n_in)
        layers.append(ss.csr_matrix((np.ones(len(merged), dtype=bool), (rows, cols)), shape=m.shape))
    meta = {**topology.metadata, "perturbed_fraction": fraction}
    return Topology(layers, name=name, metadata=meta, kernels=topology.kernels, streams=topology.streams)


def perturbation_chain(base: Topology, n: int, fraction: float, seed: SeedLike = None, *,
                       prefix: str = "net") -> list[Topology]:
    """``base`` followed by ``n - 1`` topologies, each ``perturb``-ed from the previous one.

    The paper's evolution study starts 10 networks this way with ``fraction=0.01``.
    """
    if n < 1:
        raise SparsetopoError(f"n (networks in the chain) must be >= 1; got {n!r}")
    rng = as_generator(seed)
    chain = [base.with_name(f"{prefix}0", chain_index=0)]
    for i in range(1, n):
        chain.append(perturb(chain[-1], fraction, rng, name=f"{prefix}{i}").with_name(
            f"{prefix}{i}", chain_index=i))
    return chain
