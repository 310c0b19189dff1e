"""SynFlow (Tanaka et al., NeurIPS 2020): data-free iterative pruning at initialisation.

Each of ``rounds`` rounds makes every parameter (and buffer) of the network positive, feeds an
all-ones input, scores each connection by ``|dR/dw * w|`` with ``R`` the summed output (the
"synaptic flow"), restores the signs and keeps the top-scored connections, so that after round
``r`` of ``R`` the density is ``density^(r/R)`` (the exponential schedule), globally by default.
As in the authors' code (``Pruners/pruners.py``), the network is in eval mode and in its own dtype.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from ..config import option
from ..errors import SparsetopoError
from .base import register
from .pruning import PruneAtInit, live_connections, scope_option


@dataclass
class SynFlowSettings:
    scope: str = scope_option("global")
    rounds: int = option(100, min=1, help="synflow: pruning rounds (density^(r/rounds) after round r).")


@contextlib.contextmanager
def linearized(module):
    """Inside the block every floating-point entry of ``module``'s state is its absolute value."""
    import torch

    with torch.no_grad():
        signs = {name: t.sign() for name, t in module.state_dict().items() if t.is_floating_point()}
        state = module.state_dict()
        for name in signs:
            state[name].abs_()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, sign in signs.items():
                state[name].mul_(sign)


def synaptic_flow(model, ids, input_shape) -> dict:
    """``|dR/dw * w|`` on the layers ``ids``, ``R`` the summed output of the linearized network on ones."""
    import torch

    from ..masking import dense_gradients

    weight = model.masked_layers[0].weight
    ones = torch.ones((1, *input_shape), dtype=weight.dtype, device=weight.device)
    with linearized(model.module):
        grads = dense_gradients(model, lambda: model.module(ones).sum().backward())
        layers = model.masked_layers
        return {k: (grads[k] * layers[k].weight.detach()).abs() for k in ids}


def exponential_keep(full: int, target: int, r: int, rounds: int) -> int:
    """Connections kept after round ``r`` of ``rounds``: ``full * (target / full)^(r / rounds)``, counted
    as the authors' code counts it (``full - int((1 - x) full)``: their rounding, which the iterated masks
    are sensitive to at low densities), exactly ``target`` after the last round."""
    if r >= rounds or target >= full:
        return target
    return max(target, full - int((1.0 - (target / full) ** (r / rounds)) * full))


@register
class SynFlow(PruneAtInit):
    name = "synflow"
    description = "SynFlow: data-free iterative pruning at initialisation, keeping the largest synaptic flow"
    settings_cls = SynFlowSettings
    needs_data = False

    def scores(self, model, batches, loss_fn):
        shape = self.input_shape(model, batches)
        ids = self.prunable(model)
        shapes, targets = model.layer_shapes, self.targets(model)
        full = {k: math.prod(shapes[k]) for k in ids}
        rounds, flops = self.config.rounds, 0.0
        for r in range(1, rounds + 1):
            flops += 6.0 * live_connections(model)  # one forward and backward of a single input
            if self.config.scope == "layerwise":
                keep = {k: exponential_keep(full[k], targets[k], r, rounds) for k in ids}
            else:
                keep = exponential_keep(sum(full.values()), sum(targets.values()), r, rounds)
            self.prune(model, synaptic_flow(model, ids, shape), keep)
        return None, flops, None, True

    @staticmethod
    def input_shape(model, batches) -> tuple[int, ...]:
        """One sample's shape: from the data when given, else the first layer's inputs (``nn.Linear``)."""
        if batches:
            return tuple(batches[0][0].shape[1:])
        first = model.masked_layers[0]
        if hasattr(first, "in_features"):
            return (int(first.in_features),)
        raise SparsetopoError("synflow needs the input's shape: give data (one batch of (inputs, targets); only "
                              "its shape is used), since the first layer is not an nn.Linear")
