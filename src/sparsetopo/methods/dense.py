"""Fully connected training: the over-parameterized baseline."""

from .base import Method, register


@register
class Dense(Method):
    name = "dense"
    description = "fully connected (the dense baseline)"
    starts_sparse = False
