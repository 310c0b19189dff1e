"""Reading untrusted ``.npz`` files: every failure is a :class:`FileFormatError` naming the file.

``numpy.load`` trusts a file's headers: a flipped byte raises ``zlib.error``,
a forged ``.npy`` header can declare a terabyte array, a text file reports
"pickled data". Here each member's header is read first and its declared size
checked against the bytes the archive really holds; only then is it loaded.
Sparse index arrays are checked (range, order, lengths) before scipy sees
them, since scipy's kernels trust them and crash the interpreter on bad ones.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from .errors import FileFormatError, SparsetopoError

__all__ = ["NpzArchive", "check_csr_arrays", "check_shape", "input_limit", "int_array", "read_npz",
           "read_scipy_sparse"]

#: Largest dimension accepted for a matrix read from a file (indices are int32 or int64).
MAX_DIM = 2**31 - 1
#: Inputs always accepted for a layer (see :func:`input_limit`): far more than any real network's.
UNBACKED_INPUTS = 2**22
#: Largest topology header (JSON) read.
MAX_HEADER_BYTES = 2**20
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, struct.error,
                UnicodeDecodeError, NotImplementedError, RuntimeError, MemoryError)


def _looks_like_text(path: Path) -> bool:
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return False
    return bool(head) and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in head) and b"\0" not in head


class NpzArchive:
    """An ``.npz`` archive whose members are read one at a time, each bounded before it is inflated.

    Opening reads the zip directory and each ``.npy`` member's header (shape and
    dtype), nothing more; :meth:`read` inflates one member, refusing first one
    that declares more entries than the caller allows. So a reader that knows
    from a small member how large the others may be (a layer's shape bounds its
    index arrays) never inflates a compressed bomb. Every failure is a
    :class:`FileFormatError` naming the file.

    Parameters
    ----------
    path : path-like
        The archive.
    what : str
        The expected content, for messages ("a sparsetopo topology").
    """

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = path = Path(path)
        self.what = what
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file ({what} expected)")
        if not path.is_file():
            raise FileFormatError(path, f"not a regular file ({what} expected)")
        if not zipfile.is_zipfile(path):
            kind = "a text file" if _looks_like_text(path) else "not an .npz archive"
            raise FileFormatError(path, f"{kind}; {what} (.npz) expected")
        #: name (without ``.npy``) -> (ZipInfo, shape, fortran order, dtype, header length)
        self._members: dict[str, tuple] = {}
        #: names of the members that are not ``.npy`` arrays
        self.others: list[str] = []
        self._zf = None
        with self._errors_named():
            self._zf = zipfile.ZipFile(path)
            try:
                for info in self._zf.infolist():
                    self._add(info)
            except BaseException:
                self.close()
                raise

    def _add(self, info: zipfile.ZipInfo) -> None:
        if not info.filename.endswith(".npy"):
            self.others.append(info.filename)
            return
        name = info.filename[:-4]
        if name in self._members:
            # zip allows two entries of one name; numpy would silently take one of them
            raise FileFormatError(self.path, f"holds two arrays named {name!r}; {self.what} expected")
        with self._zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise SparsetopoError(f"unsupported .npy version {version}")
            offset = f.tell()
        if dtype.hasobject:
            raise FileFormatError(self.path, f"array {name!r} holds Python objects (pickled data), "
                                             f"which are never loaded; {self.what} expected")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        available = info.file_size - offset
        if declared != available:
            raise FileFormatError(self.path, f"array {name!r} declares shape {shape} ({declared} bytes) but "
                                             f"holds {available} bytes: truncated or corrupt")
        self._members[name] = (info, shape, fortran, dtype, offset)

    # -------------------------------------------------------------- context
    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None

    def _errors_named(self):
        return _NamedErrors(self.path, self.what)

    # --------------------------------------------------------------- access
    @property
    def names(self) -> list[str]:
        """The array members, in archive order."""
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape ``name``'s header declares (nothing is inflated)."""
        return self._member(name)[1]

    def dtype(self, name: str) -> np.dtype:
        return self._member(name)[3]

    def size(self, name: str) -> int:
        """The number of entries ``name``'s header declares."""
        return int(np.prod(self.shape(name), dtype=object))

    def _member(self, name: str) -> tuple:
        if name not in self._members:
            raise FileFormatError(self.path, f"missing array {name!r}; {self.what} expected")
        return self._members[name]

    def read(self, name: str, *, max_items: int | None = None) -> np.ndarray:
        """The array ``name``; refused unread when it declares more than ``max_items`` entries."""
        info, shape, fortran, dtype, offset = self._member(name)
        n = self.size(name)
        if max_items is not None and n > max_items:
            raise FileFormatError(self.path, f"array {name!r} declares {n} entries, more than the {max_items} "
                                             f"its content allows: corrupt or forged")
        declared = n * dtype.itemsize
        with self._errors_named():
            with self._zf.open(info) as f:
                f.read(offset)
                # ZipExtFile inflates at most what is asked for: a member whose zip entry
                # understates its size cannot inflate past ``declared``.
                raw = f.read(declared)
        if len(raw) != declared:
            raise FileFormatError(self.path, f"array {name!r} is truncated")
        return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    def int_array(self, name: str, *, length: int | None = None, max_len: int | None = None,
                  where: str = "") -> np.ndarray:
        """``name`` as a 1-D int64 array, its dtype, rank and length checked before it is inflated.

        ``length``: the exact number of entries required; ``max_len``: the most allowed.
        """
        dtype, shape = self.dtype(name), self.shape(name)
        if dtype.kind not in "iu" or len(shape) != 1:
            raise FileFormatError(self.path, f"array {name!r} must be a 1-D integer array, got {dtype} of shape "
                                             f"{shape}")
        prefix = f"{where}: " if where else ""
        if length is not None and shape[0] != length:
            raise FileFormatError(self.path, f"{prefix}array {name!r} has {shape[0]} entries, needs {length}")
        if max_len is not None and shape[0] > max_len:
            raise FileFormatError(self.path, f"{prefix}array {name!r} has {shape[0]} entries, at most {max_len} "
                                             f"possible")
        return self.read(name).astype(np.int64)


