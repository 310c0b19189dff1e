"""The method interface and the one drop-then-grow routine shared by static, SET and RigL.

A method describes itself with class attributes (what it needs, what it accepts), so the
trainer, :func:`~sparsetopo.methods.sparsify`, the experiments and ``--help`` ask the method
instead of keeping lists of names. This module imports torch only when a method runs, so
that declaring configs (and ``--help``) stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .. import masking
from ..config import check_value
from ..errors import SparsetopoError
from ..sparsity import SparsitySettings

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from ..masking import MaskedNetwork
    from ..schedule import UpdateSchedule
    from ..topology import Topology

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise SparsetopoError(f"a method named {cls.name!r} is already registered")
    if cls.settings_cls is not None and not dataclasses.is_dataclass(cls.settings_cls):
        raise SparsetopoError(f"{cls.__name__}.settings_cls must be a dataclass; got {cls.settings_cls!r}")
    METHODS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a method from the registry (for tests and plug-ins that clean up)."""
    METHODS.pop(name, None)


def method_class(name: str) -> type[Method]:
    """The registered method called ``name``."""
    check_value("method", name, str, {"choices": tuple(METHODS)})
    return METHODS[name]


def get_method(config: SparsitySettings) -> Method:
    return method_class(config.method)(config)


def check_method_settings(config: SparsitySettings, *, flags: bool = False) -> SparsitySettings:
    """Check the rules of ``config.method`` that tie its own settings to the others (e.g. lottery's
    ``rewind_epoch <= round_epochs``), naming fields as ``--flags`` with ``flags``; returns ``config``.

    Run after ``config.validate()``; a config without the method's settings class has nothing to check.
    """
    method = method_class(config.method)
    if method.settings_cls is not None and isinstance(config, method.settings_cls):
        method.check_settings(config, lambda field: "--" + field.replace("_", "-") if flags else field)
    return config


def methods_help() -> str:
    """One line per registered method: the ``--method`` help."""
    return "; ".join(f"{name}: {cls.description}" for name, cls in METHODS.items())


def settings_class(base: type, method: str) -> type:
    """``base`` (a settings dataclass) extended with ``method``'s own ``settings_cls`` fields.

    ``base`` itself when it already has them (``TrainConfig`` has lottery's); the keys
    stay flat either way, so YAML files, flags and config.yaml are unchanged.
    """
    own = method_class(method).settings_cls
    if own is None or issubclass(base, own):
        return base
    key = (base, own)
    if key not in _COMPOSED:
        _COMPOSED[key] = dataclass(type(base.__name__, (own, base), {"__module__": base.__module__}))
    return _COMPOSED[key]


_COMPOSED: dict[tuple[type, type], type] = {}


@dataclass
class UpdateContext:
    """What a method may look at after an epoch."""

    model: MaskedNetwork
    optimizer: torch.optim.Optimizer
    epoch: int  # the epoch just finished, 1-based
    total_epochs: int
    regrowth: torch.Generator
    #: Gradients of the loss w.r.t. every layer's full (unmasked) weight; computed
    #: on first call and cached for the rest of this update.
    dense_grads: Callable[[], list[torch.Tensor]]
    #: The fraction to drop now when a step schedule decides it (``update_every``);
    #: ``None``: the method's own per-epoch rule (:meth:`DropGrowMethod.epoch_drop_fraction`).
    drop_fraction: float | None = None
    #: Truly sparse layers: the regrowth randomness (a NumPy Generator from the regrowth seed,
    #: checkpointed by its owner), what :mod:`sparsetopo.truly_sparse.evolve` draws from.
    regrowth_rng: np.random.Generator | None = None
    #: Truly sparse layers: per masked layer ``(x, gy)``, the inputs and output gradients of a few
    #: batches (:meth:`~sparsetopo.truly_sparse.TrulySparseLinear.capture`: ``gy^T x`` is the dense
    #: weight gradient, RigL's grow criterion, formed block by block); computed on first call and cached.
    captured: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]] | None = None


@dataclass
class UpdateResult:
    changed_layers: list[int] = field(default_factory=list)
    reset_optimizer: bool = False


