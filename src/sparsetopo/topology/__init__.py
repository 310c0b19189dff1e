"""The topology of a sparse feed-forward network: which connections exist, layer by layer.

A :class:`Topology` is an immutable, ordered list of boolean CSR matrices.
Layer ``k`` has shape ``(n_out_k, n_in_k)`` and row ``i`` holds the input
neurons of output neuron ``i`` -- the same orientation as ``torch.nn.Linear``
weights, so masks move between the two without transposes.

One module per concern:

``core``        the :class:`Topology` class and the checks of its masks
``io``          our ``.npz`` format and the NNSTD paper's official layout
``densities``   how dense each layer is (``DISTRIBUTIONS``: Erdős–Rényi, ERK, uniform), and
                ``check_density``, the package's one check of a density
``generators``  random topologies and perturbations
``graph``       graph topologies (residual networks): the stream each layer reads and writes

This package deliberately imports neither torch nor matplotlib: computing
distances between saved topologies must stay light. (``Topology.from_torch``
imports torch when called.)
"""

from .core import Topology
from .densities import DISTRIBUTIONS, check_density, check_epsilon, epsilon_for_density, er_density, layer_densities
from .generators import erdos_renyi, perturb, perturbation_chain, random_topology

__all__ = [
    "Topology",
    "DISTRIBUTIONS",
    "erdos_renyi",
    "er_density",
    "layer_densities",
    "random_topology",
    "epsilon_for_density",
    "perturb",
    "perturbation_chain",
    "check_density",
    "check_epsilon",
]
