"""Neural Network Sparse Topology Distance (NNSTD, Liu et al., ECML PKDD 2020).

Semantics, for networks A and B with the same layer shapes:

1. The input neurons of layer 0 correspond by identity.
2. In layer k each output neuron is described by the set of its input
   neurons (B's inputs re-indexed by the matching of layer k-1). Pairing A's
   neuron i with B's neuron j costs the normalized edit distance
   ``NED = |S_i ^ S_j| / |S_i | S_j|`` (0 when both sets are empty).
3. A minimum-cost one-to-one matching of A's neurons to B's neurons is
   found; the layer distance is the minimum total cost divided by ``n_out``.
4. The matching re-indexes B's neurons as the inputs of layer k+1. The
   network distance is the mean of the per-layer distances.

Convolutions: a neuron is an output channel and its input set the (input
channel, kernel row, kernel column) positions it connects; the matching of a
layer re-indexes the next layer's input channels, moving all kernel positions
(or, for a fully connected layer after a flatten, the channel's block of
flattened inputs) together -- see :attr:`Topology.blocks`.

Residual networks (graph topologies, :attr:`Topology.streams`): a layer's inputs
are re-indexed by the matching of the stream it reads; a residual stream is
matched once, on the summed costs of the layers that open it, and every later
layer writing into it is scored under that matching -- see :mod:`.graph`.

All set sizes and intersections of a layer come from one sparse product
``A @ B'.T``; no Python loop ever runs over neuron pairs. Three exact solvers:

``ssp`` (what ``auto``, the default, uses)
    Neurons that share no input cost exactly 1, so only the sparse overlap
    graph matters, plus a private dummy per neuron at cost 1. Successive
    shortest paths with Dijkstra on that graph, warm-started by
    Jonker-Volgenant's augmenting row reduction (:mod:`sparsetopo._lap`,
    compiled with numba, releases the GIL). Memory and time follow the
    connections, not neurons squared.
``dense``
    Builds the float64 cost matrix and calls
    ``scipy.optimize.linear_sum_assignment`` on it, exactly as the reference
    implementation published with the paper does, so that -- computed in the
    same direction -- matchings, and thus later layers, agree with it value
    for value, ties included.
``sparse``
    Neurons that share no input cost exactly 1, so the problem is equivalent
    to a *sparse* one: each of A's neurons may take a B neuron it shares an
    input with (cost ``NED``) or a private dummy (cost 1). That is solved by
    ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` and the
    unmatched neurons are paired arbitrarily, each pair at cost 1.

All three give the same minimum for layer 0. Among equal-cost matchings they
may choose differently, and since a layer's matching re-indexes the next
layer's inputs, deeper layers can differ slightly between solvers -- and
between the directions A -> B and B -> A (see the README's measured example).
By default a pair is computed in a canonical direction (by content
fingerprint) so that the distance is symmetric; ``reference=True`` (in
:func:`nnstd` and :func:`pairwise_nnstd`, ``--reference`` on the command
line) computes with ``dense`` in the direction given, as the published double
loop does, and is the one mode that reproduces the paper's published values.
"""

from .core import NNSTDResult, match_layer, mean_over, nnstd, sparse_layers
from .embedding import classical_mds
from .matrix import load_matrix, save_matrix
from .pairwise import nnstd_many, pairwise_nnstd
from .solvers import DEFAULT_MAX_DENSE_BYTES, SOLVERS, Solver, layer_cost_matrix
from .table import PairwiseNNSTD

# The package's modules: core (NNSTDResult, nnstd, match_layer), solvers (costs, the solvers, SOLVERS),
# pairwise (pairwise_nnstd, nnstd_many), table (PairwiseNNSTD: the labelled matrix, to pandas),
# cache (the pair cache), matrix (files), embedding (classical_mds);
# the compiled kernel is sparsetopo._lap (its numba cache lives next to it).

__all__ = [
    "DEFAULT_MAX_DENSE_BYTES",
    "NNSTDResult",
    "PairwiseNNSTD",
    "SOLVERS",
    "Solver",
    "classical_mds",
    "layer_cost_matrix",
    "load_matrix",
    "match_layer",
    "mean_over",
    "nnstd",
    "nnstd_many",
    "pairwise_nnstd",
    "save_matrix",
    "sparse_layers",
]
