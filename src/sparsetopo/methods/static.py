"""A fixed Erdős–Rényi topology, never changed: sparse training without structure optimization."""

import torch

from .base import DropGrowMethod, register


@register
class Static(DropGrowMethod):
    name = "static"

    def drop(self, weight, mask, ctx):
        return torch.zeros_like(mask, dtype=torch.bool)  # drop nothing, so nothing grows
