"""One training loop for every method, with topology snapshots, checkpoints and resume.

A run directory holds::

    config.yaml          the resolved configuration (every field, named seeds included)
    command.txt          the command line that started or resumed the run
    metrics.csv          one row per epoch
    topology/epoch_XXX.npz   snapshots (sparsetopo's Topology format)
    checkpoint.pt        model, optimizer, masks, method state, RNG states, metrics
    model_final.pt       the final state dict
    result.json          written last: its presence marks the run as complete

Re-running the same configuration on the same directory resumes from the
checkpoint and gives the same numbers as an uninterrupted run.

One module per concern:

``config``     :class:`TrainConfig` (the schema: YAML keys and CLI flags), named seeds, config files
``loop``       :func:`train`: preparing a run, the epochs, checkpoints, the final files
``rundir``     the run directory's lock, reuse of a finished run, ``metrics.csv`` validation
``weights``    the weights snapshot format (:func:`save_weights`, :func:`load_weights`)
``resources``  the memory estimate and check
``device``     the ``device`` setting checked and resolved (random draws stay on the CPU generators)
``watching``   live logging of a run to TensorBoard / W&B (:mod:`sparsetopo.tracking`)
"""

from .config import (
    LOSSES,
    OPTIMIZERS,
    SEED_PURPOSES,
    SNAPSHOT_CONNECTIONS,
    SNAPSHOT_TIMINGS,
    TrainConfig,
    load_config_file,
)
from .loop import DIVERGED_LOSS, RunResult, loss_function, train
from .resources import available_memory, check_memory, estimate_memory
from .rundir import METRIC_COLUMNS, read_metrics, reusable_run, run_lock
from .weights import load_weights, save_weights

__all__ = ["DIVERGED_LOSS", "LOSSES", "METRIC_COLUMNS", "OPTIMIZERS", "SEED_PURPOSES", "SNAPSHOT_CONNECTIONS",
           "SNAPSHOT_TIMINGS", "RunResult", "TrainConfig", "available_memory", "check_memory", "estimate_memory",
           "load_config_file", "load_weights", "loss_function", "read_metrics", "reusable_run", "run_lock",
           "save_weights", "train"]
