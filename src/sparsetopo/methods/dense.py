"""Fully connected training: the over-parameterized baseline."""

from .base import Method, register


@register
class Dense(Method):
    name = "dense"
    description = "fully connected (the dense baseline)"
    starts_sparse = False
    engine_note = "is the fully connected baseline (nothing to gain from storing connections one by one)"
