"""The masking contract: what the trainer, the methods and :func:`~sparsetopo.methods.sparsify` need from a
sparse network, written once.

Two objects make the contract.

**A masked layer** (:class:`MaskedLayer`) holds a dense ``weight`` parameter and a ``weight_mask``
buffer of the same shape (1 = connection), as ``torch.nn.utils.prune`` does, so masks travel with
``state_dict`` and :meth:`sparsetopo.topology.Topology.from_torch` reads them. Weights outside the mask
are kept exactly zero: ``mask_grad()`` zeroes the gradient there before the optimizer step (so
momentum never builds up) and ``apply_mask()`` the weight after it. :class:`~sparsetopo.models.MaskedLinear`
and :class:`~sparsetopo.models.MaskedConv2d` are masked layers; so is any ``nn.Linear``/``nn.Conv2d``
after ``sparsify`` (its gradient hook plays ``mask_grad``).

**A masked network** (:class:`MaskedNetwork`) lists its masked layers in order and offers, from
them alone, everything a method acts on: ``layer_shapes``, ``masks()``, ``set_topology()``,
``apply_masks()``, ``mask_grads()``, ``dense_compute()`` (a block in which backward gives the
gradient at *every* weight position: RigL's grow score), ``dense_gradients()``, ``topology()`` and
``n_connections()``. :class:`~sparsetopo.models.SparseMLP`, :class:`~sparsetopo.models.SparseCNN` and
the :class:`~sparsetopo.methods.Sparsifier` (for a user's own model) are masked networks; a new
kind of layer is one class implementing :class:`MaskedLayer`, nothing else changes.

Truly sparse layers (:class:`sparsetopo.truly_sparse.TrulySparseLinear`: weights stored only for
existing connections, a 1-D ``values`` tensor plus CSR ``indptr``/``indices`` buffers, never an
``n_out x n_in`` tensor; marked by the class attribute ``truly_sparse``) implement the same contract
with index-based members: the index buffers and the logical ``shape`` play ``weight_mask``,
``mask_grad``/``apply_mask`` are no-ops here (nothing exists outside the connections),
``set_structure`` plays ``set_mask``, and a method's update is its ``truly_sparse_update`` (drop read
at the stored values, growth over sampled candidates or RigL's captured ``(x, gy)`` instead of a dense
gradient; :mod:`sparsetopo.truly_sparse.evolve`). ``layer_shapes``, ``topology()`` and
``n_connections()`` keep their meaning (the *logical* shape), so snapshots, NNSTD and the
run-directory formats do not change. :class:`sparsetopo.truly_sparse.model.TrulySparseMLP` is such a
network (``--engine truly-sparse``), and so is a :class:`~sparsetopo.methods.Sparsifier` with
``engine="truly-sparse"``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import SparsetopoError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .sparsity import SparsitySettings
    from .topology import Topology

__all__ = ["MaskedLayer", "MaskedNetwork", "dense_gradients", "initial_topology", "per_layer_masks",
           "rescale_to_fan_in"]


@runtime_checkable
class MaskedLayer(Protocol):
    """One layer of a masked network.

    Attributes
    ----------
    weight : torch.nn.Parameter
        ``(n_out, n_in)`` or ``(out, in / groups, kh, kw)``; zero outside the mask.
    weight_mask : torch.Tensor
        A buffer of the weight's shape, nonzero at the connections.
    """

    weight: torch.Tensor
    weight_mask: torch.Tensor

    def apply_mask(self) -> None:
        """Zero the weight outside the mask (after an optimizer step)."""

    def mask_grad(self) -> None:
        """Zero the weight's gradient outside the mask (before an optimizer step)."""


def rescale_to_fan_in(weight: torch.Tensor, mask: torch.Tensor) -> None:
    """Scale each neuron's weights by ``sqrt(n_in / fan_in)``, in place.

    An initialisation designed for ``n_in`` inputs (He's) keeps its signal scale when a
    neuron has only ``fan_in`` of them; without this a 4 %-dense layer shrinks the signal
    fivefold and a deep sparse net does not start learning. Counted in at least float32:
    float16 and bfloat16 cannot count large fan-ins exactly.
    """
    import torch

    n_in = math.prod(weight.shape[1:])
    dims = tuple(range(1, weight.dim()))
    count = torch.promote_types(weight.dtype, torch.float32)
    fan_in = (mask != 0).to(count).sum(dim=dims, keepdim=True).clamp(min=1)
    with torch.no_grad():
        weight.mul_(torch.sqrt(n_in / fan_in).to(dtype=weight.dtype, device=weight.device))


def initial_topology(settings: SparsitySettings, shapes: Sequence[tuple[int, ...]], seed: int,
                     sparse_ids: Sequence[int] | None = None) -> Topology:
    """The random starting topology of ``settings`` for layers of weight ``shapes``.

    ``sparse_ids``: the layers made sparse (default: all but the output layer with
    ``dense_output``). An MLP under ``erdos_renyi`` gets SET's generator, exactly as before
    the other distributions existed (same seed, same topology); anything else gets
    :func:`~sparsetopo.topology.random_topology` at the per-layer densities.
    """
    from .topology import epsilon_for_density, erdos_renyi, layer_densities, random_topology

    s = settings
    if sparse_ids is None:
        sparse_ids = list(range(len(shapes) - 1 if s.dense_output else len(shapes)))
    if s.distribution == "erdos_renyi" and all(len(sh) == 2 for sh in shapes):
        sizes = [shapes[0][1]] + [sh[0] for sh in shapes]
        eps = epsilon_for_density(sizes, s.density, dense_output=s.dense_output) if s.density is not None \
            else float(s.epsilon)
        return erdos_renyi(sizes, eps, seed, dense_output=s.dense_output)
    densities = layer_densities(shapes, list(sparse_ids), s.distribution,
                                epsilon=s.epsilon if s.density is None else None, density=s.density)
    return random_topology(shapes, densities, seed)


