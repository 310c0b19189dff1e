"""Masked multilayer perceptrons.

Each :class:`MaskedLinear` keeps its connectivity as a visible ``weight_mask``
buffer (as ``torch.nn.utils.prune`` does), so masks travel with
``state_dict`` and :meth:`sparsetopo.topology.Topology.from_torch` reads them.
Weights outside the mask are kept exactly zero: gradients are masked before
the optimizer step (so momentum never builds up there) and weights after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .topology import Topology

__all__ = ["ACTIVATIONS", "MaskedLinear", "SeededDropout", "SparseMLP"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with a ``weight_mask`` buffer of the weight's shape (1 = connection)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 generator: torch.Generator | None = None):
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("weight_mask", torch.ones(out_features, in_features))
        if generator is not None:
            # He-uniform weights (ReLU gain) drawn from our own generator; the
            # bias as in nn.Linear.
            bound = float(np.sqrt(6.0 / in_features))
            with torch.no_grad():
                self.weight.uniform_(-bound, bound, generator=generator)
                if self.bias is not None:
                    b = 1.0 / float(np.sqrt(in_features))
                    self.bias.uniform_(-b, b, generator=generator)

    @property
    def n_connections(self) -> int:
        return int(self.weight_mask.count_nonzero())

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor | np.ndarray) -> None:
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if tuple(mask.shape) != tuple(self.weight.shape):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight {tuple(self.weight.shape)}")
        self.weight_mask.copy_(mask.to(self.weight_mask.dtype) != 0)
        self.weight.mul_(self.weight_mask)

    @torch.no_grad()
    def apply_mask(self) -> None:
        self.weight.mul_(self.weight_mask)

    @torch.no_grad()
    def mask_grad(self) -> None:
        if self.weight.grad is not None:
            self.weight.grad.mul_(self.weight_mask)


class SeededDropout(nn.Module):
    """Dropout drawing from its own generator, so runs resume bit for bit.

    ``nn.Dropout`` draws from torch's global RNG, which a library must not seed.
    """

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SparseMLP(nn.Module):
    """An MLP of :class:`MaskedLinear` layers.

    Parameters
    ----------
    sizes : sequence of int
        Input, hidden and output sizes, e.g. ``(784, 1000, 1000, 1000, 10)``.
    activation : str
        One of ``ACTIVATIONS``.
    dropout : float
        Dropout after each hidden activation.
    init_seed, dropout_seed : int
        Seeds of the weight initialisation and of the dropout masks.
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "relu", dropout: float = 0.0,
                 init_seed: int = 0, dropout_seed: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.sizes = tuple(int(s) for s in sizes)
        init_gen = torch.Generator().manual_seed(int(init_seed))
        self.dropout_generator = torch.Generator().manual_seed(int(dropout_seed))
        self.layers = nn.ModuleList(
            MaskedLinear(a, b, generator=init_gen) for a, b in zip(self.sizes[:-1], self.sizes[1:])
        )
        self.act = ACTIVATIONS[activation]()
        self.drop = SeededDropout(dropout, self.dropout_generator) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.drop(self.act(layer(x)))
        return self.layers[-1](x)

    @property
    def masked_layers(self) -> list[MaskedLinear]:
        return list(self.layers)

    def apply_masks(self) -> None:
        for layer in self.layers:
            layer.apply_mask()

    def mask_grads(self) -> None:
        for layer in self.layers:
            layer.mask_grad()

    @torch.no_grad()
    def set_topology(self, topology: Topology, *, rescale: bool = True) -> None:
        """Install a topology's masks.

        With ``rescale`` each neuron's initial weights are scaled by
        ``sqrt(n_in / fan_in)``, i.e. He initialisation for its *actual*
        number of inputs; without it a 4 %-dense layer would shrink the
        signal fivefold and a deep sparse net would not start learning.
        """
        if len(topology) != len(self.layers):
            raise ValueError(f"topology has {len(topology)} layers, the model {len(self.layers)}")
        if topology.shapes != tuple(tuple(layer.weight.shape) for layer in self.layers):
            raise ValueError(f"topology shapes {list(topology.shapes)} do not match the model's layers")
        for layer, m in zip(self.layers, topology.layers):
            layer.set_mask(m.toarray())
            if rescale:
                fan_in = layer.weight_mask.sum(dim=1, keepdim=True).clamp(min=1)
                layer.weight.mul_(torch.sqrt(layer.in_features / fan_in))

    def topology(self, **metadata) -> Topology:
        masks = [layer.weight_mask.detach().cpu().numpy() != 0 for layer in self.layers]
        return Topology.from_masks(masks, metadata=metadata)

    def n_connections(self) -> list[int]:
        return [layer.n_connections for layer in self.layers]