class Method:
    """A way of choosing and evolving a network's connectivity.

    A subclass sets ``name`` and describes itself with the class attributes below; its
    own settings (fields beyond :class:`~sparsetopo.sparsity.SparsitySettings`) are the
    dataclass ``settings_cls``, whose fields become flat keys and flags of ``train``.
    """

    name: ClassVar[str] = ""
    #: One line for ``--method`` help.
    description: ClassVar[str] = ""
    #: Starts from a sparse topology (``False``: fully connected at first).
    starts_sparse: ClassVar[bool] = True
    #: Changes the topology during training.
    evolves_topology: ClassVar[bool] = False
    #: Its updates need gradients at every weight position (``loss_closure`` in sparsify).
    needs_dense_gradients: ClassVar[bool] = False
    #: May start from a saved topology (``--initial-topology``).
    accepts_initial_topology: ClassVar[bool] = False
    #: Runs under :func:`~sparsetopo.methods.sparsify` (and step schedules): its updates are
    #: drop-then-grow on the masks alone, with no retraining or rewinding.
    works_with_sparsify: ClassVar[bool] = False
    #: Its own settings dataclass, or ``None``.
    settings_cls: ClassVar[type | None] = None
    #: The training engines it runs on (``TrainConfig.engine``): ``masked`` (dense weight tensors with
    #: masks) and, for methods with a truly sparse rule (:meth:`DropGrowMethod.truly_sparse_update`),
    #: ``truly-sparse``.
    engines: ClassVar[tuple[str, ...]] = ("masked",)
    #: Why it does not run on the other engines (completes "--method X ... and runs on --engine masked only").
    engine_note: ClassVar[str] = ""
    #: The run's step schedule, given by :meth:`bind_schedule` (``None`` until then).
    schedule: UpdateSchedule | None = None

    def __init__(self, config: SparsitySettings):
        own = type(self).settings_cls
        if own is not None and dataclasses.is_dataclass(config) and not isinstance(config, own):
            # A config built without this method's fields (``TrainConfig(method="gmp")`` in Python
            # rather than from_dict or the CLI): the same settings with the method's defaults added.
            composed = settings_class(type(config), self.name)
            config = composed(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
        self.config = config

    @property
    def sparse(self) -> bool:
        """Alias of ``starts_sparse`` (the older name)."""
        return self.starts_sparse

    @classmethod
    def check_settings(cls, config, name: Callable[[str], str]) -> None:
        """Rules tying this method's settings to others (``name(field)`` spells a field as the
        caller writes it); raise :class:`SparsetopoError`. Default: none."""

    # --- topology
    @classmethod
    def require_dense_gradients(cls, loss_closure) -> None:
        """Refuse a missing ``loss_closure`` when this method's update needs dense gradients."""
        if cls.needs_dense_gradients and loss_closure is None:
            raise SparsetopoError(f"{cls.name} needs loss_closure, a function returning the loss on a batch")

    def sparse_layer_ids(self, n_layers: int) -> list[int]:
        """Layers whose connectivity the method manages (the output layer stays dense by default)."""
        return list(range(n_layers - 1 if self.config.dense_output else n_layers))

    def densities(self, shapes) -> list[float]:
        """Density of each layer (weight shapes ``(n_out, n_in)`` or ``(out, in, kh, kw)``) under
        this config's ``distribution``, ``epsilon`` or ``density``; dense layers get 1."""
        from ..topology import layer_densities

        c = self.config
        sparse = self.sparse_layer_ids(len(shapes))
        return layer_densities(shapes, sparse, c.distribution, epsilon=c.epsilon if c.density is None else None,
                               density=c.density)

    def target_counts(self, shapes) -> list[int]:
        """Connections per layer of the sparse network of this config."""
        return [int(round(d * math.prod(s))) for d, s in zip(self.densities(shapes), shapes)]

    def initial_topology(self, shapes, seed: int) -> Topology | None:
        """The starting topology (:func:`sparsetopo.masking.initial_topology`); ``None`` means fully connected."""
        if not self.starts_sparse:
            return None
        return masking.initial_topology(self.config, shapes, seed, self.sparse_layer_ids(len(shapes)))

    # --- schedule
    def total_epochs(self, shapes) -> int:
        return self.config.epochs

    def phase(self, epoch: int, shapes) -> str:
        return "train"

    # --- hooks
    def on_start(self, model: MaskedNetwork) -> None:
        """Called once before the first epoch of a fresh (not resumed) run."""

    def bind_schedule(self, schedule: UpdateSchedule, *, total_steps: int | None = None,
                      name: Callable[[str], str] = str) -> None:
        """Take the run's step schedule (``train`` and ``sparsify`` call this once, before training);
        ``total_steps``: the run's optimizer steps when known (``train``), ``name(field)`` spells a
        field as the caller writes it. A method with its own timing (``gmp``) checks it here."""
        self.schedule = schedule

    def updates_after_step(self, step: int) -> bool:
        """Whether a step-scheduled update follows optimizer step ``step`` (default: the schedule's rule)."""
        schedule = getattr(self, "schedule", None)
        return schedule is not None and schedule.should_update(step)

    def prune_at_init(self, model: MaskedNetwork, data, loss_fn) -> float:
        """Choose the topology before training (pruning at initialisation: ``snip``, ``grasp``,
        ``synflow``) from ``data`` (an iterable of ``(inputs, targets)`` batches) and ``loss_fn``;
        returns the FLOPs it spent. Default: nothing, 0."""
        return 0.0

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
    import torch

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
    import torch

    out = torch.zeros_like(eligible, dtype=torch.bool)
    k = min(int(k), int(eligible.sum()))
    if k <= 0:
        return out
    s = score.float().masked_fill(~eligible, float("inf")).flatten()
    out.view(-1)[torch.topk(s, k, largest=False, sorted=False).indices] = True
    return out


def reset_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, keep: torch.Tensor) -> None:
    """Zero the optimizer's per-element state of ``param`` where ``keep`` is False."""
    import torch

    state = optimizer.state.get(param)
    if not state:
        return
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.mul_(keep.to(value.dtype))


