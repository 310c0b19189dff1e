"""The :class:`Topology` class: an immutable stack of boolean CSR layer masks, checked to chain.

Reading and writing files is :mod:`.io`'s job, drawing random topologies
:mod:`.generators`'s; the methods here that do either only delegate, so that
this file is about what a topology *is*.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as ss

from ..errors import FileFormatError, SparsetopoError
from . import graph as _graph
from . import io as _io

__all__ = ["Topology"]


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


def _flat_layers(layers: Sequence[Any], kernels: Sequence[Any]):
    """Layers as canonical boolean CSR ``(n_out, n_in)`` matrices (convolutions flattened) and their kernels."""
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
    return csr, tuple(kerns)


def _chain_blocks(csr: Sequence[ss.csr_matrix], kerns: Sequence[tuple[int, int] | None]) -> tuple[int, ...]:
    """Per layer, how many flattened inputs make one input unit; refuses layers that do not chain.

    A convolution's unit is a ``kh * kw`` kernel; a fully connected layer after a
    convolution reads the flattened feature maps, one ``H * W`` block per channel.
    """
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
    return tuple(blocks)


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
    streams : sequence of (read, write) pairs, optional
        A graph instead of a chain (:mod:`.graph`): layer ``k`` reads stream
        ``read`` (0 is the network input) and adds into stream ``write``; layers
        writing one stream form a residual stream. ``None`` or ``(k, k + 1)`` for
        every layer is a chain, stored as before.

    Examples
    --------
    >>> import numpy as np
    >>> t = Topology.from_masks([np.eye(3), np.ones((2, 3))])
    >>> t.shapes
    ((3, 3), (2, 3))
    """

    __slots__ = ("_layers", "name", "_metadata", "_kernels", "_blocks", "_streams")

    def __init__(self, layers: Sequence[Any], *, name: str | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 kernels: Sequence[tuple[int, int] | None] | None = None,
                 streams: Sequence[Sequence[int]] | None = None):
        if len(layers) == 0:
            raise SparsetopoError("layers must hold at least one layer; got none")
        kernels = list(kernels) if kernels is not None else [None] * len(layers)
        if len(kernels) != len(layers):
            raise SparsetopoError(f"kernels must have one entry per layer ({len(layers)}); got {len(kernels)}")
        csr, kerns = _flat_layers(layers, kernels)
        if streams is not None:
            streams = _graph.check_streams(streams, len(csr))
            if _graph.is_chain(streams):
                streams = None  # a chain is stored, saved and compared as it always was
        blocks = _chain_blocks(csr, kerns) if streams is None else _graph.graph_blocks(csr, kerns, streams)
        self._streams = streams
        self._layers = csr
        self._kernels = kerns
        self._blocks = blocks
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
    def streams(self) -> tuple[tuple[int, int], ...] | None:
        """Per layer, the stream ``(read, write)`` it reads and adds into (:mod:`.graph`); ``None`` for a chain."""
        return self._streams

    @property
    def is_graph(self) -> bool:
        """Whether the layers form a graph (residual streams) rather than a chain."""
        return self._streams is not None

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
        return self.shapes == other.shapes and self._kernels == other._kernels \
            and self._streams == other._streams and all(
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
        t._streams = self._streams
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
        if self._streams is not None:  # chains hash as they always did
            h.update(b"streams" + np.asarray(self._streams, dtype=np.int64).tobytes())
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
        layers = _io.read_official(directory)
        try:
            return cls(layers, name=name or directory.name, metadata={"source": str(directory)})
        except ValueError as exc:
            raise SparsetopoError(f"{directory}: {exc}") from None

    @classmethod
    def from_torch(cls, module_or_state_dict: Any, *, name: str | None = None,
                   state_dict: Mapping[str, Any] | None = None) -> Topology:
        """Read the topology of a PyTorch model (Linear and Conv2d layers) or state dict.

        A model is traced with ``torch.fx`` (see :mod:`sparsetopo._torch_graph`):
        a chain of layers gives a chain; residual additions (ResNets, WideResNets,
        torchvision's ``resnet18``/``resnet50`` layout) give a graph topology whose
        streams say which layers add into one residual stream. A concatenation,
        attention or a product of tensors, tied weights (a layer called twice, two
        layers sharing one weight) or an operation between layers not known to keep
        every channel in its place (indexing, permute, ...) is refused, naming it. A
        grouped convolution is read as its full block-diagonal mask. A
        ``weight_mask`` buffer (ours, ``torch.nn.utils.prune``'s) decides a layer's
        connections when present, else its non-zero weights do.

        Parameters
        ----------
        module_or_state_dict : torch.nn.Module or mapping
            A model, or a state dict read in its order (2-D weights as Linear, 4-D as
            Conv2d layers; a chain only, since a state dict has no graph).
        name : str, optional
        state_dict : mapping, optional
            With a model: take the masks from this state dict (a plain checkpoint's
            exact zeros, or its ``*.weight_mask`` buffers) and only the structure from
            the model, e.g. ``Topology.from_torch(resnet50(), state_dict=torch.load(f))``.
        """
        import torch  # lazy: topology code must not need torch

        from .._torch_graph import layers_from_module, layers_from_state_dict

        streams = None
        if isinstance(module_or_state_dict, torch.nn.Module):
            found, streams = layers_from_module(module_or_state_dict, state_dict)
        elif isinstance(module_or_state_dict, Mapping):
            if state_dict is not None:
                raise SparsetopoError("from_torch: state_dict is for a model's masks; pass the model first")
            found = layers_from_state_dict(module_or_state_dict)
        else:
            raise TypeError(
                "from_torch expects a torch.nn.Module or a state dict, "
                f"got {type(module_or_state_dict).__name__}"
            )
        masks = [m.reshape(m.shape[0], -1) for m, _ in found]
        try:
            return cls(masks, name=name, metadata={"source": "torch"}, kernels=[k for _, k in found], streams=streams)
        except SparsetopoError as exc:
            if not isinstance(module_or_state_dict, Mapping):
                raise
            raise SparsetopoError(f"{exc}; a state dict has no graph, so its layers must form a chain: for a "
                                  "residual network pass the model and the state dict, "
                                  "Topology.from_torch(model, state_dict=state)") from None

    # --------------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Save to one ``.npz`` file at exactly ``path`` (written to a temporary name, then renamed)."""
        return _io.write_npz(path, self._layers, self._kernels, name=self.name, metadata=self._metadata,
                             streams=self._streams)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Topology:
        """Load a topology written by :meth:`save`, validating everything it reads.

        A damaged or foreign file raises :class:`~sparsetopo.errors.FileFormatError`
        (``FILE: what is wrong``), never a crash or a half-built topology.
        """
        path = Path(path)
        layers, kernels, header = _io.read_npz(path)
        try:
            return cls(layers, name=header["name"], metadata=header["metadata"], kernels=kernels,
                       streams=header.get("streams"))
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
