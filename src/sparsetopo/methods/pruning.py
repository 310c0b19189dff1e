"""What the pruning methods (``gmp``, ``magnitude``, ``snip``, ``grasp``, ``synflow``) share.

A pruning method starts from the dense network and only removes connections: it scores the
weights of the prunable layers and keeps the best ones, either per layer (``layerwise``: each
layer keeps its own target count, the count of the config's ``distribution`` at its ``density``)
or over all prunable layers at once (``global``: one ranking, the summed target count, so the
per-layer densities come out as the scores decide). Which layers are prunable follows the
settings every method reads (``dense_output``; in ``sparsify`` also ``dense_first``); biases are
never masked. Counts are exact: a layer (or, globally, the network) ends with exactly its
target count of connections.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..config import option
from ..errors import SparsetopoError
from .base import Method, UpdateResult, reset_optimizer_state

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SCOPES", "PruneAtInit", "PruningMethod", "interpolated_keep", "scope_option", "select_kept"]

#: ``layerwise``: every prunable layer keeps its own count; ``global``: one ranking over all of them.
SCOPES = ("layerwise", "global")


def scope_option(default: str):
    """The ``scope`` field of a pruning method's settings (one flag, ``--scope``, for all of them)."""
    return option(default, choices=SCOPES,
                  help="Pruning methods: rank weights per layer (layerwise: each layer keeps its density) or over "
                       "all prunable layers (global). Default: layerwise for gmp and magnitude, global for snip, "
                       "grasp and synflow.")


def interpolated_keep(full: int, target: int, remaining: float) -> int:
    """Connections kept when the fraction ``remaining`` of the way from ``full`` to ``target`` is left:
    ``target + round((full - target) * remaining)`` (exactly ``target`` at 0, ``full`` at 1)."""
    return target + int(round((full - target) * min(max(remaining, 0.0), 1.0)))


def select_kept(scores: dict[int, torch.Tensor], eligible: dict[int, torch.Tensor], keep, scope: str, *,
                largest: bool = True) -> dict[int, torch.Tensor]:
    """Boolean masks keeping the best-scored eligible positions.

    ``keep`` is a ``{layer: count}`` dict (``layerwise``) or one total count (``global``);
    ``largest=False`` keeps the lowest scores (GraSP removes the highest). Only eligible
    positions (the current mask) are kept, so pruning never brings a connection back.
    """
    import torch

    sign = 1.0 if largest else -1.0
    ranked = {k: (sign * scores[k].float()).masked_fill(~eligible[k], float("-inf")).flatten() for k in scores}
    if scope == "layerwise":
        return {k: top_mask(ranked[k], min(keep[k], int(eligible[k].sum()))).view(eligible[k].shape)
                for k in ranked}
    ids = list(ranked)
    n_eligible = sum(int(eligible[k].sum()) for k in ids)
    flat = top_mask(torch.cat([ranked[k] for k in ids]), min(int(keep), n_eligible))
    parts = flat.split([ranked[k].numel() for k in ids])
    return {k: part.view(eligible[k].shape) for k, part in zip(ids, parts)}


def top_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest of the 1-D ``values``; ties at the threshold go to the lowest
    positions. A threshold by ``kthvalue`` (linear time) rather than ``topk``, which is several times
    slower when ``k`` is most of a large network (SynFlow's first rounds)."""
    import torch

    n = values.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=values.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=values.device)
    threshold = torch.kthvalue(values, n - k + 1).values  # the k-th largest
    out = values > threshold
    ties = (values == threshold).nonzero().flatten()[: k - int(out.sum())]
    out[ties] = True
    return out


