import numpy as np
import pytest
import scipy.sparse as ss

from sparsetopo.topology import Topology


def random_topology(rng, sizes, density, *, empty_rows=0):
    """A random topology; ``empty_rows`` hidden neurons get no inputs at all."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        m = rng.random((n_out, n_in)) < density
        if empty_rows:
            m[rng.choice(n_out, size=min(empty_rows, n_out), replace=False)] = False
        layers.append(m)
    return Topology.from_masks(layers)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def make_topology():
    return random_topology


def official_dir(path, masks, weights_rng=None):
    """Write masks in the layout of the NNSTD paper's code: (n_in + 1, n_out) with a bias row."""
    path.mkdir(parents=True, exist_ok=True)
    rng = weights_rng or np.random.default_rng(0)
    for k, m in enumerate(masks):
        m = np.asarray(m, dtype=bool)
        w = np.where(m.T, rng.normal(size=m.T.shape) + 3.0 * np.sign(rng.normal(size=m.T.shape)), 0.0)
        w = np.vstack([w, rng.normal(size=(1, m.shape[0]))])  # bias row
        ss.save_npz(path / f"weight_l{k}.npz", ss.csr_matrix(w))
    return path
