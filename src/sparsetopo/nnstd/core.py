"""NNSTD between two topologies: layer by layer, each matching re-indexing the next layer's inputs.

The definition and the solvers are described in the package's docstring
(:mod:`sparsetopo.nnstd`); the solvers themselves are in :mod:`.solvers`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError
from ..topology import Topology
from .graph import match_graph
from .solvers import (
    DEFAULT_MAX_DENSE_BYTES,
    SOLVER_FUNCS,
    Solver,
    check_solver,
    int_csr,
    layer_solvers,
    pick_solver,
    reference_solver,
    solve_ssp_bounded,
)

__all__ = ["NNSTDResult", "STATUSES", "match_layer", "mean_over", "nnstd", "sparse_layers"]

#: A layer's status in :attr:`NNSTDResult.status` (the bounds mode, ``nnstd(..., max_seconds=T)``).
STATUSES = {
    "exact": "the minimum, every layer before it exact",
    "bounded": "stopped: the minimum lies in [lower, upper]; the value is upper, the cost of the matching returned",
    "conditional": "after a bounded layer, so scored on inputs re-indexed by a matching that may not be optimal; "
                   "the minimum given those inputs",
    "conditional-bounded": "after a bounded layer and itself stopped: [lower, upper] bound its minimum given "
                           "those inputs; the value is upper",
}


def sparse_layers(*topologies: Topology) -> list[int]:
    """The layers that count in a mean: those not fully connected in at least one of ``topologies``.

    A layer fully connected in every network compared (the dense output layer; with ERK maybe a
    small first convolution) has NNSTD 0 by construction: averaging it in would only dilute the
    mean. This is the one rule the experiments, the report and the command line use.
    """
    if not topologies:
        raise SparsetopoError("sparse_layers needs at least one topology")
    n = len(topologies[0])
    return [k for k in range(n) if any(t.densities[k] < 1.0 for t in topologies)]


def mean_over(values: np.ndarray, layers: list[int] | tuple[int, ...] | None, axis: int = -1) -> np.ndarray | float:
    """The mean of ``values`` along ``axis`` (the layer axis) over ``layers`` (``None``: all layers).

    With no layer to count (every layer dense) the mean is 0: every layer's distance is 0 then.
    """
    values = np.asarray(values, dtype=np.float64)
    if layers is not None:
        if not len(layers):
            mean = np.zeros(np.delete(values.shape, axis % values.ndim))
            return float(mean) if mean.ndim == 0 else mean
        values = np.take(values, list(layers), axis=axis)
    mean = values.mean(axis=axis)
    return float(mean) if np.ndim(mean) == 0 else mean


@dataclass(frozen=True, repr=False)
class NNSTDResult:
    """The distance between two topologies.

    Attributes
    ----------
    per_layer : ndarray of shape (n_layers,)
        Minimum total NED of each layer divided by its number of output neurons.
    matchings : tuple of ndarray
        ``matchings[k][i]`` is the neuron of B matched to neuron ``i`` of A in layer k.
    solvers : tuple of str
        The solver used for each layer (``"ssp"``, ``"dense"``, ``"sparse"`` or ``"identity"``; on a graph
        also ``"joint"``: matched with the other openers of its stream, ``"carried"``: scored under the
        matching of the stream it writes, see :mod:`.graph`).
    sparse_layers : tuple of int, optional
        The layers that count in :attr:`value` (:func:`sparse_layers`); ``None``: every layer.
    lower, upper : ndarray of shape (n_layers,)
        Certified bounds of each layer's minimum / ``n_out`` (the bounds mode, ``nnstd(...,
        max_seconds=T)``). Equal to :attr:`per_layer` (the same values, bit for bit) where
        :attr:`status` is ``"exact"`` or ``"conditional"``; elsewhere ``lower`` comes from a feasible
        dual solution and ``upper`` is the NED of the matching returned, which is what
        :attr:`per_layer` then holds. Default (not given): :attr:`per_layer`.
    status : tuple of str
        Per layer, one of :data:`STATUSES`: ``"exact"``; ``"bounded"`` (stopped, within
        ``[lower, upper]``); ``"conditional"`` / ``"conditional-bounded"`` (after a bounded layer: its
        inputs are re-indexed by the matching returned there, which may not be optimal, so its
        value and bounds are those of *that* layer's assignment given that matching, not bounds of
        the exact NNSTD's layer). Default (not given): every layer ``"exact"``.
    """

    per_layer: np.ndarray
    matchings: tuple[np.ndarray, ...]
    solvers: tuple[str, ...]
    sparse_layers: tuple[int, ...] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    status: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Results built without bounds (exact solvers, graphs, old callers) are exact everywhere.
        n = len(self.per_layer)
        for name in ("lower", "upper"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.array(self.per_layer, dtype=np.float64, copy=True))
        if self.status is None:
            object.__setattr__(self, "status", ("exact",) * n)
        bad = [s for s in self.status if s not in STATUSES]
        if len(self.status) != n or bad or len(self.lower) != n or len(self.upper) != n:
            raise SparsetopoError(f"NNSTDResult: status must name one of {', '.join(STATUSES)} per layer and "
                                  f"lower/upper give one value per layer ({n}); got status {self.status}, "
                                  f"{len(self.lower)} lower and {len(self.upper)} upper values")

    @property
    def exact(self) -> bool:
        """Whether every layer is exact (no bound anywhere): the result is NNSTD itself."""
        return all(s == "exact" for s in self.status)

    @property
    def gap(self) -> np.ndarray:
        """``upper - lower`` per layer (0 where exact)."""
        return self.upper - self.lower

    @property
    def value(self) -> float:
        """The network distance: the mean over the layers that count (:attr:`sparse_layers`), as the
        experiments and the report compute it; :attr:`mean_all` includes the dense layers' zeros."""
        return mean_over(self.per_layer, self.sparse_layers)

    @property
    def mean_all(self) -> float:
        """The mean over every layer, dense ones included."""
        return float(np.mean(self.per_layer))

    def __repr__(self) -> str:
        layers = "all layers" if self.sparse_layers is None else f"layers {list(self.sparse_layers)}"
        per_layer = ", ".join(f"{v:.4f}" for v in self.per_layer)
        bounds = "" if self.exact else f", status={list(self.status)}, gap=[{', '.join(f'{g:.2g}' for g in self.gap)}]"
        return (f"NNSTDResult(value={self.value:.4f} over {layers}, mean_all={self.mean_all:.4f}, "
                f"per_layer=[{per_layer}], solvers={list(self.solvers)}{bounds})")

    def reversed(self) -> NNSTDResult:
        """The same result seen from B: every matching inverted."""
        # A matching's cost, and a layer's minimum, are the same seen from either side: bounds and
        # statuses carry over.
        return NNSTDResult(per_layer=self.per_layer, matchings=tuple(np.argsort(m) for m in self.matchings),
                           solvers=self.solvers, sparse_layers=self.sparse_layers, lower=self.lower,
                           upper=self.upper, status=self.status)


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


def layer_pair(la: ss.spmatrix, lb: ss.spmatrix, previous: np.ndarray | None,
               block: int = 1) -> tuple[ss.csr_matrix, ss.csr_matrix]:
    """Layer ``k`` of A and B as the solvers take them: int32 CSR, B's inputs renamed by ``previous``,
    the matching of layer ``k - 1`` (``None``: layer 0, inputs by identity)."""
    return int_csr(la), _reindex_inputs(int_csr(lb), previous, block)


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
    if a.streams != b.streams:
        raise SparsetopoError(f"cannot compare topologies of different graphs: {a.name or 'A'} has streams "
                              f"{a.streams}, {b.name or 'B'} has {b.streams} (None: a chain)")
    if a.shapes != b.shapes or a.kernels != b.kernels:
        raise SparsetopoError(
            f"cannot compare topologies of different shapes: {a.name or 'A'} has layers "
            f"{list(a.shapes)} (kernels {list(a.kernels)}), {b.name or 'B'} has {list(b.shapes)} "
            f"(kernels {list(b.kernels)})"
        )


def _match_layers(a: Topology, b: Topology, solver: str, match_outputs: bool, max_seconds: float | None = None,
                  stop_after: Sequence[int] | None = None) -> NNSTDResult:
    """The layer-by-layer matching from A to B, in this direction.

    ``max_seconds`` or ``stop_after`` (tests: per layer, the ``ssp`` search stops after that many
    augmenting paths; ``-1`` never) switch on the bounds mode (:func:`_bounded_layers`).
    """
    if a.is_graph:  # residual streams: one matching per stream (nnstd/graph.py)
        per_layer, matchings, used = match_graph(a, b, solver, match_outputs, _reindex_inputs)
        return NNSTDResult(per_layer=per_layer, matchings=matchings, solvers=used)
    if max_seconds is not None or stop_after is not None:
        return _bounded_layers(a, b, match_outputs, max_seconds, stop_after)
    per_layer = np.empty(len(a), dtype=np.float64)
    matchings, used = [], []
    previous: np.ndarray | None = None  # layer 0's inputs correspond by identity
    for k, (la, lb, chosen) in enumerate(zip(a.layers, b.layers, layer_solvers(len(a), solver, match_outputs))):
        la_i, lb_i = layer_pair(la, lb, previous, a.blocks[k])
        total, col = SOLVER_FUNCS[chosen](la_i, lb_i)
        per_layer[k] = total / la.shape[0]
        matchings.append(col)
        used.append(chosen)
        previous = col
    return NNSTDResult(per_layer=per_layer, matchings=tuple(matchings), solvers=tuple(used))


def _bounded_layers(a: Topology, b: Topology, match_outputs: bool, max_seconds: float | None,
                    stop_after: Sequence[int] | None) -> NNSTDResult:
    """:func:`_match_layers` with the ``ssp`` solver stopped on a time budget, bounds per layer.

    The budget is for the whole call. Each matched layer gets the time left times its share of the
    connections (A's plus B's) of the matched layers not yet solved, so time a layer leaves unused
    goes to the next ones. A layer whose search finishes is exact as without a budget (the same
    kernels, bit for bit); one that is stopped returns the completed matching (``per_layer`` and
    ``upper``: its recomputed NED) and a dual ``lower`` bound. Every later layer is then
    ``conditional``: its inputs are re-indexed by that matching.
    """
    n = len(a)
    solved = [k for k, s in enumerate(layer_solvers(n, "ssp", match_outputs)) if s != "identity"]
    weight = {k: a.layers[k].nnz + b.layers[k].nnz + 1 for k in solved}
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    per_layer, lower, upper = np.empty(n), np.empty(n), np.empty(n)
    matchings, used, status = [], [], []
    previous: np.ndarray | None = None
    upstream_bounded = False
    for k, (la, lb) in enumerate(zip(a.layers, b.layers)):
        la_i, lb_i = layer_pair(la, lb, previous, a.blocks[k])
        if k in weight:
            seconds = None
            if deadline is not None:
                left = sum(w for j, w in weight.items() if j >= k)
                seconds = max(deadline - time.monotonic(), 0.0) * weight[k] / left
            max_aug = -1 if stop_after is None else int(stop_after[k])
            up, col, lo, exact = solve_ssp_bounded(la_i, lb_i, seconds, max_aug)
            chosen = "ssp"
        else:
            up, col = SOLVER_FUNCS["identity"](la_i, lb_i)  # output neurons by identity: nothing to solve
            lo, exact, chosen = up, True, "identity"
        per_layer[k], upper[k], lower[k] = up / la.shape[0], up / la.shape[0], lo / la.shape[0]
        if exact:  # bit for bit the value without a budget
            lower[k] = per_layer[k]
        status.append(("conditional" if exact else "conditional-bounded") if upstream_bounded
                      else ("exact" if exact else "bounded"))
        upstream_bounded = upstream_bounded or not exact
        matchings.append(col)
        used.append(chosen)
        previous = col
    return NNSTDResult(per_layer=per_layer, matchings=tuple(matchings), solvers=tuple(used), lower=lower,
                       upper=upper, status=tuple(status))


def check_max_seconds(max_seconds, solver: str, reference: bool, graph: bool, option: str = "max_seconds") -> None:
    """The one check of a time budget: a positive finite number of seconds, with a solver that can stop."""
    if max_seconds is None:
        return
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float, np.integer, np.floating)) \
            or not math.isfinite(max_seconds) or max_seconds <= 0:
        raise SparsetopoError(f"{option} must be a positive, finite number of seconds; got {max_seconds!r}")
    if reference:
        raise SparsetopoError(f"{option} cannot be combined with reference mode: its solver 'dense' "
                              f"(linear_sum_assignment) cannot stop early with bounds; only 'auto'/'ssp' can")
    if pick_solver(solver) != "ssp":
        raise SparsetopoError(f"{option} needs solver 'auto' or 'ssp', the one solver that can stop early with "
                              f"certified bounds; got solver {solver!r}")
    if graph:
        raise SparsetopoError(f"{option} is not supported for graph topologies (residual networks) yet: their "
                              f"streams are matched by other solvers; compute them without {option}")


