"""A truly sparse MLP: every layer a :class:`~sparsetopo.truly_sparse.TrulySparseLinear`.

:class:`TrulySparseMLP` is the ``engine="truly-sparse"`` counterpart of :class:`sparsetopo.models.SparseMLP`
and implements the masked-network contract of :mod:`sparsetopo.masking` with index-based members:
``masked_layers`` are the truly sparse layers (the output layer too: with ``dense_output`` it simply
holds every connection), ``layer_shapes``, :meth:`~TrulySparseMLP.topology` and
:meth:`~TrulySparseMLP.n_connections` keep their logical meaning and are built from the CSR arrays,
:meth:`~TrulySparseMLP.set_topology` installs a :class:`~sparsetopo.topology.Topology`'s CSR layers,
and ``apply_masks``/``mask_grads`` are no-ops (nothing exists outside the connections). Nothing here
creates an ``n_out x n_in`` array: :func:`sample_topology` draws the random initial topology with
:func:`~sparsetopo.truly_sparse.kernels.sample_rows`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import scipy.sparse as ss
import torch
from torch import nn

from ..errors import SparsetopoError
from ..masking import MaskedNetwork
from ..models import SeededDropout, _activation
from ..topology import Topology
from . import kernels as K
from .layer import TrulySparseLinear

__all__ = ["TrulySparseMLP", "sample_topology"]


def _full_csr(n_out: int, n_in: int) -> ss.csr_matrix:
    indptr = np.arange(0, (n_out + 1) * n_in, n_in, dtype=np.int64)
    indices = np.tile(np.arange(n_in, dtype=np.int32), n_out)
    return ss.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n_out, n_in))


def sample_topology(shapes: Sequence[tuple[int, int]], counts: Sequence[int], seed: int | np.random.Generator,
                    **metadata) -> Topology:
    """A random topology with ``counts[k]`` connections in layer ``k`` (weight shape ``(n_out, n_in)``),
    uniformly placed, in O(connections) memory (:func:`~sparsetopo.truly_sparse.kernels.sample_rows`).

    The same distribution as :func:`sparsetopo.topology.erdos_renyi` at the same epsilon or density
    (given the counts of :meth:`sparsetopo.methods.Method.target_counts`: exactly its counts per layer,
    each a uniformly random subset of that size), but *not* the same draw for a seed: a masked and a
    truly sparse run of one config start from different (equally distributed) topologies. Full layers
    (``count == n_out * n_in``, e.g. the dense output layer) draw nothing.
    """
    if len(shapes) != len(counts):
        raise SparsetopoError(f"sample_topology: {len(shapes)} shapes but {len(counts)} counts")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    layers = []
    for (n_out, n_in), count in zip(shapes, counts):
        n_out, n_in, count = int(n_out), int(n_in), int(count)
        if count == n_out * n_in:
            layers.append(_full_csr(n_out, n_in))
            continue
        indptr, indices = K.sample_rows(n_out, n_in, count, rng)
        layers.append(ss.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n_out, n_in)))
    return Topology(layers, metadata=metadata or None)


class TrulySparseMLP(nn.Module, MaskedNetwork):
    """An MLP of :class:`~sparsetopo.truly_sparse.TrulySparseLinear` layers on a given topology.

    Parameters
    ----------
    sizes : sequence of int
        Input, hidden and output sizes.
    topology : Topology
        The connections, one layer per pair of consecutive sizes (``(sizes[k+1], sizes[k])``).
    activation, dropout, init_seed, dropout_seed, init, init_std
        As :class:`sparsetopo.models.SparseMLP`. ``init="he"`` is He-uniform with each neuron's
        actual fan-in (what SparseMLP's init rescaled to the fan-in gives), ``normal`` N(0, init_std^2)
        with zero biases; the draws differ from SparseMLP's (they are per connection).
    dtype : torch.dtype
        ``torch.float32`` (default) or ``torch.float64``.
    """

    def __init__(self, sizes: Sequence[int], topology: Topology, *, activation: str = "relu", dropout: float = 0.0,
                 init_seed: int = 0, dropout_seed: int = 0, init: str = "he", init_std: float = 0.1,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        act = _activation(activation)
        self.sizes = tuple(int(s) for s in sizes)
        self.init = init
        self.init_std = float(init_std)
        self._check_shapes(topology)
        self.init_generator = torch.Generator().manual_seed(int(init_seed))
        self.dropout_generator = torch.Generator().manual_seed(int(dropout_seed))
        self.layers = nn.ModuleList(
            TrulySparseLinear(m.shape[1], m.shape[0], m.indptr, m.indices, init=init, init_std=init_std,
                              generator=self.init_generator, dtype=dtype)
            for m in topology.layers)
        self.act = act
        self.drop = SeededDropout(dropout, self.dropout_generator) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.drop(self.act(layer(x)))
        return self.layers[-1](x)

    # ---------------------------------------------------------- the contract
    @property
    def masked_layers(self) -> list[TrulySparseLinear]:
        return list(self.layers)

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return [layer.shape for layer in self.layers]

    def _check_shapes(self, topology: Topology) -> None:
        want = tuple((b, a) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        if tuple(topology.shapes) != want:
            raise SparsetopoError(f"topology shapes {list(topology.shapes)} do not match the network's layers "
                                  f"{list(want)}")

    def n_connections(self) -> list[int]:
        return [layer.n_connections for layer in self.layers]

    def masks(self) -> list[ss.csr_matrix]:
        """The connections as boolean CSR matrices (not dense masks: those would be ``n_out x n_in``)."""
        return [layer.to_csr() for layer in self.layers]

    def apply_masks(self) -> None:
        """Nothing to do: no weight exists outside the connections."""

    def mask_grads(self) -> None:
        """Nothing to do: gradients exist only at the connections."""

    @contextlib.contextmanager
    def dense_compute(self):
        raise SparsetopoError("a truly sparse network has no dense weights to compute through; RigL's grow "
                              "criterion comes from TrulySparseLinear.capture() instead")
        yield self  # pragma: no cover

    def set_topology(self, topology: Topology, *, rescale: bool | None = None) -> None:
        """Install a topology's connections (from its CSR layers, nothing densified) and draw the weights
        afresh with ``init`` from the init generator (``rescale`` is accepted for the contract: ``he`` is
        always for the actual fan-in)."""
        self._check_shapes(topology)
        for layer, m in zip(self.layers, topology.layers):
            layer.set_structure(m.indptr, m.indices)
            layer.reset_parameters(self.init_generator)

    def topology(self, *, nonzero: bool = False, **metadata) -> Topology:
        """The connections as a Topology, from the CSR arrays; with ``nonzero`` only those whose weight
        is not exactly zero."""
        return Topology([layer.to_csr(nonzero=nonzero) for layer in self.layers], metadata=metadata or None)
