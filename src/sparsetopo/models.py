"""Masked multilayer perceptrons.

Each :class:`MaskedLinear` keeps its connectivity as a visible ``weight_mask``
buffer (as ``torch.nn.utils.prune`` does), so masks travel with
``state_dict`` and :meth:`sparsetopo.topology.Topology.from_torch` reads them.
Weights outside the mask are kept exactly zero: gradients are masked before
the optimizer step (so momentum never builds up there) and weights after it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .config import check_value
from .errors import SparsetopoError
from .masking import MaskedNetwork
from .topology import Topology

__all__ = ["ACTIVATIONS", "INITS", "MODELS", "MaskedConv2d", "MaskedLinear", "SeededDropout", "SparseCNN",
           "SparseMLP", "register_model"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}

#: Weight initialisations: ``he`` -- He-uniform, rescaled in ``set_topology`` to
#: each neuron's actual fan-in; ``normal`` -- N(0, init_std^2) weights and zero
#: biases, SET's original implementation (no rescaling: the scale is absolute).
INITS = ("he", "normal")

#: Layers at most this dense compute with sparse kernels (``sparse_kernel=None``).
#: Measured on this project's 2-core CPU: 3x faster than a dense matmul at
#: 0.6 % density, slower from a few per cent on.
SPARSE_KERNEL_MAX_DENSITY = 0.02


class _SparseLinear(torch.autograd.Function):
    """``x @ W.T + b`` touching only the connections of the mask.

    The weight stays a dense parameter (so state dicts are the usual ones);
    forward gathers its values at the mask's positions into a CSR matrix,
    backward returns the input gradient through the transposed CSR and the
    weight gradient at the mask's positions only (``sampled_addmm``). With
    ``sparse_grad`` that gradient is a sparse COO tensor, so an optimizer
    that understands it (:class:`sparsetopo.optim.MaskedSGD`) does O(connections)
    work per step instead of passes over the whole dense matrix, which
    dominate a step at 0.6 % density.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, pattern, sparse_grad):
        crow, col, rows, perm_t, crow_t, col_t, flat, coo = pattern
        vals = weight.view(-1).index_select(0, flat)
        with warnings.catch_warnings():  # torch flags CSR support as beta on every first use
            warnings.simplefilter("ignore", UserWarning)
            w = torch.sparse_csr_tensor(crow, col, vals, weight.shape)
            y = torch.sparse.mm(w, x.t()).t()
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, vals)
        ctx.pattern = pattern
        ctx.shape = weight.shape
        ctx.has_bias = bias is not None
        ctx.sparse_grad = sparse_grad
        return y

    @staticmethod
    def backward(ctx, gy):
        x, vals = ctx.saved_tensors
        crow, col, rows, perm_t, crow_t, col_t, flat, coo = ctx.pattern
        n_out, n_in = ctx.shape
        gy = gy.contiguous()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            wt = torch.sparse_csr_tensor(crow_t, col_t, vals[perm_t], (n_in, n_out))
            gx = torch.sparse.mm(wt, gy.t()).t()
            # dL/dW = gy^T x, needed only at the mask's positions (CSR order).
            pattern = torch.sparse_csr_tensor(crow, col, vals, (n_out, n_in))
            gvals = torch.sparse.sampled_addmm(pattern, gy.t().contiguous(), x.contiguous(), beta=0.0).values()
        if ctx.sparse_grad:
            # ``coo`` is cached with the pattern; holding it keeps autograd's
            # accumulation from rebuilding the tensor without its "coalesced" flag.
            gw = torch.sparse_coo_tensor(coo, gvals, (n_out, n_in), is_coalesced=True)
        else:
            gw = torch.zeros(n_out * n_in, dtype=gy.dtype)
            gw[flat] = gvals
            gw = gw.view(n_out, n_in)
        gb = gy.sum(0) if ctx.has_bias else None
        return gx, gw, gb, None, None


def _activation(name: str) -> nn.Module:
    """A new activation module of ``ACTIVATIONS``; the one check of an ``activation`` name."""
    check_value("activation", name, str, {"choices": tuple(ACTIVATIONS)})
    return ACTIVATIONS[name]()