class DropGrowMethod(Method):
    """After each epoch but the last (or each step-scheduled update), drop connections and
    regrow as many, per sparse layer.

    A subclass supplies only :meth:`drop` (which active connections go) and
    :meth:`grow_score` (where new ones appear: highest score first); the fraction to move
    is :meth:`fraction` (the schedule's, else :meth:`epoch_drop_fraction`). New weights
    start at zero (``regrow_init="zero"``) or N(0, init_std^2) (``"normal"``, SET's NumPy
    code), always with fresh optimizer state.
    """

    accepts_initial_topology = True
    works_with_sparsify = True

    def epoch_drop_fraction(self, epoch: int, total: int) -> float:
        """The fraction moved after ``epoch`` of ``total`` when no step schedule decides: ``zeta``."""
        return self.config.zeta

    def fraction(self, ctx: UpdateContext | None) -> float:
        """The fraction to move in this update (``zeta`` without a context)."""
        if ctx is None:
            return self.config.zeta
        if ctx.drop_fraction is not None:
            return ctx.drop_fraction
        return self.epoch_drop_fraction(ctx.epoch, ctx.total_epochs)

    def drop(self, weight: torch.Tensor, mask: torch.Tensor, ctx: UpdateContext) -> torch.Tensor:
        import torch

        return torch.zeros_like(mask, dtype=torch.bool)

    def grow_score(self, layer_id: int, weight: torch.Tensor, mask: torch.Tensor,
                   ctx: UpdateContext) -> torch.Tensor:
        raise NotImplementedError

    def after_epoch(self, ctx: UpdateContext) -> UpdateResult:
        """Update every sparse layer: a masked one by :meth:`drop` and :meth:`grow_score`, a truly
        sparse one (``layer.truly_sparse``) by :meth:`truly_sparse_update`."""
        result = UpdateResult()
        if ctx.epoch >= ctx.total_epochs:  # connections grown now would never be trained
            return result
        layers = ctx.model.masked_layers
        for k in self.sparse_layer_ids(len(layers)):
            layer = layers[k]
            if getattr(layer, "truly_sparse", False):
                changed = self.truly_sparse_update(k, layer, self.fraction(ctx), ctx)
            else:
                changed = self._drop_and_grow_layer(k, layer, ctx)
            if changed:
                result.changed_layers.append(k)
        return result

    def truly_sparse_update(self, layer_id: int, layer, fraction: float, ctx: UpdateContext) -> bool:
        """This method's rule on a :class:`~sparsetopo.truly_sparse.TrulySparseLinear` ``layer``, moving
        ``fraction`` of its connections in O(connections) (:mod:`sparsetopo.truly_sparse.evolve`, which moves
        the optimizer state of kept connections and starts grown ones at zero state); whether it changed.
        A method that runs on ``engine="truly-sparse"`` lists it in ``engines`` and overrides this."""
        raise SparsetopoError(f"method {self.name} has no truly sparse rule; it runs on engine "
                              f"{' or '.join(self.engines)} only")

    @staticmethod
    def regrowth_rng(ctx: UpdateContext) -> np.random.Generator:
        """``ctx.regrowth_rng``, which a truly sparse update needs (the caller owns and checkpoints it)."""
        if ctx.regrowth_rng is None:
            raise SparsetopoError("a truly sparse update needs UpdateContext.regrowth_rng (a numpy Generator)")
        return ctx.regrowth_rng

    def _drop_and_grow_layer(self, k: int, layer, ctx: UpdateContext) -> bool:
        """One layer's update; whether it changed."""
        import torch

        w, mask = layer.weight.detach(), layer.weight_mask.bool()
        drop = self.drop(w, mask, ctx)
        if not drop.any():
            return False
        new_mask, grown = drop_and_grow(mask, drop, self.grow_score(k, w, mask, ctx))
        with torch.no_grad():
            layer.weight_mask.copy_(new_mask)
            layer.weight.mul_(new_mask & ~grown)
            if self.config.regrow_init == "normal":
                # Drawn on the CPU from the seeded generator, then moved (same draws on every device).
                layer.weight[grown] = self.config.init_std * torch.randn(
                    int(grown.sum()), generator=ctx.regrowth, dtype=layer.weight.dtype).to(layer.weight.device)
        reset_optimizer_state(ctx.optimizer, layer.weight, new_mask & ~grown)
        return True
