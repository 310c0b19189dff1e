"""Reading a PyTorch model's topology: its Linear and Conv2d layers and the streams that connect them.

NNSTD carries each layer's matching to the layers that read its outputs, which
is only meaningful when it is known which channels feed which layer. The model
is traced with ``torch.fx``, so that what it really computes -- not the order
in which its modules were registered -- decides. Each tensor belongs to a
*stream* (:mod:`sparsetopo.topology.graph`): a layer opens one, the sum of two
tensors (a residual connection, ``out += identity``) merges theirs into one
residual stream, and the operations below keep it. A chain of layers gives a
chain topology, exactly as before; torchvision's ResNets (BasicBlock,
Bottleneck with a projection ``downsample``), CIFAR ResNets and WideResNets
give graphs. Any other operation combining tensors -- a concatenation
(DenseNet), a product of two tensors (attention, squeeze-and-excitation
gating) -- is refused by name, and so is any layer or operation this module
does not know. Nothing is ever dropped silently.

Supported between the layers -- an allow-list of operations known to keep every
neuron (channel) in its place, so that the correspondence passes through them:
activations, dropout, batch and layer norm, max/average pooling (also adaptive),
flatten from dim 1 (``nn.Flatten()``, ``torch.flatten(x, 1)``, a view/reshape to
``(batch, features)``), squeeze/unsqueeze, dtype casts and arithmetic with a
number (``x * 0.5 + 1``). LayerNorm and softmax normalise across neurons (their
statistics mix them) but leave each neuron where it is, so they pass. Anything
else between layers is refused by name -- indexing (``y[:, perm]``), permute,
transpose, cat, stack, split, chunk, gather, index_select, roll, flip, narrow,
a matmul with a tensor, a parameter or constant used outside a layer, and every
operation not on the list -- rather than dropped, since any of them may select,
reorder or mix neurons. Before the first layer any view/reshape of the input passes.
A module of one's own that acts on each neuron alone joins the list by declaring the
class attribute ``keeps_neurons = True`` (as ``sparsetopo.models.SeededDropout`` does).

A subclass of ``nn.Linear`` or ``nn.Conv2d`` (sparsetopo's masked layers) is read
as a layer, not traced into. A layer called twice, or two layers sharing one
weight parameter (tied weights), is refused by name; so is a layer whose output
never reaches the model's output. Grouped and depthwise convolutions are read as full
convolutions whose kernels are empty outside their group.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .errors import SparsetopoError

__all__ = ["layers_from_module", "layers_from_state_dict", "trace_structure"]


def _pass_modules():
    from torch import nn

    return (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax,
            nn.LogSoftmax, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.BatchNorm1d, nn.BatchNorm2d,
            nn.LayerNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten,
            nn.Hardtanh, nn.Softplus, nn.Mish)


def _declares_keeps_neurons(module) -> bool:
    """Whether ``module``'s class declares ``keeps_neurons = True`` (e.g. :class:`sparsetopo.models.SeededDropout`).

    The class attribute keeps the allow-list open without this module importing the
    modules it lets pass (``models`` imports ``topology``, which reads models through here).
    """
    return getattr(type(module), "keeps_neurons", False) is True


def keeps_neurons(module) -> bool:
    """Whether ``module`` may sit between two layers: torch's modules on the list above, or a declared one."""
    return isinstance(module, _pass_modules()) or _declares_keeps_neurons(module)


def _trace(model):
    """``model`` traced by ``torch.fx``, a module declaring ``keeps_neurons`` kept whole (a leaf): what it
    does inside (a dropout's random mask, say) is its own business, it has vouched for the neurons."""
    import torch.fx

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            # a Linear/Conv2d of one's own (sparsetopo's masked layers) is a layer, not code to trace into
            return _declares_keeps_neurons(m) or _is_layer(m) or super().is_leaf_module(m, qualname)

    return torch.fx.GraphModule(model, Tracer().trace(model))


def _is_layer(module) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, nn.Conv2d))


def _pass_functions():
    import torch
    import torch.nn.functional as F

    return {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh, torch.sigmoid,
            F.softmax, F.log_softmax, F.dropout, torch.flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
            F.adaptive_max_pool2d, F.batch_norm, F.layer_norm, F.hardtanh, F.mish}


