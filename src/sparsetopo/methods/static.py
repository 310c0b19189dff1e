"""A fixed Erdős–Rényi topology, never changed: sparse training without structure optimization."""

from .base import DropGrowMethod, register


@register
class Static(DropGrowMethod):
    name = "static"
    description = "a fixed random (Erdős–Rényi) sparse topology"
    engines = ("masked", "truly-sparse")

    def drop(self, weight, mask, ctx):
        import torch

        return torch.zeros_like(mask, dtype=torch.bool)  # drop nothing, so nothing grows

    def truly_sparse_update(self, layer_id, layer, fraction, ctx):
        return False  # the topology never changes
