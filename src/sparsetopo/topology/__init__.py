"""The topology of a sparse feed-forward network: which connections exist, layer by layer.

A :class:`Topology` is an immutable, ordered list of boolean CSR matrices.
Layer ``k`` has shape ``(n_out_k, n_in_k)`` and row ``i`` holds the input
neurons of output neuron ``i`` -- the same orientation as ``torch.nn.Linear``
weights, so masks move between the two without transposes.

This module deliberately imports neither torch nor matplotlib: computing
distances between saved topologies must stay light.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as ss

from .._npz import MAX_HEADER_BYTES, NpzArchive, check_csr_arrays, check_shape, input_limit, read_scipy_sparse
from .._util import SeedLike, as_generator, atomic_write
from ..errors import FileFormatError, SparsetopoError

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
]

_FORMAT = "sparsetopo.topology"
#: 1: fully connected layers; 2 adds ``l{k}_kernel`` for convolutions (written only when there are some,
#: so fully connected topologies stay readable by older versions).
_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_OFFICIAL_RE = re.compile(r"^weight_l([0-9]+)\.npz$")  # ASCII digits: int() also reads other scripts'
#: The arrays of a saved topology's layer ``k``: ``l{k}_indptr`` and so on (``kernel`` only for convolutions).
_LAYER_MEMBER_RE = re.compile(r"^l([0-9]+)_(indptr|indices|shape|kernel)$")
#: Deepest nesting read in a topology header's metadata.
_MAX_HEADER_DEPTH = 64


def _as_bool_csr(mask: Any, where: str) -> ss.csr_matrix:
    """Convert a dense or sparse 2-D array into a canonical boolean CSR matrix."""
    if ss.issparse(mask):
        m = ss.csr_matrix(mask)
        data = m.data
    else:
        arr = np.asarray(mask)
        if arr.ndim != 2:
            raise SparsetopoError(f"{where}: a layer mask must be 2-D (n_out, n_in), got shape {arr.shape}")
        data = arr
        m = None
    if data.dtype.kind in "fc" and not np.all(np.isfinite(data)):
        raise SparsetopoError(f"{where}: contains NaN or infinite values; a topology needs finite weights")
    if m is None:
        m = ss.csr_matrix(np.asarray(mask) != 0)
    else:
        m = m.copy()
        m.eliminate_zeros()
        m.sum_duplicates()
        m = ss.csr_matrix((np.ones(m.nnz, dtype=bool), m.indices, m.indptr), shape=m.shape)
    m.sort_indices()
    m.indices = m.indices.astype(np.int32, copy=False)
    m.indptr = m.indptr.astype(np.int32 if m.nnz < 2**31 else np.int64, copy=False)
    for arr in (m.data, m.indices, m.indptr):
        arr.flags.writeable = False
    return m


def _conv_as_2d(mask: Any, where: str):
    """A 4-D convolution mask ``(out, in, kh, kw)`` flattened to ``(out, in * kh * kw)``, and its kernel."""
    arr = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if arr.ndim != 4:
        raise SparsetopoError(f"{where}: a convolution mask must be 4-D (out, in, kh, kw), got shape {arr.shape}")
    out, cin, kh, kw = arr.shape
    return arr.reshape(out, cin * kh * kw), (int(kh), int(kw))


class Topology:
    """An immutable stack of boolean connectivity matrices (fully connected or convolutional layers).

    Parameters
    ----------
    layers : sequence of array-like or sparse matrices
        Layer ``k`` in ``(n_out_k, n_in_k)`` order; any non-zero entry is a
        connection. A 4-D array ``(out, in, kh, kw)`` is a convolution: a
        neuron is an output channel and its inputs are (input channel, kernel
        row, kernel column) positions; it is stored flattened to ``(out, in *
        kh * kw)``, channel-major. Consecutive layers must chain: a layer's
        input units (input neurons, or input channels of a convolution) are the
        previous layer's outputs. A fully connected layer after a convolution
        reads its flattened feature maps: its ``n_in`` is a multiple of the
        channels, one block of inputs per channel.
    name : str, optional
        A label used in tables and plots.
    metadata : mapping, optional
        JSON-serialisable facts about where the topology came from
        (run, epoch, method, ...). Saved alongside the layers.
    kernels : sequence of (kh, kw) or None, optional
        For layers given already flattened (2-D): which are convolutions.

    Examples
    --------
    >>> import numpy as np
    >>> t = Topology.from_masks([np.eye(3), np.ones((2, 3))])
    >>> t.shapes
    ((3, 3), (2, 3))
    """

    __slots__ = ("_layers", "name", "_metadata", "_kernels", "_blocks")

    def __init__(self, layers: Sequence[Any], *, name: str | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 kernels: Sequence[tuple[int, int] | None] | None = None):
        if len(layers) == 0:
            raise SparsetopoError("a Topology needs at least one layer, got none")
        kernels = list(kernels) if kernels is not None else [None] * len(layers)
        if len(kernels) != len(layers):
            raise SparsetopoError(f"kernels has {len(kernels)} entries for {len(layers)} layers")
        flat, kerns = [], []
        for k, (m, kern) in enumerate(zip(layers, kernels)):
            ndim = getattr(m, "ndim", None) if not ss.issparse(m) else 2
            if ndim == 4:
                m, kern = _conv_as_2d(m, f"layer {k}")
            flat.append(m)
            kerns.append(tuple(int(x) for x in kern) if kern else None)
        csr = tuple(_as_bool_csr(m, f"layer {k}") for k, m in enumerate(flat))
        for k, m in enumerate(csr):
            if min(m.shape) < 1:
                raise SparsetopoError(f"layer {k} has shape {m.shape} (n_out, n_in): a layer needs at least "
                                      f"one output and one input neuron")
        blocks = []
        for k, (m, kern) in enumerate(zip(csr, kerns)):
            n_in = m.shape[1]
            if kern is not None:
                block = kern[0] * kern[1]
                if block < 1 or n_in % block:
                    raise SparsetopoError(f"layer {k}: {n_in} inputs are not a whole number of {kern} kernels")
            elif k > 0 and kerns[k - 1] is not None and n_in != csr[k - 1].shape[0] \
                    and csr[k - 1].shape[0] and n_in % csr[k - 1].shape[0] == 0:
                block = n_in // csr[k - 1].shape[0]  # a flattened feature map per channel
            else:
                block = 1
            blocks.append(block)
            if k and n_in // block != csr[k - 1].shape[0]:
                prev = csr[k - 1].shape
                unit = f"input units ({n_in} inputs in blocks of {block})" if block > 1 else "inputs"
                raise SparsetopoError(
                    f"layer {k} does not chain with layer {k - 1}: layer {k} has shape "
                    f"{m.shape} (n_out, n_in) so it expects {n_in // block} {unit}, but layer {k - 1} "
                    f"has shape {prev} and produces {prev[0]} outputs"
                )
        self._layers = csr
        self._kernels = tuple(kerns)
        self._blocks = tuple(blocks)
        self.name = name
        self._metadata = dict(metadata or {})

    # ------------------------------------------------------------------ basics
    @property
    def layers(self) -> tuple[ss.csr_matrix, ...]:
        """The layers as read-only boolean CSR matrices, ``(n_out, n_in)`` each."""
        return self._layers

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the metadata dictionary."""
        return dict(self._metadata)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(m.shape for m in self._layers)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Unit counts from the input layer to the output layer (channels for convolutions)."""
        return (self._layers[0].shape[1] // self._blocks[0],) + tuple(m.shape[0] for m in self._layers)

    @property
    def kernels(self) -> tuple[tuple[int, int] | None, ...]:
        """Per layer, the convolution's kernel ``(kh, kw)``, or ``None`` for a fully connected layer."""
        return self._kernels

    @property
    def blocks(self) -> tuple[int, ...]:
        """Per layer, how many of its flattened inputs belong to one input unit (``kh * kw`` for a
        convolution, ``H * W`` for a fully connected layer after one, else 1): the matching of the
        previous layer moves these blocks together."""
        return self._blocks

    @property
    def is_convolutional(self) -> bool:
        return any(k is not None for k in self._kernels)

    def layer_mask(self, k: int) -> np.ndarray:
        """Layer ``k`` as a dense boolean array: ``(out, in, kh, kw)`` for a convolution."""
        m = self._layers[k].toarray()
        kern = self._kernels[k]
        return m if kern is None else m.reshape(m.shape[0], -1, kern[0], kern[1])

    @property
    def n_connections(self) -> tuple[int, ...]:
        return tuple(int(m.nnz) for m in self._layers)

    @property
    def densities(self) -> tuple[float, ...]:
        return tuple(m.nnz / (m.shape[0] * m.shape[1]) for m in self._layers)

    @property
    def density(self) -> float:
        """Overall density: connections over possible connections, all layers."""
        possible = sum(m.shape[0] * m.shape[1] for m in self._layers)
        return sum(self.n_connections) / possible

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, k: int) -> ss.csr_matrix:
        return self._layers[k]

    def __iter__(self):
        return iter(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self.shapes == other.shapes and self._kernels == other._kernels and all(
            np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            for a, b in zip(self._layers, other._layers)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking API; equality is by content

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        sizes = "-".join(map(str, self.sizes))
        return f"Topology({label}{sizes}, density={self.density:.4%})"

    def with_name(self, name: str | None, **metadata: Any) -> Topology:
        """Return a copy with another name and extra metadata (the layers are shared)."""
        t = Topology.__new__(Topology)
        t._layers = self._layers
        t._kernels = self._kernels
        t._blocks = self._blocks
        t.name = name
        t._metadata = {**self._metadata, **metadata}
        return t

    def fingerprint(self) -> str:
        """A hash of the connectivity alone (not the name or metadata); equal topologies share it."""
        import hashlib

        h = hashlib.sha1()
        for m, kern in zip(self._layers, self._kernels):
            if kern is not None:  # fully connected layers hash as they always did (cache keys stay valid)
                h.update(b"conv" + np.asarray(kern, dtype=np.int64).tobytes())
            h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
            h.update(np.asarray(m.indptr, dtype=np.int64).tobytes())
            h.update(np.asarray(m.indices, dtype=np.int64).tobytes())
        return h.hexdigest()[:20]

    def to_dense(self) -> list[np.ndarray]:
        """The layers as dense boolean arrays (for small networks and tests)."""
        return [m.toarray() for m in self._layers]

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_masks(cls, masks: Iterable[Any], *, name: str | None = None,
                   metadata: Mapping[str, Any] | None = None) -> Topology:
        """Build a topology from masks: ``(n_out, n_in)`` dense or sparse for fully connected layers,
        ``(out, in, kh, kw)`` arrays or tensors for convolutions."""
        return cls(list(masks), name=name, metadata=metadata)

    @classmethod
    def from_official_npz(cls, directory: str | os.PathLike, *, name: str | None = None) -> Topology:
        """Read the layout of the code published with the NNSTD paper.

        ``directory`` holds ``weight_l0.npz``, ``weight_l1.npz``, ... written by
        ``scipy.sparse.save_npz``; each matrix has shape ``(n_in + 1, n_out)``
        whose last row is the bias (dropped). Any non-zero weight is an edge.
        """
        directory = Path(directory)
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
        layers = []
        for k in range(len(found)):
            mat = read_scipy_sparse(found[k], "a weight matrix of the official NNSTD layout")
            if mat.shape[0] < 2 or mat.shape[1] < 1:
                raise FileFormatError(found[k], f"expected shape (n_in + 1, n_out) with a bias row and at least "
                                                f"one input and one output neuron, got {mat.shape}")
            if k and mat.shape[0] - 1 != layers[-1].shape[0]:
                raise FileFormatError(found[k], f"layer {k} does not chain with layer {k - 1}: its shape "
                                                f"{mat.shape} (n_in + 1, n_out) expects {mat.shape[0] - 1} inputs "
                                                f"but {found[k - 1].name} has {layers[-1].shape[0]} outputs")
            layers.append(mat[:-1, :].T)
        try:
            return cls(layers, name=name or directory.name, metadata={"source": str(directory)})
        except ValueError as exc:
            raise SparsetopoError(f"{directory}: {exc}") from None

    @classmethod
    def from_torch(cls, module_or_state_dict: Any, *, name: str | None = None) -> Topology:
        """Read the topology of a PyTorch model (Linear and Conv2d layers) or state dict.

        A model is traced with ``torch.fx`` and must be a chain (see
        :mod:`sparsetopo._torch_graph`): a residual connection, a concatenation,
        tied weights (a layer called twice, two layers sharing one weight) or an
        operation between layers not known to keep every neuron in its place
        (indexing, permute, ...) is refused, naming it. A grouped convolution is
        read as its full block-diagonal mask. A state dict is read in
        its order, 2-D weights as Linear and 4-D as Conv2d layers. A ``*_mask``
        buffer (ours, ``torch.nn.utils.prune``'s) decides a layer's connections
        when present, else its non-zero weights do.
        """
        import torch  # lazy: topology code must not need torch

        from .._torch_graph import layers_from_module, layers_from_state_dict

        if isinstance(module_or_state_dict, torch.nn.Module):
            found = layers_from_module(module_or_state_dict)
        elif isinstance(module_or_state_dict, Mapping):
            found = layers_from_state_dict(module_or_state_dict)
        else:
            raise TypeError(
                "from_torch expects a torch.nn.Module or a state dict, "
                f"got {type(module_or_state_dict).__name__}"
            )
        masks = [m.reshape(m.shape[0], -1) for m, _ in found]
        return cls(masks, name=name, metadata={"source": "torch"}, kernels=[k for _, k in found])

    # --------------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Save to one ``.npz`` file at exactly ``path`` (written to a temporary name, then renamed)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for k, m in enumerate(self._layers):
            arrays[f"l{k}_indptr"] = np.asarray(m.indptr)
            arrays[f"l{k}_indices"] = np.asarray(m.indices)
            arrays[f"l{k}_shape"] = np.asarray(m.shape, dtype=np.int64)
            if self._kernels[k] is not None:
                arrays[f"l{k}_kernel"] = np.asarray(self._kernels[k], dtype=np.int64)
        header = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION if self.is_convolutional else 1,
            "n_layers": len(self._layers),
            "name": self.name,
            "metadata": self._metadata,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with atomic_write(path) as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Topology:
        """Load a topology written by :meth:`save`, validating everything it reads.

        A damaged or foreign file raises :class:`~sparsetopo.errors.FileFormatError`
        (``FILE: what is wrong``), never a crash or a half-built topology.
        """
        path = Path(path)
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
        for k, m in enumerate(layers):
            # An input count that is not the previous layer's output count is a bare header number.
            if k == 0 or m.shape[1] != layers[k - 1].shape[0]:
                limit = input_limit(m.nnz)
                if m.shape[1] > limit:
                    raise FileFormatError(path, f"layer {k}: {m.shape[1]} inputs for {m.nnz} connections is more "
                                                f"than the {limit} a file can describe: corrupt or forged shape")
        try:
            return cls(layers, name=header["name"], metadata=header["metadata"], kernels=kernels)
        except ValueError as exc:
            raise FileFormatError(path, str(exc)) from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> Topology:
        """Load either a saved ``.npz`` topology or a directory in the official layout."""
        p = Path(path)
        if p.is_dir():
            return cls.from_official_npz(p)
        t = cls.load(p)
        return t if t.name else t.with_name(p.stem)


def _check_members(path: Path, z: NpzArchive, n_layers: int) -> None:
    """Refuse arrays the header does not account for: more layers than ``n_layers``, or unknown names."""
    unknown = sorted(set(z.others) | {n for n in z.names if n != "header" and not _LAYER_MEMBER_RE.match(n)})
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise FileFormatError(path, f"unknown members {shown}; a sparsetopo topology holds only 'header' and "
                                    f"l<k>_indptr, l<k>_indices, l<k>_shape and l<k>_kernel arrays")
    present = {int(m.group(1)) for m in map(_LAYER_MEMBER_RE.match, z.names) if m}
    if present and max(present) >= n_layers:
        raise FileFormatError(path, f"holds arrays of {len(present)} layers (l0 .. l{max(present)}) but its "
                                    f"header says n_layers {n_layers}: corrupt or edited")


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
    return {"n_layers": n, "name": name, "metadata": metadata}


# --------------------------------------------------------------- generators
def er_density(n_in: int, n_out: int, epsilon: float) -> float:
    """SET's Erdős–Rényi density ``epsilon (n_in + n_out) / (n_in n_out)``, capped at 1."""
    if epsilon <= 0:
        raise SparsetopoError(f"epsilon must be > 0, got {epsilon}")
    return min(1.0, epsilon * (n_in + n_out) / (n_in * n_out))


def epsilon_for_density(sizes: Sequence[int], density: float, *, dense_output: bool = True) -> float:
    """The epsilon whose Erdős–Rényi network has the given density over its sparse layers.

    Solved by bisection because the per-layer cap at 1 makes the map non-linear.
    """
    if not 0 < density <= 1:
        raise SparsetopoError(f"density must be in (0, 1], got {density}")
    pairs = list(zip(sizes[:-1], sizes[1:]))
    if dense_output:
        pairs = pairs[:-1]
    if not pairs:
        raise SparsetopoError("a network with only a dense output layer has no sparse layer to size")
    return _epsilon_for([(a + b) / (a * b) for a, b in pairs], [a * b for a, b in pairs], density)


#: How sparsity is spread over layers: ``erdos_renyi`` (SET: density proportional to
#: (n_in + n_out) / (n_in n_out), from ``epsilon`` or solved for a target density),
#: ``erk`` (RigL's Erdős–Rényi-Kernel: for a convolution (n_in + n_out + kh + kw) /
#: (n_in n_out kh kw), for a fully connected layer the same as erdos_renyi; always
#: solved for the target density) and ``uniform`` (one density for every sparse layer).
DISTRIBUTIONS = ("erdos_renyi", "erk", "uniform")


def _layer_scale(shape, distribution: str) -> float:
    """The density a layer gets per unit of epsilon: ``(n_in + n_out) / (n_in n_out)`` (+ kernel for ERK)."""
    n_out, n_in = shape[0], shape[1]
    if len(shape) == 4 and distribution == "erk":
        kh, kw = shape[2], shape[3]
        return (n_in + n_out + kh + kw) / (n_in * n_out * kh * kw)
    return (n_in + n_out) / (n_in * n_out)


def layer_densities(shapes: Sequence[tuple[int, ...]], sparse: Sequence[int], distribution: str = "erdos_renyi",
                    *, epsilon: float | None = None, density: float | None = None) -> list[float]:
    """Density of each layer (weight shape ``(n_out, n_in)`` or ``(out, in, kh, kw)``); layers not in
    ``sparse`` stay dense (1.0).

    ``erdos_renyi`` takes ``epsilon`` or ``density`` (the density over the sparse
    layers); ``erk`` and ``uniform`` take ``density``.
    """
    if distribution not in DISTRIBUTIONS:
        raise SparsetopoError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}")
    out = [1.0] * len(shapes)
    if not sparse:
        return out
    if distribution == "uniform" or (distribution == "erk" and density is None):
        if density is None or not 0 < density <= 1:
            raise SparsetopoError(f"distribution {distribution!r} needs density in (0, 1]; got {density!r}")
    if distribution == "uniform":
        for k in sparse:
            out[k] = float(density)
        return out
    scales = [_layer_scale(shapes[k], distribution) for k in sparse]
    numels = [int(np.prod(shapes[k])) for k in sparse]
    if density is not None:
        eps = _epsilon_for(scales, numels, density)
    elif epsilon is not None:
        if not epsilon > 0:
            raise SparsetopoError(f"epsilon must be > 0, got {epsilon}")
        eps = float(epsilon)
    else:
        raise SparsetopoError("give epsilon or density")
    for k, scale in zip(sparse, scales):
        out[k] = min(1.0, eps * scale)
    return out


def _epsilon_for(scales: Sequence[float], numels: Sequence[int], density: float) -> float:
    """The epsilon whose capped densities ``min(1, eps * scale)`` give ``density`` over all the weights.

    Solved by bisection because the per-layer cap at 1 makes the map non-linear.
    """
    if not 0 < density <= 1:
        raise SparsetopoError(f"density must be in (0, 1], got {density}")
    possible = sum(numels)

    def total(eps: float) -> float:
        return sum(min(1.0, eps * s) * n for s, n in zip(scales, numels)) / possible

    lo, hi = 0.0, 1.0
    while total(hi) < density and hi < 1e12:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid > 0 and total(mid) < density:
            lo = mid
        else:
            hi = mid
    return hi


def random_topology(shapes: Sequence[tuple[int, ...]], densities: Sequence[float], seed: SeedLike = None, *,
                    name: str | None = None) -> Topology:
    """Layers with ``round(density * size)`` connections each, placed uniformly at random.

    ``shapes`` are weight shapes: ``(n_out, n_in)`` or ``(out, in, kh, kw)``
    (convolutions keep their kernels).
    """
    rng = as_generator(seed)
    layers, kernels = [], []
    for shape, d in zip(shapes, densities):
        n_out, rest = int(shape[0]), int(np.prod(shape[1:]))
        count = int(round(d * n_out * rest))
        flat = _sample_positions(rng, n_out * rest, count)
        rows, cols = np.divmod(flat, rest)
        layers.append(ss.csr_matrix((np.ones(count, dtype=bool), (rows, cols)), shape=(n_out, rest)))
        kernels.append(tuple(shape[2:]) if len(shape) == 4 else None)
    return Topology(layers, name=name, kernels=kernels, metadata={"generator": "random",
                                                                   "densities": [float(d) for d in densities]})


def _sample_positions(rng: np.random.Generator, total: int, k: int,
                      exclude: np.ndarray | None = None) -> np.ndarray:
    """``k`` distinct flat positions in ``range(total)``, none in sorted ``exclude``.

    Rejection sampling in batches: the layers here are large and sparse, so
    enumerating the free cells would cost far more memory than drawing.
    """
    n_excl = 0 if exclude is None else len(exclude)
    free = total - n_excl
    if k > free:
        raise SparsetopoError(f"cannot place {k} connections in {free} free positions")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if total <= 4_000_000 or k > free // 4:
        # Small or crowded layer: enumerate the free cells, draw without replacement.
        free_mask = np.ones(total, dtype=bool)
        if n_excl:
            free_mask[exclude] = False
        cells = np.flatnonzero(free_mask)
        return np.sort(rng.choice(cells, size=k, replace=False))
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < k:
        need = k - len(chosen)
        draw = rng.integers(0, total, size=int(need * 1.2) + 16)
        if n_excl:
            pos = np.searchsorted(exclude, draw)
            pos[pos == n_excl] = 0
            draw = draw[exclude[pos] != draw]
        # keep first occurrences in draw order so the sample stays uniform
        merged = np.concatenate([chosen, draw])
        _, first = np.unique(merged, return_index=True)
        chosen = merged[np.sort(first)]
    return np.sort(chosen[:k])


def erdos_renyi(sizes: Sequence[int], epsilon: float | None = None, seed: SeedLike = None, *,
                density: float | None = None, dense_output: bool = True,
                name: str | None = None) -> Topology:
    """SET's Erdős–Rényi random topology.

    Layer ``k`` (``n_in -> n_out``) gets ``round(p_k n_in n_out)`` connections
    placed uniformly at random, with ``p_k = epsilon (n_in + n_out) / (n_in n_out)``
    capped at 1. Exactly that many are drawn (rather than one Bernoulli trial
    per cell) so that networks built from different seeds have equal counts.

    Parameters
    ----------
    sizes : sequence of int
        Neuron counts, input first, e.g. ``(784, 784, 784, 784, 10)``.
    epsilon : float, optional
        SET's sparsity parameter; exactly one of ``epsilon`` and ``density``.
    seed : int or numpy Generator
        The topology seed.
    density : float, optional
        Target overall density of the sparse layers; converted to an epsilon.
    dense_output : bool
        Make the last layer fully connected, as in the paper's networks.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise SparsetopoError(f"sizes must list at least two positive layer sizes, got {sizes}")
    if (epsilon is None) == (density is None):
        raise SparsetopoError("give exactly one of epsilon and density")
    if density is not None:
        epsilon = epsilon_for_density(sizes, density, dense_output=dense_output)
    assert epsilon is not None
    if epsilon <= 0:
        raise SparsetopoError(f"epsilon must be > 0, got {epsilon}")
    rng = as_generator(seed)
    layers = []
    n_layers = len(sizes) - 1
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        if dense_output and k == n_layers - 1:
            layers.append(ss.csr_matrix(np.ones((n_out, n_in), dtype=bool)))
            continue
        p = er_density(n_in, n_out, epsilon)
        count = int(round(p * n_in * n_out))
        flat = _sample_positions(rng, n_in * n_out, count)
        rows, cols = np.divmod(flat, n_in)
        layers.append(ss.csr_matrix((np.ones(count, dtype=bool), (rows, cols)), shape=(n_out, n_in)))
    return Topology(layers, name=name, metadata={"generator": "erdos_renyi", "epsilon": epsilon})


def perturb(topology: Topology, fraction: float, seed: SeedLike = None, *,
            name: str | None = None) -> Topology:
    """Move ``fraction`` of each layer's connections to random empty positions.

    ``round(fraction * nnz)`` connections per layer are removed and as many are
    placed in positions that were empty before the move, so the count per
    layer is preserved and exactly that many connections differ. A layer with
    fewer empty positions than that (a dense output layer) moves only as many
    as it has room for.
    """
    if not 0 <= fraction <= 1:
        raise SparsetopoError(f"fraction must be in [0, 1], got {fraction}")
    rng = as_generator(seed)
    layers = []
    for m in topology.layers:
        n_out, n_in = m.shape
        coo = m.tocoo()
        flat = np.sort(coo.row.astype(np.int64) * n_in + coo.col)
        n_move = min(int(round(fraction * len(flat))), n_in * n_out - len(flat))
        if n_move == 0:
            layers.append(m)
            continue
        keep = np.delete(flat, rng.choice(len(flat), size=n_move, replace=False))
        new = _sample_positions(rng, n_in * n_out, n_move, exclude=flat)
        merged = np.concatenate([keep, new])
        rows, cols = np.divmod(merged, n_in)
        layers.append(ss.csr_matrix((np.ones(len(merged), dtype=bool), (rows, cols)), shape=m.shape))
    meta = {**topology.metadata, "perturbed_fraction": fraction}
    return Topology(layers, name=name, metadata=meta, kernels=topology.kernels)



def perturbation_chain(base: Topology, n: int, fraction: float, seed: SeedLike = None, *,
                       prefix: str = "net") -> list[Topology]:
    """``base`` followed by ``n - 1`` topologies, each ``perturb``-ed from the previous one.

    The paper's evolution study starts 10 networks this way with ``fraction=0.01``.
    """
    if n < 1:
        raise SparsetopoError(f"a chain needs n >= 1 networks, got {n}")
    rng = as_generator(seed)
    chain = [base.with_name(f"{prefix}0", chain_index=0)]
    for i in range(1, n):
        chain.append(perturb(chain[-1], fraction, rng, name=f"{prefix}{i}").with_name(
            f"{prefix}{i}", chain_index=i))
    return chain