def _init_weights(layer: nn.Module, generator: torch.Generator | None, init: str, init_std: float) -> None:
    """Initialise a Linear or Conv2d layer from ``generator`` (``None``: keep torch's init)."""
    check_value("init", init, str, {"choices": INITS})
    if generator is None:
        return
    fan_in = layer.weight[0].numel()  # inputs per neuron: n_in, or in_channels * kh * kw
    with torch.no_grad():
        if init == "normal":
            # SET's original implementation: N(0, std^2) weights, zero biases.
            layer.weight.normal_(0.0, init_std, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
        else:
            # He-uniform weights (ReLU gain) drawn from our own generator; the bias as torch's default.
            bound = float(np.sqrt(6.0 / fan_in))
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                b = 1.0 / float(np.sqrt(fan_in))
                layer.bias.uniform_(-b, b, generator=generator)


class _MaskOps:
    """The :class:`~sparsetopo.masking.MaskedLayer` members shared by the dense-weight masked layers."""

    weight: torch.Tensor
    weight_mask: torch.Tensor

    @property
    def n_connections(self) -> int:
        return int(self.weight_mask.count_nonzero())

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor | np.ndarray) -> None:
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if tuple(mask.shape) != tuple(self.weight.shape):
            raise SparsetopoError(f"mask shape {tuple(mask.shape)} does not match weight {tuple(self.weight.shape)}")
        self.weight_mask.copy_(mask.to(self.weight_mask.dtype) != 0)
        self.weight.mul_(self.weight_mask)

    @torch.no_grad()
    def apply_mask(self) -> None:
        self.weight.mul_(self.weight_mask)

    @torch.no_grad()
    def mask_grad(self) -> None:
        # A sparse gradient comes from the sparse kernel and lives on the mask already.
        if self.weight.grad is not None and not self.weight.grad.is_sparse:
            self.weight.grad.mul_(self.weight_mask)


class MaskedLinear(_MaskOps, nn.Linear):
    """``nn.Linear`` with a ``weight_mask`` buffer of the weight's shape (1 = connection).

    ``sparse_kernel``: ``True`` computes through sparse CSR kernels, ``False``
    through a dense matmul of the (zero-outside-the-mask) weight, ``None``
    chooses sparse for layers at most ``SPARSE_KERNEL_MAX_DENSITY`` dense.
    Both give the same result up to float rounding.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 generator: torch.Generator | None = None, sparse_kernel: bool | None = None,
                 init: str = "he", init_std: float = 0.1):
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("weight_mask", torch.ones(out_features, in_features))
        self.sparse_kernel = sparse_kernel
        self.force_dense = False  # set while RigL needs gradients at every position
        #: Sparse kernels return the weight gradient as a sparse COO tensor (for
        #: :class:`sparsetopo.optim.MaskedSGD`); off by default, since most
        #: torch optimizers (Adam, ...) reject sparse gradients.
        self.sparse_grad = False
        self._pattern_key: tuple | None = None
        self._pattern: tuple | None = None
        self._auto_key: tuple | None = None
        self._auto_sparse = False
        _init_weights(self, generator, init, init_std)

    def _use_sparse(self) -> bool:
        if self.force_dense or self.weight.device.type != "cpu":
            return False
        if self.sparse_kernel is not None:
            return self.sparse_kernel
        # Counting the mask costs a pass over it: decide once per mask version, not per batch.
        key = (self.weight_mask.data_ptr(), self.weight_mask._version)
        if key != self._auto_key:
            self._auto_sparse = self.n_connections <= SPARSE_KERNEL_MAX_DENSITY * self.weight_mask.numel()
            self._auto_key = key
        return self._auto_sparse

    def _csr_pattern(self) -> tuple:
        """Index arrays of the mask, rebuilt only when the mask has changed."""
        key = (self.weight_mask.data_ptr(), self.weight_mask._version)
        if key != self._pattern_key:
            mask = self.weight_mask != 0
            n_out, n_in = mask.shape
            rows, col = mask.nonzero(as_tuple=True)  # row-major: CSR order
            crow = torch.zeros(n_out + 1, dtype=torch.int64)
            crow[1:] = torch.cumsum(mask.sum(1), 0)
            perm_t = torch.argsort(col * n_out + rows)  # CSR order -> order of the transpose's CSR
            crow_t = torch.zeros(n_in + 1, dtype=torch.int64)
            crow_t[1:] = torch.cumsum(mask.sum(0), 0)
            self._pattern = (crow, col, rows, perm_t, crow_t, rows[perm_t], rows * n_in + col,
                             torch.stack([rows, col]))
            self._pattern_key = key
        return self._pattern

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_sparse():
            return _SparseLinear.apply(x, self.weight, self.bias, self._csr_pattern(), self.sparse_grad)
        return super().forward(x)

    @torch.no_grad()
    def apply_mask(self) -> None:
        # After a step on a sparse gradient only the mask's positions moved
        # (MaskedSGD touches nothing else), so the dense pass can be skipped.
        if self.weight.grad is not None and self.weight.grad.is_sparse:
            return
        self.weight.mul_(self.weight_mask)


class SeededDropout(nn.Module):
    """Dropout drawing from its own generator, so runs resume bit for bit.

    ``nn.Dropout`` draws from torch's global RNG, which a library must not seed.
    """

    keeps_neurons = True  # elementwise: Topology.from_torch lets it pass between layers

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        check_value("dropout", p, float, {"min": 0.0, "lt": 1.0})  # the networks pass their `dropout`
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type == self.generator.device.type:
            keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        else:  # a CPU generator cannot draw on CUDA: draw on the CPU (the same masks everywhere), then move
            keep = torch.empty(x.shape, dtype=x.dtype).bernoulli_(1 - self.p, generator=self.generator).to(x.device)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaskedConv2d(_MaskOps, nn.Conv2d):
    """``nn.Conv2d`` with a ``weight_mask`` buffer ``(out, in / groups, kh, kw)`` (1 = connection).

    Computes with the dense (zero-outside-the-mask) kernel: convolutions reuse
    each weight at every position, so sparse kernels do not pay off at these sizes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0,
                 generator: torch.Generator | None = None, init: str = "he", init_std: float = 0.1):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))
        self.sparse_grad = False  # dense gradients: any optimizer works
        self.force_dense = False
        _init_weights(self, generator, init, init_std)


