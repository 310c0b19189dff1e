"""Time the candidate kernels of a truly sparse layer (median of --repeats runs).

Products: forward ``W x^T``, input gradient ``W^T gy^T`` and the weight gradient at the
connections only, for

* ``numba``  -- sparsetopo.truly_sparse.kernels (parallel numba, transposed activations);
* ``torch``  -- torch's CSR ops: ``torch.sparse.mm`` forward / input gradient (the transposed CSR's
  values gathered through ``perm`` each call, as the values change every step) and
  ``torch.sparse.sampled_addmm`` for the weight gradient;
* ``scipy``  -- SciPy CSR @ dense (single-threaded); its weight gradient gathers rows (no SDDMM in SciPy).

Shapes (epsilon 20, SET's Erdős–Rényi density): 3312x30000 and 30000x30000 at batch 2 (SET's
setting), 784x10000 and 10000x10000 at batch 128 (Fashion-MNIST). ``--w600k`` adds an estimate of
one W = 600,000 epoch's products (3312-600000-600000-600000-5, 68 steps of batch 2), timing each
real layer built with the O(connections) sampler, and one SET update of a 600000 x 600000 layer.

Re-run on a quiet machine::

    PYTHONPATH=src python benchmarks/truly_sparse_kernels.py [--w600k] [--repeats 5]
    NUMBA_THREADING_LAYER=omp PYTHONPATH=src python benchmarks/truly_sparse_kernels.py

The numba threading layer is process-wide: compare layers with separate runs (the
``NUMBA_THREADING_LAYER`` environment variable, as read by sparsetopo.truly_sparse.kernels).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as ss
import torch

from sparsetopo.truly_sparse import TrulySparseLinear, set_update
from sparsetopo.truly_sparse import kernels as K

SHAPES = [  # (n_in, n_out, batch)
    (3312, 30000, 2),
    (30000, 30000, 2),
    (784, 10000, 128),
    (10000, 10000, 128),
]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def median_times_interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, the functions taking turns within each repeat, so that
    a burst of load from other processes hits every candidate alike (this machine is shared)."""
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def candidates(layer: TrulySparseLinear, batch: int, names=("numba", "torch", "scipy"), seed: int = 0):
    """``{name: (forward, input_grad, weight_grad)}`` closures on random activations."""
    rng = np.random.default_rng(seed)
    n_out, n_in = layer.shape
    s = layer.structure()
    v = layer.values.detach().numpy()
    x = torch.from_numpy(rng.standard_normal((batch, n_in), dtype=np.float32))
    gy = torch.from_numpy(rng.standard_normal((batch, n_out), dtype=np.float32))
    # numba: the layer's own path (transposes included, as in the autograd function); the CSC
    # structure only where the layer would build it (batch > SCATTER_MAX_BATCH) or torch needs it.
    need_t = batch > K.SCATTER_MAX_BATCH or "torch" in names

    def spmm_t(gyt):
        if batch <= K.SCATTER_MAX_BATCH:
            return K.spmm_t_scatter(s.indptr, s.indices, v, gyt, n_in, s.parts)
        return K.spmm_t(*s.transposed()[:3], v, s.transposed()[3], gyt)

    out = {
        "numba": (
            lambda: K.spmm(s.indptr, s.indices, v, s.bounds, np.ascontiguousarray(x.numpy().T)),
            lambda: spmm_t(np.ascontiguousarray(gy.numpy().T)),
            lambda: K.sddmm(s.indptr, s.indices, s.bounds, np.ascontiguousarray(gy.numpy().T),
                            np.ascontiguousarray(x.numpy().T)),
        )
    }
    if not need_t:
        return out
    ipt, rows_t, perm_t, bounds_t = s.transposed()
    crow = torch.from_numpy(s.indptr)
    col = torch.from_numpy(s.indices.astype(np.int64))
    crow_t = torch.from_numpy(ipt)
    col_t = torch.from_numpy(rows_t.astype(np.int64))
    perm = torch.from_numpy(perm_t.astype(np.int64))
    vt = layer.values.detach()

    def t_fwd():
        w = torch.sparse_csr_tensor(crow, col, vt, (n_out, n_in))
        return torch.sparse.mm(w, x.t()).t()

    def t_gx():
        wt = torch.sparse_csr_tensor(crow_t, col_t, vt[perm], (n_in, n_out))
        return torch.sparse.mm(wt, gy.t()).t()

    def t_gw():
        pattern = torch.sparse_csr_tensor(crow, col, vt, (n_out, n_in))
        return torch.sparse.sampled_addmm(pattern, gy.t().contiguous(), x, beta=0.0).values()

    out["torch"] = (t_fwd, t_gx, t_gw)
    w = ss.csr_matrix((v, s.indices, s.indptr), shape=(n_out, n_in))
    rows = np.repeat(np.arange(n_out), np.diff(s.indptr))
    xn, gyn = x.numpy(), gy.numpy()
    out["scipy"] = (
        lambda: w @ xn.T,
        lambda: w.T @ gyn.T,
        lambda: np.einsum("kb,kb->k", gyn.T[rows], xn.T[s.indices]),
    )
    return out


