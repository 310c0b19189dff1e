"""A linear layer that stores only its connections.

:class:`TrulySparseLinear` keeps one float per existing connection (``values``,
CSR row-major order) instead of a dense ``n_out x n_in`` weight with a mask;
memory and time follow the number of connections. Nothing in it -- forward,
backward, optimizer state, drop-and-grow (:mod:`sparsetopo.truly_sparse.evolve`),
``state_dict`` or :meth:`TrulySparseLinear.to_csr` -- ever builds a dense
matrix of the layer's shape.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as ss
import torch
from torch import nn

from . import kernels as K

__all__ = ["INITS", "Structure", "TrulySparseLinear", "as_torch_generator"]

#: ``he``: He-uniform with each neuron's *actual* fan-in (``U(-sqrt(6/fan_in), +sqrt(6/fan_in))``),
#: bias ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` -- what ``MaskedLinear`` + ``set_topology(rescale=True)`` gives;
#: ``normal``: N(0, init_std^2) weights and zero bias, SET's own code.
INITS = ("he", "normal")


def as_torch_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A seed becomes a fresh ``torch.Generator``; a generator is used as is; ``None``: torch's global RNG."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(int(generator))


class Structure:
    """The index arrays the kernels use (NumPy views, read-only by convention), rebuilt on topology change.

    ``indptr``/``indices``: the CSR of the layer (rows = outputs); ``bounds``: row chunks of equal
    connection counts (the parallel split); ``parts``: the ``SCATTER_PARTS`` row parts of the
    scatter form of the input gradient. :meth:`transposed` gives the CSC structure
    ``(indptr_t, rows_t, perm, bounds_t)`` (``perm[p]``: the position in ``values`` of CSC entry
    ``p``), built on first use -- only batches above ``SCATTER_MAX_BATCH`` need it, so SET-style
    batch-2 training never holds it (2 x 4 bytes per connection saved).
    """

    __slots__ = ("indptr", "indices", "n_in", "bounds", "parts", "_t")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n_in: int):
        self.indptr = indptr
        self.indices = indices
        self.n_in = int(n_in)
        self.bounds = K.balanced_bounds(indptr)
        self.parts = K.balanced_bounds(indptr, K.SCATTER_PARTS)
        self._t: tuple | None = None

    def transposed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._t is None:
            ipt, rows_t, perm = K.transpose_structure(self.indptr, self.indices, self.n_in)
            self._t = (ipt, rows_t, perm, K.balanced_bounds(ipt))
        return self._t


def _build_structure(indptr: torch.Tensor, indices: torch.Tensor, n_in: int) -> Structure:
    return Structure(indptr.numpy(), indices.numpy(), n_in)


class _TrulySparseFunction(torch.autograd.Function):
    """``y = x W^T + b`` with ``W`` given by ``(structure, values)``; gradients for ``x``, ``values`` and ``b``."""

    @staticmethod
    def forward(ctx, x, values, bias, structure: Structure):
        xt = np.ascontiguousarray(x.detach().numpy().T)  # (n_in, B)
        v = values.detach().numpy()
        yt = K.spmm(structure.indptr, structure.indices, v, structure.bounds, xt)  # (n_out, B)
        y = torch.from_numpy(yt).t()
        y = y + bias if bias is not None else y.contiguous()
        ctx.save_for_backward(values)
        ctx.xt = xt
        ctx.structure = structure
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        (values,) = ctx.saved_tensors
        s: Structure = ctx.structure
        gyt = np.ascontiguousarray(gy.detach().numpy().T)  # (n_out, B)
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            v = values.detach().numpy()
            if gyt.shape[1] <= K.SCATTER_MAX_BATCH:
                gxt = K.spmm_t_scatter(s.indptr, s.indices, v, gyt, s.n_in, s.parts)
            else:
                ipt, rows_t, perm, bounds_t = s.transposed()
                gxt = K.spmm_t(ipt, rows_t, perm, v, bounds_t, gyt)
            gx = torch.from_numpy(gxt).t()
        if ctx.needs_input_grad[1]:
            gv = torch.from_numpy(K.sddmm(s.indptr, s.indices, s.bounds, gyt, ctx.xt))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gx, gv, gb, None


@dataclass
class Capture:
    """Inputs and output gradients recorded by :meth:`TrulySparseLinear.capture` (RigL's grow criterion)."""

    inputs: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor | None] = field(default_factory=list)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, gy)`` of every recorded batch, concatenated: ``gy^T x`` is the dense weight gradient."""
        if not self.inputs or len(self.inputs) != len(self.grads):
            raise RuntimeError("nothing captured: run forward and backward inside `with layer.capture():`")
        if any(g is None for g in self.grads):
            raise RuntimeError("a captured batch has no gradient yet: call backward inside the block")
        return torch.cat(self.inputs), torch.cat(self.grads)


class TrulySparseLinear(nn.Module):
    """A linear layer holding only its connections' weights.

    Parameters
    ----------
    in_features, out_features : int
    indptr, indices : array-like
        The connections as CSR of the ``(out_features, in_features)`` matrix: row ``i``
        (output neuron) reads inputs ``indices[indptr[i]:indptr[i+1]]``, sorted ascending and
        distinct within a row.
    bias : bool
    init : {"he", "normal"}
        See :data:`INITS`; ``init_std`` is the standard deviation of ``normal``.
    generator : torch.Generator, int or None
        Where the initial weights come from (an int seeds a fresh generator).
    values : array-like, optional
        Initial weights, one per connection in CSR order (instead of ``init``).
    dtype : torch.dtype
        ``torch.float32`` (default) or ``torch.float64``.

    Attributes
    ----------
    values : nn.Parameter
        1-D, one weight per connection (CSR order). Any torch optimizer works on it
        (SGD with momentum / weight decay, Adam, ...): its state is O(connections).
    bias : nn.Parameter or None
        ``(out_features,)``.
    indptr, indices : buffers
        int64 ``(out_features + 1,)`` and int32 (int64 from 2^31 inputs) ``(n_connections,)``;
        in the ``state_dict``. The transposed structure the backward pass needs is a cache
        rebuilt after each topology change, not part of the state.

    Notes
    -----
    The input is ``(B, in_features)`` (or ``(..., in_features)``), float32/float64, on the CPU.
    Change the topology only through :meth:`set_structure` (or the functions of
    :mod:`sparsetopo.truly_sparse.evolve`), which keep every array consistent.
    """

    #: Marks a truly sparse layer for the methods (:meth:`sparsetopo.methods.DropGrowMethod.after_epoch`)
    #: without their importing this module.
    truly_sparse = True

    def __init__(self, in_features: int, out_features: int, indptr: Any, indices: Any, *, bias: bool = True,
                 init: str = "he", init_std: float = 0.1, generator: torch.Generator | int | None = None,
                 values: Any = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.init = init
        self.init_std = float(init_std)
        ip, ix = self._check_structure(indptr, indices)
        self.register_buffer("indptr", torch.from_numpy(ip))
        self.register_buffer("indices", torch.from_numpy(ix))
        self.values = nn.Parameter(torch.empty(len(ix), dtype=dtype))
        self.bias = nn.Parameter(torch.empty(self.out_features, dtype=dtype)) if bias else None
        self._structure: Structure | None = None
        self._structure_key: tuple | None = None
        self._capture: Capture | None = None
        self.reset_parameters(generator)
        if values is not None:
            v = torch.as_tensor(np.asarray(values), dtype=dtype).reshape(-1)
            if len(v) != len(ix):
                raise ValueError(f"values has {len(v)} entries for {len(ix)} connections")
            with torch.no_grad():
                self.values.copy_(v)

    # ------------------------------------------------------------ construction
    def _check_structure(self, indptr: Any, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        # Own copies: the buffers must not alias arrays the caller may change.
        ip = np.array(indptr, dtype=np.int64, copy=True).reshape(-1)
        idt = np.int32 if self.in_features < 2**31 else np.int64
        ix = np.array(indices, dtype=idt, copy=True).reshape(-1)
        if ip.shape != (self.out_features + 1,) or ip[0] != 0 or ip[-1] != len(ix) or np.any(np.diff(ip) < 0):
            raise ValueError(f"indptr must be a non-decreasing array of {self.out_features + 1} entries from 0 "
                             f"to {len(ix)}")
        bad = K.check_rows(ip, ix, self.in_features)
        if bad == 2:
            raise ValueError(f"indices must lie in [0, {self.in_features})")
        if bad == 1:
            raise ValueError("indices must be strictly ascending within each row (sorted, no duplicates)")
        return ip, ix

    @classmethod
    def from_csr(cls, matrix: Any, *, use_values: bool = False, **kwargs) -> TrulySparseLinear:
        """From a SciPy sparse matrix ``(n_out, n_in)``: its stored entries are the connections
        (explicit zeros included). With ``use_values`` its entries are the initial weights."""
        m = ss.csr_matrix(matrix)
        if not m.has_canonical_format:
            m = m.copy()
            m.sum_duplicates()
        n_out, n_in = m.shape
        if use_values:
            kwargs["values"] = m.data
        return cls(n_in, n_out, m.indptr, m.indices, **kwargs)

    @classmethod
    def from_topology(cls, topology: Any, layer: int, **kwargs) -> TrulySparseLinear:
        """Layer ``layer`` of a :class:`sparsetopo.topology.Topology` (boolean CSR ``(n_out, n_in)``)."""
        return cls.from_csr(topology.layers[layer], **kwargs)

    @classmethod
    def random(cls, in_features: int, out_features: int, *, epsilon: float | None = None,
               density: float | None = None, count: int | None = None, seed: int | np.random.Generator = 0,
               **kwargs) -> TrulySparseLinear:
        """Uniformly random connections, ``count`` of them, or ``round(density n_in n_out)``, or SET's
        Erdős–Rényi ``round(min(1, epsilon (n_in + n_out) / (n_in n_out)) n_in n_out)``; sampled in
        O(connections) memory (:func:`sparsetopo.truly_sparse.kernels.sample_rows`). ``seed`` drives
        the topology; ``generator`` (in ``kwargs``) the weights."""
        if sum(a is not None for a in (epsilon, density, count)) != 1:
            raise ValueError("give exactly one of epsilon, density and count")
        total = in_features * out_features
        if epsilon is not None:
            density = min(1.0, epsilon * (in_features + out_features) / total)
        if count is None:
            count = int(round(density * total))
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        indptr, indices = K.sample_rows(out_features, in_features, int(count), rng)
        return cls(in_features, out_features, indptr, indices, **kwargs)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | int | None = None) -> None:
        """Draw the weights and bias again with ``init`` (see :data:`INITS`)."""
        g = as_torch_generator(generator)
        if self.init == "normal":
            self.values.normal_(0.0, self.init_std, generator=g)
            if self.bias is not None:
                self.bias.zero_()
            return
        fan_in = torch.diff(self.indptr).clamp(min=1).to(self.values.dtype)
        bound = torch.sqrt(6.0 / fan_in)
        self.values.uniform_(-1.0, 1.0, generator=g)
        self.values.mul_(torch.repeat_interleave(bound, torch.diff(self.indptr), output_size=len(self.values)))
        if self.bias is not None:
            b = 1.0 / float(np.sqrt(self.in_features))
            self.bias.uniform_(-b, b, generator=g)

    # ---------------------------------------------------------------- topology
    @property
    def n_connections(self) -> int:
        return int(self.indices.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``, the orientation of ``nn.Linear.weight`` and of a Topology layer."""
        return (self.out_features, self.in_features)

    def fan_in(self) -> np.ndarray:
        """Connections per output neuron (int64, ``(out_features,)``)."""
        return np.diff(self.indptr.numpy())

    def structure(self) -> Structure:
        """The kernels' index arrays, rebuilt (O(connections + n_in)) when the topology changed."""
        key = (self.indptr.data_ptr(), self.indptr._version, self.indices.data_ptr(), self.indices._version,
               self.indices.shape[0])
        if key != self._structure_key:
            self._structure = _build_structure(self.indptr, self.indices, self.in_features)
            self._structure_key = key
        return self._structure

    @torch.no_grad()
    def set_structure(self, indptr: Any, indices: Any, values: Any = None) -> None:
        """Install a new topology (CSR arrays) and, optionally, its weights (one per connection).

        With as many connections as before, ``values`` is overwritten in place, so the
        Parameter (and an optimizer holding it) stays the same object; otherwise its
        ``.data`` is replaced (the object is still the same). Optimizer state is the
        caller's business: :func:`sparsetopo.truly_sparse.evolve.apply_update` moves it.
        """
        ip, ix = self._check_structure(indptr, indices)
        self.indptr = torch.from_numpy(ip)
        self.indices = torch.from_numpy(ix)
        if values is None:
            values = torch.zeros(len(ix), dtype=self.values.dtype)
        v = torch.as_tensor(values, dtype=self.values.dtype).reshape(-1)
        if len(v) != len(ix):
            raise ValueError(f"values has {len(v)} entries for {len(ix)} connections")
        if len(v) == len(self.values):
            self.values.copy_(v)
        else:
            self.values.data = v.clone()
        self.values.grad = None
        self._structure_key = None

    def to_csr(self, *, nonzero: bool = False) -> ss.csr_matrix:
        """The connectivity as a boolean SciPy CSR ``(out_features, in_features)`` -- what
        ``Topology(...)`` / ``Topology.from_masks`` take; with ``nonzero`` only connections
        whose weight is not exactly zero."""
        ip, ix = self.indptr.numpy().copy(), self.indices.numpy().copy()
        m = ss.csr_matrix((np.ones(len(ix), dtype=bool), ix, ip), shape=self.shape)
        if nonzero:
            m.data = self.values.detach().numpy() != 0
            m.eliminate_zeros()
        return m

    def weight_csr(self) -> ss.csr_matrix:
        """The weights as a float SciPy CSR ``(out_features, in_features)`` (a copy)."""
        return ss.csr_matrix((self.values.detach().numpy().copy(), self.indices.numpy().copy(),
                              self.indptr.numpy().copy()), shape=self.shape)

    # ----------------------------------------------------------------- compute
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs with {self.in_features} features, got shape {tuple(x.shape)}")
        x = x.reshape(-1, self.in_features).to(self.values.dtype)
        y = _TrulySparseFunction.apply(x, self.values, self.bias, self.structure())
        if self._capture is not None and torch.is_grad_enabled():
            cap, slot = self._capture, len(self._capture.inputs)
            cap.inputs.append(x.detach())
            cap.grads.append(None)
            if y.requires_grad:
                def _hook(g, cap=cap, slot=slot):
                    cap.grads[slot] = g.detach()
                y.register_hook(_hook)
        return y.reshape(*lead, self.out_features)

    @contextlib.contextmanager
    def capture(self):
        """Record inputs and output gradients of the batches run inside the block (for RigL's growth,
        :func:`sparsetopo.truly_sparse.evolve.rigl_update`): O(batch x (n_in + n_out)) memory.

        >>> with layer.capture() as cap:            # doctest: +SKIP
        ...     loss_fn(model(x), y).backward()
        >>> x, gy = cap.tensors()                   # doctest: +SKIP
        """
        cap = Capture()
        self._capture = cap
        try:
            yield cap
        finally:
            self._capture = None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n_connections={self.n_connections}, bias={self.bias is not None}")

    # ---------------------------------------------------------------- state
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A state of another topology may hold a different number of connections: resize first.
        idx = state_dict.get(prefix + "indices")
        if idx is not None and idx.shape[0] != self.indices.shape[0]:
            self.indices = torch.empty(idx.shape[0], dtype=self.indices.dtype)
            self.values.data = torch.empty(idx.shape[0], dtype=self.values.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self._structure_key = None
