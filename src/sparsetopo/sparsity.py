"""What a sparsity method needs to know: :class:`SparsitySettings`.

The methods (:mod:`sparsetopo.methods`) read only these settings, so they do
not depend on the trainer: :class:`~sparsetopo.training.TrainConfig` extends
this class with the data, model and optimizer settings of a run (its flags and
YAML keys stay flat), and :func:`~sparsetopo.methods.sparsify` builds one from
its keyword arguments for a user's own loop. This module imports neither torch
nor the registries (their choices are looked up when a value is checked), so a
config can be declared and ``--help`` shown cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import check_config, option, registry
from .errors import SparsetopoError

__all__ = ["REGROW_INITS", "REGROW_WHERE", "SparsitySettings"]

REGROW_INITS = ("zero", "normal")
#: Where SET may regrow: anywhere empty (SET's rule), or only into neurons that can receive a gradient
#: (issue 23's counterfactual; see :class:`SparsitySettings`).
REGROW_WHERE = ("anywhere", "live")


@dataclass
class SparsitySettings:
    """How a network is sparse and how its connectivity evolves. Field names are keys (and,
    in :class:`~sparsetopo.training.TrainConfig`, flags with dashes); the ``help`` metadata
    explains each, the other metadata its allowed values (checked by :meth:`validate`)."""

    method: str = option("set", help="The sparsity method (see sparsetopo.methods.METHODS).",
                         choices=registry("methods", "METHODS"))
    distribution: str = option("erdos_renyi", choices=registry("topology", "DISTRIBUTIONS"),
                               help="How sparsity is spread over layers: erdos_renyi (SET's epsilon rule), erk "
                                    "(RigL's Erdős–Rényi-Kernel, needs --density) or uniform (needs --density).")
    epsilon: float | None = option(20.0, gt=0.0, help="SET's Erdős–Rényi sparsity parameter: layer density "
                                                      "epsilon(n_in + n_out)/(n_in n_out).")
    density: float | None = option(None, gt=0.0, max=1.0,
                                   help="Target density of the sparse layers, in (0, 1]; overrides --epsilon.")
    dense_output: bool = option(True, help="Keep the output layer fully connected.")
    zeta: float = option(0.3, gt=0.0, lt=1.0, help="Fraction of connections dropped and regrown per epoch.")
    regrow_init: str = option("zero", choices=REGROW_INITS,
                              help="Value of a regrown connection: zero (SET's Keras code, RigL) or normal "
                                   "(N(0, init_std^2): SET's NumPy code).")
    regrow_where: str = option("anywhere", choices=REGROW_WHERE,
                               help="Where SET regrows: anywhere empty (SET's rule) or live: only into neurons with a "
                                    "positive incoming weight or bias before the update (the others cannot fire on "
                                    "non-negative inputs, so a connection grown there at zero stays zero). A "
                                    "counterfactual for studying dead neurons, not SET's code; method set, masked "
                                    "engine only.")
    init_std: float = option(0.1, gt=0.0, help="Standard deviation of --init normal and --regrow-init normal.")
    epochs: int = option(100, min=1, help="Training epochs (for lottery: of the final ticket).")

    def validate(self, *, flags: bool = False):
        """Check every field (type and range), then the rules that tie them together; raise
        :class:`SparsetopoError` naming the field (as a ``--flag`` with ``flags``), what is
        allowed and what was given. Returns ``self``. A method's own rules (lottery's
        ``rewind_epoch <= round_epochs``) are the method's to check:
        :func:`sparsetopo.methods.check_method_settings`, which the trainer and ``sparsify`` call."""
        check_config(self, flags=flags)

        def name(field: str) -> str:
            return "--" + field.replace("_", "-") if flags else field

        if self.density is None and self.epsilon is None:
            raise SparsetopoError(f"give {name('epsilon')} or {name('density')} (both are unset)")
        if self.regrow_where != "anywhere" and self.method != "set":
            raise SparsetopoError(f"{name('regrow_where')} {self.regrow_where} is a rule of {name('method')} set; "
                                  f"got {name('method')} {self.method}: use {name('regrow_where')} anywhere")
        return self
