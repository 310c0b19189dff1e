"""Products of a truly sparse layer: parallel numba kernels over CSR index arrays.

A layer ``W`` (``n_out x n_in``) is stored as CSR ``(indptr, indices, values)``, rows = output
neurons. The three products are

* forward ``y^T = W x^T``                                        -- :func:`spmm`
* input gradient ``gx^T = W^T gy^T``                             -- :func:`spmm_t_scatter`
  (batches up to ``SCATTER_MAX_BATCH``: CSR rows scattered into ``SCATTER_PARTS`` private
  buffers) or :func:`spmm_t` (larger batches: a CSC copy of the structure, ``indptr_t``,
  ``rows_t`` and ``perm`` into ``values``, see :func:`transpose_structure`)
* weight gradient at the connections only,
  ``g[k] = sum_b gy[b, row(k)] x[b, col(k)]``                    -- :func:`sddmm`

All work on *transposed* activations, ``(n_features, B)`` C-contiguous, so a connection's inner
loop runs over the batch on contiguous memory (vectorised at batch 128; at batch 2, SET's setting,
specialised kernels keep the two sums in registers and the products are one pass over the
connections). Rows are split into chunks of equal connection counts (:func:`balanced_bounds`)
run in parallel (``prange``), so skewed degree distributions -- what SET's evolution produces --
keep both cores busy. Compiled ``parallel=True, nogil=True, cache=True``; ``fastmath=False``
except the batch dot product of :func:`sddmm` (``reassoc``/``contract`` only). Every output
element is summed by one thread in an order fixed by the code, so results do not depend on the
number of threads.

Why these kernels, with the numbers: ``benchmarks/truly_sparse_kernels.md`` (against torch's CSR
ops and SciPy). :func:`sample_rows` draws a uniformly random topology in O(connections) memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._numba_cache import choose_cache_dir

__all__ = ["SCATTER_MAX_BATCH", "SCATTER_PARTS", "balanced_bounds", "n_chunks", "sample_rows", "sddmm",
           "sort_rows", "spmm", "spmm_t", "spmm_t_scatter", "transpose_structure"]


choose_cache_dir(Path(__file__).parent, "the truly sparse kernels")

import numba  # noqa: E402  (after the cache directory is chosen)
from numba import prange  # noqa: E402

#: numba's OpenMP layer links another OpenMP runtime than torch's, and the two pools' spinning
#: threads fight over the cores when torch ops and these kernels alternate (measured on 2 cores:
#: a tiny 64-256-4 training step 10-14 ms with ``omp``, 1.8 ms with ``workqueue``; large kernels
#: 1.5-5x slower). So unless the user chose one (``NUMBA_THREADING_LAYER``) and while numba has
#: not started a layer yet, use ``workqueue``. It is not safe to call parallel numba kernels from
#: several Python threads at once with it: train one model per process (or set the variable).
if "NUMBA_THREADING_LAYER" not in os.environ:
    try:
        numba.threading_layer()  # raises while no layer has been started
    except ValueError:
        numba.config.THREADING_LAYER = "workqueue"

_jit = numba.njit(parallel=True, nogil=True, cache=True, fastmath=False)
_jit_serial = numba.njit(nogil=True, cache=True, fastmath=False)

#: Chunks per thread in the row partition: a few, so that an unlucky chunk does not stall a thread.
CHUNKS_PER_THREAD = 4


def n_chunks() -> int:
    """How many row chunks the kernels split a layer into (a few per numba thread)."""
    return CHUNKS_PER_THREAD * numba.get_num_threads()


def balanced_bounds(indptr: np.ndarray, chunks: int | None = None) -> np.ndarray:
    """Row boundaries (``chunks + 1`` of them, int64) cutting the rows into runs of about equal
    connection counts (a row is never split). O(chunks log n_rows)."""
    chunks = n_chunks() if chunks is None else int(chunks)
    n_rows = len(indptr) - 1
    nnz = int(indptr[-1])
    targets = np.linspace(0, nnz, chunks + 1)
    b = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    b[0], b[-1] = 0, n_rows
    return np.maximum.accumulate(np.minimum(b, n_rows))


# Inner loops run over per-row slices (``indices[a:b]``, ...): measured 3x faster than indexing
# the whole arrays with the running connection index inside ``prange`` (numba's parfor lowering).
@_jit
def _spmm(indptr, indices, values, bounds, xt, out):  # pragma: no cover - compiled
    bsz = xt.shape[1]
    for c in prange(len(bounds) - 1):
        acc = np.empty(bsz, dtype=out.dtype)
        for r in range(bounds[c], bounds[c + 1]):
            a, b = indptr[r], indptr[r + 1]
            idx, val = indices[a:b], values[a:b]
            acc[:] = 0
            for q in range(b - a):
                v = val[q]
                x = xt[idx[q]]
                for t in range(bsz):
                    acc[t] += v * x[t]
            out[r, :] = acc


@_jit
def _spmm2(indptr, indices, values, bounds, xt, out, zero):  # pragma: no cover - compiled
    # Batch 2 (SET's setting): the two sums stay in registers.
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            a, b = indptr[r], indptr[r + 1]
            idx, val = indices[a:b], values[a:b]
            a0 = zero
            a1 = zero
            for q in range(b - a):
                v = val[q]
                j = idx[q]
                a0 += v * xt[j, 0]
                a1 += v * xt[j, 1]
            out[r, 0] = a0
            out[r, 1] = a1


@_jit
def _spmm_perm(indptr, indices, perm, values, bounds, xt, out):  # pragma: no cover - compiled
    bsz = xt.shape[1]
    for c in prange(len(bounds) - 1):
        acc = np.empty(bsz, dtype=out.dtype)
        for r in range(bounds[c], bounds[c + 1]):
            a, b = indptr[r], indptr[r + 1]
            idx, pp = indices[a:b], perm[a:b]
            acc[:] = 0
            for q in range(b - a):
                v = values[pp[q]]
                x = xt[idx[q]]
                for t in range(bsz):
                    acc[t] += v * x[t]
            out[r, :] = acc


@_jit
def _scatter_t(indptr, indices, values, bounds, gyt, bufs):  # pragma: no cover - compiled
    # Part p adds W[rows of part p]^T gy into its own buffer bufs[p] (no write conflicts).
    bsz = gyt.shape[1]
    for p in prange(len(bounds) - 1):
        buf = bufs[p]
        buf[:] = 0
        for r in range(bounds[p], bounds[p + 1]):
            g = gyt[r]
            a, b = indptr[r], indptr[r + 1]
            idx, val = indices[a:b], values[a:b]
            for q in range(b - a):
                v = val[q]
                row = buf[idx[q]]
                for t in range(bsz):
                    row[t] += v * g[t]


@_jit
def _scatter_t2(indptr, indices, values, bounds, gyt, bufs):  # pragma: no cover - compiled
    for p in prange(len(bounds) - 1):
        buf = bufs[p]
        buf[:] = 0
        for r in range(bounds[p], bounds[p + 1]):
            g0 = gyt[r, 0]
            g1 = gyt[r, 1]
            a, b = indptr[r], indptr[r + 1]
            idx, val = indices[a:b], values[a:b]
            for q in range(b - a):
                v = val[q]
                j = idx[q]
                buf[j, 0] += v * g0
                buf[j, 1] += v * g1


@_jit
def _sum_parts(bufs, out):  # pragma: no cover - compiled
    n = out.shape[0]
    step = 1024
    for c in prange((n + step - 1) // step):
        for i in range(c * step, min(n, (c + 1) * step)):
            for t in range(out.shape[1]):
                s = bufs[0, i, t]
                for p in range(1, bufs.shape[0]):
                    s += bufs[p, i, t]
                out[i, t] = s


# The weight gradient's dot products over the batch vectorise only if the compiler may reassociate
# the sum: ``reassoc`` (and ``contract``: FMAs) only, no ``nnan``/``ninf``, so NaN and inf propagate
# as usual. The order is still fixed by the compiled code, so results do not depend on the
# thread count. Measured 4-9x faster at batch 128 than the strict-order loop.
_jit_reassoc = numba.njit(parallel=True, nogil=True, cache=True, fastmath={"reassoc", "contract"})


@_jit_reassoc
def _sddmm(indptr, indices, bounds, gyt, xt, out, zero):  # pragma: no cover - compiled
    bsz = xt.shape[1]
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            a, b = indptr[r], indptr[r + 1]
            idx, seg = indices[a:b], out[a:b]
            g = gyt[r]
            for q in range(b - a):
                x = xt[idx[q]]
                s = zero
                for t in range(bsz):
                    s += g[t] * x[t]
                seg[q] = s


@_jit
def _sddmm2(indptr, indices, bounds, gyt, xt, out):  # pragma: no cover - compiled
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            g0 = gyt[r, 0]
            g1 = gyt[r, 1]
            a, b = indptr[r], indptr[r + 1]
            idx, seg = indices[a:b], out[a:b]
            for q in range(b - a):
                j = idx[q]
                seg[q] = g0 * xt[j, 0] + g1 * xt[j, 1]


@_jit_serial
def _transpose(indptr, indices, n_cols, indptr_t, rows_t, perm):  # pragma: no cover - compiled
    # Counting sort by column, scanning rows in order: rows ascend within each column.
    for k in range(indices.shape[0]):
        indptr_t[indices[k] + 1] += 1
    for j in range(n_cols):
        indptr_t[j + 1] += indptr_t[j]
    fill = indptr_t[:-1].copy()
    for r in range(indptr.shape[0] - 1):
        for k in range(indptr[r], indptr[r + 1]):
            j = indices[k]
            p = fill[j]
            rows_t[p] = r
            perm[p] = k
            fill[j] = p + 1


@_jit_serial
def _check_rows(indptr, indices, n_cols):  # pragma: no cover - compiled
    """0 if every row's columns are strictly ascending and in [0, n_cols); else 1 (order) or 2 (range)."""
    for r in range(indptr.shape[0] - 1):
        prev = -1
        for k in range(indptr[r], indptr[r + 1]):
            j = indices[k]
            if j < 0 or j >= n_cols:
                return 2
            if j <= prev:
                return 1
            prev = j
    return 0


