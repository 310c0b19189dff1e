"""Running independent tasks: in-process, with joblib, or on a Dask cluster.

NNSTD pairs and training runs are independent tasks. ``map_tasks`` runs them
and yields results in input order, so callers never care where they ran.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from tqdm.auto import tqdm

from .errors import SparsetopoError

#: Seconds to wait for a Dask scheduler before giving up with a message.
CONNECT_TIMEOUT_S = 10

T = TypeVar("T")
R = TypeVar("R")

Backend = Literal["threads", "processes"]


def _progress(it, total: int, desc: str, enabled: bool, unit: str = "task"):
    """A bar over ``total`` items labelled ``desc`` and ``unit``; none at all for no items (an empty
    ``desc: 0it`` bar would say nothing)."""
    return tqdm(it, total=total, desc=desc, unit=unit, disable=not enabled or total == 0, leave=False,
                dynamic_ncols=True)


def map_tasks(fn: Callable[[T], R], items: Sequence[T], *, n_jobs: int | None = 1,
              backend: Backend = "threads", cluster: str | None = None, progress: bool = False,
              desc: str = "tasks", unit: str = "task") -> Iterator[R]:
    """Apply ``fn`` to each item, yielding results in the order of ``items``.

    Parameters
    ----------
    n_jobs : int or None
        Workers for joblib; ``1`` runs in this process, ``-1`` uses all cores.
    backend : {"threads", "processes"}
        joblib's preference. Threads suit work that releases the GIL (scipy's
        sparse products and assignment solvers); processes suit PyTorch training.
    cluster : str, optional
        A Dask scheduler address (``tcp://host:8786``) or ``local:N`` for a
        local cluster of N worker processes; overrides ``n_jobs``.
    progress, desc, unit : bool, str, str
        Show a progress bar labelled ``desc`` counting ``unit`` (none when there is nothing to do).
    """
    items = list(items)
    if cluster is not None:
        yield from _dask_map(fn, items, cluster, progress=progress, desc=desc, unit=unit)
        return
    if n_jobs == 1 or len(items) <= 1:
        for item in _progress(items, len(items), desc, progress, unit):
            yield fn(item)
        return
    from joblib import Parallel, delayed

    if backend not in ("threads", "processes"):
        raise SparsetopoError(f"backend must be 'threads' or 'processes', got {backend!r}")
    if backend == "processes":
        fn = _OrphanGuard(fn, os.getpid())
    par = Parallel(n_jobs=n_jobs, prefer=backend, return_as="generator")
    yield from _progress(par(delayed(fn)(item) for item in items), len(items), desc, progress, unit)


class _OrphanGuard:
    """Run ``fn`` in a worker process that ends itself when the process that started it is gone.

    joblib's workers otherwise outlive a killed parent (``kill``, a closed terminal) and go on
    training -- holding the run locks, so that the restarted experiment is refused. Ending the
    worker abruptly is safe: every training run resumes from its last checkpoint, as after SIGKILL.
    """

    def __init__(self, fn: Callable, parent_pid: int):
        self.fn, self.parent_pid = fn, parent_pid

    def __call__(self, item):
        _watch_parent(self.parent_pid)
        return self.fn(item)


_WATCHED: set[int] = set()


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    if parent_pid == os.getpid() or parent_pid in _WATCHED:  # run in the parent itself, or already watched
        return
    _WATCHED.add(parent_pid)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="sparsetopo-orphan-guard", daemon=True).start()


def parse_cluster(cluster: str) -> tuple[str, int | None]:
    """Split a ``--cluster`` value into ``("local", N)`` or ``("address", None)``."""
    if cluster.startswith("local:"):
        count = cluster.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise SparsetopoError(f"--cluster local:N needs a positive worker count N, got {cluster!r}")
        return "local", int(count)
    if "://" not in cluster and ":" not in cluster:
        raise SparsetopoError(
            f"--cluster must be a Dask scheduler address such as tcp://host:8786 or local:N, got {cluster!r}"
        )
    return cluster, None


@contextlib.contextmanager
def dask_client(cluster: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``--cluster`` (``local:N``: a local cluster of N single-threaded worker
    processes, closed afterwards; else a scheduler address), closed when the block ends.

    Local workers get one thread each, and dask's nannies set ``OMP_NUM_THREADS`` (and MKL's, OpenBLAS's)
    to 1 in them, so N workers use N cores; the NNSTD kernels are serial numba (no ``parallel=True``).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "--cluster needs dask.distributed: pip install 'sparsetopo[cluster]'"
        ) from exc
    address, n_workers = parse_cluster(cluster)
    local = None
    if address == "local":
        local = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                             dashboard_address=None)
        client = Client(local)
    else:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:  # distributed raises OSError("Timed out trying to connect ...")
            raise SparsetopoError(f"--cluster {address}: cannot reach the Dask scheduler within "
                                  f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__}); start it "
                                  "(dask scheduler) or check the address") from None
    try:
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


def _dask_map(fn: Callable[[Any], R], items: list, cluster: str, *, progress: bool,
              desc: str, unit: str = "task") -> Iterator[R]:
    from distributed import as_completed

    with dask_client(cluster) as client:
        futures = client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: dict[int, R] = {}
        bar = _progress(None, len(items), desc, progress, unit)
        for fut in as_completed(futures):
            results[index[fut.key]] = fut.result()
            bar.update(1)
        bar.close()
        for i in range(len(items)):
            yield results[i]
