"""When a topology update happens and how much it moves: one :class:`UpdateSchedule` for
``sparsetopo train`` and :func:`~sparsetopo.methods.sparsify` alike.

Per epoch (``update_every=None``, the default of both) a method updates after every
epoch but the last and its own rule gives the fraction moved (SET: ``zeta``; RigL:
``zeta`` decaying by a cosine over the epochs). Per step (``update_every=N``) the
update happens after every N-th optimizer step before ``end_step``, and the fraction
is the schedule's: ``constant`` (``zeta``) or ``cosine`` (RigL's, decaying to 0 at
``end_step``). This module imports neither torch nor the registries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import check_value
from .errors import SparsetopoError

__all__ = ["DROP_SCHEDULES", "UpdateSchedule"]

#: How much a step-scheduled update moves: ``constant`` (zeta each time) or ``cosine``
#: (zeta decaying to 0 at ``end_step``, RigL's schedule).
DROP_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class UpdateSchedule:
    """Parameters
    ----------
    update_every : int or None
        Optimizer steps between updates; ``None``: once per epoch (the method's rule).
    end_step : int or None
        No update at or after this step (``None``: no end). Needs ``update_every``.
    drop_schedule : {"constant", "cosine"}
        The fraction of a step-scheduled update; ``cosine`` needs ``end_step``.
    """

    update_every: int | None = None
    end_step: int | None = None
    drop_schedule: str = "constant"

    def __post_init__(self):
        every, end = self.update_every, self.end_step
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise SparsetopoError(f"update_every must be an integer >= 1 (optimizer steps); got {every!r}")
        if end is not None and (every is None or isinstance(end, bool) or not isinstance(end, int) or end < every):
            raise SparsetopoError(f"end_step must be an integer >= update_every ({every}); got {end!r}")
        check_value("drop_schedule", self.drop_schedule, str, {"choices": DROP_SCHEDULES})
        if self.drop_schedule == "cosine" and end is None:
            raise SparsetopoError("drop_schedule='cosine' decays to end_step: give end_step")

    @property
    def per_step(self) -> bool:
        return self.update_every is not None

    def should_update(self, step: int) -> bool:
        """Whether a step-scheduled update follows optimizer step ``step`` (1-based)."""
        if self.update_every is None or step % self.update_every:
            return False
        return self.end_step is None or step < self.end_step

    def drop_fraction(self, zeta: float, step: int) -> float:
        """The fraction moved by a step-scheduled update at ``step``."""
        if self.drop_schedule == "cosine":
            return zeta * (1 + math.cos(math.pi * step / self.end_step)) / 2
        return zeta
