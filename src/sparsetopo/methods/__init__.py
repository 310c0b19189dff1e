"""Sparsity methods, selected by name from a registry.

Adding a method is one new module: subclass :class:`Method` (or
:class:`DropGrowMethod` and supply drop and grow rules), decorate it with
``@register``, and import the module here.
"""
# ruff: noqa: I001  -- import order is the registry's (and --help's) order

from .base import METHODS, DropGrowMethod, Method, UpdateContext, drop_and_grow, get_method, register
from . import dense  # noqa: F401
from . import static  # noqa: F401
from . import set_  # noqa: F401
from . import rigl  # noqa: F401
from . import lottery  # noqa: F401
from .sparsify import Sparsifier, sparsify

__all__ = ["METHODS", "DropGrowMethod", "Method", "Sparsifier", "UpdateContext", "drop_and_grow", "get_method",
           "register", "sparsify"]
