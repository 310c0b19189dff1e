"""The studies as runnable experiments: ``evolution``, ``sparse-vs-dense``, ``tickets``, ``width`` (the
paper's) and ``methods`` (issue 20)."""
# ruff: noqa: I001  -- import order is the registry's order

from .base import EXPERIMENTS, PRESETS, Context, make_config, run_experiment
from . import evolution  # noqa: F401
from . import sparse_vs_dense  # noqa: F401
from . import tickets  # noqa: F401
from . import width  # noqa: F401
from . import methods  # noqa: F401

__all__ = ["EXPERIMENTS", "PRESETS", "Context", "make_config", "run_experiment"]
