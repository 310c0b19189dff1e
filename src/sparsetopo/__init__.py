"""sparsetopo: the topology of sparse neural networks.

Importing the package is cheap and never imports torch; training code lives in
``sparsetopo.training`` and friends and imports torch itself.
"""

from .nnstd import NNSTDResult, nnstd, pairwise_nnstd
from .topology import Topology, erdos_renyi, perturb, perturbation_chain

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
