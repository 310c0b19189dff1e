"""Per-layer diagnostics of sparse MLP snapshots: dead neurons, zero-valued connections, degrees, churn.

Why these: a connection SET regrows at zero weight only ever changes if its
neuron gets a gradient. One that lands on a *dead* neuron (no positive
pre-activation on any training sample, so ReLU passes no gradient) or on a
dead input (a pixel that is always 0, a dead neuron of the layer below) stays
exactly zero, is missing from a snapshot of non-zero weights, and is dropped
again as a zero at the next update. These functions count each of those, the
same way on our snapshots and on the paper's published weight files, so that
the two can be put side by side (:mod:`.fidelity`).

Everything works on scipy sparse matrices of shape ``(n_out, n_in)`` (the
layout of :func:`sparsetopo.training.load_weights`); the training split is
pushed through them in batches with sparse-dense products, never densifying a
weight matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError

__all__ = ["churn", "layer_stats", "max_pre_activations", "network_stats", "read_published_network", "summarise"]


def _check_network(weights: Sequence, biases: Sequence) -> None:
    if len(weights) == 0 or len(weights) != len(biases):
        raise SparsetopoError(f"weights and biases must be non-empty lists of equal length; got {len(weights)} "
                              f"weight matrices and {len(biases)} bias vectors")
    for k, (w, b) in enumerate(zip(weights, biases)):
        if np.shape(b) != (w.shape[0],):
            raise SparsetopoError(f"biases[{k}] must have one entry per output neuron ({w.shape[0]}); "
                                  f"got shape {np.shape(b)}")
        if k and w.shape[1] != weights[k - 1].shape[0]:
            raise SparsetopoError(f"weights[{k}] takes {w.shape[1]} inputs but layer {k - 1} has "
                                  f"{weights[k - 1].shape[0]} outputs")


def max_pre_activations(weights: Sequence[ss.spmatrix], biases: Sequence[np.ndarray], x: np.ndarray,
                        batch_size: int = 4096) -> list[np.ndarray]:
    """Each neuron's largest pre-activation over the samples ``x``, layer by layer (ReLU between layers).

    Parameters
    ----------
    weights : sequence of scipy sparse matrices
        Layer ``k``'s weights, shape ``(n_out, n_in)``.
    biases : sequence of arrays
        Layer ``k``'s biases, shape ``(n_out,)``.
    x : array, shape (n_samples, n_in of layer 0)
        The inputs, scaled as in training (no dropout: the network in evaluation mode).
    batch_size : int
        Samples per sparse-dense product (bounds memory at ``batch_size x widest layer``).

    Returns
    -------
    list of arrays
        ``out[k][j]``: the maximum over samples of neuron ``j``'s pre-activation in layer ``k``
        (``-inf`` for no samples). A hidden neuron whose maximum is <= 0 is dead.
    """
    _check_network(weights, biases)
    if batch_size < 1:
        raise SparsetopoError(f"batch_size must be >= 1; got {batch_size}")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != weights[0].shape[1]:
        raise SparsetopoError(f"x must have shape (n_samples, {weights[0].shape[1]}); got {x.shape}")
    # float32 as in training; scipy's CSR @ dense is fastest with a C-ordered (n_in, batch) right-hand side.
    csr = [ss.csr_matrix(w, dtype=np.float32) for w in weights]
    bias = [np.asarray(b, dtype=np.float32)[:, None] for b in biases]
    out = [np.full(w.shape[0], -np.inf, dtype=np.float32) for w in csr]
    for start in range(0, len(x), batch_size):
        h = np.ascontiguousarray(np.asarray(x[start:start + batch_size], dtype=np.float32).T)
        for k, (w, b) in enumerate(zip(csr, bias)):
            z = w @ h + b
            np.maximum(out[k], z.max(axis=1), out=out[k])
            h = np.maximum(z, 0.0)
    return out


def layer_stats(weight: ss.spmatrix, dead_in: np.ndarray, dead_out: np.ndarray) -> dict[str, float]:
    """Counts of one sparse layer: its stored connections (the mask), their zeros, degrees and dead ends.

    Parameters
    ----------
    weight : scipy sparse matrix, shape (n_out, n_in)
        Stored entries are the connections (a mask with its weights, explicit zeros included;
        a published file stores only the non-zero ones).
    dead_in, dead_out : boolean arrays
        Inputs that are always 0 (dead neurons of the layer below, never-positive pixels) and
        this layer's dead neurons.

    Returns
    -------
    dict
        ``connections`` (stored), ``zero_valued`` (stored and exactly 0), ``zero_on_dead`` (those
        of them whose input or neuron is dead), ``dead_neurons``, ``dead_inputs``, and over the
        non-zero connections: ``no_input_neurons`` (in-degree 0), ``unused_inputs`` (out-degree
        0), ``in_degree_std``, ``in_degree_max``, ``out_degree_std``, ``out_degree_max``,
        ``into_dead`` (non-zero connections into dead neurons).
    """
    w = ss.coo_matrix(weight)
    dead_in, dead_out = np.asarray(dead_in, bool), np.asarray(dead_out, bool)
    if dead_in.shape != (w.shape[1],) or dead_out.shape != (w.shape[0],):
        raise SparsetopoError(f"dead_in and dead_out must have shapes ({w.shape[1]},) and ({w.shape[0]},) for a "
                              f"{w.shape} weight matrix; got {dead_in.shape} and {dead_out.shape}")
    zero = w.data == 0
    on_dead = dead_in[w.col] | dead_out[w.row]
    nz_row, nz_col = w.row[~zero], w.col[~zero]
    in_deg = np.bincount(nz_row, minlength=w.shape[0])
    out_deg = np.bincount(nz_col, minlength=w.shape[1])
    return {"connections": int(w.nnz), "zero_valued": int(zero.sum()), "zero_on_dead": int((zero & on_dead).sum()),
            "dead_neurons": int(dead_out.sum()), "dead_inputs": int(dead_in.sum()),
            "no_input_neurons": int((in_deg == 0).sum()), "unused_inputs": int((out_deg == 0).sum()),
            "in_degree_std": float(in_deg.std()), "in_degree_max": int(in_deg.max(initial=0)),
            "out_degree_std": float(out_deg.std()), "out_degree_max": int(out_deg.max(initial=0)),
            "into_dead": int(dead_out[nz_row].sum())}


def network_stats(weights: Sequence[ss.spmatrix], biases: Sequence[np.ndarray], x: np.ndarray,
                  layers: Sequence[int] | None = None, batch_size: int = 4096) -> list[dict]:
    """:func:`layer_stats` of each hidden layer in ``layers`` (default: all but the output layer).

    A neuron is dead when its pre-activation is never positive on ``x`` (the training split);
    layer 0's dead inputs are the features never positive in ``x``.
    """
    maxima = max_pre_activations(weights, biases, x, batch_size)
    hidden = list(range(len(weights) - 1)) if layers is None else list(layers)
    bad = [k for k in hidden if not 0 <= k < len(weights) - 1]
    if bad:
        raise SparsetopoError(f"layers must be hidden layers 0..{len(weights) - 2}; got {bad}")
    dead = [m <= 0 for m in maxima]
    dead_x = np.asarray(x).max(axis=0, initial=-np.inf) <= 0
    return [{"layer": k, **layer_stats(weights[k], dead_x if k == 0 else dead[k - 1], dead[k])} for k in hidden]


def summarise(rows: Sequence[dict], keys: Sequence[str] = ("epoch", "layer")) -> list[dict]:
    """The mean of every other numeric column over the rows that share ``keys`` (e.g. over networks)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in sorted(groups.items()):
        cols = [c for c in rs[0] if c not in keys and isinstance(rs[0][c], (int, float, np.number))]
        out.append({**dict(zip(keys, key)), "networks": len(rs),
                    **{c: float(np.mean([r[c] for r in rs if r.get(c) is not None])) for c in cols}})
    return out


