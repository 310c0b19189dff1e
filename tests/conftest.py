import sys

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


@pytest.fixture(autouse=True)
def _fixed_torch_global_seed():
    """Tests that draw from torch's global generator get the same draws whatever ran before them
    (an unseeded draw once made a top-k test flake on a near-tie). The library never seeds globally;
    only the tests do, here."""
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def make_topology():
    return random_topology


def with_method(cfg, model):
    """The method ``cfg`` names, with its initial topology (seed 1) put on ``model``, as ``train`` does."""
    from sparsetopo.methods import METHODS

    method = METHODS[cfg.method](cfg)
    topo = method.initial_topology(model.layer_shapes, seed=1)
    if topo is not None:
        model.set_topology(topo)
    return cfg, method, model


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


# ------------------------------------------------------------- tiny data sets
def write_idx(path, array, *, gz=True):
    """Write an IDX file as Fashion-MNIST's (uint8 payload, big-endian dims)."""
    import gzip
    import struct

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def make_idx_dataset(directory, *, n_train=600, n_test=200, side=8, n_classes=4, seed=0, gz=True):
    """A small learnable image task: each class lights up its own block of pixels."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    protos = rng.integers(0, 256, size=(n_classes, side * side))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, n_classes, size=n)
        x = np.clip(protos[y] + rng.normal(0, 60, size=(n, side * side)), 0, 255)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", x.reshape(n, side, side), gz=gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", y, gz=gz)
    return directory


@pytest.fixture
def tiny_data(tmp_path):
    return make_idx_dataset(tmp_path / "data")
