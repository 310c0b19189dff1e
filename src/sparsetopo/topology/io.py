"""Topology files: our ``.npz`` format (versions 1 to 3) and the NNSTD paper's official layout.

Everything here works on plain layer lists (boolean CSR matrices and kernels)
so that it needs no :class:`~sparsetopo.topology.Topology`; the class's
``save``/``load``/``from_official_npz`` delegate here and build the object.

Our format: one ``.npz`` holding a JSON ``header`` (``format``, ``version``,
``n_layers``, ``name``, ``metadata``) and per layer ``k`` the CSR arrays
``l{k}_indptr``, ``l{k}_indices``, ``l{k}_shape`` and, for a convolution,
``l{k}_kernel``; a graph topology (version 3) adds ``streams``, the flattened
``(read, write)`` stream of every layer. Every array is size-checked before it is inflated, since a
file may be damaged or forged.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as ss

from .._npz import MAX_HEADER_BYTES, NpzArchive, check_csr_arrays, check_shape, input_limit, read_scipy_sparse
from ..errors import FileFormatError, SparsetopoError
from ..fileio import atomic_write

__all__ = ["read_npz", "read_npz_layer", "read_official", "write_npz"]

_FORMAT = "sparsetopo.topology"
#: 1: fully connected layers; 2 adds ``l{k}_kernel`` for convolutions (written only when there are some,
#: so fully connected topologies stay readable by older versions); 3 adds ``streams`` for graphs (written only
#: for graphs: every chain keeps version 1 or 2 and stays readable by older versions).
_FORMAT_VERSION = 2
_GRAPH_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)
_OFFICIAL_RE = re.compile(r"^weight_l([0-9]+)\.npz$")  # ASCII digits: int() also reads other scripts'
#: The arrays of a saved topology's layer ``k``: ``l{k}_indptr`` and so on (``kernel`` only for convolutions).
_LAYER_MEMBER_RE = re.compile(r"^l([0-9]+)_(indptr|indices|shape|kernel)$")
#: Deepest nesting read in a topology header's metadata.
_MAX_HEADER_DEPTH = 64


def write_npz(path, layers: Sequence[ss.csr_matrix], kernels: Sequence[tuple[int, int] | None], *,
              name: str | None, metadata: Mapping[str, Any],
              streams: Sequence[tuple[int, int]] | None = None) -> Path:
    """Save layers to one ``.npz`` file at exactly ``path`` (written to a temporary name, then renamed)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for k, m in enumerate(layers):
        arrays[f"l{k}_indptr"] = np.asarray(m.indptr)
        arrays[f"l{k}_indices"] = np.asarray(m.indices)
        arrays[f"l{k}_shape"] = np.asarray(m.shape, dtype=np.int64)
        if kernels[k] is not None:
            arrays[f"l{k}_kernel"] = np.asarray(kernels[k], dtype=np.int64)
    version = _FORMAT_VERSION if any(k is not None for k in kernels) else 1
    if streams is not None:
        arrays["streams"] = np.asarray(streams, dtype=np.int64).reshape(-1)
        version = _GRAPH_VERSION
    header = {
        "format": _FORMAT,
        "version": version,
        "n_layers": len(layers),
        "name": name,
        "metadata": dict(metadata),
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    # np.savez_compressed's archive at zlib level 1: index arrays (sorted within rows, close to random)
    # compress as well at 1 as at numpy's default 6 (0.615 of their size either way, measured on a
    # 30,000-wide SET layer) in a sixth of the time, which dominated snapshots of large layers.
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, value in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return path


def read_npz(path: Path) -> tuple[list[ss.csr_matrix], list[tuple[int, int] | None], dict[str, Any]]:
    """``(layers, kernels, header)`` of a file written by :func:`write_npz`, validating everything read.

    A damaged or foreign file raises :class:`~sparsetopo.errors.FileFormatError`
    (``FILE: what is wrong``); the caller still checks that the layers chain.
    """
    what = "a sparsetopo topology"
    with NpzArchive(path, what) as z:
        if "header" not in z:
            raise FileFormatError(path, "not a sparsetopo topology file (no header); for the official NNSTD "
                                        "layout pass the directory holding weight_l<k>.npz instead")
        max_items = MAX_HEADER_BYTES // max(1, z.dtype("header").itemsize)
        header = _read_header(path, z.read("header", max_items=max_items))
        _check_members(path, z, header["n_layers"])
        layers, kernels = [], []
        for k in range(header["n_layers"]):
            layers.append(_read_layer(path, z, k))
            kern = None
            if f"l{k}_kernel" in z:
                kern = check_shape(path, z.int_array(f"l{k}_kernel", max_len=16), f"layer {k} kernel")
                if min(kern) < 1:
                    raise FileFormatError(path, f"layer {k}: kernel must be two integers >= 1, got {kern}")
            kernels.append(kern)
        header["streams"] = _read_streams(path, z, header)
    feeds = _feeding_outputs(layers, header["streams"])
    for k, m in enumerate(layers):
        # An input count that is not the feeding layer's output count is a bare header number.
        if feeds[k] is None or m.shape[1] != feeds[k]:
            limit = input_limit(m.nnz)
            if m.shape[1] > limit:
                raise FileFormatError(path, f"layer {k}: {m.shape[1]} inputs for {m.nnz} connections is more "
                                            f"than the {limit} a file can describe: corrupt or forged shape")
    return layers, kernels, header


def _feeding_outputs(layers: Sequence[ss.csr_matrix], streams) -> list[int | None]:
    """Per layer, the output count of the layer whose outputs it reads (``None`` for the network input)."""
    if streams is None:
        return [None] + [m.shape[0] for m in layers[:-1]]
    writer: dict[int, int] = {}
    found: list[int | None] = []
    for k, (r, w) in enumerate(streams):
        found.append(writer.get(r) if r else None)
        writer.setdefault(w, layers[k].shape[0])
    return found


def read_official(directory: Path) -> list[ss.csr_matrix]:
    """The ``(n_out, n_in)`` weight patterns of a directory in the official NNSTD layout.

    ``directory`` holds ``weight_l0.npz``, ``weight_l1.npz``, ... written by
    ``scipy.sparse.save_npz``; each matrix has shape ``(n_in + 1, n_out)``
    whose last row is the bias (dropped).
    """
    files = _official_files(directory)
    layers = []
    for k, path in enumerate(files):
        mat = read_scipy_sparse(path, "a weight matrix of the official NNSTD layout")
        if mat.shape[0] < 2 or mat.shape[1] < 1:
            raise FileFormatError(path, f"expected shape (n_in + 1, n_out) with a bias row and at least "
                                        f"one input and one output neuron, got {mat.shape}")
        if k and mat.shape[0] - 1 != layers[-1].shape[0]:
            raise FileFormatError(path, f"layer {k} does not chain with layer {k - 1}: its shape "
                                        f"{mat.shape} (n_in + 1, n_out) expects {mat.shape[0] - 1} inputs "
                                        f"but {files[k - 1].name} has {layers[-1].shape[0]} outputs")
        layers.append(mat[:-1, :].T)
    return layers


def _official_files(directory: Path) -> list[Path]:
    """``weight_l0.npz``, ``weight_l1.npz``, ... of ``directory``, in layer order: none missing, none twice."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory of weight_l<k>.npz files")
    found: dict[int, Path] = {}
    for p in sorted(directory.iterdir()):
        m = _OFFICIAL_RE.match(p.name)
        if m:
            k = int(m.group(1))
            if k in found:  # weight_l1.npz and weight_l01.npz: either could be meant
                raise SparsetopoError(f"{directory}: {found[k].name} and {p.name} are both layer {k}; "
                                      f"remove one of them")
            found[k] = p
    if not found:
        raise FileNotFoundError(
            f"{directory}: no weight_l0.npz, weight_l1.npz, ... files (the official NNSTD layout)"
        )
    # The first gap among 0..len(found): never a range up to a (possibly huge) file number.
    missing = next((k for k in range(len(found) + 1) if k not in found), None)
    if missing is not None and missing < max(found):
        raise SparsetopoError(
            f"{directory}: layer files are not consecutive: {directory / f'weight_l{missing}.npz'} "
            f"is missing but {found[max(found)].name} exists"
        )
    return [found[k] for k in range(len(found))]


def _check_members(path: Path, z: NpzArchive, n_layers: int) -> None:
    """Refuse arrays the header does not account for: more layers than ``n_layers``, or unknown names."""
    unknown = sorted(set(z.others) | {n for n in z.names
                                      if n not in ("header", "streams") and not _LAYER_MEMBER_RE.match(n)})
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise FileFormatError(path, f"unknown members {shown}; a sparsetopo topology holds only 'header' and "
                                    f"l<k>_indptr, l<k>_indices, l<k>_shape and l<k>_kernel arrays (and 'streams' "
                                    f"for a graph)")
    present = {int(m.group(1)) for m in map(_LAYER_MEMBER_RE.match, z.names) if m}
    if present and max(present) >= n_layers:
        raise FileFormatError(path, f"holds arrays of {len(present)} layers (l0 .. l{max(present)}) but its "
                                    f"header says n_layers {n_layers}: corrupt or edited")


def read_npz_layer(path: str | Path, k: int) -> ss.csr_matrix:
    """Layer ``k`` of a sparsetopo ``.npz`` topology, without inflating the other layers (a layer-pair
    task of a large matrix reads only its own); checked as :func:`read_npz` checks it."""
    path = Path(path)
    with NpzArchive(path, "a sparsetopo topology") as z:
        return _read_layer(path, z, k)


def _read_layer(path: Path, z: NpzArchive, k: int) -> ss.csr_matrix:
    """Layer ``k``, each array's size checked against what was read before it is inflated."""
    where = f"layer {k}"
    for part in ("indptr", "shape", "indices"):
        z.shape(f"l{k}_{part}")  # a missing array is named first, in this order
    shape = check_shape(path, z.int_array(f"l{k}_shape", max_len=16), where)
    if min(shape) < 1:
        raise FileFormatError(path, f"{where} has shape {shape} (n_out, n_in): a layer needs at least one "
                                    f"output and one input neuron")
    n_out, n_in = shape
    n_ptr = z.shape(f"l{k}_indptr")[0] if len(z.shape(f"l{k}_indptr")) == 1 else None
    if n_ptr is not None and n_ptr != n_out + 1:
        raise FileFormatError(path, f"{where}: indptr has {n_ptr} entries for {n_out} rows (needs {n_out + 1})")
    indptr = z.int_array(f"l{k}_indptr", length=n_out + 1)
    n_idx = z.shape(f"l{k}_indices")[0] if len(z.shape(f"l{k}_indices")) == 1 else None
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or (n_idx is not None and indptr[-1] != n_idx):
        raise FileFormatError(path, f"{where}: indptr must rise from 0 to the {n_idx} indices")
    indices = z.int_array(f"l{k}_indices", max_len=n_out * n_in)
    check_csr_arrays(path, where, indptr, indices, shape)
    return ss.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=shape)


