"""SNIP (Lee et al., ICLR 2019): prune at initialisation by connection sensitivity.

The score of a connection is ``|dL/dw * w|`` (the gradient of the loss with respect to a
multiplicative mask at 1), summed over ``score_batches`` batches; the top-scored connections
are kept (globally by default, as in the paper), then the network trains on that topology.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from .base import register
from .pruning import PruneAtInit, batch_rows, live_connections, scope_option


@dataclass
class SNIPSettings:
    scope: str = scope_option("global")
    score_batches: int = option(1, min=1, help="snip, grasp: batches of the training split (of --batch-size; "
                                               "drawn with the topology seed) the scores are computed on.")


def loss_gradients(model, batches, loss_fn, *, scale: float = 1.0) -> list:
    """The summed gradient of ``loss_fn(model(x) / scale, y)`` over ``batches`` at every position of
    every masked layer's weight (masks ignored)."""
    from ..masking import dense_gradients

    def backward():
        for x, y in batches:
            loss_fn(model.module(x) / scale, y).backward()

    return dense_gradients(model, backward)


@register
class SNIP(PruneAtInit):
    name = "snip"
    description = "SNIP: prune at initialisation, keeping the largest |dL/dw * w| (connection sensitivity)"
    settings_cls = SNIPSettings

    def scores(self, model, batches, loss_fn):
        grads = loss_gradients(model, batches, loss_fn)
        layers = model.masked_layers
        scores = {k: (grads[k] * layers[k].weight.detach()).abs() for k in self.prunable(model)}
        flops = 6.0 * live_connections(model) * sum(batch_rows(b) for b in batches)  # one forward + backward
        return scores, flops, self.keep_counts(model, 0.0), True