class _MaskedNetwork(nn.Module, MaskedNetwork):
    """A :class:`~sparsetopo.masking.MaskedNetwork` whose masked layers are ``self.layers``."""

    layers: nn.ModuleList

    @property
    def masked_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def set_topology(self, topology: Topology, *, rescale: bool | None = None) -> None:
        """Install a topology's masks.

        With ``rescale`` (default: for ``init="he"``) each neuron's initial
        weights are scaled by ``sqrt(n_in / fan_in)``, i.e. He initialisation
        for its *actual* number of inputs. ``init="normal"`` keeps SET's absolute scale.
        """
        super().set_topology(topology, rescale=self.init == "he" if rescale is None else rescale)


class SparseMLP(_MaskedNetwork):
    """An MLP of :class:`MaskedLinear` layers.

    Parameters
    ----------
    sizes : sequence of int
        Input, hidden and output sizes, e.g. ``(784, 1000, 1000, 1000, 10)``.
    activation : str
        One of ``ACTIVATIONS``.
    dropout : float
        Dropout after each hidden activation.
    init_seed, dropout_seed : int
        Seeds of the weight initialisation and of the dropout masks.
    init : {"he", "normal"}
        See ``INITS``; ``init_std`` is the standard deviation of ``normal``.
    sparse_kernel : bool or None
        Passed to every :class:`MaskedLinear` (``None``: sparse kernels for very sparse layers).
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "relu", dropout: float = 0.0,
                 init_seed: int = 0, dropout_seed: int = 0, sparse_kernel: bool | None = None,
                 init: str = "he", init_std: float = 0.1):
        super().__init__()
        act = _activation(activation)  # checked before any layer is built
        self.sizes = tuple(int(s) for s in sizes)
        self.init = init
        init_gen = torch.Generator().manual_seed(int(init_seed))
        self.dropout_generator = torch.Generator().manual_seed(int(dropout_seed))
        self.layers = nn.ModuleList(
            MaskedLinear(a, b, generator=init_gen, sparse_kernel=sparse_kernel, init=init, init_std=init_std)
            for a, b in zip(self.sizes[:-1], self.sizes[1:])
        )
        self.act = act
        self.drop = SeededDropout(dropout, self.dropout_generator) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.drop(self.act(layer(x)))
        return self.layers[-1](x)


class SparseCNN(_MaskedNetwork):
    """A small VGG-style CNN of masked layers: blocks of two 3x3 convolutions and a 2x2 max-pool,
    then fully connected layers.

    With ``channels=(16, 16, 32, 32)`` and one hidden layer of 128 on 28x28
    images: conv 16, conv 16, pool, conv 32, conv 32, pool, 1568 -> 128 -> classes
    (an epoch of Fashion-MNIST in well under a minute on two cores).

    Parameters
    ----------
    image_shape : (channels, height, width)
    n_classes : int
    channels : sequence of int
        Output channels of the convolutions; a 2x2 max-pool follows every second one.
    hidden : sequence of int
        The fully connected hidden layers after the convolutions.
    """

    def __init__(self, image_shape: Sequence[int], n_classes: int, *, channels: Sequence[int] = (16, 16, 32, 32),
                 hidden: Sequence[int] = (128,), activation: str = "relu", dropout: float = 0.0,
                 init_seed: int = 0, dropout_seed: int = 0, init: str = "he", init_std: float = 0.1,
                 sparse_kernel: bool | None = None):
        super().__init__()
        act = _activation(activation)  # checked before any layer is built
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        self.init = init
        init_gen = torch.Generator().manual_seed(int(init_seed))
        self.dropout_generator = torch.Generator().manual_seed(int(dropout_seed))
        convs, self.pool_after = [], []
        for k, out in enumerate(channels):
            convs.append(MaskedConv2d(c, int(out), 3, padding=1, generator=init_gen, init=init, init_std=init_std))
            c = int(out)
            pool = k % 2 == 1
            self.pool_after.append(pool)
            if pool:
                h, w = h // 2, w // 2
        sizes = [c * h * w, *[int(v) for v in hidden], int(n_classes)]
        linears = [MaskedLinear(a, b, generator=init_gen, sparse_kernel=sparse_kernel, init=init, init_std=init_std)
                   for a, b in zip(sizes[:-1], sizes[1:])]
        self.n_convs = len(convs)
        self.layers = nn.ModuleList(convs + linears)
        self.act = act
        self.pool = nn.MaxPool2d(2)
        self.drop = SeededDropout(dropout, self.dropout_generator) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], *self.image_shape)
        for layer, pool in zip(self.layers[:self.n_convs], self.pool_after):
            x = self.act(layer(x))
            if pool:
                x = self.pool(x)
        x = torch.flatten(x, 1)
        for layer in self.layers[self.n_convs:-1]:
            x = self.drop(self.act(layer(x)))
        return self.layers[-1](x)


# ------------------------------------------------------------------ registry
#: Model builders by ``--model`` name, in registration (and ``--help``) order. A builder takes the
#: run's config (a :class:`~sparsetopo.training.TrainConfig`) and its data set and returns a
#: :class:`~sparsetopo.masking.MaskedNetwork`.
MODELS: dict[str, Callable] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator adding a model builder ``fn(config, data)`` to :data:`MODELS` under ``name``."""
    def add(builder: Callable) -> Callable:
        if name in MODELS:
            raise SparsetopoError(f"a model named {name!r} is already registered")
        MODELS[name] = builder
        return builder
    return add


def _common(config) -> dict:
    return dict(activation=config.activation, dropout=config.dropout, init_seed=config.named_seed("init"),
                dropout_seed=config.named_seed("dropout"), sparse_kernel=config.sparse_kernel, init=config.init,
                init_std=config.init_std)


@register_model("mlp")
def _build_mlp(config, data) -> SparseMLP:
    return SparseMLP(config.sizes(data.n_features, data.n_classes), **_common(config))


@register_model("cnn")
def _build_cnn(config, data) -> SparseCNN:
    return SparseCNN(data.image_shape, data.n_classes, channels=config.channels, hidden=config.hidden,
                     **_common(config))