class _NamedErrors:
    """Turn the errors a damaged archive raises while being read into a :class:`FileFormatError`."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None or issubclass(kind, FileFormatError) or not issubclass(kind, _READ_ERRORS):
            return False
        raise FileFormatError(self.path, f"corrupt .npz archive ({kind.__name__}: {exc}); "
                                         f"{self.what} expected") from None


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, each checked against its declared shape and dtype.

    ``what`` names the expected content for the messages ("a sparsetopo topology").
    Object arrays (pickles) are refused. Readers that can bound the members'
    sizes from a small one should use :class:`NpzArchive` instead.
    """
    with NpzArchive(path, what) as z:
        return {name: z.read(name) for name in z.names}


def int_array(path, arrays, key, what) -> np.ndarray:
    """``arrays[key]`` as a 1-D int64 array, or a :class:`FileFormatError` naming ``path`` and ``key``."""
    if key not in arrays:
        raise FileFormatError(path, f"missing array {key!r}; {what} expected")
    a = arrays[key]
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise FileFormatError(path, f"array {key!r} must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    return a.astype(np.int64)


def input_limit(n_connections: int) -> int:
    """The most inputs a layer read from a file may have beyond what its content backs.

    A layer's input count is only a header number when it is not the previous
    layer's output count (the first layer's inputs, a kernel, a flattened
    feature map): nothing in the file has that many entries, yet later work
    (matching, NNSTD) allocates per input. A forged number would make a 1 kB
    file cost gigabytes there, so it is bounded by the connections the file
    does hold: at most ``max(2**22, 64 * n_connections)``.
    """
    return max(UNBACKED_INPUTS, 64 * int(n_connections))


def check_shape(path, value, where: str) -> tuple[int, int]:
    a = np.asarray(value)
    if a.shape != (2,) or a.dtype.kind not in "iu" or (a < 0).any() or (a > MAX_DIM).any():
        raise FileFormatError(path, f"{where}: shape must be two integers in [0, {MAX_DIM}], got {value!r}")
    return int(a[0]), int(a[1])


def check_csr_arrays(path, where: str, indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int], *,
                     sorted_unique: bool = True) -> None:
    """Raise unless ``(indptr, indices)`` is a valid CSR structure of ``shape``."""
    n_rows, n_cols = shape
    if len(indptr) != n_rows + 1:
        raise FileFormatError(path, f"{where}: indptr has {len(indptr)} entries for {n_rows} rows (needs {n_rows + 1})")
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise FileFormatError(path, f"{where}: indptr must rise from 0 to the {len(indices)} indices")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_cols):
        raise FileFormatError(path, f"{where}: column indices must be in [0, {n_cols}), "
                                    f"got [{indices.min()}, {indices.max()}]")
    if sorted_unique and len(indices) > 1:
        row_start = np.zeros(len(indices), dtype=bool)
        row_start[indptr[:-1][np.diff(indptr) > 0]] = True
        if (np.diff(indices)[~row_start[1:]] <= 0).any():
            raise FileFormatError(path, f"{where}: column indices must be sorted and unique within each row")


