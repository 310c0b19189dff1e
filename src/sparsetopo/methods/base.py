"""The method interface and the one drop-then-grow routine shared by static, SET and RigL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..errors import SparsetopoError
from ..sparsity import SparsitySettings
from ..topology import Topology, epsilon_for_density, erdos_renyi, layer_densities, random_topology

if TYPE_CHECKING:  # pragma: no cover
    from ..models import SparseMLP

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise SparsetopoError(f"a method named {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(config: SparsitySettings) -> Method:
    if config.method not in METHODS:
        raise SparsetopoError(f"--method must be one of {', '.join(METHODS)}; got {config.method!r}")
    return METHODS[config.method](config)


@dataclass
class UpdateContext:
    """What a method may look at after an epoch."""

    model: SparseMLP
    optimizer: torch.optim.Optimizer
    epoch: int  # the epoch just finished, 1-based
    total_epochs: int
    regrowth: torch.Generator
    #: Gradients of the loss w.r.t. every layer's full (unmasked) weight; computed
    #: on first call and cached for the rest of this update.
    dense_grads: Callable[[], list[torch.Tensor]]
    #: The fraction to drop now when a step schedule decides it (``sparsify(update_every=...)``);
    #: ``None``: the method's own per-epoch rule.
    drop_fraction: float | None = None


@dataclass
class UpdateResult:
    changed_layers: list[int] = field(default_factory=list)
    reset_optimizer: bool = False


class Method:
    """A way of choosing and evolving a network's connectivity."""

    name: ClassVar[str] = ""
    sparse: ClassVar[bool] = True

    def __init__(self, config: SparsitySettings):
        self.config = config

    # --- topology
    def sparse_layer_ids(self, n_layers: int) -> list[int]:
        """Layers whose connectivity the method manages (the output layer stays dense by default)."""
        return list(range(n_layers - 1 if self.config.dense_output else n_layers))

    def densities(self, shapes) -> list[float]:
        """Density of each layer (weight shapes ``(n_out, n_in)`` or ``(out, in, kh, kw)``) under
        this config's ``distribution``, ``epsilon`` or ``density``; dense layers get 1."""
        c = self.config
        sparse = self.sparse_layer_ids(len(shapes))
        return layer_densities(shapes, sparse, c.distribution, epsilon=c.epsilon if c.density is None else None,
                               density=c.density)

    def target_counts(self, shapes) -> list[int]:
        """Connections per layer of the sparse network of this config."""
        return [int(round(d * int(np.prod(s)))) for d, s in zip(self.densities(shapes), shapes)]

    def initial_topology(self, shapes, seed: int) -> Topology | None:
        """The starting topology; ``None`` means fully connected."""
        if not self.sparse:
            return None
        if self.config.distribution == "erdos_renyi" and all(len(s) == 2 for s in shapes):
            # An MLP: SET's generator, exactly as before the other distributions existed (same seed,
            # same topology).
            sizes = [shapes[0][1]] + [s[0] for s in shapes]
            c = self.config
            eps = epsilon_for_density(sizes, c.density, dense_output=c.dense_output) if c.density is not None \
                else float(c.epsilon)
            return erdos_renyi(sizes, eps, seed, dense_output=c.dense_output)
        return random_topology(shapes, self.densities(shapes), seed)

    # --- schedule
    def total_epochs(self, shapes) -> int:
        return self.config.epochs

    def phase(self, epoch: int, shapes) -> str:
        return "train"

    # --- hooks
    def on_start(self, model: SparseMLP) -> None:
        """Called once before the first epoch of a fresh (not resumed) run."""

    def after_epoch(self, ctx: UpdateContext) -> UpdateResult:
        return UpdateResult()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def drop_and_grow(mask: torch.Tensor, drop: torch.Tensor,
                  grow_score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the ``drop`` connections and add as many where ``grow_score`` is highest.

    Only positions inactive after the drop may grow (a dropped one may come
    back). Returns the new boolean mask and the boolean mask of grown positions;
    the connection count is unchanged.
    """
    mask = mask.bool()
    drop = drop & mask
    n = int(drop.sum())
    grown = torch.zeros_like(mask)
    if n == 0:
        return mask, grown
    kept = mask & ~drop
    score = grow_score.float().masked_fill(kept, float("-inf")).flatten()
    idx = torch.topk(score, n, sorted=False).indices
    grown.view(-1)[idx] = True
    return kept | grown, grown


def lowest(score: torch.Tensor, eligible: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` eligible positions with the lowest score."""
    out = torch.zeros_like(eligible, dtype=torch.bool)
    k = min(int(k), int(eligible.sum()))
    if k <= 0:
        return out
    s = score.float().masked_fill(~eligible, float("inf")).flatten()
    out.view(-1)[torch.topk(s, k, largest=False, sorted=False).indices] = True
    return out


def reset_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, keep: torch.Tensor) -> None:
    """Zero the optimizer's per-element state of ``param`` where ``keep`` is False."""
    state = optimizer.state.get(param)
    if not state:
        return
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.mul_(keep.to(value.dtype))


class DropGrowMethod(Method):
    """After each epoch but the last, drop connections and regrow as many, per sparse layer.

    A subclass supplies only :meth:`drop` (which active connections go) and
    :meth:`grow_score` (where new ones appear: highest score first). New
    weights start at zero (``regrow_init="zero"``) or N(0, init_std^2)
    (``"normal"``, SET's NumPy code), always with fresh optimizer state.
    """

    def drop(self, weight: torch.Tensor, mask: torch.Tensor, ctx: UpdateContext) -> torch.Tensor:
        return torch.zeros_like(mask, dtype=torch.bool)

    def grow_score(self, layer_id: int, weight: torch.Tensor, mask: torch.Tensor,
                   ctx: UpdateContext) -> torch.Tensor:
        raise NotImplementedError

    def after_epoch(self, ctx: UpdateContext) -> UpdateResult:
        result = UpdateResult()
        if ctx.epoch >= ctx.total_epochs:  # connections grown now would never be trained
            return result
        layers = ctx.model.masked_layers
        for k in self.sparse_layer_ids(len(layers)):
            layer = layers[k]
            w, mask = layer.weight.detach(), layer.weight_mask.bool()
            drop = self.drop(w, mask, ctx)
            if not drop.any():
                continue
            new_mask, grown = drop_and_grow(mask, drop, self.grow_score(k, w, mask, ctx))
            with torch.no_grad():
                layer.weight_mask.copy_(new_mask)
                layer.weight.mul_(new_mask & ~grown)
                if self.config.regrow_init == "normal":
                    layer.weight[grown] = self.config.init_std * torch.randn(
                        int(grown.sum()), generator=ctx.regrowth, dtype=layer.weight.dtype)
            reset_optimizer_state(ctx.optimizer, layer.weight, new_mask & ~grown)
            result.changed_layers.append(k)
        return result
