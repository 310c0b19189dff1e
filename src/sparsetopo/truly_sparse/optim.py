"""SGD and Adam over a truly sparse network's 1-D parameters, each step one fused parallel pass.

:class:`ValuesSGD` and :class:`ValuesAdam` compute ``torch.optim.SGD`` (momentum, dampening 0,
coupled weight decay) and ``torch.optim.Adam`` (coupled weight decay, no amsgrad) -- the same
formulas, in the same order of operations, to float rounding -- and read and write the same
``state_dict`` layout, so checkpoints of either kind resume with the other. Why not torch's own:

* every ``torch.optim`` optimizer imports ``torch._dynamo`` when it is built and first steps
  (``torch._disable_dynamo`` on ``add_param_group``, ``zero_grad``, ``step``...): 1.2 s on an
  idle 2-core machine, 6 s beside other work -- more than a 3312-30000-30000-30000-5 network's two
  epochs (issue 18's start-up target);
* torch's CPU step makes three to five passes over each tensor (``grad + wd * p``, the momentum
  update, the parameter update; Adam more), single-threaded for these 1-D tensors; the kernels
  here read and write each connection once, in parallel over both cores.

They duck-type the part of :class:`torch.optim.Optimizer` that sparsetopo and
:mod:`sparsetopo.truly_sparse.evolve` use: ``param_groups``, ``state`` (keyed by parameter, with
torch's names ``momentum_buffer``, ``step``, ``exp_avg``, ``exp_avg_sq``), ``zero_grad``,
``step``, ``state_dict`` and ``load_state_dict``. Parameters must be 1-D (``values`` and biases
are), contiguous and on the CPU: what :class:`~sparsetopo.truly_sparse.TrulySparseLinear` holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._numba_cache import choose_cache_dir

choose_cache_dir(Path(__file__).parent, "the truly sparse optimizer kernels")

import numba  # noqa: E402  (after the cache directory is chosen)
from numba import prange  # noqa: E402

__all__ = ["ValuesAdam", "ValuesSGD"]

_jit = numba.njit(parallel=True, nogil=True, cache=True, fastmath=False)
_serial = numba.njit(nogil=True, cache=True, fastmath=False)

#: Below this many elements a tensor is stepped on one thread: waking the pool costs more than the
#: pass (measured: 0.6 ms per call for a 1,000-element bias on a loaded 2-core machine, 8 per step).
PARALLEL_MIN = 1 << 15


_inline = numba.njit(inline="always", fastmath=False)


@_inline
def _sgd_at(i, p, g, buf, neg_lr, momentum, weight_decay, use_buf, first):  # pragma: no cover - compiled
    # torch: d = g + wd * p; buf = d (first step) or buf * momentum + d; p += -lr * buf
    d = g[i] + weight_decay * p[i]
    if use_buf:
        if not first:
            d = buf[i] * momentum + d
        buf[i] = d
    p[i] = p[i] + neg_lr * d


@_inline
def _adam_at(i, p, g, m, v, w1, beta2, w2, eps, weight_decay, neg_step_size, bc2_sqrt):  # pragma: no cover
    # torch: d = g + wd * p; m = lerp(m, d, 1 - b1) = m + (1 - b1) * (d - m);
    #        v = b2 * v + (1 - b2) * (d * d); p += -step_size * (m / (sqrt(v) / sqrt(bc2) + eps))
    d = g[i] + weight_decay * p[i]
    m[i] = m[i] + w1 * (d - m[i])
    v[i] = v[i] * beta2 + w2 * (d * d)
    p[i] = p[i] + neg_step_size * (m[i] / (np.sqrt(v[i]) / bc2_sqrt + eps))


# Each kernel twice, on the same element update: parallel for the values, serial for biases and
# small layers, so the two give identical results.
@_jit
def _sgd(p, g, buf, neg_lr, momentum, weight_decay, use_buf, first):  # pragma: no cover - compiled
    for i in prange(p.shape[0]):
        _sgd_at(i, p, g, buf, neg_lr, momentum, weight_decay, use_buf, first)


@_serial
def _sgd_serial(p, g, buf, neg_lr, momentum, weight_decay, use_buf, first):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        _sgd_at(i, p, g, buf, neg_lr, momentum, weight_decay, use_buf, first)


@_jit
def _adam(p, g, m, v, w1, beta2, w2, eps, weight_decay, neg_step_size, bc2_sqrt):  # pragma: no cover - compiled
    for i in prange(p.shape[0]):
        _adam_at(i, p, g, m, v, w1, beta2, w2, eps, weight_decay, neg_step_size, bc2_sqrt)


@_serial
def _adam_serial(p, g, m, v, w1, beta2, w2, eps, weight_decay, neg_step_size, bc2_sqrt):  # pragma: no cover
    for i in range(p.shape[0]):
        _adam_at(i, p, g, m, v, w1, beta2, w2, eps, weight_decay, neg_step_size, bc2_sqrt)


def _check_param(p: torch.Tensor) -> None:
    if p.dim() != 1 or not p.is_contiguous() or p.device.type != "cpu" or p.dtype not in (torch.float32,
                                                                                           torch.float64):
        raise ValueError(f"the truly sparse optimizers take 1-D contiguous float32/float64 CPU tensors; got "
                         f"shape {tuple(p.shape)}, dtype {p.dtype}, device {p.device}")


class _ValuesOptimizer:
    """What :class:`ValuesSGD` and :class:`ValuesAdam` share: groups, state, (de)serialisation."""

    def __init__(self, params: Iterable[torch.Tensor], defaults: dict[str, Any]):
        params = [p for p in params]
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            _check_param(p)
        self.defaults = dict(defaults)
        self.param_groups = [{**self.defaults, "params": params}]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({settings})"

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def _params_with_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse or p.grad.shape != p.shape:
                        raise ValueError("the truly sparse optimizers take dense gradients of the parameter's shape")
                    yield group, p, p.grad.contiguous()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict``'s layout: state by parameter index, groups without tensors."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by this class or by the matching ``torch.optim`` optimizer."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameters or groups")
        by_index = {}
        for saved, group in zip(groups, self.param_groups):
            group.update({k: saved[k] for k in self.defaults if k in saved})
            by_index.update(zip(saved["params"], group["params"]))
        self.state = {}
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            # Copies, as torch does: the caller's dict (another optimizer's state) must not change.
            self.state[p] = {k: (v.to(dtype=p.dtype, copy=True).contiguous() if torch.is_tensor(v) and v.dim()
                                 else v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}


class ValuesSGD(_ValuesOptimizer):
    """``torch.optim.SGD(params, lr, momentum, weight_decay)`` in one fused parallel pass per tensor.

    Parameters
    ----------
    params : iterable of torch.Tensor
        1-D contiguous CPU parameters.
    lr : float
        Learning rate.
    momentum : float
        Momentum (no buffer is kept when 0).
    weight_decay : float
        Coupled L2 weight decay (added to the gradient).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0, "weight_decay": weight_decay,
                                  "nesterov": False, "maximize": False})

    @torch.no_grad()
    def step(self) -> None:
        for group, p, g in self._params_with_grad():
            buf = first = None
            if group["momentum"] != 0:  # without momentum torch keeps no state either
                state = self.state.setdefault(p, {})
                first = state.get("momentum_buffer") is None
                if first:
                    state["momentum_buffer"] = torch.empty_like(p)
                buf = state["momentum_buffer"]
            # Scalars in the tensor's dtype, as torch computes: float32 arithmetic for float32 values.
            f = p.numpy().dtype.type
            kernel = _sgd if p.numel() >= PARALLEL_MIN else _sgd_serial
            kernel(p.numpy(), g.numpy(), (buf if buf is not None else p).numpy(), f(-group["lr"]),
                 f(group["momentum"]), f(group["weight_decay"]), buf is not None, bool(first))


