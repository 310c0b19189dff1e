"""GraSP (Wang et al., ICLR 2020): prune at initialisation preserving the gradient flow.

With ``g`` the gradient of the loss and ``H`` its Hessian (logits divided by a temperature,
200 in the authors' code), the score of a connection is ``-w * (H g)``; the *highest* scores
are removed (globally by default). ``H g`` is the gradient of ``g_stopped . g``, taken over the
prunable layers' weights, as in the authors' code and Tanaka et al.'s re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from .base import register
from .pruning import PruneAtInit, batch_rows, live_connections, scope_option
from .snip import loss_gradients


@dataclass
class GraSPSettings:
    scope: str = scope_option("global")
    score_batches: int = option(1, min=1, help="snip, grasp: batches of the training split (of --batch-size; "
                                               "drawn with the topology seed) the scores are computed on.")
    temperature: float = option(200.0, gt=0.0, help="grasp: the logits are divided by this (200 in the authors' "
                                                    "code).")


def hessian_gradient(model, ids, batches, loss_fn, temperature: float) -> dict:
    """``H g`` on the weights of layers ``ids``: ``g`` the (stopped) summed gradient of the tempered loss,
    ``H g`` the gradient of ``sum_batches g . grad(loss_batch)``."""
    import torch

    g = loss_gradients(model, batches, loss_fn, scale=temperature)
    stopped = [g[k] for k in ids]
    params = [model.masked_layers[k].weight for k in ids]
    hg = [torch.zeros_like(p) for p in params]
    module = model.module
    module.zero_grad(set_to_none=True)
    with model.dense_compute():
        for x, y in batches:
            grads = torch.autograd.grad(loss_fn(module(x) / temperature, y), params, create_graph=True)
            z = sum((s * gr).sum() for s, gr in zip(stopped, grads))
            for acc, part in zip(hg, torch.autograd.grad(z, params)):
                acc += part
    return dict(zip(ids, hg))


@register
class GraSP(PruneAtInit):
    name = "grasp"
    description = "GraSP: prune at initialisation, removing the largest -w * (Hg) (gradient signal preservation)"
    settings_cls = GraSPSettings

    def scores(self, model, batches, loss_fn):
        ids = self.prunable(model)
        hg = hessian_gradient(model, ids, batches, loss_fn, self.config.temperature)
        layers = model.masked_layers
        scores = {k: -layers[k].weight.detach() * hg[k] for k in ids}
        # A gradient pass (forward + backward), then a pass with a double backward (about twice that).
        flops = 18.0 * live_connections(model) * sum(batch_rows(b) for b in batches)
        return scores, flops, self.keep_counts(model, 0.0), False