_TOO_DEEP = object()


def _depth(value: Any) -> int:
    """How deeply JSON lists and objects nest in ``value`` (iteratively: the value may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            if d <= _MAX_HEADER_DEPTH:
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _read_header(path: Path, raw: np.ndarray) -> dict[str, Any]:
    """The JSON header of a saved topology, checked against its schema."""
    try:
        header = json.loads(raw.tobytes().decode())
    except (ValueError, UnicodeDecodeError):
        raise FileFormatError(path, "corrupt topology header (not JSON)") from None
    except RecursionError:  # json recurses per level; the depth check below catches what it survives
        header = _TOO_DEEP
    if header is _TOO_DEEP or _depth(header) > _MAX_HEADER_DEPTH:
        raise FileFormatError(path, f"topology header nests deeper than {_MAX_HEADER_DEPTH} levels: corrupt or forged")
    if not isinstance(header, dict):
        raise FileFormatError(path, f"topology header must be a JSON object, got {type(header).__name__}")
    if header.get("format") != _FORMAT or header.get("version") not in _READABLE_VERSIONS:
        raise FileFormatError(path, f"unsupported format {header.get('format')!r} version {header.get('version')!r} "
                                    f"(expected {_FORMAT!r} version {' or '.join(map(str, _READABLE_VERSIONS))})")
    n = header.get("n_layers")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10_000:
        raise FileFormatError(path, f"header field n_layers must be an integer in [1, 10000], got {n!r}")
    name, metadata = header.get("name"), header.get("metadata") or {}
    if name is not None and not isinstance(name, str):
        raise FileFormatError(path, f"header field name must be a string, got {name!r}")
    if not isinstance(metadata, dict):
        raise FileFormatError(path, f"header field metadata must be a JSON object, got {type(metadata).__name__}")
    return {"n_layers": n, "name": name, "metadata": metadata, "version": header["version"]}


def _read_streams(path: Path, z: NpzArchive, header: dict[str, Any]) -> list[tuple[int, int]] | None:
    """The ``(read, write)`` stream of each layer of a graph (version 3), ``None`` for a chain."""
    n = header["n_layers"]
    if header["version"] != _GRAPH_VERSION:
        if "streams" in z:
            raise FileFormatError(path, f"holds 'streams' but is version {header['version']}; "
                                        f"only version {_GRAPH_VERSION} files are graphs")
        return None
    if "streams" not in z:
        raise FileFormatError(path, f"version {_GRAPH_VERSION} (a graph) needs a 'streams' array; it has none")
    flat = z.int_array("streams", length=2 * n)
    if (flat < 0).any() or (flat > 2 * n).any():
        raise FileFormatError(path, f"streams must be stream numbers in [0, {2 * n}]: corrupt or forged")
    return [(int(flat[2 * k]), int(flat[2 * k + 1])) for k in range(n)]