class ValuesAdam(_ValuesOptimizer):
    """``torch.optim.Adam(params, lr, betas, eps, weight_decay)`` in one fused parallel pass per tensor.

    Parameters
    ----------
    params : iterable of torch.Tensor
        1-D contiguous CPU parameters.
    lr : float
        Learning rate.
    betas : tuple of float
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the denominator.
    weight_decay : float
        Coupled L2 weight decay (added to the gradient, as ``torch.optim.Adam``; not AdamW).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"need lr, eps, weight_decay >= 0 and betas in [0, 1); got lr={lr}, betas={betas}, "
                             f"eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": False, "maximize": False})

    @torch.no_grad()
    def step(self) -> None:
        for group, p, g in self._params_with_grad():
            state = self.state.get(p)
            if not state:
                state = self.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                         "exp_avg_sq": torch.zeros_like(p)}
            state["step"] += 1
            t = float(state["step"])
            beta1, beta2 = (float(b) for b in group["betas"])
            f = p.numpy().dtype.type
            kernel = _adam if p.numel() >= PARALLEL_MIN else _adam_serial
            kernel(p.numpy(), g.numpy(), state["exp_avg"].numpy(), state["exp_avg_sq"].numpy(), f(1 - beta1),
                  f(beta2), f(1 - beta2), f(group["eps"]), f(group["weight_decay"]),
                  f(-float(group["lr"]) / (1 - beta1 ** t)), f((1 - beta2 ** t) ** 0.5))
