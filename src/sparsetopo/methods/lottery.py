"""Lottery tickets (Frankle & Carbin, 2019): iterative magnitude pruning with rewinding.

Train the dense network for ``round_epochs`` epochs, prune ``prune_rate`` of
the remaining connections of each sparse layer by magnitude, rewind the
surviving weights to their values at ``rewind_epoch`` (0: initialisation),
and repeat until each layer has the connection count of the Erdős–Rényi
network of the same config; then train the ticket for ``epochs`` epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import option
from ..errors import SparsetopoError
from .base import Method, UpdateResult, lowest, register


@dataclass
class LotterySettings:
    """Lottery's own settings; flat keys (``prune_rate``, ...) of ``train`` and its YAML files."""

    prune_rate: float = option(0.2, gt=0.0, lt=1.0, help="Lottery: fraction pruned per round, in (0, 1).")
    round_epochs: int | None = option(None, min=1, help="Lottery: epochs per pruning round (default --epochs).")
    rewind_epoch: int = option(0, min=0, help="Lottery: rewind to the weights of this epoch (0: init).")


@register
class Lottery(Method):
    name = "lottery"
    description = "lottery tickets: iterative magnitude pruning of the dense network, with rewinding"
    starts_sparse = False  # starts dense
    evolves_topology = True
    settings_cls = LotterySettings
    engine_note = "needs dense training (it prunes a trained dense network)"

    @classmethod
    def check_settings(cls, config, name) -> None:
        round_epochs = config.round_epochs or config.epochs
        if config.rewind_epoch > round_epochs:
            raise SparsetopoError(f"{name('rewind_epoch')} must be in [0, {round_epochs}] (the epochs of a pruning "
                                  f"round); got {config.rewind_epoch}")

    def __init__(self, config):
        super().__init__(config)
        self._rewind: dict | None = None

    def round_epochs(self) -> int:
        return self.config.round_epochs or self.config.epochs

    def n_rounds(self, shapes) -> int:
        """Rounds of pruning at ``prune_rate`` until the sparsest layer reaches its target."""
        targets = self.target_counts(shapes)
        p = self.config.prune_rate
        rounds = 0
        for k in self.sparse_layer_ids(len(shapes)):
            full = math.prod(shapes[k])
            frac = targets[k] / full
            if frac < 1:
                rounds = max(rounds, math.ceil(math.log(frac) / math.log(1 - p) - 1e-9))
        return max(rounds, 1)

    def total_epochs(self, shapes) -> int:
        return self.n_rounds(shapes) * self.round_epochs() + self.config.epochs

    def phase(self, epoch, shapes) -> str:
        r = (epoch - 1) // self.round_epochs() + 1
        return f"prune-round-{r}" if r <= self.n_rounds(shapes) else "ticket"

    @staticmethod
    def _copy_params(model) -> dict:
        return {k: v.detach().clone() for k, v in model.named_parameters()}

    def on_start(self, model) -> None:
        if self.config.rewind_epoch == 0:
            self._rewind = self._copy_params(model)

    def after_epoch(self, ctx) -> UpdateResult:
        import torch

        model = ctx.model
        shapes = model.layer_shapes
        if ctx.epoch == self.config.rewind_epoch and self._rewind is None:
            self._rewind = self._copy_params(model)
        re = self.round_epochs()
        rounds = self.n_rounds(shapes)
        if ctx.epoch % re or ctx.epoch // re > rounds:
            return UpdateResult()
        r = ctx.epoch // re
        targets = self.target_counts(shapes)
        result = UpdateResult(reset_optimizer=True)
        layers = model.masked_layers
        for k in self.sparse_layer_ids(len(layers)):
            layer = layers[k]
            mask = layer.weight_mask.bool()
            n = int(mask.sum())
            keep = targets[k] if r == rounds else max(targets[k], int(round(n * (1 - self.config.prune_rate))))
            prune = lowest(layer.weight.detach().abs(), mask, n - keep)
            with torch.no_grad():
                layer.weight_mask.copy_(mask & ~prune)
            result.changed_layers.append(k)
        # Rewind every parameter (biases too), then re-apply the new masks.
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self._rewind[name])
        model.apply_masks()
        return result

    def state_dict(self):
        return {"rewind": self._rewind}

    def load_state_dict(self, state):
        self._rewind = state.get("rewind")