_PASS_METHODS = {"relu", "tanh", "sigmoid", "softmax", "log_softmax", "flatten", "view", "reshape", "contiguous",
                 "float", "to", "clone", "detach", "squeeze", "unsqueeze"}
_META_METHODS = {"size", "dim"}  # read a tensor's shape, not its values


def _mask_of(module) -> np.ndarray:
    import torch

    mask = getattr(module, "weight_mask", None)
    src = mask if isinstance(mask, torch.Tensor) else module.weight
    arr = src.detach().to("cpu")
    if arr.is_floating_point() and not torch.isfinite(arr).all():
        raise SparsetopoError(f"{type(module).__name__}: weights contain NaN or infinite values")
    return (arr != 0).numpy()


def expand_groups(mask: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's ``(out, in / groups, kh, kw)`` mask as the full ``(out, in, kh, kw)`` one:
    block diagonal, output group ``g`` connected only to input group ``g``. A 2-D mask or ``groups == 1``
    is returned as it is."""
    if groups == 1 or mask.ndim != 4:
        return mask
    out, per_group, kh, kw = mask.shape
    full = np.zeros((out, per_group * groups, kh, kw), dtype=bool)
    out_per_group = out // groups
    for g in range(groups):  # one block per group, not per neuron
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        full[rows, g * per_group:(g + 1) * per_group] = mask[rows]
    return full


def check_no_shared_weights(named_layers, who: str) -> None:
    """Refuse two layers (``(name, module)`` pairs) whose weight is one parameter (tied weights).

    A topology gives each layer its own connections and a mask each; on one shared
    parameter two masks would disagree (the weight ends up masked by both while each
    layer claims its own connections), so this is refused rather than guessed.
    """
    owner: dict[int, str] = {}
    for name, module in named_layers:
        name = name or "<root>"
        key = id(module.weight)
        if key in owner:
            raise SparsetopoError(
                f"{who}: layers {owner[key]!r} and {name!r} share one weight parameter (tied weights); "
                "a topology gives every layer its own mask, so untie them first, e.g. "
                "b.weight = nn.Parameter(a.weight.detach().clone())")
        owner[key] = name


def _describe(node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {target!r} (node {node.name!r})"


def layers_from_module(model, state_dict=None) -> tuple[list[tuple[np.ndarray, tuple[int, int] | None]],
                                                         list[tuple[int, int]] | None]:
    """``([(mask, kernel or None), ...], streams)`` of a model's Linear/Conv2d layers, in call order.

    ``streams`` is ``None`` for a chain, else each layer's ``(read, write)`` stream (see
    :mod:`sparsetopo.topology.graph`): an addition of two tensors merges their streams (a residual
    connection), everything on the allow-list keeps a tensor's stream. With ``state_dict`` the masks
    come from it (``<layer>.weight_mask`` buffers, else the exact zeros of ``<layer>.weight``) and
    the model gives only the structure.
    """
    reader = _read_graph(model, state_dict)
    return reader.layers, reader.streams()


def _read_graph(model, state_dict, *, masks: bool = True) -> _GraphReader:
    """``model`` traced and read: its layers (without their masks unless ``masks``), their calls and streams."""
    try:
        gm = _trace(model)
    except Exception as exc:  # tracing fails on data-dependent control flow, among others
        raise SparsetopoError(
            f"from_torch: cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "pass its state_dict() to read its layers in registration order, without the chain check") from None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise SparsetopoError(f"from_torch: {type(model).__name__} takes {len(placeholders)} inputs; a model "
                              "read by from_torch takes one")
    reader = _GraphReader(gm, type(model).__name__, state_dict, masks)
    for node in gm.graph.nodes:
        if reader.visit(node):
            break
    if not reader.layers:
        raise SparsetopoError("from_torch found no Linear or Conv2d layer in the model")
    check_no_shared_weights(reader.called, "from_torch")
    return reader


def trace_structure(model) -> tuple[list[str], list[tuple[int, int]] | None]:
    """The qualified names of a model's layers in call order and their streams (``None``: a chain)."""
    reader = _read_graph(model, None, masks=False)
    return [target for target, _ in reader.called], reader.streams()


