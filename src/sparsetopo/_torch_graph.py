"""Reading a PyTorch model's topology: its Linear and Conv2d layers, checked to form a chain.

NNSTD carries each layer's matching to the next layer's inputs, which is only
meaningful when every layer feeds exactly the next one. The model is traced
with ``torch.fx``, so that what it really computes -- not the order in which
its modules were registered -- decides; an operation that combines two tensors
(a residual addition, a concatenation) or reads a value twice (a branch) is
refused by name, and so is any layer or operation this module does not know.
Nothing is ever dropped silently.

Supported between the layers (the channel correspondence passes through them):
activations, dropout, batch and layer norm, max/average pooling (also
adaptive), flatten/view/reshape. Grouped and depthwise convolutions are read
as full convolutions whose kernels are empty outside their group.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .errors import SparsetopoError

__all__ = ["layers_from_module", "layers_from_state_dict"]


def _pass_modules():
    from torch import nn

    from .models import SeededDropout

    return (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax,
            nn.LogSoftmax, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.BatchNorm1d, nn.BatchNorm2d,
            nn.LayerNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten,
            nn.Hardtanh, nn.Softplus, nn.Mish, SeededDropout)


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


def _conv_mask(module) -> np.ndarray:
    """``(out, in, kh, kw)``: a grouped convolution's kernels are empty outside their group."""
    m = _mask_of(module)
    groups = module.groups
    if groups == 1:
        return m
    out, per_group, kh, kw = m.shape
    full = np.zeros((out, per_group * groups, kh, kw), dtype=bool)
    out_per_group = out // groups
    for g in range(groups):
        full[g * out_per_group:(g + 1) * out_per_group, g * per_group:(g + 1) * per_group] = \
            m[g * out_per_group:(g + 1) * out_per_group]
    return full


def _describe(node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {target!r} (node {node.name!r})"


def layers_from_module(model) -> list[tuple[np.ndarray, tuple[int, int] | None]]:
    """``[(mask, kernel or None), ...]`` of a model whose Linear/Conv2d layers form a chain."""
    import torch.fx
    from torch import nn

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # tracing fails on data-dependent control flow, among others
        raise SparsetopoError(
            f"from_torch: cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "pass its state_dict() to read its layers in registration order, without the chain check") from None
    passes, funcs = _pass_modules(), _pass_functions()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise SparsetopoError(f"from_torch: {type(model).__name__} takes {len(placeholders)} inputs; a chain takes one")
    layers: list[tuple[np.ndarray, tuple[int, int] | None]] = []
    current = None
    meta: set = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            current = node
            continue
        tensors = [a for a in _node_args(node) if a not in meta]
        if node.op == "output":
            if tensors != [current]:
                raise SparsetopoError(f"from_torch: {type(model).__name__} does not return the end of one chain")
            break
        if (node.op == "call_method" and node.target in _META_METHODS) or (
                node.op == "call_function" and node.target is getattr and tensors == [current]):
            meta.add(node)
            continue
        if len(tensors) != 1 or tensors[0] is not current:
            what = ("combines several tensors (a residual connection, concatenation or product)"
                    if len(tensors) > 1 else "reads an earlier value again (a branch)")
            raise SparsetopoError(f"from_torch: {type(model).__name__} is not a chain: {_describe(node)} {what}; "
                                  "only chains of layers are supported")
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, nn.Linear):
                layers.append((_mask_of(mod), None))
            elif isinstance(mod, nn.Conv2d):
                layers.append((_conv_mask(mod), tuple(mod.kernel_size)))
            elif not isinstance(mod, passes):
                raise SparsetopoError(f"from_torch: {_describe(node)} is a {type(mod).__name__}, which is not "
                                      "supported (Linear, Conv2d and activation, norm, pooling, dropout and "
                                      "flatten layers are)")
        elif node.op == "call_function" and node.target not in funcs and node.target is not operator.getitem:
            raise SparsetopoError(f"from_torch: {_describe(node)} is not supported between layers")
        elif node.op == "call_method" and node.target not in _PASS_METHODS:
            raise SparsetopoError(f"from_torch: {_describe(node)} is not supported between layers")
        elif node.op == "get_attr":
            raise SparsetopoError(f"from_torch: {_describe(node)} uses a parameter outside a layer")
        current = node
    if not layers:
        raise SparsetopoError("from_torch found no Linear or Conv2d layer in the model")
    return layers


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
