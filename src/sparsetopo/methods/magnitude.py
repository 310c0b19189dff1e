"""One-shot magnitude pruning: train dense, remove the smallest magnitudes at once, fine-tune.

The dense network trains ``dense_epochs`` epochs (default ``epochs``), is pruned to the
target density by ``|w|`` (per layer, the default, or globally), then fine-tunes for
``finetune_epochs`` epochs. With a step schedule in ``sparsify`` (``update_every``) the
pruning happens at the first scheduled step; later ones find nothing to prune.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from ..errors import SparsetopoError
from .base import UpdateResult, register
from .pruning import PruningMethod, scope_option


@dataclass
class MagnitudeSettings:
    scope: str = scope_option("layerwise")
    dense_epochs: int | None = option(None, min=1, help="magnitude: epochs of dense training before the one-shot "
                                                        "pruning (default --epochs).")
    finetune_epochs: int = option(10, min=1, help="magnitude: epochs of fine-tuning after the pruning.")


@register
class Magnitude(PruningMethod):
    name = "magnitude"
    description = "one-shot magnitude pruning of the trained dense network, then fine-tuning"
    evolves_topology = True
    settings_cls = MagnitudeSettings

    def dense_epochs(self) -> int:
        return self.config.dense_epochs or self.config.epochs

    def total_epochs(self, shapes) -> int:
        return self.dense_epochs() + self.config.finetune_epochs

    def phase(self, epoch, shapes) -> str:
        return "dense" if epoch <= self.dense_epochs() else "finetune"

    def bind_schedule(self, schedule, *, total_steps=None, name=str) -> None:
        super().bind_schedule(schedule, total_steps=total_steps, name=name)
        if total_steps is not None and schedule.per_step:
            raise SparsetopoError(f"{name('update_every')} does not apply to magnitude in train: it prunes once, "
                                  f"after {name('dense_epochs')}")
        if total_steps is None and not schedule.per_step and self.config.dense_epochs is None:
            raise SparsetopoError("magnitude in sparsify prunes once: give dense_epochs (prune after that epoch's "
                                  "end_epoch()) or update_every (prune at that step)")

    def after_epoch(self, ctx) -> UpdateResult:
        if ctx.drop_fraction is None and ctx.epoch != self.dense_epochs():
            return UpdateResult()
        model = ctx.model
        return self.prune(model, self.magnitudes(model, self.prunable(model)), self.keep_counts(model, 0.0),
                          ctx.optimizer)
