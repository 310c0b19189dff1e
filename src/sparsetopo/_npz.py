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
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from .errors import FileFormatError, SparsetopoError

__all__ = ["check_csr_arrays", "check_shape", "int_array", "read_npz", "read_scipy_sparse"]

#: Largest dimension accepted for a matrix read from a file (indices are int32 or int64).
MAX_DIM = 2**31 - 1
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, struct.error,
                UnicodeDecodeError, NotImplementedError, RuntimeError, MemoryError)


def _looks_like_text(path: Path) -> bool:
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return False
    return bool(head) and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in head) and b"\0" not in head


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, each checked against its declared shape and dtype.

    ``what`` names the expected content for the messages ("a sparsetopo topology").
    Object arrays (pickles) are refused.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file ({what} expected)")
    if not path.is_file():
        raise FileFormatError(path, f"not a regular file ({what} expected)")
    if not zipfile.is_zipfile(path):
        kind = "a text file" if _looks_like_text(path) else "not an .npz archive"
        raise FileFormatError(path, f"{kind}; {what} (.npz) expected")
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version in ((2, 0), (3, 0)):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise SparsetopoError(f"unsupported .npy version {version}")
                    if dtype.hasobject:
                        raise FileFormatError(path, f"array {name!r} holds Python objects (pickled data), "
                                                    f"which are never loaded; {what} expected")
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    available = info.file_size - f.tell()
                    if declared != available:
                        raise FileFormatError(path, f"array {name!r} declares shape {shape} ({declared} bytes) but "
                                                    f"holds {available} bytes: truncated or corrupt")
                    raw = f.read(declared)
                if len(raw) != declared:
                    raise FileFormatError(path, f"array {name!r} is truncated")
                arr = np.frombuffer(raw, dtype=dtype)
                out[name] = arr.reshape(shape, order="F" if fortran else "C")
    except FileFormatError:
        raise
    except _READ_ERRORS as exc:
        raise FileFormatError(path, f"corrupt .npz archive ({type(exc).__name__}: {exc}); {what} expected") from None
    return out


def int_array(path, arrays, key, what) -> np.ndarray:
    """``arrays[key]`` as a 1-D int64 array, or a :class:`FileFormatError` naming ``path`` and ``key``."""
    if key not in arrays:
        raise FileFormatError(path, f"missing array {key!r}; {what} expected")
    a = arrays[key]
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise FileFormatError(path, f"array {key!r} must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    return a.astype(np.int64)


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


def read_scipy_sparse(path: str | os.PathLike, what: str) -> ss.csr_matrix:
    """A matrix written by ``scipy.sparse.save_npz`` (csr, csc or coo), validated, as CSR."""
    arrays = read_npz(path, what)
    fmt = arrays.get("format")
    fmt = bytes(fmt.tobytes()).decode(errors="replace").strip("\x00") if fmt is not None and fmt.dtype.kind == "S" \
        else (str(fmt[()]) if fmt is not None and fmt.dtype.kind == "U" else None)
    if fmt not in ("csr", "csc", "coo"):
        raise FileFormatError(path, f"not a scipy.sparse matrix in csr, csc or coo format (format {fmt!r}); "
                                    f"{what} expected")
    if "shape" not in arrays or "data" not in arrays:
        raise FileFormatError(path, f"missing 'shape' or 'data' array; {what} expected")
    shape = check_shape(path, arrays["shape"], "matrix")
    data = arrays["data"]
    if data.ndim != 1 or data.dtype.kind not in "biufc":
        raise FileFormatError(path, f"'data' must be a 1-D numeric array, got {data.dtype} of shape {data.shape}")
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        raise FileFormatError(path, "contains NaN or infinite weights")
    if fmt == "coo":
        row, col = int_array(path, arrays, "row", what), int_array(path, arrays, "col", what)
        if not (len(row) == len(col) == len(data)):
            raise FileFormatError(path, "row, col and data have different lengths")
        for name, idx, n in (("row", row, shape[0]), ("col", col, shape[1])):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise FileFormatError(path, f"{name} indices must be in [0, {n}), got [{idx.min()}, {idx.max()}]")
        return ss.coo_matrix((data, (row, col)), shape=shape).tocsr()
    indptr, indices = int_array(path, arrays, "indptr", what), int_array(path, arrays, "indices", what)
    if len(indices) != len(data):
        raise FileFormatError(path, f"indices ({len(indices)}) and data ({len(data)}) have different lengths")
    major = shape if fmt == "csr" else shape[::-1]
    check_csr_arrays(path, "matrix", indptr, indices, major, sorted_unique=False)
    cls = ss.csr_matrix if fmt == "csr" else ss.csc_matrix
    m = cls((data, indices, indptr), shape=shape)
    m.sum_duplicates()
    return ss.csr_matrix(m)
