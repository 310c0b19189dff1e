"""The pairwise NNSTD array with its labels: network names, the layers that count, a pandas view.

:func:`~sparsetopo.nnstd.pairwise_nnstd` returns a :class:`PairwiseNNSTD`, a NumPy array of shape
``(N, N, n_layers)`` like before (every existing use of it works unchanged) that also knows the
networks' names and which layers are sparse, and turns itself into a labelled ``pandas.DataFrame``.
pandas is optional: only :meth:`PairwiseNNSTD.to_dataframe` needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SparsetopoError
from .core import mean_over

__all__ = ["PairwiseNNSTD"]

_LAYER_CHOICES = "'mean' (the layers that count), 'mean_all', 'long' or a layer index"


class PairwiseNNSTD(np.ndarray):
    """A pairwise NNSTD array ``(N, N, n_layers)`` labelled with ``names`` and ``sparse_layers``.

    Only the array itself carries the labels: what is computed from it (``d.mean(axis=2)``,
    ``d[:, :, 0]``, ``d + 1``) is a plain ndarray, since the labels would no longer describe it.

    Attributes
    ----------
    names : list of str
        The networks, in the order of the first two axes.
    sparse_layers : list of int
        The layers not fully connected in every network (:func:`~sparsetopo.nnstd.sparse_layers`),
        the ones :attr:`value` averages.
    lower, upper : ndarray of shape (N, N, n_layers)
        The bounds mode (``pairwise_nnstd(..., max_seconds=T)``): per pair and layer, the bounds of
        :attr:`sparsetopo.nnstd.NNSTDResult.lower` / ``upper``; equal to the array where exact, and
        the array itself holds ``upper`` where not. Without the bounds mode: the array's values.
    status : ndarray of str, shape (N, N, n_layers)
        Per pair and layer a :data:`sparsetopo.nnstd.core.STATUSES` name (``"exact"`` everywhere
        without the bounds mode); :attr:`exact` says per pair whether every layer is exact.
    """

    names: list[str]
    sparse_layers: list[int]

    def __new__(cls, distances: np.ndarray, names: Sequence[str], sparse_layers: Sequence[int],
                lower: np.ndarray | None = None, upper: np.ndarray | None = None, status: np.ndarray | None = None):
        arr = np.asarray(distances, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] != arr.shape[1] or arr.shape[0] != len(names):
            raise SparsetopoError(f"distances must have shape (N, N, n_layers) for {len(names)} names; "
                                  f"got shape {arr.shape}")
        bad = [k for k in sparse_layers if not 0 <= k < arr.shape[2]]
        if bad:
            raise SparsetopoError(f"sparse_layers must be layer indices in [0, {arr.shape[2]}); got {bad}")
        bounds = {}
        for key, given in (("lower", lower), ("upper", upper), ("status", status)):
            if given is not None:
                given = np.asarray(given, dtype="<U19" if key == "status" else np.float64)
                if given.shape != arr.shape:
                    raise SparsetopoError(f"{key} must have the distances' shape {arr.shape}; got {given.shape}")
                bounds[key] = given
        obj = arr.view(cls)
        obj.names = [str(n) for n in names]
        obj.sparse_layers = [int(k) for k in sparse_layers]
        obj._bounds = bounds
        return obj

    def __array_finalize__(self, obj) -> None:
        # A copy or pickle round trip keeps the labels; views made by indexing are plain (see below).
        self.names = list(getattr(obj, "names", []))
        self.sparse_layers = list(getattr(obj, "sparse_layers", []))
        self._bounds = dict(getattr(obj, "_bounds", {}))

    def __reduce__(self):
        base = np.asarray(self).copy()
        return (PairwiseNNSTD, (base, self.names, self.sparse_layers, self._bounds.get("lower"),
                                self._bounds.get("upper"), self._bounds.get("status")))

    @property
    def lower(self) -> np.ndarray:
        """Per pair and layer the lower bound (the value where exact)."""
        return self._bounds.get("lower", np.asarray(self))

    @property
    def upper(self) -> np.ndarray:
        """Per pair and layer the upper bound (the value where exact)."""
        return self._bounds.get("upper", np.asarray(self))

    @property
    def status(self) -> np.ndarray:
        """Per pair and layer its status (:data:`sparsetopo.nnstd.core.STATUSES`)."""
        return self._bounds.get("status", np.full(self.shape, "exact", dtype="<U19"))

    @property
    def exact(self) -> np.ndarray:
        """The ``(N, N)`` mask of the pairs whose every layer is exact."""
        return (self.status == "exact").all(axis=2)

    def __getitem__(self, key):
        return np.asarray(self).__getitem__(key)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # Results of arithmetic and reductions are plain arrays: the labels describe this array only.
        inputs = tuple(np.asarray(x) if isinstance(x, PairwiseNNSTD) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(x) if isinstance(x, PairwiseNNSTD) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __repr__(self) -> str:
        n, _, n_layers = self.shape
        shown = ", ".join(self.names[:4]) + (", ..." if n > 4 else "")
        return (f"PairwiseNNSTD({n} networks [{shown}] x {n_layers} layers, sparse layers {self.sparse_layers}; "
                f"mean off-diagonal NNSTD {self.off_diagonal_mean():.4f})")

    @property
    def value(self) -> np.ndarray:
        """The ``(N, N)`` network distances: the mean over the layers that count."""
        return mean_over(np.asarray(self), self.sparse_layers, axis=2)

    @property
    def mean_all(self) -> np.ndarray:
        """The ``(N, N)`` means over every layer, dense ones included."""
        return np.asarray(self).mean(axis=2)

    def off_diagonal_mean(self) -> float:
        """The mean of :attr:`value` over the pairs of different networks (0 for a single network)."""
        n = self.shape[0]
        return float(self.value[~np.eye(n, dtype=bool)].mean()) if n > 1 else 0.0

    def to_dataframe(self, layer: int | str = "mean"):
        """The distances as a ``pandas.DataFrame`` labelled with :attr:`names`.

        Parameters
        ----------
        layer : int or {"mean", "mean_all", "long"}, default "mean"
            ``"mean"``: the ``N x N`` network distances (mean over the sparse layers); ``"mean_all"``:
            the mean over every layer; an int: that layer's ``N x N`` distances; ``"long"``: one row per
            ordered pair and layer, columns ``a, b, layer, nnstd``.

        Raises
        ------
        ImportError
            When pandas is not installed (``pip install pandas``).
        """
        pd = _pandas()
        square = self._square(layer)
        if square is not None:
            return pd.DataFrame(square, index=pd.Index(self.names, name="a"),
                                columns=pd.Index(self.names, name="b"))
        n, _, n_layers = self.shape
        a, b, k = np.meshgrid(np.arange(n), np.arange(n), np.arange(n_layers), indexing="ij")
        names = np.array(self.names, dtype=object)
        return pd.DataFrame({"a": names[a.ravel()], "b": names[b.ravel()], "layer": k.ravel(),
                             "nnstd": np.asarray(self).ravel()})

    def _square(self, layer: int | str) -> np.ndarray | None:
        """The ``N x N`` matrix ``layer`` names; ``None`` for ``"long"``."""
        if isinstance(layer, str):
            if layer == "long":
                return None
            if layer in ("mean", "mean_all"):
                return self.value if layer == "mean" else self.mean_all
        elif isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) \
                and -self.shape[2] <= layer < self.shape[2]:
            return np.asarray(self)[:, :, int(layer)]
        raise SparsetopoError(f"layer must be {_LAYER_CHOICES} (this matrix has {self.shape[2]} layers); "
                              f"got {layer!r}")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("PairwiseNNSTD.to_dataframe needs pandas, which is not installed; "
                          "install it with: pip install pandas") from None
    return pandas
