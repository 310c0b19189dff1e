"""A pure-Python NNSTD in the style of the code published with the paper.

Used by the benchmark only, as the baseline the targets are stated against:
a Python double loop over neuron pairs with one ``np.intersect1d`` each,
then ``scipy.optimize.linear_sum_assignment``.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment


def _ned(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 and len(b) == 0:
        return 0.0
    common = np.intersect1d(a, b)
    if len(common) == 0:
        return 1.0
    return (len(a) + len(b) - 2 * len(common)) / np.unique(np.concatenate([a, b])).shape[0]


def reference_nnstd(layers_a, layers_b) -> np.ndarray:
    """Per-layer NNSTD of two lists of dense (n_out, n_in) boolean masks."""
    out = []
    perm = None
    for la, lb in zip(layers_a, layers_b):
        if perm is not None:
            lb = lb[:, perm]
        sets_a = [np.flatnonzero(r) for r in la]
        sets_b = [np.flatnonzero(r) for r in lb]
        cost = np.zeros((len(sets_a), len(sets_b)))
        for i, sa in enumerate(sets_a):
            for j, sb in enumerate(sets_b):
                cost[i, j] = _ned(sa, sb)
        row, col = linear_sum_assignment(cost)
        out.append(cost[row, col].sum() / len(sets_a))
        perm = col
    return np.array(out)
