"""Gradual magnitude pruning (Zhu & Gupta, 2017): from dense to the target density while training.

At each pruning time ``t`` (``t_0``, ``t_0 + update_every``, ..., and ``t_1``) the sparsity is
``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3`` with ``s_i = 0`` (dense) and ``s_f``
the target, reached at ``t_1``; the smallest magnitudes among the remaining connections go,
per layer (``layerwise``, the default) or over all prunable layers (``global``). Time ``t`` is
optimizer steps with a step schedule (``update_every``: ``t_0 = start_step``, ``t_1 = end_step``),
else epochs (after each epoch from ``start_epoch`` to ``end_epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from ..errors import SparsetopoError
from .base import UpdateResult, register
from .pruning import PruningMethod, scope_option


@dataclass
class GMPSettings:
    scope: str = scope_option("layerwise")
    start_step: int = option(0, min=0, help="gmp with --update-every: the optimizer step t_0 of the first pruning "
                                            "(t_1 is --end-step).")
    start_epoch: int = option(0, min=0, help="gmp without --update-every: the epoch t_0 the cubic schedule starts "
                                             "from (pruning after each later epoch up to --end-epoch).")
    end_epoch: int | None = option(None, min=1, help="gmp without --update-every: the epoch t_1 after which the "
                                                     "target density is reached (default: 3/4 of the epochs); "
                                                     "it must come before the last epoch.")


def cubic_remaining(t: float, t0: float, t1: float) -> float:
    """``(1 - (t - t0) / (t1 - t0))^3`` clipped to [0, 1]: the part of the way to the target left at ``t``."""
    p = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
    return (1.0 - p) ** 3


@register
class GMP(PruningMethod):
    name = "gmp"
    description = "gradual magnitude pruning: dense to the target density on Zhu & Gupta's cubic schedule"
    evolves_topology = True
    settings_cls = GMPSettings

    def epoch_window(self, total_epochs: int) -> tuple[int, int]:
        c = self.config
        return c.start_epoch, c.end_epoch if c.end_epoch is not None else max(1, (3 * total_epochs) // 4)

    def bind_schedule(self, schedule, *, total_steps=None, name=str) -> None:
        super().bind_schedule(schedule, total_steps=total_steps, name=name)
        c = self.config
        if schedule.per_step:
            t0, t1, what = c.start_step, schedule.end_step, "optimizer steps"
            if t1 is None:
                raise SparsetopoError(f"gmp with {name('update_every')} prunes from {name('start_step')} to "
                                      f"{name('end_step')}: give {name('end_step')} (t_1)")
            end, total = name("end_step"), total_steps
            start = name("start_step")
        else:
            if total_steps is None and c.end_epoch is None:
                return  # sparsify by epochs: the default end comes from end_epoch()'s total
            t0, t1 = self.epoch_window(c.epochs)
            what, end, start, total = "epochs", name("end_epoch"), name("start_epoch"), None
            if total_steps is not None and t1 >= c.epochs:
                raise SparsetopoError(f"{end} must be before the last epoch ({name('epochs')} {c.epochs}), so that "
                                      f"the pruned network trains and is evaluated; got {t1}")
        if t1 <= t0:
            raise SparsetopoError(f"{end} (t_1) must be > {start} (t_0 = {t0}); got {t1}")
        if total is not None and t1 > total:
            raise SparsetopoError(f"{end} must be at most the run's {total} {what}, since the schedule must end "
                                  f"within training; got {t1}")

    def updates_after_step(self, step: int) -> bool:
        s = self.schedule
        t0, t1 = self.config.start_step, s.end_step
        return t1 is not None and t0 <= step <= t1 and ((step - t0) % s.update_every == 0 or step == t1)

    def after_epoch(self, ctx) -> UpdateResult:
        if self.schedule is not None and self.schedule.per_step:
            t0, t1 = self.config.start_step, self.schedule.end_step
        else:
            t0, t1 = self.epoch_window(ctx.total_epochs)
            if t1 >= ctx.total_epochs:
                raise SparsetopoError(f"gmp: end_epoch must be before the last epoch ({ctx.total_epochs}); got {t1}")
        if not t0 <= ctx.epoch <= t1:
            return UpdateResult()
        model = ctx.model
        keep = self.keep_counts(model, cubic_remaining(ctx.epoch, t0, t1))
        return self.prune(model, self.magnitudes(model, self.prunable(model)), keep, ctx.optimizer)
