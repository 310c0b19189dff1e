"""Sparse training for *your own* PyTorch model and training loop.

>>> sp = sparsify(model, "set", epsilon=20, seed=0)   # masks nn.Linear and nn.Conv2d (the output layer stays dense)
>>> print(sp.summary())                                # which layers it made sparse, at what density
>>> for epoch in range(1, epochs + 1):
...     for x, y in loader:                           # your loop, unchanged
...         opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
...     sp.end_epoch(opt, epoch, epochs)               # SET: drop and regrow
>>> Topology.from_torch(model)                        # or sp.topology()

Each ``nn.Linear`` and ``nn.Conv2d`` gets a ``weight_mask`` buffer (so masks travel with
``state_dict``) and a gradient hook that zeroes gradients outside the mask;
with zero weights and zero gradients there, SGD (momentum, weight decay) and
Adam keep those weights exactly zero without touching your loop.

With ``engine="truly-sparse"`` every ``nn.Linear`` is *replaced* by a
:class:`~sparsetopo.truly_sparse.TrulySparseLinear` holding only its connections (the mask's positions of
the same draw, their weights copied; dense layers get every connection), so your loop trains truly sparse;
``end_epoch``/``step`` update through the method's truly sparse rule (SET, RigL with ``loss_closure``,
static). Create the optimizer after ``sparsify``. MLP-style models only (no ``nn.Conv2d``), float32/float64
on the CPU; the ITOP record (``itop_rate``, ``snapshot``) is kept by the masked engine only.

Distributed data parallel: call ``sparsify`` (same ``seed`` on every rank)
*before* wrapping the model in ``DistributedDataParallel``, then create the
optimizer; call ``step``/``end_epoch`` on every rank. RigL's dense gradients
are averaged over the ranks and every update ends with rank 0's masks and
weights broadcast, so all ranks hold identical networks whatever DDP's
buffer-sync setting.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._torch_graph import check_no_shared_weights, expand_groups
from ..errors import SparsetopoError
from ..masking import MaskedNetwork, dense_gradients, per_layer_masks, rescale_to_fan_in
from ..schedule import DROP_SCHEDULES, UpdateSchedule
from ..sparsity import SparsitySettings
from ..topology import Topology, layer_densities
from .base import METHODS, Method, UpdateContext, check_method_settings, method_class, settings_class
from .layer_order import execution_order, layer_rows, summary_text

__all__ = ["DROP_SCHEDULES", "Sparsifier", "sparsify"]

_log = logging.getLogger(__name__)


def _sparsify_method(method: str):
    """The class of a method ``sparsify`` can apply, or a clear error listing those it can."""
    cls = method_class(method) if method in METHODS else None
    if cls is None or not cls.works_with_sparsify:
        able = [name for name, c in METHODS.items() if c.works_with_sparsify]
        able = ", ".join(able[:-1]) + " or " + able[-1] if len(able) > 1 else "".join(able)
        raise SparsetopoError(f"sparsify supports method {able}; got {method!r}")
    return cls


class Sparsifier(MaskedNetwork):
    """Masks and a drop-then-grow method attached to a model's ``nn.Linear`` and ``nn.Conv2d`` layers
    (in execution order; for a convolution a neuron is an output channel and its inputs are kernel positions).

    The layers are ordered as the forward pass runs them, not as they are declared
    (:mod:`sparsetopo.methods.layer_order`): traced with ``torch.fx``, or by running
    ``example_input`` once when given (a batch the model accepts: needed for Python
    control flow that fx cannot trace); if tracing fails, declaration order with a
    warning. :meth:`summary` (and ``repr``, and an INFO log line on ``sparsetopo.methods.sparsify``)
    says which layers were made sparse, at which density, and which stay dense.

    Sparsity per layer follows ``distribution``: ``erdos_renyi`` (the default:
    SET's rule, the paper's setting, from ``epsilon`` or solved for ``density``),
    ``erk`` (RigL's; for Linear layers the same shape, solved for ``density``)
    or ``uniform`` (``density`` in every sparse layer). The last executed layer
    (the output layer) stays dense with ``dense_output`` (default), the first executed with ``dense_first``.

    ``callback(step, stats)``, when given, is called after each topology update (``step``: the epoch given
    to :meth:`end_epoch`, or the optimizer step of :meth:`step`) with :meth:`layer_stats`; a
    :class:`~sparsetopo.tracking.Tracker`'s ``log_scalars`` is such a function (TensorBoard, W&B).

    Regrown connections start as ``regrow_init`` says: ``zero`` (SET's Keras code,
    RigL; the default) or ``normal`` (N(0, init_std^2), SET's NumPy code).

    ``rescale_init`` (default on) multiplies each masked neuron's initial weights
    by ``sqrt(n_in / fan_in)``, so that a sparse layer keeps the signal scale its
    (dense) initialisation was designed for; ``False`` keeps the model's weights
    as they are, only zeroed outside the mask.

    Unusual models:

    * Masks (``weight_mask`` buffers) are in the weight's dtype and on its device,
      so float16, bfloat16 and float64 models train, evolve and resume in their
      own dtype, and a model on any device (CUDA, MPS) evolves there: masks and
      SET's regrowth scores are drawn on the CPU from the seeded generators and
      then moved, so the topology is the same on every device.
    * A grouped or depthwise convolution (``groups > 1``) is masked within its
      grouped weight ``(out, in / groups, kh, kw)``; :meth:`topology` expands it
      to the full block-diagonal mask, as :meth:`Topology.from_torch` does.
    * Tied weights -- two layers sharing one weight parameter, e.g.
      ``b.weight = a.weight`` -- are refused by name: each layer of a topology
      has its own mask, and two masks on one parameter would disagree. A single
      module called twice in ``forward`` is one masked layer (one parameter, one
      mask); :meth:`topology` lists it once, at its first call, while
      ``Topology.from_torch`` refuses it by name (its chain has it twice).
    * A model with nothing to sparsify (e.g. its only layer is the dense output
      layer) is refused, naming the layers found and the option keeping them dense.

    Pruning methods (``gmp``, ``magnitude``, ``snip``, ``grasp``, ``synflow``) start from all-ones masks
    and keep the model's weights (no rescaling). ``gmp`` prunes on Zhu & Gupta's cubic schedule from
    ``start_step`` to ``end_step`` every ``update_every`` steps (call ``step`` after each optimizer step);
    ``magnitude`` prunes once (after ``end_epoch`` of ``dense_epochs``, or at step ``update_every``). The
    pruning-at-initialisation methods prune here, in the constructor: ``snip`` and ``grasp`` from
    ``data`` (an iterable of ``(inputs, targets)`` batches; the first ``score_batches`` are used) and
    ``loss_fn`` (``fn(logits, targets)``, default cross-entropy), ``synflow`` without data (``data``
    then only gives the input shape, needed unless the first layer is an ``nn.Linear``);
    ``scoring_flops`` is what that cost. ``scope`` is ``"layerwise"`` or ``"global"``.

    A method's own settings (its ``settings_cls`` fields) are further keyword arguments.
    The sparsifier is a :class:`~sparsetopo.masking.MaskedNetwork` of the model's layers.
    """

    def __init__(self, model: nn.Module, method: str = "set", *, epsilon: float | None = 20.0,
                 density: float | None = None, zeta: float = 0.3, dense_output: bool = True, seed: int = 0,
                 regrowth_seed: int | None = None, rescale_init: bool = True, update_every: int | None = None,
                 end_step: int | None = None, drop_schedule: str = "constant", distribution: str = "erdos_renyi",
                 dense_first: bool = False, regrow_init: str = "zero", init_std: float = 0.1,
                 engine: str = "masked", example_input=None, data=None, loss_fn: Callable | None = None,
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 **method_settings):
        cls = _sparsify_method(method)
        _check_engine(cls, engine)
        if callback is not None and not callable(callback):
            raise SparsetopoError(f"sparsify: callback must be a function (step, stats); got {callback!r:.60}")
        _check_data(cls, data, loss_fn)
        self.engine = engine
        self.callback = callback
        self.schedule = UpdateSchedule(update_every, end_step, drop_schedule)
        self.steps = 0  # optimizer steps seen by step()
        self.model = model
        named = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if not named:
            raise SparsetopoError("sparsify found no nn.Linear or nn.Conv2d layer in the model")
        check_no_shared_weights(named, "sparsify")
        named, n_executed, self.order_found_by = execution_order(model, named, example_input)
        self._layers = [m for _, m in named]
        self.layer_names = [name or "<root>" for name, _ in named]
        self.config = _settings(method, method_settings, epsilon=epsilon if density is None else None,
                                density=density, zeta=zeta, dense_output=dense_output, regrow_init=regrow_init,
                                init_std=init_std, distribution=distribution)
        self.method = cls(self.config)
        self.regrowth = torch.Generator().manual_seed(int(seed if regrowth_seed is None else regrowth_seed) + 1)
        self._masking = True
        sparse_ids = self._choose_sparse_layers(named, n_executed, dense_output, dense_first)
        shapes = [tuple(m.weight.shape) for m in self._layers]
        self.densities = layer_densities(shapes, sorted(sparse_ids), distribution, epsilon=epsilon,
                                         density=density)
        self.layer_summary = layer_rows(named, self.densities, sparse_ids)
        _log.info("sparsify %s: %s", type(model).__name__, "; ".join(
            f"{r['name']} {'x'.join(map(str, r['shape']))} " + (f"{r['density']:.2%}" if r["sparse"] else "dense")
            for r in self.layer_summary))
        # A method starting dense (pruning) gets all-ones masks and chooses its topology itself.
        masks = (per_layer_masks(shapes, self.densities, sparse_ids, seed) if cls.starts_sparse
                 else [torch.ones(s, dtype=torch.bool) for s in shapes])
        rescale_init = rescale_init and cls.starts_sparse
        self.sparse_ids = sorted(sparse_ids)
        self.method.bind_schedule(self.schedule)
        self._last_snapshot: list[torch.Tensor] | None = None
        self.regrowth_rng = None
        if engine == "truly-sparse":
            self._layers = _swap_to_truly_sparse(model, named, masks, sparse_ids if rescale_init else set())
            self.regrowth_rng = np.random.default_rng(int(seed if regrowth_seed is None else regrowth_seed) + 1)
            self._seen = None
            return
        for k, (layer, mask) in enumerate(zip(self._layers, masks)):
            self._attach_mask(layer, mask, rescale_init and k in sparse_ids)
        #: FLOPs spent choosing the topology before training (pruning at initialisation), else 0.
        self.scoring_flops = self.method.prune_at_init(self, data, loss_fn or torch.nn.functional.cross_entropy)
        # In-time over-parameterization: every connection that has ever been active, per layer.
        self._seen = [m.weight_mask.detach() != 0 for m in self._layers]

    def _choose_sparse_layers(self, named, n_executed: int, dense_output: bool, dense_first: bool) -> set[int]:
        """The method's rule over the executed layers (the last one is the output layer); layers the
        forward pass never calls follow them and are sparse. Every update (after_epoch) must touch
        these layers and no other: the method's own rule counts positions only and knows nothing of
        execution order or ``dense_first``, so it is replaced by the fixed list."""
        sparse_ids = set(self.method.sparse_layer_ids(n_executed)) | set(range(n_executed, len(named)))
        if dense_first:
            sparse_ids.discard(0)
        if not sparse_ids:
            raise SparsetopoError(_nothing_to_sparsify(named, dense_output, dense_first))
        self.method.sparse_layer_ids = _FixedLayers(sorted(sparse_ids))
        return sparse_ids

    def summary(self) -> str:
        """A table of the layers in execution order: name, type, shape, density or "dense"."""
        return summary_text(self.layer_summary, self.order_found_by)

    def __repr__(self) -> str:
        parts = [f"{r['name']} " + (f"{r['density']:.2%}" if r["sparse"] else "dense") for r in self.layer_summary]
        return f"Sparsifier(method={self.config.method!r}, engine={self.engine!r}, layers: {', '.join(parts)})"

    # The step schedule's parts, under the names sparsify has always had.
    update_every = property(lambda self: self.schedule.update_every)
    end_step = property(lambda self: self.schedule.end_step)
    drop_schedule = property(lambda self: self.schedule.drop_schedule)

    @property
    def masked_layers(self) -> list[nn.Module]:
        return list(self._layers)

    @property
    def module(self) -> nn.Module:
        return self.model

    def _attach_mask(self, layer: nn.Module, mask: torch.Tensor, rescale: bool) -> None:
        """Give ``layer`` its ``weight_mask`` (in the weight's dtype and device) and gradient hook."""
        weight = layer.weight
        # The mask lives in the weight's dtype and device: a float16/bfloat16/float64 model multiplies
        # its gradients by it in its own dtype (a float32 mask would change the gradient's type).
        as_weight = mask.to(dtype=weight.dtype, device=weight.device)
        old = getattr(layer, "weight_mask", None)
        if isinstance(old, torch.Tensor) and (old.dtype, old.device, old.shape) == (weight.dtype, weight.device,
                                                                                     weight.shape):
            old.copy_(as_weight)  # a mask from an earlier sparsify (or a MaskedLinear's): updated in place
        elif isinstance(old, torch.Tensor):
            layer.weight_mask = as_weight  # of another dtype or device: replaced
        else:
            layer.register_buffer("weight_mask", as_weight)
        with torch.no_grad():
            weight.mul_(layer.weight_mask)
        if rescale:
            rescale_to_fan_in(weight, mask)
        weight.register_hook(self._grad_hook(layer))

    def _grad_hook(self, layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(grad: torch.Tensor) -> torch.Tensor:
            # .to: a no-op unless the model was cast after sparsify without its buffers
            return grad * layer.weight_mask.to(grad.dtype) if self._masking else grad
        return hook

    @contextlib.contextmanager
    def dense_compute(self):
        """Inside the block the gradient hooks pass gradients through unmasked."""
        self._masking = False
        try:
            yield self
        finally:
            self._masking = True

    def mask_grads(self) -> None:
        """Nothing to do: the gradient hooks mask every gradient as backward computes it."""

    def dense_gradients(self, loss_closure: Callable[[], torch.Tensor]) -> list[torch.Tensor]:
        """Gradients of ``loss_closure()`` w.r.t. every full weight, masks ignored (RigL's grow score)."""
        grads = dense_gradients(self, lambda: loss_closure().backward())
        if _world_size() > 1:
            # Under DDP every rank must grow the same connections: average the dense gradients
            # (already averaged if the closure ran through the DDP wrapper; averaging again is a no-op).
            import torch.distributed as dist

            for g in grads:
                dist.all_reduce(g)
                g /= _world_size()
        return grads

    def end_epoch(self, optimizer: torch.optim.Optimizer, epoch: int, total_epochs: int,
                  loss_closure: Callable[[], torch.Tensor] | None = None) -> list[int]:
        """Evolve the topology after ``epoch`` (1-based); returns the changed layers.

        ``loss_closure`` (a loss on a batch) is needed by methods that need dense gradients (RigL).
        """
        self.method.require_dense_gradients(loss_closure)
        return self._update(optimizer, epoch, total_epochs, loss_closure, None)

    def _update(self, optimizer, epoch, total, loss_closure, fraction) -> list[int]:
        cache: list[torch.Tensor] = []
        captured: list = []

        def grads():
            if not cache:
                cache.extend(self.dense_gradients(loss_closure))
            return cache

        def capture():
            if not captured:
                captured.extend(_capture(self.model, self._layers, loss_closure))
            return captured

        ctx = UpdateContext(model=self, optimizer=optimizer, epoch=epoch, total_epochs=total,
                            regrowth=self.regrowth, dense_grads=grads, drop_fraction=fraction,
                            regrowth_rng=self.regrowth_rng, captured=capture)
        changed = self.method.after_epoch(ctx).changed_layers
        if _world_size() > 1:
            self._broadcast_from_rank0()
        for k in changed if self._seen is not None else ():
            self._seen[k] |= self._layers[k].weight_mask.detach() != 0
        if self.callback is not None:
            self.callback(epoch, self.layer_stats())
        return changed

    def layer_stats(self) -> dict[str, float]:
        """Per layer the density, connection count and (masked engine) ITOP rate, as ``train`` logs them
        (:func:`sparsetopo.tracking.layer_stats`); what ``callback`` gets after each update."""
        from ..tracking import layer_stats

        itop = self.itop_rate() if self._seen is not None else None
        return layer_stats(self.layer_shapes, self.n_connections(), itop)

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        """Make every rank hold rank 0's masks and weights after an update (all ranks take part, in
        the same order). With identical seeds and DDP-synchronised weights they already agree; this
        guarantees it whatever the buffer-sync setting."""
        import torch.distributed as dist

        for layer in self._layers:
            if getattr(layer, "truly_sparse", False):  # counts are equal on every rank: same shapes
                for t in (layer.indptr, layer.indices, layer.values.data):
                    dist.broadcast(t, src=0)
                layer._structure_key = None
                continue
            dist.broadcast(layer.weight_mask, src=0)
            dist.broadcast(layer.weight.data, src=0)

    def step(self, optimizer: torch.optim.Optimizer,
             loss_closure: Callable[[], torch.Tensor] | None = None) -> list[int]:
        """Call after each ``optimizer.step()``; evolves the topology every ``update_every`` steps.

        Masks change only at multiples of ``update_every`` and before
        ``end_step`` (after it, ``step`` only counts: a no-op, so a loop may
        keep calling it). With ``drop_schedule="cosine"`` the fraction moved at
        step t is ``zeta * (1 + cos(pi * t / end_step)) / 2`` (RigL's schedule),
        else ``zeta``. Returns the changed layers.
        """
        if self.update_every is None:
            raise SparsetopoError("step() needs sparsify(..., update_every=N); or call end_epoch() once per epoch")
        self.steps += 1
        t = self.steps
        if not self.method.updates_after_step(t):
            return []
        self.method.require_dense_gradients(loss_closure)
        # epoch t of t + 1: past the per-epoch rule's "no update after the last epoch".
        return self._update(optimizer, t, t + 1, loss_closure, self.drop_fraction(t))

    def drop_fraction(self, t: int) -> float:
        """The fraction of connections moved by an update at step ``t`` under the step schedule."""
        return self.schedule.drop_fraction(self.config.zeta, t)

    def topology(self, **metadata) -> Topology:
        """The current masks as a Topology, one layer per masked module in execution order. A residual
        network's streams (which layers add into which channels) are traced once with torch.fx, as
        :meth:`Topology.from_torch` does; a chain needs none. A grouped or depthwise convolution is
        expanded to its full ``(out, in, kh, kw)`` mask, empty outside its groups, as ``from_torch``
        reads it."""
        return Topology(self._full_masks(), metadata=metadata or None, streams=self._streams())

    def _streams(self):
        """The model's streams in this sparsifier's layer order, or ``None`` (a chain, or a model fx
        cannot trace: then the layers must chain, and Topology says so if they do not)."""
        if not hasattr(self, "_traced_streams"):
            from .._torch_graph import trace_structure

            try:
                names, streams = trace_structure(self.model)
            except Exception:  # noqa: BLE001 - untraceable models are treated as chains, as before
                names, streams = None, None
            mine = [n if n != "<root>" else "" for n in self.layer_names]
            self._traced_streams = streams if streams is not None and list(names) == mine else None
        return self._traced_streams

    def _full_masks(self) -> list:
        if self.engine == "truly-sparse":
            return [layer.to_csr() for layer in self._layers]
        return [expand_groups((m.weight_mask.detach() != 0).cpu().numpy(), getattr(m, "groups", 1))
                for m in self._layers]

    def itop_rate(self) -> list[float]:
        """In-time over-parameterization rate per layer (Liu et al., ICML 2021): the fraction of all
        possible connections that have been active at least once so far."""
        self._masked_only("itop_rate")
        return [float(s.sum()) / s.numel() for s in self._seen]

    def snapshot(self, path: str | os.PathLike) -> dict[str, list[float]]:
        """Save the current topology as ``train`` does (sparsetopo's ``.npz``), so that ``sparsetopo
        distance``, ``matrix`` and the report read a user's runs; returns per layer the ITOP rate and
        the fraction of connections kept since the previous snapshot (1.0 at the first)."""
        self._masked_only("snapshot")
        masks = [m.weight_mask.detach() != 0 for m in self._layers]
        prev = self._last_snapshot
        kept = [1.0 if prev is None else float((a & b).sum()) / max(int(b.sum()), 1)
                for a, b in zip(masks, prev or masks)]
        self.topology(steps=self.steps).save(path)
        self._last_snapshot = [m.clone() for m in masks]
        return {"itop_rate": self.itop_rate(), "kept_since_last_snapshot": kept}

    def _masked_only(self, what: str) -> None:
        if self.engine != "masked":
            raise SparsetopoError(f"Sparsifier.{what}: the ITOP record is kept on engine 'masked' only (it would "
                                  f"need a record of every position); this sparsifier runs on engine {self.engine!r}")

    # ------------------------------------------------------------- resume
    def _identity(self) -> dict:
        identity = {"method": self.config.method, "zeta": self.config.zeta, "update_every": self.update_every,
                    "end_step": self.end_step, "drop_schedule": self.drop_schedule, "shapes": self.layer_shapes}
        if self.engine != "masked":  # absent on the masked engine: states saved before engines existed still load
            identity["engine"] = self.engine
        return identity

    def state_dict(self) -> dict:
        """What a resumed loop needs besides the model's and optimizer's state dicts (the masks
        are model buffers): the step counter, the regrowth generator (on the truly sparse engine also
        the NumPy one, in ``identity``'s place ``regrowth_numpy``), the method's state and the ITOP record.
        Save it with the other two; see :meth:`load_state_dict`."""
        state = {"identity": self._identity(), "steps": self.steps, "regrowth": self.regrowth.get_state(),
                 "method": self.method.state_dict(),
                 "seen": None if self._seen is None else [s.clone() for s in self._seen],
                 "last_snapshot": self._last_snapshot}
        if self.regrowth_rng is not None:
            state["regrowth_numpy"] = self.regrowth_rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`, all or nothing.

        The whole state is checked before anything changes: its keys, the step
        counter, the regrowth generator's state, the method's state and the ITOP
        record (one boolean tensor of the layer's weight shape per masked layer).
        A state from another model or method, or a damaged one, is refused with an
        error naming the bad entry, and the sparsifier is left as it was.
        """
        self._check_state(state)
        method_state = self.method.state_dict()
        try:
            self.method.load_state_dict(state["method"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            self.method.load_state_dict(method_state)
            raise SparsetopoError(f"Sparsifier state: 'method' cannot be loaded into {self.config.method} "
                                  f"({type(exc).__name__}: {exc})") from None
        self.steps = int(state["steps"])
        self.regrowth.set_state(state["regrowth"])
        if self.regrowth_rng is not None:
            self.regrowth_rng.bit_generator.state = state["regrowth_numpy"]
            return
        self._seen = [s.clone() for s in state["seen"]]
        last = state["last_snapshot"]
        self._last_snapshot = None if last is None else [s.clone() for s in last]

    def _check_state(self, state) -> None:
        """Raise a SparsetopoError naming the first entry of ``state`` that :meth:`load_state_dict` cannot take."""
        if not isinstance(state, dict) or "identity" not in state:
            raise SparsetopoError("not a Sparsifier state dict (no 'identity'); pass what state_dict() returned")
        expected = ("identity", "steps", "regrowth", "method", "seen", "last_snapshot") + (
            ("regrowth_numpy",) if self.regrowth_rng is not None else ())
        missing = [k for k in expected if k not in state]
        extra = sorted(str(k) for k in state if k not in expected)
        if missing or extra:
            raise SparsetopoError(f"Sparsifier state: keys must be {', '.join(expected)}; "
                                  f"missing {missing or 'none'}, unexpected {extra or 'none'}")
        theirs = state["identity"]
        if not isinstance(theirs, dict) or not isinstance(theirs.get("shapes", []), (list, tuple)):
            raise SparsetopoError(f"Sparsifier state: 'identity' must be the dict state_dict() wrote; "
                                  f"got {type(theirs).__name__}")
        mine = self._identity()
        try:
            theirs = {**theirs, "shapes": [tuple(s) for s in theirs.get("shapes", [])]}
        except TypeError:
            raise SparsetopoError("Sparsifier state: 'identity' shapes must be a list of weight shapes") from None
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} in the state vs {mine[k]!r} here" for k in diff)
            raise SparsetopoError(f"this Sparsifier state is from another model or method ({detail})")
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise SparsetopoError(f"Sparsifier state: 'steps' must be an integer >= 0; got {steps!r}")
        try:  # on a scratch generator: a state torch refuses must not touch ours
            torch.Generator().set_state(state["regrowth"])
        except (TypeError, RuntimeError, ValueError) as exc:
            raise SparsetopoError(f"Sparsifier state: 'regrowth' is not a torch.Generator state "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        if not isinstance(state["method"], dict) or set(state["method"]) != set(self.method.state_dict()):
            raise SparsetopoError(f"Sparsifier state: 'method' must be the {self.config.method} method's state "
                                  f"with keys {sorted(self.method.state_dict())}; got {state['method']!r:.80}")
        if self.regrowth_rng is not None:
            _check_numpy_state(state["regrowth_numpy"])
            return
        self._check_masks(state["seen"], "seen")
        if state["last_snapshot"] is not None:
            self._check_masks(state["last_snapshot"], "last_snapshot")

    def _check_masks(self, masks, key: str) -> None:
        """``masks`` must be one boolean tensor per masked layer, of its weight's shape."""
        n = len(self._layers)
        if not isinstance(masks, (list, tuple)) or len(masks) != n:
            got = f"{len(masks)} entries" if isinstance(masks, (list, tuple)) else type(masks).__name__
            raise SparsetopoError(f"Sparsifier state: '{key}' must hold one mask per masked layer ({n}); got {got}")
        for k, (m, layer) in enumerate(zip(masks, self._layers)):
            shape = tuple(layer.weight.shape)
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != shape:
                got = (f"{m.dtype} tensor of shape {tuple(m.shape)}" if isinstance(m, torch.Tensor)
                       else type(m).__name__)
                raise SparsetopoError(f"Sparsifier state: '{key}' entry {k} (layer {self.layer_names[k]!r}) must be "
                                      f"a torch.bool tensor of shape {shape}; got {got}")


def _check_engine(cls, engine) -> None:
    if engine not in ("masked", "truly-sparse"):
        raise SparsetopoError(f"sparsify: engine must be one of masked, truly-sparse; got {engine!r}")
    if engine not in cls.engines:
        raise SparsetopoError(f"sparsify: method {cls.name!r} runs on engine {' or '.join(cls.engines)} only; "
                              f"got engine={engine!r}")


def _check_data(cls, data, loss_fn) -> None:
    """``data`` is for methods that prune at initialisation (required by those needing data), ``loss_fn`` with it."""
    at_init = cls.prune_at_init is not Method.prune_at_init
    if getattr(cls, "needs_data", False) and data is None:
        raise SparsetopoError(f"sparsify: method {cls.name!r} prunes at initialisation from data: give data=, an "
                              "iterable of (inputs, targets) batches (and loss_fn=, default cross-entropy)")
    if not at_init and (data is not None or loss_fn is not None):
        raise SparsetopoError(f"sparsify: data and loss_fn apply to methods that prune at initialisation, not "
                              f"{cls.name!r}")


def _check_numpy_state(state) -> None:
    try:  # on a scratch generator
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise SparsetopoError(f"Sparsifier state: 'regrowth_numpy' is not a NumPy PCG64 state "
                              f"({type(exc).__name__}: {exc})") from None


class _FixedLayers:
    """A method's ``sparse_layer_ids`` fixed to the layers sparsify chose (picklable, unlike a lambda)."""

    def __init__(self, ids: list[int]):
        self.ids = list(ids)

    def __call__(self, n_layers: int) -> list[int]:
        return list(self.ids)


def _swap_to_truly_sparse(model: nn.Module, named, masks, rescale_ids) -> list:
    """Replace each ``nn.Linear`` of ``named`` by a TrulySparseLinear on its mask (weights copied at the mask's
    positions, rescaled to the fan-in for ``rescale_ids``); returns the new layers in order."""
    import scipy.sparse as ss

    from ..truly_sparse import TrulySparseLinear

    for name, m in named:
        why = ("is an nn.Conv2d (MLP-style models only)" if isinstance(m, nn.Conv2d)
               else f"is {m.weight.dtype} on {m.weight.device} (float32/float64 on the CPU only)"
               if m.weight.dtype not in (torch.float32, torch.float64) or m.weight.device.type != "cpu"
               else "is the model itself (nothing to put it in)" if not name else "")
        if why:
            raise SparsetopoError(f"sparsify engine='truly-sparse': layer {name or '<root>'!r} {why}; use "
                                  "engine='masked' for this model")
    layers = []
    for k, ((name, m), mask) in enumerate(zip(named, masks)):
        with torch.no_grad():
            w = m.weight.detach() * mask
            if k in rescale_ids:
                rescale_to_fan_in(w, mask)
        csr = ss.csr_matrix(mask.numpy())
        new = TrulySparseLinear(m.in_features, m.out_features, csr.indptr, csr.indices, bias=m.bias is not None,
                                values=w[mask], dtype=m.weight.dtype, generator=torch.Generator())
        if m.bias is not None:
            with torch.no_grad():
                new.bias.copy_(m.bias.detach())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
        layers.append(new)
    return layers


def _capture(model: nn.Module, layers, loss_closure) -> list:
    """Per truly sparse layer ``(x, gy)`` of one ``loss_closure()`` batch (RigL's grow criterion); gradients cleared."""
    model.zero_grad(set_to_none=True)
    try:
        with contextlib.ExitStack() as stack:
            caps = [stack.enter_context(layer.capture()) for layer in layers]
            loss_closure().backward()
        return [cap.tensors() for cap in caps]
    finally:
        model.zero_grad(set_to_none=True)


def _nothing_to_sparsify(named: list[tuple[str, nn.Module]], dense_output: bool, dense_first: bool) -> str:
    """Why no layer of the model would be sparse: what was found and which option keeps it dense."""
    found = "; ".join(f"{name or '<root>'!r}: {type(m).__name__}, weight {tuple(m.weight.shape)}"
                      for name, m in named)
    kept = [opt for opt, on in (("dense_output", dense_output), ("dense_first", dense_first)) if on]
    why = {"dense_output": f"the last stays dense (dense_output={dense_output})",
           "dense_first": f"the first stays dense (dense_first={dense_first})"}
    noun = "layer" if len(named) == 1 else "layers"
    return (f"sparsify has nothing to sparsify: it found {len(named)} nn.Linear/nn.Conv2d {noun} ({found}) and "
            f"{' and '.join(why[k] for k in kept)}; pass {' or '.join(f'{k}=False' for k in kept)} to make "
            "it sparse, or leave the model dense")


def _settings(method: str, own: dict, **common) -> SparsitySettings:
    """The validated settings of ``method``: the common ones and its ``settings_cls`` fields."""
    cls = settings_class(SparsitySettings, method)
    allowed = {f for f in cls.__dataclass_fields__} - set(SparsitySettings.__dataclass_fields__)
    unknown = sorted(set(own) - allowed)
    if unknown:
        raise SparsetopoError(f"sparsify got unexpected keyword argument(s) {', '.join(unknown)}; the {method} "
                              f"method's own settings are {', '.join(sorted(allowed)) or 'none'}")
    return check_method_settings(cls(method=method, **common, **own).validate())


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sparsify(model: nn.Module, method: str = "set", **kwargs) -> Sparsifier:
    """Attach masks and a sparsity method to ``model``'s Linear and Conv2d layers; see :class:`Sparsifier`."""
    return Sparsifier(model, method, **kwargs)
