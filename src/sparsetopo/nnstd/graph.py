"""NNSTD on graph topologies (residual networks): one matching per stream.

The rule (README, "NNSTD on residual networks"):

1. A neuron is still described by its input set; a layer's inputs are
   re-indexed by the matching of the stream it reads (the network input by
   identity).
2. A stream is matched once. Its *openers* are the layers writing into it
   before any layer reads it (:func:`sparsetopo.topology.graph.openers`): a
   plain layer alone, or, for a residual stream that starts with a projection,
   the shortcut and the block's last convolution. With one opener the layer is
   matched as in a chain (same solver, so a chain is today's NNSTD); with
   several, by one exact assignment (``linear_sum_assignment``) on the sum of
   their NED cost matrices.
3. Every later layer writing into the stream (the last convolution of each
   identity block) reads, through its block, the stream itself, so it cannot
   take part in choosing the matching: it is scored under it.

Each layer's distance is its own total NED under the matching of the stream
it writes, divided by its output count; ``matchings[k]`` is that matching.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as ss

from ..topology import Topology
from ..topology.graph import openers
from .solvers import SOLVER_FUNCS, int_csr, layer_cost_matrix, pick_solver

__all__ = ["match_graph"]


def _reindexed(a: Topology, b: Topology, k: int, matched: dict, reindex) -> tuple[ss.csr_matrix, ss.csr_matrix]:
    """Layer ``k`` of A and of B, B's inputs renamed by the matching of the stream they read."""
    return int_csr(a.layers[k]), reindex(int_csr(b.layers[k]), matched[a.streams[k][0]], a.blocks[k])


def _score(la: ss.csr_matrix, lb: ss.csr_matrix, col: np.ndarray | None) -> float:
    """Total NED of A's neuron ``i`` against B's neuron ``col[i]`` (identity for ``None``)."""
    if col is not None:
        lb = lb[col]
    return SOLVER_FUNCS["identity"](la, lb)[0]


def _open(pairs: list[tuple[ss.csr_matrix, ss.csr_matrix]], solver: str) -> tuple[np.ndarray, str]:
    """The matching of a stream chosen on its openers' layers: alone as in a chain, together on summed costs."""
    if len(pairs) == 1:
        chosen = pick_solver(solver)
        return SOLVER_FUNCS[chosen](*pairs[0])[1], chosen
    cost = sum(layer_cost_matrix(la, lb) for la, lb in pairs)
    from scipy.optimize import linear_sum_assignment  # imported when used: `train` never needs it

    _, col = linear_sum_assignment(cost)
    return col.astype(np.int64), "joint"


def match_graph(a: Topology, b: Topology, solver: str, match_outputs: bool, reindex) -> tuple:
    """Per-layer distances, matchings and solver names from A to B (``reindex``: the chain's input renaming).

    Returns ``(per_layer, matchings, solvers)``.
    """
    streams, n = a.streams, len(a)
    out_stream = streams[-1][1]
    matched: dict[int, np.ndarray | None] = {0: None}  # None: identity
    if not match_outputs:
        matched[out_stream] = None
    opening = openers(streams)
    last_opener = {ks[-1]: w for w, ks in opening.items()}
    per_layer, matchings, used = np.empty(n), [None] * n, [""] * n
    for k in range(n):
        w = streams[k][1]
        if w in matched:
            _record(a, b, k, matched, reindex, per_layer, matchings, used,
                    "identity" if matched[w] is None else "carried")
        elif last_opener.get(k) == w:
            ks = opening[w]
            matched[w], how = _open([_reindexed(a, b, j, matched, reindex) for j in ks], solver)
            for j in ks:
                _record(a, b, j, matched, reindex, per_layer, matchings, used, how)
        # else: an opener before the last one, scored when the stream is opened
    return per_layer, tuple(matchings), tuple(used)


def _record(a, b, k, matched, reindex, per_layer, matchings, used, how) -> None:
    """Score layer ``k`` under the matching of the stream it writes and note it."""
    col = matched[a.streams[k][1]]
    la, lb = _reindexed(a, b, k, matched, reindex)
    per_layer[k] = _score(la, lb, col) / la.shape[0]
    matchings[k] = np.arange(la.shape[0], dtype=np.int64) if col is None else col
    used[k] = how
