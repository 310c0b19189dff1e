"""NNSTD between two topologies: layer by layer, each matching re-indexing the next layer's inputs.

The definition and the solvers are described in the package's docstring
(:mod:`sparsetopo.nnstd`); the solvers themselves are in :mod:`.solvers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError
from ..topology import Topology
from .solvers import (
    DEFAULT_MAX_DENSE_BYTES,
    SOLVER_FUNCS,
    Solver,
    check_solver,
    int_csr,
    pick_solver,
    reference_solver,
)

__all__ = ["NNSTDResult", "match_layer", "nnstd"]


@dataclass(frozen=True)
class NNSTDResult:
    """The distance between two topologies.

    Attributes
    ----------
    per_layer : ndarray of shape (n_layers,)
        Minimum total NED of each layer divided by its number of output neurons.
    matchings : tuple of ndarray
        ``matchings[k][i]`` is the neuron of B matched to neuron ``i`` of A in layer k.
    solvers : tuple of str
        The solver used for each layer (``"dense"``, ``"sparse"`` or ``"identity"``).
    """

    per_layer: np.ndarray
    matchings: tuple[np.ndarray, ...]
    solvers: tuple[str, ...]

    @property
    def value(self) -> float:
        """The network distance: the mean of the per-layer distances."""
        return float(np.mean(self.per_layer))

    def reversed(self) -> NNSTDResult:
        """The same result seen from B: every matching inverted."""
        return NNSTDResult(per_layer=self.per_layer, matchings=tuple(np.argsort(m) for m in self.matchings),
                           solvers=self.solvers)


def _reindex_inputs(b: ss.csr_matrix, matching: np.ndarray | None, block: int = 1) -> ss.csr_matrix:
    """Rename B's input units so that B's ``matching[i]`` becomes ``i``.

    A unit owns ``block`` consecutive inputs (a convolution's kernel positions of
    one input channel, or one channel's flattened feature map): they move together.
    """
    if matching is None:
        return b
    inverse = np.empty_like(matching)
    inverse[matching] = np.arange(len(matching), dtype=matching.dtype)
    idx = b.indices.astype(np.int64)
    new = inverse[idx // block] * block + idx % block if block > 1 else inverse[idx]
    out = ss.csr_matrix((b.data, new.astype(np.int32), b.indptr), shape=b.shape)
    out.has_sorted_indices = False
    return out


def match_layer(a: ss.spmatrix, b: ss.spmatrix, *, solver: Solver = "auto",
                max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> tuple[float, np.ndarray]:
    """Minimum-cost matching of one layer whose inputs already correspond.

    Returns the layer distance (minimum total NED / ``n_out``) and the matching
    ``col`` with A's neuron ``i`` matched to B's neuron ``col[i]``.
    """
    check_solver(solver)
    a, b = int_csr(ss.csr_matrix(a)), int_csr(ss.csr_matrix(b))
    if a.shape != b.shape:
        raise SparsetopoError(f"layer shapes differ: {a.shape} vs {b.shape}")
    total, col = SOLVER_FUNCS[pick_solver(solver)](a, b)
    return total / a.shape[0], col


def _check_comparable(a: Topology, b: Topology) -> None:
    if not isinstance(a, Topology) or not isinstance(b, Topology):
        raise TypeError("nnstd compares two Topology objects")
    if a.shapes != b.shapes or a.kernels != b.kernels:
        raise SparsetopoError(
            f"cannot compare topologies of different shapes: {a.name or 'A'} has layers "
            f"{list(a.shapes)} (kernels {list(a.kernels)}), {b.name or 'B'} has {list(b.shapes)} "
            f"(kernels {list(b.kernels)})"
        )


def _match_layers(a: Topology, b: Topology, solver: str, match_outputs: bool) -> NNSTDResult:
    """The layer-by-layer matching from A to B, in this direction."""
    per_layer = np.empty(len(a), dtype=np.float64)
    matchings, used = [], []
    previous: np.ndarray | None = None  # layer 0's inputs correspond by identity
    for k, (la, lb) in enumerate(zip(a.layers, b.layers)):
        la_i = int_csr(la)
        lb_i = _reindex_inputs(int_csr(lb), previous, a.blocks[k])
        last = k == len(a) - 1
        chosen = "identity" if (last and not match_outputs) else pick_solver(solver)
        total, col = SOLVER_FUNCS[chosen](la_i, lb_i)
        per_layer[k] = total / la.shape[0]
        matchings.append(col)
        used.append(chosen)
        previous = col
    return NNSTDResult(per_layer=per_layer, matchings=tuple(matchings), solvers=tuple(used))


def nnstd(a: Topology, b: Topology, *, match_outputs: bool = True, solver: Solver = "auto",
          max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, symmetric: bool = True,
          reference: bool = False) -> NNSTDResult:
    """The Neural Network Sparse Topology Distance between two topologies.

    Parameters
    ----------
    a, b : Topology
        Networks with identical layer shapes.
    match_outputs : bool, default True
        Match the output layer's neurons like any other layer (the paper's
        definition). ``False`` compares output neurons by identity, which fits
        labelled class units.
    solver : {"auto", "ssp", "dense", "sparse"}
        ``auto`` (``ssp``): the exact sparse solver, fast and memory-light;
        ``dense``: the reference implementation's ``linear_sum_assignment`` on
        the full cost matrix; ``sparse`` is scipy's sparse solver. All give the
        same layer-0 value; deeper layers may differ through ties. ``dense``
        alone does not reproduce published values (the direction matters too):
        use ``reference``.
    max_dense_bytes : int
        Kept for compatibility; ``auto`` no longer builds dense cost matrices.
    symmetric : bool, default True
        Beyond layer 0 the value depends on which of several equally cheap
        matchings the previous layer chose, and so on the direction: A vs B
        and B vs A can differ. With ``symmetric`` the pair is computed in a
        canonical direction (by content fingerprint, as :func:`pairwise_nnstd`
        does), so ``nnstd(a, b)`` equals ``nnstd(b, a)``; matchings are always
        returned from A to B. ``False`` computes in the given direction.
    reference : bool, default False
        Reproduce the implementation published with the paper: solver
        ``dense`` and the direction given, A -> B (``symmetric`` is then
        ignored). Only ``solver="auto"`` or ``"dense"`` may be combined with it.

    Returns
    -------
    NNSTDResult
    """
    solver = reference_solver(reference, solver)
    if reference:
        symmetric = False  # the published double loop runs in the direction it is given
    _check_comparable(a, b)
    if symmetric and b.fingerprint() < a.fingerprint():
        return _match_layers(b, a, solver, match_outputs).reversed()
    return _match_layers(a, b, solver, match_outputs)
