"""sparsetopo: the topology of sparse neural networks.

Importing the package is cheap and never imports torch; training code lives in
``sparsetopo.training`` and friends and imports torch itself.
The names below load on first use (PEP 562), so ``sparsetopo train`` does not pay for SciPy's
optimizers and the NNSTD solvers it never calls (0.3-0.7 s of start-up).
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "NNSTDResult",
    "Topology",
    "__version__",
    "erdos_renyi",
    "nnstd",
    "pairwise_nnstd",
    "perturb",
    "perturbation_chain",
]

_WHERE = {"NNSTDResult": "nnstd", "nnstd": "nnstd", "pairwise_nnstd": "nnstd", "Topology": "topology",
          "erdos_renyi": "topology", "perturb": "topology", "perturbation_chain": "topology"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'sparsetopo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