class _GraphReader:
    """Walks a traced graph, giving every tensor a stream (a union-find element) and every layer its pair."""

    def __init__(self, gm, name: str, state_dict, masks: bool = True):
        self.gm, self.name, self.state_dict, self.masks = gm, name, state_dict, masks
        self.layers: list[tuple[np.ndarray, tuple[int, int] | None]] = []
        self.called: list[tuple[str, Any]] = []  # (target, module) of every layer call, in order
        self.io: list[tuple[int, int]] = []  # per layer, (read, write) union-find elements
        self.parent: list[int] = [0]  # element 0: the network input
        self.stream_of: dict[Any, int] = {}  # fx node -> element
        self.meta: set = set()
        self.layer_nodes: list[Any] = []
        self.output = None

    def find(self, e: int) -> int:
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def visit(self, node) -> bool:
        """Read one node; ``True`` at the output."""
        if node.op == "placeholder":
            self.stream_of[node] = 0
            return False
        args = _node_args(node)
        tensors = [a for a in args if a not in self.meta]
        if node.op == "output":
            self._finish(node, tensors)
            return True
        if _is_meta(node, args, tensors):
            self.meta.add(node)
        elif node.op == "get_attr":
            raise SparsetopoError(f"from_torch: {_describe(node)} uses a parameter, buffer or constant "
                                  "tensor outside a layer; only Linear and Conv2d layers may hold weights")
        elif len(tensors) != 1:
            self._combine(node, tensors)
        elif not self._layer(node, tensors[0]):
            _check_passes(node, self.gm, after_a_layer=bool(self.layers))
            self.stream_of[node] = self.stream_of[tensors[0]]
        return False

    def _layer(self, node, source) -> bool:
        """Read ``node`` if it calls a Linear or Conv2d layer: it reads ``source``'s stream and opens one."""
        if node.op != "call_module":
            return False
        mod = self.gm.get_submodule(node.target)
        if not _is_layer(mod):
            return False
        layer = _read_layer(mod, self.state_dict, node.target) if self.masks else (None, None)
        for target, other in self.called:
            if other is mod:
                raise SparsetopoError(
                    f"from_torch: layer {target!r} is called twice ({_describe(node)}): one weight "
                    "parameter shared by two layers (tied weights), which a topology cannot express; "
                    "give each call its own layer")
        self.called.append((node.target, mod))
        self.layers.append(layer)
        self.layer_nodes.append(node)
        self.parent.append(len(self.parent))
        self.io.append((self.stream_of[source], len(self.parent) - 1))
        self.stream_of[node] = len(self.parent) - 1
        return True

    def _combine(self, node, tensors) -> None:
        """An operation on several tensors: a sum merges their streams; anything else is refused by name."""
        if len(tensors) == 2 and _is_sum(node):
            a, b = (self.find(self.stream_of[t]) for t in tensors)
            self.parent[max(a, b)] = min(a, b)
            self.stream_of[node] = min(a, b)
            return
        if not tensors:
            raise SparsetopoError(f"from_torch: {_describe(node)} makes a new tensor inside the model; only "
                                  "layers and operations on their outputs are supported")
        raise SparsetopoError(f"from_torch: {self.name} has {_describe(node)}, which {_combination(node)}; "
                              "only the sum of two tensors (a residual connection) may combine tensors")

    def _finish(self, node, tensors) -> None:
        if len(tensors) != 1:
            raise SparsetopoError(f"from_torch: {self.name} returns {len(tensors)} tensors; a model read by "
                                  "from_torch returns one")
        self.output = tensors[0]
        reaches = _ancestors(self.output)
        for n in self.layer_nodes:
            if n not in reaches:
                raise SparsetopoError(f"from_torch: {self.name}: the output of layer {n.target!r} never reaches "
                                      "the model's output (a branch that goes nowhere); remove it")

    def streams(self) -> list[tuple[int, int]] | None:
        """Each layer's ``(read, write)`` stream, numbered in order of first write (0: the input)."""
        number: dict[int, int] = {self.find(0): 0}
        pairs = []
        for r, w in self.io:
            w = number.setdefault(self.find(w), len(number))
            pairs.append((number[self.find(r)], w))
        return None if all(p == (k, k + 1) for k, p in enumerate(pairs)) else pairs


