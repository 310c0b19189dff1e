"""Truly sparse layers: weights, gradients and optimizer state only for the connections that exist.

* :class:`TrulySparseLinear` -- the layer (``values`` per connection, CSR ``indptr``/``indices`` buffers);
* :mod:`.kernels` -- the parallel numba products (forward, input gradient, weight gradient at the
  connections) and an O(connections) random-topology sampler;
* :mod:`.evolve` -- drop and grow in O(connections): SET (magnitude drop, random regrowth) and
  RigL (magnitude drop, growth by dense-gradient magnitude computed block by block), moving
  optimizer state with the connections;
* :mod:`.model` -- :class:`~.model.TrulySparseMLP`, the network of ``--engine truly-sparse``, and
  :func:`~.model.sample_topology`, its O(connections) random initial topology (import it from there:
  it brings in :mod:`sparsetopo.models`).
"""

from .evolve import (
    UpdateStats,
    apply_update,
    gradient_grow,
    magnitude_drop,
    merge_structure,
    random_grow,
    rigl_update,
    set_drop,
    set_update,
)
from .layer import INITS, Structure, TrulySparseLinear

__all__ = [
    "INITS",
    "Structure",
    "TrulySparseLinear",
    "UpdateStats",
    "apply_update",
    "gradient_grow",
    "magnitude_drop",
    "merge_structure",
    "random_grow",
    "rigl_update",
    "set_drop",
    "set_update",
]