def read_published_network(directory: str | Path) -> tuple[list[ss.csr_matrix], list[np.ndarray]]:
    """The weights and biases of one published ``netW/epoch_EEE`` directory (``weight_lK.npz`` files).

    A published file is a ``(n_in + 1, n_out)`` matrix with the biases in its last row; it is
    returned as ``(n_out, n_in)`` CSR weights (only non-zero entries: the files hold no others)
    and dense biases, the layout of :func:`sparsetopo.training.load_weights`.
    """
    directory = Path(directory)
    paths = sorted(directory.glob("weight_l*.npz"), key=lambda p: int(p.stem[len("weight_l"):]))
    if not paths:
        raise SparsetopoError(f"{directory}: no weight_l*.npz files (a published netW/epoch_EEE directory)")
    weights, biases = [], []
    for p in paths:
        m = ss.load_npz(p).tocsc()
        weights.append(ss.csr_matrix(m[:-1].T))
        biases.append(np.asarray(m[-1].todense()).ravel())
    return weights, biases


def churn(before: ss.spmatrix, after: ss.spmatrix) -> dict[str, float]:
    """What one update (or several) moved: the fraction of ``before``'s connections gone in ``after``
    (``moved``) and the share of those that were exactly zero in ``before`` (``moved_zero_valued``)."""
    if before.shape != after.shape:
        raise SparsetopoError(f"before and after must have the same shape; got {before.shape} and {after.shape}")
    a = ss.csr_matrix(before)
    b = ss.csr_matrix(after, dtype=bool)
    b.data[:] = True  # explicit zeros are connections too
    present = np.asarray(b[_rows(a), a.indices]).ravel()
    gone = ~present
    return {"moved": float(gone.sum() / max(a.nnz, 1)),
            "moved_zero_valued": float((a.data[gone] == 0).sum() / max(int(gone.sum()), 1))}


def _rows(csr: ss.csr_matrix) -> np.ndarray:
    """The row index of each stored entry of a CSR matrix, in storage order."""
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
