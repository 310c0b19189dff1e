"""The weights snapshot format (``weights/epoch_XXX.npz``): each layer's weights at its
mask's positions and its biases; read back as CSR matrices over the mask."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FileFormatError
from ..fileio import atomic_write

__all__ = ["load_weights", "save_weights"]


def save_weights(model, path: str | os.PathLike) -> Path:
    """Save each layer's weights at its mask's positions (zeros included) and its biases.

    The file holds, per layer ``k``, ``w{k}`` (values in the row-major order of
    the mask's positions, float32) and ``b{k}``; :func:`load_weights` returns
    them as scipy CSR matrices of shape ``(n_out, n_in)`` whose stored entries
    are exactly the mask.
    """
    arrays = {}
    for k, layer in enumerate(model.masked_layers):
        arrays.update(_layer_arrays(k, layer))
        arrays[f"b{k}"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    path = Path(path)
    with atomic_write(path) as f:
        np.savez_compressed(f, n_layers=np.array(len(model.masked_layers)), **arrays)
    return path


def _layer_arrays(k: int, layer) -> dict[str, np.ndarray]:
    """A layer's weights at its connections and their CSR structure; a truly sparse layer's straight
    from its arrays (nothing densified)."""
    if getattr(layer, "truly_sparse", False):
        return {f"w{k}": layer.values.detach().numpy().astype(np.float32),
                f"m{k}_indptr": layer.indptr.numpy().astype(np.int64),
                f"m{k}_indices": layer.indices.numpy().astype(np.int32),
                f"m{k}_shape": np.array(layer.shape, dtype=np.int64)}
    mask = layer.weight_mask.detach().cpu().numpy() != 0
    return {f"w{k}": layer.weight.detach().cpu().numpy()[mask].astype(np.float32),
            f"m{k}_indptr": np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int64),
            f"m{k}_indices": np.nonzero(mask)[1].astype(np.int32),
            f"m{k}_shape": np.array(mask.shape, dtype=np.int64)}


def load_weights(path: str | os.PathLike) -> tuple[list, list[np.ndarray]]:
    """The ``(weights, biases)`` saved by :func:`save_weights`: CSR matrices over the mask, bias vectors."""
    import scipy.sparse as ss

    from .._npz import check_csr_arrays, check_shape, int_array, read_npz

    what = "a sparsetopo weights snapshot"
    z = read_npz(path, what)
    try:
        n = int(z["n_layers"][()])
        weights, biases = [], []
        for k in range(n):
            shape = check_shape(path, z[f"m{k}_shape"], f"layer {k}")
            indptr, indices = int_array(path, z, f"m{k}_indptr", what), int_array(path, z, f"m{k}_indices", what)
            check_csr_arrays(path, f"layer {k}", indptr, indices, shape)
            w, b = z[f"w{k}"], z[f"b{k}"]
            if w.shape != (len(indices),) or b.shape != (shape[0],) or not (np.isfinite(w).all()
                                                                             and np.isfinite(b).all()):
                raise FileFormatError(path, f"layer {k}: weights or biases of the wrong length or not finite")
            weights.append(ss.csr_matrix((w, indices, indptr), shape=shape))
            biases.append(b)
    except FileFormatError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise FileFormatError(path, f"not a weights snapshot ({type(exc).__name__}: {exc})") from None
    return weights, biases