def _is_sum(node) -> bool:
    """Whether ``node`` adds (or subtracts) two tensors elementwise, channel by channel."""
    import torch

    if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
        return False
    if node.op == "call_function":
        return node.target in (operator.add, operator.iadd, operator.sub, torch.add, torch.sub)
    return node.op == "call_method" and node.target in ("add", "add_", "sub", "sub_")


def _combination(node) -> str:
    """What an operation on several tensors does, for the error message."""
    import torch
    import torch.nn.functional as F

    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if target in (torch.cat, torch.concat, torch.stack, torch.hstack, torch.vstack) or name in ("cat", "stack"):
        return "concatenates tensors (DenseNet-style): the channels of several layers become one input"
    if target is F.scaled_dot_product_attention or name in ("matmul", "bmm", "baddbmm", "einsum", "mm"):
        return "is a matrix product of two tensors (attention), which mixes channels"
    if target in (operator.mul, torch.mul, operator.truediv) or name in ("mul", "mul_", "div"):
        return "multiplies two tensors (gating or attention, e.g. squeeze-and-excitation), which mixes channels"
    return "combines several tensors in a way not known to keep every channel in its place"


def _ancestors(node) -> set:
    """``node`` and every node it is computed from."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _is_meta(node, args, tensors) -> bool:
    """Whether ``node`` computes from shapes only (``x.size(0)``, ``x.shape[0] * 4``), not from values."""
    if node.op == "call_method" and node.target in _META_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr and len(tensors) == 1:
        return True
    # arithmetic on shapes only (operator.getitem, operator.mul, ...); torch.zeros(x.size()) makes a tensor
    plain = node.op == "call_function" and getattr(node.target, "__module__", None) in ("_operator", "builtins")
    return plain and bool(args) and not tensors


def _read_layer(mod, state_dict=None, target: str = "") -> tuple[np.ndarray, tuple[int, int] | None] | None:
    from torch import nn

    if not isinstance(mod, (nn.Linear, nn.Conv2d)):
        return None
    mask = _mask_of(mod) if state_dict is None else _mask_from_state(state_dict, target, mod)
    if isinstance(mod, nn.Linear):
        return mask, None
    return expand_groups(mask, mod.groups), tuple(mod.kernel_size)


def _mask_from_state(state, target: str, mod) -> np.ndarray:
    """Layer ``target``'s connections in a state dict: its ``weight_mask`` buffer (``torch.nn.utils.prune``'s
    or ours) when there is one, else the exact zeros of its ``weight`` (or pruning's ``weight_orig``)."""
    import torch

    for key in ("weight_mask", "weight", "weight_orig"):
        value = state.get(f"{target}.{key}")
        if isinstance(value, torch.Tensor):
            break
    else:
        raise SparsetopoError(f"from_torch: state_dict has no {target}.weight (nor {target}.weight_mask) for "
                              f"layer {target!r} of the model")
    expected = tuple(getattr(mod, "weight_orig", mod.weight).shape)
    if tuple(value.shape) != expected:
        raise SparsetopoError(f"from_torch: state_dict's {target}.{key} has shape {tuple(value.shape)}, but the "
                              f"model's layer {target!r} has weights of shape {expected}")
    arr = value.detach().to("cpu")
    if arr.is_floating_point() and not torch.isfinite(arr).all():
        raise SparsetopoError(f"layer {target}: weights contain NaN or infinite values")
    return (arr != 0).numpy()


#: Arithmetic that acts on every neuron alike when its other operand is a number.
_SCALAR_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow}
_SCALAR_METHODS = {"add", "sub", "mul", "div", "neg", "pow"}

_KEEPS_NEURONS = ("only operations known to keep every neuron in its place are (activations, dropout, batch and "
                  "layer norm, pooling, flatten from dim 1, arithmetic with a number); one that selects, reorders "
                  "or mixes neurons would give a wrong topology")


