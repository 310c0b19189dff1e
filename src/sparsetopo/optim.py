"""An SGD that does O(connections) work on sparse gradients.

At 0.6 % density a step of ``torch.optim.SGD`` on a masked 784x784 layer is
eight passes over 614,656 floats (gradient zeroing, weight decay, momentum,
update, masking) for 3,772 live weights: 90 % of a training step. The sparse
kernels of :class:`sparsetopo.models.MaskedLinear` can hand back the weight
gradient as a sparse COO tensor (``sparse_grad = True``); :class:`MaskedSGD`
then updates only those positions. Dense gradients get exactly
``torch.optim.SGD``'s update, so one optimizer serves every layer.
"""

from __future__ import annotations

import torch

from .errors import SparsetopoError

__all__ = ["MaskedSGD"]


class MaskedSGD(torch.optim.Optimizer):
    """SGD with momentum and L2 weight decay, as ``torch.optim.SGD`` (no dampening,
    no Nesterov), that updates only the stored positions of sparse gradients.

    The momentum buffer is a dense tensor of the parameter's shape, so that
    optimizer state dicts, checkpoints and
    :func:`sparsetopo.methods.base.reset_optimizer_state` treat it as the
    usual one; a sparse step reads and writes it at the gradient's positions
    only. Positions absent from a sparse gradient are left untouched (their
    weight and momentum are zero in a masked layer).
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        if not lr > 0:
            raise SparsetopoError(f"lr must be > 0, got {lr}")
        if momentum < 0 or weight_decay < 0:
            raise SparsetopoError(f"momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if p.grad.is_sparse:
                    self._sparse_step(p, p.grad, state, lr, mom, wd)
                else:
                    self._dense_step(p, p.grad, state, lr, mom, wd)
        return loss

    @staticmethod
    def _dense_step(p, grad, state, lr, mom, wd):
        d = grad.add(p, alpha=wd) if wd else grad
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(mom).add_(d)
            d = buf
        p.add_(d, alpha=-lr)

    @staticmethod
    def _sparse_step(p, grad, state, lr, mom, wd):
        flat, values = _flat_positions(grad)
        pf = p.view(-1)
        w = pf.index_select(0, flat)
        d = values + wd * w if wd else values
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.zeros_like(p)
                b = d.clone()
            else:
                b = buf.view(-1).index_select(0, flat).mul_(mom).add_(d)
            buf.view(-1).index_copy_(0, flat, b)
            d = b
        pf.index_copy_(0, flat, w - lr * d)


def _flat_positions(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major flat positions of a sparse COO gradient and its values, duplicates summed.

    Autograd hands over the sparse kernels' gradients without their
    "coalesced" flag, and ``coalesce()`` sorts. Positions already strictly
    increasing (one backward pass) are unique and need no sort; anything
    else (accumulated gradients) is coalesced.
    """
    if not grad.is_coalesced():
        idx = grad._indices()
        flat = _row_major(idx, grad.shape)
        if flat.numel() < 2 or bool((flat[1:] > flat[:-1]).all()):
            return flat, grad._values()
        grad = grad.coalesce()
    return _row_major(grad.indices(), grad.shape), grad.values()


def _row_major(idx: torch.Tensor, shape) -> torch.Tensor:
    flat = idx[0]
    for k in range(1, idx.shape[0]):
        flat = flat * shape[k] + idx[k]
    return flat
