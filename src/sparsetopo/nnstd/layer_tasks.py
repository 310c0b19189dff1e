"""NNSTD one layer pair at a time: the task unit of large pairwise matrices, locally or on Dask.

A *layer-pair task* is (pair, layer k): it needs the two networks' layer k and
the matching of layer k-1 for that pair (layer 0: identity) and returns the
layer's total NED and its matching. The tasks of one pair form a chain (each
matching re-indexes the next layer's inputs); tasks of different pairs are
independent. So with P pairs at most P tasks run at once, and a single pair of
huge networks still computes its layers one after the other: nothing but the
pair count spreads one matrix over workers.

Each finished layer is stored in the pair cache (:class:`.cache.PairCache`),
so a killed matrix resumes every pair from its last finished layer. Results
are those of :func:`~sparsetopo.nnstd.nnstd` to the last bit: the same layer
step (:func:`layer_step`) in the same direction.

Graph topologies (residual streams, :mod:`.graph`) match a stream's openers
jointly, so they are not split per layer: such a pair is one task, cached
when it is done.

On a cluster the client keeps the topologies (it read them to fingerprint
them); workers get only the two layers a task needs: read from the topology's
file on the worker when its path is known (nothing large goes through the
scheduler; every worker must see the file, and a layer that no longer matches
what the client read is refused), else scattered to the workers once per layer.
Results (a total and a matching, 8 bytes per neuron) come back to the client,
which writes the cache, so the cache directory need not be shared.

Memory of one task (a worker's peak RSS above its interpreter, ~150 MB without
torch; ``benchmarks/layer_task_memory.py``): the two layers as read (boolean
CSR), their int32 copies and B's re-indexed inputs, the int64 arrays the
``ssp`` kernel takes -- together about ``MEMORY_BYTES_PER_CONNECTION`` bytes per
connection of one layer -- and the kernel's 128 candidate edges per row,
``MEMORY_BYTES_PER_NEURON`` bytes per output neuron. Fitted on 5,000 x 40,
20,000 x 4 and 20,000 x 40 layers (inputs per neuron); see ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from ..errors import SparsetopoError
from ..topology import Topology
from .cache import LayerProgress, PairCache
from .core import layer_pair, nnstd
from .solvers import SOLVER_FUNCS, layer_solvers

__all__ = ["MEMORY_BYTES_PER_CONNECTION", "MEMORY_BYTES_PER_NEURON", "LayerFile", "PairJob", "layer_digest",
           "layer_step", "run_pair_jobs"]

#: A layer-pair task's peak memory with the ``ssp`` solver, per connection of one of the two layers and per
#: output neuron (measured, ``benchmarks/layer_task_memory.py``): about 60 * connections + 2,250 * neurons bytes.
MEMORY_BYTES_PER_CONNECTION = 60
MEMORY_BYTES_PER_NEURON = 2250


def layer_digest(m: ss.csr_matrix) -> str:
    """A hash of one layer's connectivity, to check that a worker read the layer the client meant."""
    h = hashlib.sha1(np.asarray(m.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(m.indptr, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(m.indices, dtype="<i4").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class LayerFile:
    """Layer ``k`` of the topology saved at ``path``, read where the task runs (a Dask worker).

    ``digest`` is :func:`layer_digest` of the layer the client read: a file changed since is refused.
    """

    path: str
    k: int
    digest: str

    def load(self) -> ss.csr_matrix:
        from ..topology.io import read_npz_layer

        path = Path(self.path)
        if path.is_dir():  # the official layout: one file per layer, but its reader takes the directory
            layer = Topology.read(path).layers[self.k]
        else:
            layer = Topology([read_npz_layer(path, self.k)]).layers[0]  # the canonical CSR a Topology holds
        if layer_digest(layer) != self.digest:
            raise SparsetopoError(f"{path}: layer {self.k} is not the one this matrix started from "
                                  "(the file changed, or a worker sees another file under this path)")
        return layer


def layer_step(la: ss.csr_matrix, lb: ss.csr_matrix, previous: np.ndarray | None, block: int,
               solver: str) -> tuple[float, np.ndarray]:
    """One layer of a pair: B's inputs renamed by ``previous`` (the matching of the layer before; ``None``:
    identity), then the assignment; ``(total NED, matching)`` exactly as :func:`~sparsetopo.nnstd.nnstd`.

    ``solver`` is a function name of ``SOLVER_FUNCS`` (``ssp``, ``dense``, ``sparse``, ``identity``).
    """
    return SOLVER_FUNCS[solver](*layer_pair(la, lb, previous, block))


def layer_task(src_a, src_b, previous, block: int, solver: str) -> tuple[float, np.ndarray]:
    """A Dask task: :func:`layer_step` on layers given as CSR or :class:`LayerFile`; ``previous`` is a
    matching, ``None`` or the previous task's ``(total, matching)``."""
    la = src_a.load() if isinstance(src_a, LayerFile) else src_a
    lb = src_b.load() if isinstance(src_b, LayerFile) else src_b
    if isinstance(previous, tuple):
        previous = previous[1]
    return layer_step(la, lb, previous, block, solver)


def graph_pair_task(a, b, *, match_outputs: bool, solver: str, reference: bool) -> np.ndarray:
    """A Dask task: a whole graph pair (topologies, or paths read on the worker)."""
    a, b = (Topology.read(t) if isinstance(t, str) else t for t in (a, b))
    return nnstd(a, b, match_outputs=match_outputs, solver=solver, reference=reference).per_layer


@dataclass
class PairJob:
    """One pair to compute, in the direction ``a -> b`` that its cache key ``key`` names.

    ``paths``: the files ``a`` and ``b`` were read from (``None``: not known), ``label`` names the pair in the
    progress bar, ``done`` is what ``cache`` (the cache for its layer count) already holds.
    """

    key: tuple[str, str]
    a: Topology
    b: Topology
    paths: tuple[str | None, str | None] = (None, None)
    label: str = ""
    done: LayerProgress = field(default_factory=lambda: LayerProgress([]))
    cache: PairCache = field(default_factory=lambda: PairCache(None, "", 0))

    @property
    def split(self) -> bool:
        """Whether the pair runs layer by layer (chains do; graphs are one task)."""
        return not self.a.is_graph

    def per_layer(self, totals: Sequence[float]) -> np.ndarray:
        """Layer distances from total NEDs: each divided by its layer's output count, as :func:`nnstd` does."""
        return np.array([t / m.shape[0] for t, m in zip(totals, self.a.layers)], dtype=np.float64)


class _Chains:
    """The bookkeeping shared by both back ends: cache writes, per-layer results, the progress bar."""

    def __init__(self, jobs: list[PairJob], bar, on_pair: Callable[[int, np.ndarray], None]):
        self.jobs, self.bar, self.on_pair = jobs, bar, on_pair
        self.totals = [list(j.done.totals) for j in jobs]
        self.digests = [j.done.digest for j in jobs]
        self.lock = threading.Lock()

    def layer_done(self, j: int, k: int, total: float, matching: np.ndarray) -> None:
        job = self.jobs[j]
        self.digests[j] = job.cache.put_layer(job.key, k, total, matching, self.digests[j])
        self.totals[j].append(total)
        with self.lock:
            self.bar.set_postfix_str(f"{job.label} layer {k + 1}/{len(job.a)}", refresh=False)
            self.bar.update(1)
        if len(self.totals[j]) == len(job.a):
            self.pair_done(j, job.per_layer(self.totals[j]))

    def pair_done(self, j: int, per_layer: np.ndarray) -> None:
        self.jobs[j].cache.put(self.jobs[j].key, per_layer)
        self.on_pair(j, per_layer)


def _run_local(chains: _Chains, solvers: Callable[[int], list[str]], graph_task, n_jobs: int | None) -> None:
    from ..parallel import map_tasks

    def run(j: int) -> None:
        job = chains.jobs[j]
        if not job.split:
            per_layer = graph_task(job.a, job.b)
            with chains.lock:
                chains.bar.update(len(job.a))
            chains.pair_done(j, per_layer)
            return
        start = len(job.done.totals)
        if start == len(job.a):  # every layer was cached, the pair entry was not (killed in between)
            chains.pair_done(j, job.per_layer(job.done.totals))
        previous, chosen = job.done.matching, solvers(len(job.a))
        for k in range(start, len(job.a)):
            total, previous = layer_step(job.a.layers[k], job.b.layers[k], previous, job.a.blocks[k], chosen[k])
            chains.layer_done(j, k, total, previous)

    for _ in map_tasks(run, list(range(len(chains.jobs))), n_jobs=n_jobs):
        pass


def _run_dask(chains: _Chains, solvers: Callable[[int], list[str]], cluster: str, graph_kw: dict) -> None:
    from distributed import as_completed

    from ..parallel import dask_client

    with dask_client(cluster) as client:
        sources: dict = {}

        def source(t: Topology, path: str | None, k: int | None):
            """Layer ``k`` (``None``: the whole graph topology) as a worker will get it."""
            ident = (t.fingerprint(), k)
            if ident not in sources:
                if path is not None:
                    sources[ident] = str(path) if k is None else LayerFile(str(path), k, layer_digest(t.layers[k]))
                else:
                    sources[ident] = client.scatter(t if k is None else t.layers[k], hash=False)
            return sources[ident]

        futures = {}
        for j, job in enumerate(chains.jobs):
            tag = f"{job.key[0][:8]}-{job.key[1][:8]}-{uuid.uuid4().hex[:6]}"
            if not job.split:
                fut = client.submit(graph_pair_task, source(job.a, job.paths[0], None),
                                    source(job.b, job.paths[1], None), key=f"nnstd-pair-{tag}", **graph_kw)
                futures[fut] = (j, None)
                continue
            start = len(job.done.totals)
            if start == len(job.a):
                chains.pair_done(j, job.per_layer(job.done.totals))
                continue
            previous, chosen = job.done.matching, solvers(len(job.a))
            if previous is not None:
                previous = client.scatter(previous, hash=False)
            for k in range(start, len(job.a)):
                previous = client.submit(layer_task, source(job.a, job.paths[0], k), source(job.b, job.paths[1], k),
                                         previous, job.a.blocks[k], chosen[k], key=f"nnstd-layer-{tag}-{k}")
                futures[previous] = (j, k)
        # A chain's layers finish in order (k + 1 reads k's result), so each arrives after the one before.
        for fut in as_completed(list(futures)):
            j, k = futures.pop(fut)
            if k is None:
                per_layer = fut.result()
                with chains.lock:
                    chains.bar.update(len(chains.jobs[j].a))
                chains.pair_done(j, per_layer)
            else:
                total, matching = fut.result()
                chains.layer_done(j, k, total, matching)
            del fut  # let the worker forget a result no later task needs


def run_pair_jobs(jobs: Sequence[PairJob], *, solver: str, match_outputs: bool, reference: bool,
                  n_jobs: int | None = 1, cluster: str | None = None, progress: bool = False,
                  desc: str = "NNSTD") -> list[np.ndarray]:
    """Per-layer NNSTD of each job, layer pair by layer pair, resuming from and filling its cache.

    Locally the pairs run on ``n_jobs`` joblib threads, each pair's layers in order; with ``cluster``
    (``local:N`` or a scheduler address, :func:`sparsetopo.parallel.dask_client`) every layer pair is
    one Dask task depending on the pair's previous layer. Progress counts layer pairs.
    """
    from ..parallel import _progress

    jobs = list(jobs)
    if not jobs:
        return []
    def solvers(n_layers: int) -> list[str]:  # pairs of different networks may differ in depth
        return layer_solvers(n_layers, solver, match_outputs)

    results: list[np.ndarray | None] = [None] * len(jobs)
    resumed = sum(len(j.done.totals) for j in jobs)
    todo = sum(len(j.a) for j in jobs) - resumed
    bar = _progress(None, todo, desc, progress, unit="layer pair")
    if progress and resumed:
        bar.write(f"{desc}: {resumed} of {resumed + todo} layer pairs from the cache")

    def on_pair(j: int, per_layer: np.ndarray) -> None:
        results[j] = per_layer

    chains = _Chains(jobs, bar, on_pair)
    graph_kw = dict(match_outputs=match_outputs, solver=solver, reference=reference)
    try:
        if cluster is not None:
            _run_dask(chains, solvers, cluster, graph_kw)
        else:
            _run_local(chains, solvers, lambda a, b: graph_pair_task(a, b, **graph_kw), n_jobs)
    finally:
        bar.close()
    return results  # type: ignore[return-value]
