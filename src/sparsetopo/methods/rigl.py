"""RigL (Evci et al., 2020), per epoch: drop the smallest magnitudes, grow where the
dense gradient is largest. The drop fraction follows RigL's cosine decay."""

import math

from .base import DropGrowMethod, lowest, register


@register
class RigL(DropGrowMethod):
    name = "rigl"

    def drop_fraction(self, epoch: int, total: int) -> float:
        return self.config.zeta * (1 + math.cos(math.pi * epoch / total)) / 2

    def drop(self, weight, mask, ctx):
        fraction = self.drop_fraction(ctx.epoch, ctx.total_epochs) if ctx.drop_fraction is None else ctx.drop_fraction
        k = int(fraction * int(mask.sum()))
        return lowest(weight.abs(), mask, k)

    def grow_score(self, layer_id, weight, mask, ctx):
        return ctx.dense_grads()[layer_id].abs()