def per_layer_masks(shapes: Sequence[tuple[int, ...]], densities: Sequence[float], sparse_ids: set[int],
                    seed: int) -> list[torch.Tensor]:
    """Boolean masks, one layer at a time, each from its own seed drawn from ``seed``.

    This is :func:`~sparsetopo.methods.sparsify`'s scheme: layers need not chain (a user's
    model may branch), so each is drawn alone. Layers not in ``sparse_ids`` are all ones.
    """
    import torch

    from .topology import erdos_renyi, random_topology

    gen = torch.Generator().manual_seed(int(seed))
    masks = []
    for k, shape in enumerate(shapes):
        mask = torch.ones(shape, dtype=torch.bool)
        if k in sparse_ids:
            layer_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            if len(shape) == 2:
                m = erdos_renyi([shape[1], shape[0]], density=densities[k], seed=layer_seed, dense_output=False)[0]
            else:
                m = random_topology([shape], [densities[k]], layer_seed)[0]
            mask = torch.from_numpy(m.toarray()).reshape(shape) != 0
        masks.append(mask)
    return masks


def _truly_sparse(layer) -> bool:
    """Whether ``layer`` is a truly sparse one (:class:`sparsetopo.truly_sparse.TrulySparseLinear`)."""
    return bool(getattr(layer, "truly_sparse", False))


def dense_gradients(network: MaskedNetwork, backward: Callable[[], None]) -> list[torch.Tensor]:
    """The gradients ``backward()`` leaves on every full weight (masks ignored), then cleared.

    ``backward`` runs the forward and backward passes (one or several batches) inside
    ``network.dense_compute()``; the gradients at positions outside the mask tell how much a
    new connection would help (RigL's grow criterion).
    """
    module = network.module
    module.zero_grad(set_to_none=True)
    try:
        with network.dense_compute():
            backward()
        return [layer.weight.grad.detach().clone() for layer in network.masked_layers]
    finally:
        module.zero_grad(set_to_none=True)


class MaskedNetwork:
    """The network half of the contract, implemented from ``masked_layers`` alone.

    A subclass provides ``masked_layers`` (its :class:`MaskedLayer` s in order) and, when it is
    not itself the ``nn.Module`` being trained, ``module``; it may override
    :meth:`dense_compute` (the default sets each layer's ``force_dense``).
    """

    @property
    def masked_layers(self) -> list:
        raise NotImplementedError

    @property
    def module(self):
        """The ``nn.Module`` whose gradients :func:`dense_gradients` clears."""
        return self

    @property
    def layer_shapes(self) -> list[tuple[int, ...]]:
        """Weight shapes of the masked layers, ``(n_out, n_in)`` or ``(out, in, kh, kw)`` (a truly sparse
        layer's logical ``shape``)."""
        return [tuple(layer.shape) if _truly_sparse(layer) else tuple(layer.weight.shape)
                for layer in self.masked_layers]

    def masks(self) -> list[torch.Tensor]:
        """Boolean masks of the layers (copies)."""
        return [layer.weight_mask.detach() != 0 for layer in self.masked_layers]

    @contextlib.contextmanager
    def dense_compute(self) -> Iterator[MaskedNetwork]:
        """Compute through dense matmuls inside the block, so that backward gives the gradient
        at *every* weight position (RigL's grow criterion), not only on the mask."""
        layers = self.masked_layers
        for layer in layers:
            layer.force_dense = True
        try:
            yield self
        finally:
            for layer in layers:
                layer.force_dense = False

    def dense_gradients(self, backward: Callable[[], None]) -> list[torch.Tensor]:
        """See :func:`dense_gradients`."""
        return dense_gradients(self, backward)

    def apply_masks(self) -> None:
        for layer in self.masked_layers:
            if not _truly_sparse(layer):  # nothing exists outside a truly sparse layer's connections
                layer.apply_mask()

    def mask_grads(self) -> None:
        for layer in self.masked_layers:
            if not _truly_sparse(layer):
                layer.mask_grad()

    def n_connections(self) -> list[int]:
        return [layer.n_connections if _truly_sparse(layer) else int(layer.weight_mask.count_nonzero())
                for layer in self.masked_layers]

    def set_topology(self, topology: Topology, *, rescale: bool = False) -> None:
        """Install a topology's masks (zeroing the weights outside them); with ``rescale``
        each neuron's weights are rescaled to its fan-in (:func:`rescale_to_fan_in`)."""
        import numpy as np

        layers = self.masked_layers
        if len(topology) != len(layers):
            raise SparsetopoError(f"topology has {len(topology)} layers, the model {len(layers)}")
        flat = tuple((s[0], int(np.prod(s[1:]))) for s in self.layer_shapes)
        if topology.shapes != flat:
            raise SparsetopoError(f"topology shapes {list(topology.shapes)} do not match the model's layers {flat}")
        for layer, m in zip(layers, topology.layers):
            layer.set_mask(m.toarray().reshape(layer.weight.shape))
            if rescale:
                rescale_to_fan_in(layer.weight, layer.weight_mask)

    def topology(self, *, nonzero: bool = False, **metadata) -> Topology:
        """The masks as a Topology (a graph when the network has ``streams``, e.g. a residual one);
        with ``nonzero`` only connections whose weight is not exactly zero."""
        from .topology import Topology

        masks = []
        for layer in self.masked_layers:
            m = layer.weight_mask.detach() != 0
            if nonzero:
                m &= layer.weight.detach() != 0
            masks.append(m.cpu().numpy())
        return Topology(masks, metadata=metadata or None, streams=getattr(self, "streams", None))