def check_rows(indptr: np.ndarray, indices: np.ndarray, n_cols: int) -> int:
    """Validate a CSR structure's columns in O(nnz) time and O(1) memory: 0 if every row is strictly
    ascending within ``[0, n_cols)``, 1 if some row is unsorted or repeats a column, 2 if out of range."""
    return int(_check_rows(indptr, indices, n_cols))


def _index_dtype(n: int):
    return np.int32 if n < 2**31 else np.int64


def transpose_structure(indptr: np.ndarray, indices: np.ndarray, n_cols: int):
    """CSC copy of a CSR structure in O(nnz + n_cols): ``(indptr_t, rows_t, perm)``.

    ``indptr_t`` is int64 (``n_cols + 1``); ``rows_t`` and ``perm`` are int32 when they fit.
    Entry ``p`` of column ``j`` (``indptr_t[j] <= p < indptr_t[j + 1]``) is the connection
    ``values[perm[p]]`` from input ``j`` to output ``rows_t[p]``.
    """
    nnz = len(indices)
    indptr_t = np.zeros(n_cols + 1, dtype=np.int64)
    rows_t = np.empty(nnz, dtype=_index_dtype(len(indptr) - 1))
    perm = np.empty(nnz, dtype=_index_dtype(nnz))
    _transpose(np.asarray(indptr, dtype=np.int64), indices, n_cols, indptr_t, rows_t, perm)
    return indptr_t, rows_t, perm