def _check_indptr(path, where: str, indptr: np.ndarray, max_nnz: int) -> None:
    """``indptr`` rises from 0, by steps >= 0, to at most ``max_nnz``: checked before the indices are read."""
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] > max_nnz:
        raise FileFormatError(path, f"{where}: indptr must rise from 0 to the number of indices "
                                    f"(at most {max_nnz}), got {indptr[0]} .. {indptr[-1]}")


def _check_unbacked(path, where: str, dims: Sequence[tuple[str, int]], nnz: int) -> None:
    limit = input_limit(nnz)
    for label, n in dims:
        if n > limit:
            raise FileFormatError(path, f"{where}: {n} {label} for {nnz} stored entries is more than the {limit} "
                                        f"such a file can describe: corrupt or forged shape")


def read_scipy_sparse(path: str | os.PathLike, what: str) -> ss.csr_matrix:
    """A matrix written by ``scipy.sparse.save_npz`` (csr, csc or coo), validated, as CSR.

    Members are inflated smallest first, each only after the shape read so far
    bounds it: ``data`` at most rows x columns entries, ``indptr`` exactly the
    major dimension + 1, ``indices`` (or ``row``/``col``) as long as ``data``.
    A dimension no stored array spans (the columns of a csr matrix, both of a
    coo one) is bounded by :func:`input_limit` of the entries stored.
    """
    with NpzArchive(path, what) as z:
        fmt = z.read("format", max_items=16) if "format" in z else None
        fmt = bytes(fmt.tobytes()).decode(errors="replace").strip("\x00") if fmt is not None and \
            fmt.dtype.kind == "S" else (str(fmt.ravel()[0]) if fmt is not None and fmt.dtype.kind == "U" and
                                        fmt.size == 1 else None)
        if fmt not in ("csr", "csc", "coo"):
            raise FileFormatError(path, f"not a scipy.sparse matrix in csr, csc or coo format (format {fmt!r}); "
                                        f"{what} expected")
        if "shape" not in z or "data" not in z:
            raise FileFormatError(path, f"missing 'shape' or 'data' array; {what} expected")
        shape = check_shape(path, z.read("shape", max_items=16), "matrix")
        if len(z.shape("data")) != 1 or z.dtype("data").kind not in "biufc":
            raise FileFormatError(path, f"'data' must be a 1-D numeric array, got {z.dtype('data')} of shape "
                                        f"{z.shape('data')}")
        nnz = z.size("data")
        if nnz > shape[0] * shape[1]:
            raise FileFormatError(path, f"'data' has {nnz} entries, more than the {shape[0]} x {shape[1]} matrix holds")
        if fmt == "coo":
            _check_unbacked(path, "matrix", (("rows", shape[0]), ("columns", shape[1])), nnz)
            row = z.int_array("row", length=nnz, where="matrix")
            col = z.int_array("col", length=nnz, where="matrix")
        else:
            major = shape if fmt == "csr" else shape[::-1]
            _check_unbacked(path, "matrix", (("columns" if fmt == "csr" else "rows", major[1]),), nnz)
            indptr = z.int_array("indptr", length=major[0] + 1, where="matrix")
            _check_indptr(path, "matrix", indptr, nnz)
            indices = z.int_array("indices", length=nnz, where="matrix")
        data = z.read("data")
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        raise FileFormatError(path, "contains NaN or infinite weights")
    if fmt == "coo":
        for name, idx, n in (("row", row, shape[0]), ("col", col, shape[1])):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise FileFormatError(path, f"{name} indices must be in [0, {n}), got [{idx.min()}, {idx.max()}]")
        return ss.coo_matrix((data, (row, col)), shape=shape).tocsr()
    check_csr_arrays(path, "matrix", indptr, indices, major, sorted_unique=False)
    cls = ss.csr_matrix if fmt == "csr" else ss.csc_matrix
    m = cls((data, indices, indptr), shape=shape)
    m.sum_duplicates()
    return ss.csr_matrix(m)
