"""Which of a model's layers ``sparsify`` keeps dense: the first and last *executed*, not declared.

A model may declare its layers in any order (``self.head`` before ``self.body``); what its forward
pass runs decides which layer is the output layer. The order is found, most robust first:

1. ``example_input`` given: the model runs once on it (``torch.no_grad``, eval mode, restored
   afterwards) with a forward pre-hook on every layer recording the calls. This follows any Python
   control flow, the one thing tracing cannot.
2. Otherwise ``torch.fx`` traces the model symbolically, as :meth:`Topology.from_torch` does; no
   input is needed (a dummy input derived from the first layer's ``in_features`` would be a guess:
   the first declared layer need not be the first executed one, and a CNN's input size is unknown).
3. When tracing fails (data-dependent control flow, among others) the declaration order is used
   with a warning that says so and how to do better (``example_input=``).

A layer a forward pass never calls comes after the executed ones and is made sparse (it is never
the output layer). A layer called twice counts at its first call.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import SparsetopoError

__all__ = ["execution_order", "layer_rows", "summary_text"]


def execution_order(model: nn.Module, named: list[tuple[str, nn.Module]],
                    example_input=None) -> tuple[list[tuple[str, nn.Module]], int, str]:
    """``named`` (``(name, layer)`` pairs in declaration order) in execution order.

    Returns the reordered pairs, how many of them the forward pass runs (they come first) and how
    the order was found (``"example_input"``, ``"torch.fx"``, ``"declaration"``).
    """
    if len(named) == 1 and example_input is None:
        return list(named), 1, "declaration"  # one layer: nothing to order
    if example_input is not None:
        called = _run_with_hooks(model, named, example_input)
        how = "example_input"
    else:
        try:
            called = _traced_calls(model, {name for name, _ in named})
        except Exception as exc:  # fx fails on data-dependent control flow, among others
            warnings.warn(f"sparsify: cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}); its layers are taken in declaration order, so "
                          f"{named[-1][0] or '<root>'!r}, declared last, is taken for the output layer. Pass "
                          "example_input= (a batch the model accepts) to find the layers by running it",
                          stacklevel=4)
            return list(named), len(named), "declaration"
        how = "torch.fx"
    by_name = dict(named)
    executed = [(name, by_name[name]) for name in dict.fromkeys(called) if name in by_name]
    if not executed:
        warnings.warn(f"sparsify: no layer of {type(model).__name__} ran in its forward pass ({how}); its layers "
                      "are taken in declaration order", stacklevel=4)
        return list(named), len(named), "declaration"
    seen = {name for name, _ in executed}
    return executed + [(n, m) for n, m in named if n not in seen], len(executed), how


def _traced_calls(model: nn.Module, names: set[str]) -> list[str]:
    """The layer calls of ``model``'s torch.fx graph, in order (Linear and Conv2d are fx leaves)."""
    from .._torch_graph import _trace

    graph = _trace(model).graph
    return [node.target for node in graph.nodes if node.op == "call_module" and node.target in names]


def _run_with_hooks(model: nn.Module, named, example_input) -> list[str]:
    """The layers' names in the order one forward pass on ``example_input`` calls them."""
    called: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: called.append(name)) for name, m in named]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # no dropout draws, no batch-norm statistics updated by this probe
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    except Exception as exc:
        raise SparsetopoError(f"sparsify: example_input: {type(model).__name__} failed on it "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); give a batch the "
                              "model accepts (a tuple for several arguments)") from None
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return called


def layer_rows(named, densities, sparse_ids) -> list[dict]:
    """One record per layer (in execution order): name, type, weight shape, density, whether sparse."""
    return [{"name": name or "<root>", "type": type(m).__name__, "shape": tuple(m.weight.shape),
             "density": float(d), "sparse": k in sparse_ids}
            for k, ((name, m), d) in enumerate(zip(named, densities))]


def summary_text(rows: list[dict], how: str) -> str:
    """The table :meth:`Sparsifier.summary` returns: a line per layer, then which stay dense and why."""
    found = {"example_input": "running example_input", "torch.fx": "tracing the forward pass (torch.fx)",
             "declaration": "declaration order"}[how]
    width = max(len(r["name"]) for r in rows)
    lines = [f"layers in execution order (found by {found}):"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        state = f"sparse, density {r['density']:.2%}" if r["sparse"] else "dense"
        lines.append(f"  {r['name']:<{width}}  {r['type']:<7} {shape:>14}  {state}")
    dense = [r["name"] for r in rows if not r["sparse"]]
    lines.append(f"dense: {', '.join(dense) if dense else 'none'}")
    return "\n".join(lines)