def _t(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim != 2 or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous 2-D array (features, batch), got {a.shape}")
    return a


def spmm(indptr, indices, values, bounds, xt, out=None) -> np.ndarray:
    """``out = W @ xt``: ``xt`` is ``(n_in, B)`` C-contiguous, ``out`` ``(n_out, B)``."""
    xt = _t(xt, "xt")
    if out is None:
        out = np.empty((len(indptr) - 1, xt.shape[1]), dtype=values.dtype)
    if xt.shape[1] == 2:
        _spmm2(indptr, indices, values, bounds, xt, out, out.dtype.type(0))
    else:
        _spmm(indptr, indices, values, bounds, xt, out)
    return out


def spmm_t(indptr_t, rows_t, perm, values, bounds_t, gyt, out=None) -> np.ndarray:
    """``out = W.T @ gyt`` through the CSC structure: ``gyt`` ``(n_out, B)``, ``out`` ``(n_in, B)``.

    Reads ``values`` through ``perm`` (random access): the choice for large batches, where one
    value read serves the whole batch; see :func:`spmm_t_scatter` for small ones.
    """
    gyt = _t(gyt, "gyt")
    if out is None:
        out = np.empty((len(indptr_t) - 1, gyt.shape[1]), dtype=values.dtype)
    _spmm_perm(indptr_t, rows_t, perm, values, bounds_t, gyt, out)
    return out


#: Row parts of the scatter form of the input gradient: a constant (not the thread count), so that
#: the partial sums and hence the results are the same whatever the number of threads.
SCATTER_PARTS = 4
#: Batches up to this size take the scatter form of the input gradient (no CSC structure needed).
SCATTER_MAX_BATCH = 8


def spmm_t_scatter(indptr, indices, values, gyt, n_in: int, bounds_parts=None, out=None) -> np.ndarray:
    """``out = W.T @ gyt`` from the CSR structure itself: ``SCATTER_PARTS`` row parts each add
    into a private ``(n_in, B)`` buffer, summed in a fixed order. Sequential reads of the
    connections and random updates of a small buffer, instead of :func:`spmm_t`'s random reads
    of ``values``: measured 3-5x faster at batch 2 on 24 M connections. Extra memory
    ``SCATTER_PARTS * n_in * B`` floats, so meant for small batches."""
    gyt = _t(gyt, "gyt")
    if bounds_parts is None:
        bounds_parts = balanced_bounds(indptr, SCATTER_PARTS)
    bufs = np.empty((len(bounds_parts) - 1, n_in, gyt.shape[1]), dtype=values.dtype)
    if gyt.shape[1] == 2:
        _scatter_t2(indptr, indices, values, bounds_parts, gyt, bufs)
    else:
        _scatter_t(indptr, indices, values, bounds_parts, gyt, bufs)
    if out is None:
        out = np.empty((n_in, gyt.shape[1]), dtype=values.dtype)
    _sum_parts(bufs, out)
    return out


def sddmm(indptr, indices, bounds, gyt, xt, out=None) -> np.ndarray:
    """``out[k] = gyt[row(k)] . xt[col(k)]`` for each connection ``k`` (CSR order)."""
    gyt, xt = _t(gyt, "gyt"), _t(xt, "xt")
    if out is None:
        out = np.empty(len(indices), dtype=xt.dtype)
    if xt.shape[1] == 2:
        _sddmm2(indptr, indices, bounds, gyt, xt, out)
    else:
        _sddmm(indptr, indices, bounds, gyt, xt, out, out.dtype.type(0))
    return out


# --------------------------------------------------------------------------- sampling
@_jit
def _sort_rows(indptr, cols, bounds, dup_counts):  # pragma: no cover - compiled
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            a, b = indptr[r], indptr[r + 1]
            if b - a > 1:
                cols[a:b] = np.sort(cols[a:b])
            d = 0
            for k in range(a + 1, b):
                if cols[k] == cols[k - 1]:
                    d += 1
            dup_counts[r] = d


def sort_rows(indptr: np.ndarray, cols: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """Sort each CSR row's column indices in place (in parallel); returns the duplicates per row."""
    bounds = balanced_bounds(indptr) if bounds is None else bounds
    dups = np.zeros(len(indptr) - 1, dtype=np.int64)
    _sort_rows(indptr, cols, bounds, dups)
    return dups


@_jit_serial
def _pairs_to_csr(rows, cols, indptr, out):  # pragma: no cover - compiled
    # Counting sort of (row, col) pairs by row; within a row the columns keep their order.
    for k in range(rows.shape[0]):
        indptr[rows[k] + 1] += 1
    for r in range(indptr.shape[0] - 1):
        indptr[r + 1] += indptr[r]
    fill = indptr[:-1].copy()
    for k in range(rows.shape[0]):
        r = rows[k]
        out[fill[r]] = cols[k]
        fill[r] += 1


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    n_out = len(indptr) - 1
    return np.repeat(np.arange(n_out, dtype=_index_dtype(n_out)), np.diff(indptr))


def sample_rows(n_out: int, n_in: int, count: int, rng: np.random.Generator):
    """``count`` distinct positions of an ``n_out x n_in`` matrix, uniformly at random, as CSR
    ``(indptr int64, indices int32/int64 sorted within rows)``, in O(count + n_out) memory.

    Cells are drawn i.i.d. uniformly as (row, column) pairs, bucketed by row (counting sort),
    sorted within rows in parallel; duplicates are removed and as many cells drawn again
    anywhere, until there are none. Every step treats all cells alike, so the result is a
    uniformly random ``count``-subset -- the distribution of
    :func:`sparsetopo.topology.erdos_renyi`'s layers, though not the same draw for a seed. That
    function builds and sorts int64 flat keys and a COO matrix: 1.65 GB peak and 21 s for one
    24 M-connection layer (600,000 x 600,000 at epsilon 20) on this project's 2-core machine;
    this needs the index arrays plus one int32 array of rows.
    """
    total = n_out * n_in
    if not 0 <= count <= total:
        raise ValueError(f"cannot place {count} connections in a {n_out} x {n_in} layer")
    idt = _index_dtype(n_in)
    indptr = np.zeros(n_out + 1, dtype=np.int64)
    if count > total // 2:
        # Crowded (small) layer: draw the cells without replacement directly.
        keys = np.sort(rng.choice(total, size=count, replace=False))
        rows, cols = np.divmod(keys, n_in)
        np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
        return indptr, cols.astype(idt)
    rows = rng.integers(0, n_out, size=count, dtype=_index_dtype(n_out))
    cols = rng.integers(0, n_in, size=count, dtype=idt)
    out = np.empty(count, dtype=idt)
    _pairs_to_csr(rows, cols, indptr, out)
    del rows, cols
    while True:
        dups = sort_rows(indptr, out)
        n_dup = int(dups.sum())
        if n_dup == 0:
            return indptr, out
        keep = np.ones(len(out), dtype=bool)
        keep[1:] = out[1:] != out[:-1]
        starts = indptr[:-1][np.diff(indptr) > 0]
        keep[starts] = True  # a row's first entry is never a duplicate of the previous row's last
        rows = np.concatenate([_row_ids(indptr)[keep], rng.integers(0, n_out, size=n_dup, dtype=_index_dtype(n_out))])
        cols = np.concatenate([out[keep], rng.integers(0, n_in, size=n_dup, dtype=idt)])
        indptr = np.zeros(n_out + 1, dtype=np.int64)
        _pairs_to_csr(rows, cols, indptr, out)
        del rows, cols