def _check_passes(node, gm, *, after_a_layer: bool) -> None:
    """Refuse ``node`` by name unless it is known to keep the neuron (channel) correspondence.

    An allow-list: indexing, permute/transpose, cat/stack/split, gather, roll, flip,
    matmul and every operation not listed are refused rather than dropped. LayerNorm and
    softmax normalise across neurons but keep each one in its place, so they pass.
    """
    import torch
    from torch import nn

    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, nn.Flatten):
            _check_flatten(node, mod.start_dim, mod.end_dim)
        elif not keeps_neurons(mod):
            raise SparsetopoError(f"from_torch: {_describe(node)} is a {type(mod).__name__}, which is not "
                                  "supported (Linear, Conv2d and activation, norm, pooling, dropout and "
                                  "flatten layers are)")
        return
    others = list(node.args[1:]) + list(node.kwargs.values())
    if node.op == "call_function":
        if node.target is operator.getitem:
            raise SparsetopoError(f"from_torch: {_describe(node)} indexes the tensor between layers, which "
                                  f"selects or reorders neurons; {_KEEPS_NEURONS}")
        if node.target is torch.flatten:
            _check_flatten(node, *_flatten_dims(node))
            return
        if node.target in _SCALAR_FUNCTIONS and _numbers(node, node.args):
            return
        if node.target in _pass_functions():
            return
    elif node.op == "call_method":
        if node.target == "flatten":
            _check_flatten(node, *_flatten_dims(node))
            return
        if node.target in ("view", "reshape"):
            shape = others[0] if len(others) == 1 and isinstance(others[0], (tuple, list)) else others
            if after_a_layer and len(shape) != 2:
                raise SparsetopoError(f"from_torch: {_describe(node)} reshapes to {len(shape)} dimensions between "
                                      "layers; only a flatten to (batch, features) keeps the neurons in place")
            return
        if node.target in _SCALAR_METHODS and _numbers(node, node.args):
            return
        if node.target in _PASS_METHODS:
            return
    raise SparsetopoError(f"from_torch: {_describe(node)} is not supported between layers: {_KEEPS_NEURONS}")


def _numbers(node, args) -> bool:
    """Whether every operand but the one tensor is a plain number (``x * 0.5``, ``1 - x``; shapes count:
    the chain check let through no other tensor)."""
    import torch.fx

    rest = [a for a in args if not isinstance(a, torch.fx.Node)] + list(node.kwargs.values())
    return all(isinstance(a, (int, float)) for a in rest)


def _flatten_dims(node) -> tuple[Any, Any]:
    args = list(node.args[1:])
    start = node.kwargs.get("start_dim", args[0] if args else 0)
    end = node.kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
    return start, end


def _check_flatten(node, start, end) -> None:
    if start != 1 or end != -1:
        raise SparsetopoError(f"from_torch: {_describe(node)} flattens dims {start} to {end}; only a flatten from "
                              "dim 1 to the end (torch.flatten(x, 1), nn.Flatten()) keeps each channel's "
                              "positions together")


def _node_args(node) -> list:
    import torch.fx

    found: list = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def layers_from_state_dict(state: Any) -> list[tuple[np.ndarray, tuple[int, int] | None]]:
    """Layers of a state dict in its order (registration order): 2-D weights are Linear, 4-D Conv2d.

    A state dict carries no graph, so the chain cannot be checked here beyond the
    shapes (pass the model for that). For each prefix a ``*_mask`` buffer decides
    the connections when present (ours, ``torch.nn.utils.prune``'s), else the
    non-zero weights.
    """
    import torch

    weights: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    order: list[str] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.ndim not in (2, 4):
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf in ("weight", "weight_orig"):
            weights[prefix] = value
        elif leaf.endswith("_mask") or leaf == "mask":
            masks[prefix] = value
        else:
            continue
        if prefix not in order:
            order.append(prefix)
    layers = []
    for prefix in order:
        if prefix not in weights:
            continue
        arr = masks.get(prefix, weights[prefix]).detach().to("cpu")
        if arr.is_floating_point() and not torch.isfinite(arr).all():
            raise SparsetopoError(f"layer {prefix or '<root>'}: weights contain NaN or infinite values")
        m = (arr != 0).numpy()
        layers.append((m, tuple(m.shape[2:]) if m.ndim == 4 else None))
    if not layers:
        raise SparsetopoError("from_torch found no Linear or Conv2d weight in the state dict")
    return layers