def nnstd(a: Topology, b: Topology, *, match_outputs: bool = True, solver: Solver = "auto",
          max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES, symmetric: bool = True,
          reference: bool = False, max_seconds: float | None = None) -> NNSTDResult:
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
    max_seconds : float, optional
        The bounds mode (solver ``auto``/``ssp``, chains): a time budget for the whole call, a layer
        stopped on it returning certified bounds (:attr:`NNSTDResult.status`, :func:`_bounded_layers`).

    Returns
    -------
    NNSTDResult
        Its :attr:`~NNSTDResult.value` is the mean over the layers not fully connected in both
        networks (:func:`sparse_layers`); :attr:`~NNSTDResult.mean_all` the mean over all layers.
        In the bounds mode check :attr:`~NNSTDResult.exact`: where it is False the value is that of
        the matchings returned (an upper bound where no layer is ``conditional``).
    """
    started = time.monotonic()
    solver = reference_solver(reference, solver)
    if reference:
        symmetric = False  # the published double loop runs in the direction it is given
    _check_comparable(a, b)
    check_max_seconds(max_seconds, solver, reference, a.is_graph)
    counted = tuple(sparse_layers(a, b))
    flip = symmetric and b.fingerprint() < a.fingerprint()
    # The budget is the whole call's: fingerprinting wide layers takes time too.
    max_seconds = None if max_seconds is None else max_seconds - (time.monotonic() - started)
    if flip:
        res = _match_layers(b, a, solver, match_outputs, max_seconds).reversed()
    else:
        res = _match_layers(a, b, solver, match_outputs, max_seconds)
    return dataclasses.replace(res, sparse_layers=counted)
