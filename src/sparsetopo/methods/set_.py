"""SET (Mocanu et al., 2018): drop the weights closest to zero, regrow at random."""

from .base import DropGrowMethod, lowest, register


def live_neurons(weight, mask, bias):
    """Which output neurons (rows of ``weight``) have a positive active incoming weight or a positive bias.

    Every layer's inputs are non-negative here (pixels in [0, 1], ReLU outputs), so a neuron without
    either never has a positive pre-activation: ReLU passes it no gradient, and a connection grown into
    it at zero stays zero. A sufficient test for "dead", not a necessary one (a neuron whose positive
    inputs are all dead is missed)."""
    rows = weight.shape[0]
    live = ((weight > 0) & mask).reshape(rows, -1).any(dim=1)
    return live if bias is None else live | (bias.detach() > 0)


@register
class SET(DropGrowMethod):
    """Remove the fraction ``zeta`` of the smallest positive weights and, separately,
    of the largest negative weights, and every connection whose weight is exactly
    zero; regrow as many at uniformly random empty positions.

    Zeros go too because SET's threshold band ``[largest negative, smallest
    positive]`` contains them (in its NumPy and Keras code alike). It matters
    when regrown connections start at zero: one that lands on a dead neuron
    never gets a gradient, and if zeros were kept such connections would pile
    up on dead neurons epoch after epoch instead of being moved.

    ``regrow_where="live"`` (not SET's rule: a counterfactual of issue 23) grows only into neurons
    :func:`live_neurons` finds, so no connection is grown where it could not be trained.
    """

    name = "set"
    description = "SET: drop the weights closest to zero, regrow at random"
    evolves_topology = True
    engines = ("masked", "truly-sparse")

    def drop(self, weight, mask, ctx):
        zeta = self.fraction(ctx)
        pos = mask & (weight > 0)
        neg = mask & (weight < 0)
        zero = mask & (weight == 0)
        return (lowest(weight, pos, int(zeta * int(pos.sum()))) | lowest(-weight, neg, int(zeta * int(neg.sum())))
                | zero)

    def grow_score(self, layer_id, weight, mask, ctx):
        import torch

        # The top-k of i.i.d. uniform scores is a uniformly random subset. Drawn on the CPU from the seeded
        # generator, then moved: the same regrowth on every device (a CPU generator cannot draw on CUDA).
        score = torch.rand(weight.shape, generator=ctx.regrowth).to(mask.device)
        if self.config.regrow_where == "live":
            # Scores in [0, 1) for live neurons, [-1, 0) for the others: those fill only what the live cannot.
            dead = ~live_neurons(weight, mask, ctx.model.masked_layers[layer_id].bias)
            score -= dead.to(score.dtype).view(-1, *([1] * (weight.dim() - 1)))
        return score

    def truly_sparse_update(self, layer_id, layer, fraction, ctx):
        from ..truly_sparse.evolve import set_update

        stats = set_update(layer, ctx.optimizer, fraction, self.regrowth_rng(ctx),
                           regrow_init=self.config.regrow_init, init_std=self.config.init_std)
        return stats.dropped > 0