def bench_shapes(repeats: int, names: list[str]) -> None:
    print("| layer (n_in x n_out) | batch | connections | kernel | forward ms | input grad ms | weight grad ms |")
    print("|---|---|---|---|---|---|---|")
    for n_in, n_out, batch in SHAPES:
        layer = TrulySparseLinear.random(n_in, n_out, epsilon=20, seed=0)
        cands = {name: fns for name, fns in candidates(layer, batch, names).items() if name in names}
        med = median_times_interleaved({(name, i): f for name, fns in cands.items() for i, f in enumerate(fns)},
                                       repeats)
        for name in cands:
            ms = [1e3 * med[(name, i)] for i in range(3)]
            print(f"| {n_in} x {n_out} | {batch} | {layer.n_connections:,} | {name} | "
                  + " | ".join(f"{m:.2f}" for m in ms) + " |", flush=True)
    print(f"\nnumba threading layer: {K.numba.threading_layer()}, threads {K.numba.get_num_threads()}, "
          f"torch threads {torch.get_num_threads()}")


def bench_w600k(repeats: int) -> None:
    sizes = [3312, 600000, 600000, 600000, 5]
    per_step = 0.0
    total = 0
    print("\nW = 600,000 (3312-600000-600000-600000-5, epsilon 20, batch 2): per layer, numba")
    print("| layer | connections | build s | forward ms | input grad ms | weight grad ms |")
    print("|---|---|---|---|---|---|")
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        t = time.perf_counter()
        layer = TrulySparseLinear.random(n_in, n_out, epsilon=20, seed=k)
        layer.structure()
        build = time.perf_counter() - t
        fwd, gx, gw = candidates(layer, 2, ("numba",))["numba"]
        ms = [1e3 * median_time(f, repeats) for f in (fwd, gx, gw)]
        per_step += ms[0] + ms[2] + (ms[1] if k > 0 else 0.0)  # no input gradient for the first layer
        total += layer.n_connections
        print(f"| {n_in} x {n_out} | {layer.n_connections:,} | {build:.1f} | "
              + " | ".join(f"{m:.1f}" for m in ms) + " |", flush=True)
        if k == 1:  # one SET update (zeta 0.3) of a 600000 x 600000 layer, with SGD momentum to move
            opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
            layer.values.grad = torch.zeros_like(layer.values)
            opt.step()
            t = time.perf_counter()
            stats = set_update(layer, opt, 0.3, np.random.default_rng(0))
            set_s = time.perf_counter() - t
            del opt
        del layer, fwd, gx, gw
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{total:,} connections; products per step {per_step:.0f} ms -> 68 steps {68 * per_step / 1e3:.1f} s "
          f"per epoch (products only); peak RSS of this process {rss:.0f} MB")
    print(f"one SET update of a 600000 x 600000 layer ({stats.dropped:,} moved, momentum moved too): {set_s:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--kernels", default="numba,torch,scipy")
    p.add_argument("--w600k", action="store_true", help="also estimate one W = 600,000 epoch's products")
    p.add_argument("--skip-shapes", action="store_true")
    a = p.parse_args()
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    if not a.skip_shapes:
        bench_shapes(a.repeats, a.kernels.split(","))
    if a.w600k:
        bench_w600k(a.repeats)


if __name__ == "__main__":
    main()