class PruningMethod(Method):
    """A method that starts dense and removes connections by a score (see the module docstring).

    Subclasses have a ``scope`` setting; :meth:`prune` installs the masks that keep, per
    :meth:`keep_counts`, the best scores.
    """

    starts_sparse = False
    works_with_sparsify = True
    engines = ("masked",)
    engine_note = "prunes dense weights (it scores every weight of the dense network)"

    @classmethod
    def check_settings(cls, config, name) -> None:
        if config.density is not None and not 0 < config.density < 1:
            raise SparsetopoError(f"{name('density')} must be in (0, 1) for {cls.name} (it prunes to that density); "
                                  f"got {config.density}")

    def prunable(self, model) -> list[int]:
        """The layers this method prunes: the sparsifier's sparse layers, else the method's."""
        ids = getattr(model, "sparse_ids", None)
        return list(ids) if ids is not None else self.sparse_layer_ids(len(model.layer_shapes))

    def targets(self, model) -> dict[int, int]:
        """The final connection count of each prunable layer (its density under the config)."""
        shapes = model.layer_shapes
        densities = getattr(model, "densities", None) or self.densities(shapes)
        return {k: int(round(densities[k] * math.prod(shapes[k]))) for k in self.prunable(model)}

    def keep_counts(self, model, remaining: float):
        """What to keep when ``remaining`` of the way from dense to the targets is left: a count per
        layer (``layerwise``) or one total (``global``)."""
        shapes, targets = model.layer_shapes, self.targets(model)
        full = {k: math.prod(shapes[k]) for k in targets}
        if self.config.scope == "layerwise":
            return {k: interpolated_keep(full[k], targets[k], remaining) for k in targets}
        return interpolated_keep(sum(full.values()), sum(targets.values()), remaining)

    def prune(self, model, scores: dict[int, torch.Tensor], keep, optimizer=None, *,
              largest: bool = True) -> UpdateResult:
        """Keep the best ``scores`` (``keep`` as :meth:`keep_counts` gives it) among the current
        connections; zero the rest and their optimizer state. Returns the changed layers."""
        import torch

        layers = model.masked_layers
        eligible = {k: layers[k].weight_mask.detach() != 0 for k in scores}
        kept = select_kept(scores, eligible, keep, self.config.scope, largest=largest)
        result = UpdateResult()
        for k, mask in kept.items():
            mask = mask.to(eligible[k].device)
            if torch.equal(mask, eligible[k]):
                continue
            layer = layers[k]
            with torch.no_grad():
                layer.weight_mask.copy_(mask)
                layer.weight.mul_(layer.weight_mask)
            if optimizer is not None:
                reset_optimizer_state(optimizer, layer.weight, mask)
            result.changed_layers.append(k)
        return result

    @staticmethod
    def magnitudes(model, ids) -> dict[int, torch.Tensor]:
        """``|w|`` of the layers ``ids`` (the magnitude score)."""
        layers = model.masked_layers
        return {k: layers[k].weight.detach().abs() for k in ids}


class PruneAtInit(PruningMethod):
    """Pruning at initialisation: the topology is chosen once, before training, then trained as is.

    ``train`` gives :meth:`prune_at_init` batches of the training split drawn with the run's
    topology seed; :func:`~sparsetopo.methods.sparsify` the user's ``data`` and ``loss_fn``.
    """

    #: Scores need batches of data (``sparsify(..., data=...)``); SynFlow is data-free.
    needs_data = True

    def prune_at_init(self, model, data, loss_fn) -> float:
        if self.needs_data and data is None:
            raise SparsetopoError(f"{self.name} prunes at initialisation from data: give data, an iterable of "
                                  "(inputs, targets) batches")
        import itertools

        batches = None if data is None else list(itertools.islice(iter(data), getattr(self.config, "score_batches", 1)))
        if batches is not None:
            check_batches(self.name, batches)
        module = model.module
        was_training = module.training
        module.eval()  # as the authors' code scores: no dropout (Tanaka et al.'s prune_loop default)
        try:
            scores, flops, keep, largest = self.scores(model, batches, loss_fn)
        finally:
            module.train(was_training)
        if scores is not None:
            self.prune(model, scores, keep, largest=largest)
        return flops

    def scores(self, model, batches, loss_fn):
        """``(scores, flops, keep, largest)``: per prunable layer the score, the FLOPs spent, what to
        keep and whether the largest scores are kept (``scores=None``: already pruned)."""
        raise NotImplementedError


def live_connections(model) -> int:
    """Connections of the whole network now (the FLOPs of a pass are counted on them, as in ``train``)."""
    return int(sum(model.n_connections()))


def batch_rows(batch) -> int:
    return int(len(batch[0]))


def check_batches(name: str, batches) -> None:
    """``data`` must give at least one ``(inputs, targets)`` pair."""
    if not batches:
        raise SparsetopoError(f"{name}: data gave no (inputs, targets) batch")
    for b in batches:
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise SparsetopoError(f"{name}: data must yield (inputs, targets) pairs; got {type(b).__name__}")
