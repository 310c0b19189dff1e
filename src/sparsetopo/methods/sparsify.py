"""Sparse training for *your own* PyTorch model and training loop.

>>> sp = sparsify(model, "set", epsilon=20, seed=0)   # masks every nn.Linear (the last stays dense)
>>> for epoch in range(1, epochs + 1):
...     for x, y in loader:                           # your loop, unchanged
...         opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
...     sp.end_epoch(opt, epoch, epochs)               # SET: drop and regrow
>>> Topology.from_torch(model)                        # or sp.topology()

Each ``nn.Linear`` gets a ``weight_mask`` buffer (so masks travel with
``state_dict``) and a gradient hook that zeroes gradients outside the mask;
with zero weights and zero gradients there, SGD (momentum, weight decay) and
Adam keep those weights exactly zero without touching your loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import SparsetopoError
from ..topology import Topology, erdos_renyi
from .base import UpdateContext, get_method

__all__ = ["Sparsifier", "sparsify"]


class Sparsifier:
    """Masks and a drop-then-grow method attached to a model's ``nn.Linear`` layers.

    ``rescale_init`` (default on) multiplies each masked neuron's initial weights
    by ``sqrt(n_in / fan_in)``, so that a sparse layer keeps the signal scale its
    (dense) initialisation was designed for; ``False`` keeps the model's weights
    as they are, only zeroed outside the mask.
    """

    def __init__(self, model: nn.Module, method: str = "set", *, epsilon: float | None = 20.0,
                 density: float | None = None, zeta: float = 0.3, dense_output: bool = True, seed: int = 0,
                 regrowth_seed: int | None = None, rescale_init: bool = True):
        from ..training import TrainConfig

        if method not in ("static", "set", "rigl"):
            raise SparsetopoError(f"sparsify supports method static, set or rigl; got {method!r}")
        self.model = model
        self.masked_layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not self.masked_layers:
            raise SparsetopoError("sparsify found no nn.Linear layer in the model")
        self.config = TrainConfig(method=method, epsilon=epsilon if density is None else None, density=density,
                                  zeta=zeta, dense_output=dense_output).validate()
        self.method = get_method(self.config)
        self.regrowth = torch.Generator().manual_seed(int(seed if regrowth_seed is None else regrowth_seed) + 1)
        self._masking = True
        sparse_ids = set(self.method.sparse_layer_ids(len(self.masked_layers)))
        sizes = self._chain_sizes()
        if density is not None and sizes is None:
            raise SparsetopoError("density= needs Linear layers that form a chain (an MLP); give epsilon= instead")
        eps = self.method.epsilon(sizes) if density is not None else float(epsilon)
        topo_gen = torch.Generator().manual_seed(int(seed))
        for k, layer in enumerate(self.masked_layers):
            n_out, n_in = layer.weight.shape
            mask = torch.ones(n_out, n_in)
            if k in sparse_ids:
                layer_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=topo_gen))
                m = erdos_renyi([n_in, n_out], eps, layer_seed, dense_output=False)[0]
                mask = torch.from_numpy(m.toarray().astype("float32"))
            if hasattr(layer, "weight_mask"):
                layer.weight_mask.copy_(mask)
            else:
                layer.register_buffer("weight_mask", mask)
            with torch.no_grad():
                layer.weight.mul_(layer.weight_mask)
                if rescale_init and k in sparse_ids:
                    # Keep each neuron's output scale: its initialisation assumed n_in inputs, it now has
                    # fan_in. Without this a ~90 %-sparse layer shrinks the signal several-fold and SGD
                    # barely moves (the same rescaling as sparsetopo's own models).
                    fan_in = layer.weight_mask.sum(dim=1, keepdim=True).clamp(min=1)
                    layer.weight.mul_(torch.sqrt(n_in / fan_in))
            layer.weight.register_hook(self._grad_hook(layer))

    def _chain_sizes(self) -> list[int] | None:
        """Neuron counts when the Linear layers form a chain (an MLP), else None."""
        shapes = [tuple(m.weight.shape) for m in self.masked_layers]
        if all(shapes[k + 1][1] == shapes[k][0] for k in range(len(shapes) - 1)):
            return [shapes[0][1]] + [s[0] for s in shapes]
        return None

    def _grad_hook(self, layer: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(grad: torch.Tensor) -> torch.Tensor:
            return grad * layer.weight_mask if self._masking else grad
        return hook

    def dense_gradients(self, loss_closure: Callable[[], torch.Tensor]) -> list[torch.Tensor]:
        """Gradients of ``loss_closure()`` w.r.t. every full weight, masks ignored (RigL's grow score)."""
        self._masking = False
        try:
            self.model.zero_grad(set_to_none=True)
            loss_closure().backward()
            grads = [m.weight.grad.detach().clone() for m in self.masked_layers]
        finally:
            self._masking = True
            self.model.zero_grad(set_to_none=True)
        return grads

    def end_epoch(self, optimizer: torch.optim.Optimizer, epoch: int, total_epochs: int,
                  loss_closure: Callable[[], torch.Tensor] | None = None) -> list[int]:
        """Evolve the topology after ``epoch`` (1-based); returns the changed layers.

        ``loss_closure`` (a loss on a batch) is needed by RigL only.
        """
        if self.config.method == "rigl" and loss_closure is None:
            raise SparsetopoError("rigl needs loss_closure, a function returning the loss on a batch")
        cache: list[torch.Tensor] = []

        def grads():
            if not cache:
                cache.extend(self.dense_gradients(loss_closure))
            return cache

        ctx = UpdateContext(model=self, optimizer=optimizer, epoch=epoch, total_epochs=total_epochs,
                            regrowth=self.regrowth, dense_grads=grads)
        return self.method.after_epoch(ctx).changed_layers

    def topology(self) -> Topology:
        """The current masks as a Topology (the Linear layers must chain)."""
        return Topology.from_masks([m.weight_mask.detach().cpu().numpy() != 0 for m in self.masked_layers])


def sparsify(model: nn.Module, method: str = "set", **kwargs) -> Sparsifier:
    """Attach masks and a sparsity method to ``model``'s ``nn.Linear`` layers; see :class:`Sparsifier`."""
    return Sparsifier(model, method, **kwargs)
