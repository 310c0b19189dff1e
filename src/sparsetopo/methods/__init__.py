"""Sparsity methods, selected by name from a registry.

Adding a method is one new module: subclass :class:`Method` (or
:class:`DropGrowMethod` and supply drop and grow scores), describe it with its
class attributes (``description``, ``needs_dense_gradients``, ...), give it a
``settings_cls`` dataclass for settings of its own, decorate it with
``@register``, and import the module here. Importing this package does not
import torch (``sparsify`` is loaded on first use).
"""
# ruff: noqa: I001  -- import order is the registry's (and --help's) order

from .base import (METHODS, DropGrowMethod, Method, UpdateContext, UpdateResult, check_method_settings, drop_and_grow,
                   get_method, method_class, methods_help, register, settings_class, unregister)
from . import dense  # noqa: F401
from . import static  # noqa: F401
from . import set_  # noqa: F401
from . import rigl  # noqa: F401
from . import lottery  # noqa: F401
from . import gmp  # noqa: F401
from . import magnitude  # noqa: F401
from . import snip  # noqa: F401
from . import grasp  # noqa: F401
from . import synflow  # noqa: F401
from .lottery import LotterySettings

__all__ = ["METHODS", "DropGrowMethod", "LotterySettings", "Method", "Sparsifier", "UpdateContext", "UpdateResult",
           "check_method_settings", "drop_and_grow", "get_method", "method_class", "methods_help", "register",
           "settings_class", "sparsify", "unregister"]


def __getattr__(name: str):
    # sparsify needs torch: load it when first asked for, so that configs (and --help) stay cheap.
    if name in ("Sparsifier", "sparsify"):
        import importlib

        module = importlib.import_module(f"{__name__}.sparsify")
        # Importing the submodule bound the name ``sparsify`` to it: bind the public names instead.
        globals().update(Sparsifier=module.Sparsifier, sparsify=module.sparsify)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
