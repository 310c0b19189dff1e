"""RigL (Evci et al., 2020), per epoch: drop the smallest magnitudes, grow where the
dense gradient is largest. Per epoch the drop fraction follows RigL's cosine decay
over the epochs; under a step schedule (``update_every``) it is the schedule's."""

import math

from .base import DropGrowMethod, lowest, register


@register
class RigL(DropGrowMethod):
    name = "rigl"
    description = "RigL: drop the smallest magnitudes, grow where the dense gradient is largest"
    evolves_topology = True
    needs_dense_gradients = True
    engines = ("masked", "truly-sparse")

    def epoch_drop_fraction(self, epoch: int, total: int) -> float:
        return self.config.zeta * (1 + math.cos(math.pi * epoch / total)) / 2

    drop_fraction = epoch_drop_fraction  # the older name

    def drop(self, weight, mask, ctx):
        k = int(self.fraction(ctx) * int(mask.sum()))
        return lowest(weight.abs(), mask, k)

    def grow_score(self, layer_id, weight, mask, ctx):
        return ctx.dense_grads()[layer_id].abs()

    def truly_sparse_update(self, layer_id, layer, fraction, ctx):
        from ..errors import SparsetopoError
        from ..truly_sparse.evolve import rigl_update

        if ctx.captured is None:
            raise SparsetopoError("rigl on a truly sparse layer needs UpdateContext.captured (inputs and output "
                                  "gradients of a few batches)")
        x, gy = ctx.captured()[layer_id]
        stats = rigl_update(layer, ctx.optimizer, fraction, x, gy, regrow_init=self.config.regrow_init,
                            init_std=self.config.init_std, rng=ctx.regrowth_rng)
        return stats.dropped > 0
