"""What every experiment shares: typed configs with presets, the registry and the summary file.

An experiment is a dataclass of settings (``Config``), a dict of presets
(``smoke``, ``small``, ``paper``: overrides of the dataclass defaults) and a
``run(config, out, ctx)`` function. Its outputs go under ``out``; every step
skips work whose outputs already exist, so a stopped experiment continues
where it stopped when run again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import check_config, load_yaml_mapping, registry
from ..errors import SparsetopoError
from ..fileio import file_sha256, write_text_atomic
from ..fileio import write_csv as _write_csv
from ..training import TrainConfig

#: The budgets every experiment offers, smallest first (the CLI's ``--preset`` choices).
PRESETS = ("smoke", "small", "paper")

#: The settings an experiment passes on to each of its training runs, in the order of its
#: YAML keys (and of ``experiment.yaml``). Type, checks and help come from
#: :class:`~sparsetopo.training.TrainConfig`'s field of the same name, so they are declared once.
TRAIN_SETTINGS = (
    "dataset", "data_dir", "limit_train", "limit_test", "input_scaling", "epochs", "batch_size", "lr", "momentum",
    "weight_decay", "zeta", "init", "init_std", "regrow_init", "regrow_where", "loss", "dropout", "val_fraction",
    "snapshot_timing", "snapshot_connections", "snapshot_weights", "optimizer_reset", "seed", "device",
)

#: Where a study's default differs from a single run's: a study trains longer (a run's default is 100).
STUDY_DEFAULTS = {"epochs": 200}


def train_field(name: str, **default) -> dataclasses.Field:
    """A field with the checks and help of TrainConfig's field ``name`` and its default, or the one given
    (``default=...`` or ``default_factory=...``)."""
    source = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    if not default:
        if source.default_factory is not dataclasses.MISSING:
            default = {"default_factory": source.default_factory}
        else:
            default = {"default": STUDY_DEFAULTS.get(name, source.default)}
    return field(metadata=source.metadata, **default)


def _train_type(name: str):
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}[name]


# A base class made from TrainConfig's fields, so that the study settings are not a second copy.
_TrainSettings = dataclasses.make_dataclass(
    "_TrainSettings", [(n, _train_type(n), train_field(n)) for n in TRAIN_SETTINGS],
    namespace={"__module__": __name__})


@dataclass
class CommonConfig(_TrainSettings):
    """Settings every experiment has: data and the optimizer of its training runs
    (:data:`TRAIN_SETTINGS`, checked as TrainConfig checks them) and the NNSTD solver."""

    solver: str = field(default="auto", metadata={"choices": registry("nnstd", "SOLVERS")})

    def train_config(self, **overrides: Any) -> TrainConfig:
        """A TrainConfig carrying the common settings plus ``overrides``."""
        return TrainConfig(**{**{n: getattr(self, n) for n in TRAIN_SETTINGS}, **overrides})


def method_has(name: str, capability: str) -> bool:
    """Ask the method ``name`` a question (``starts_sparse``, ``accepts_initial_topology``...), so that
    a study decides by what a method can do, never by a list of method names."""
    from ..methods import method_class

    return bool(getattr(method_class(name), capability))


def methods_that(capability: str) -> Callable[[], tuple[str, ...]]:
    """Config choices: the registered methods with ``capability``, in the registry's order; looked up
    when checked (as :func:`~sparsetopo.config.registry` does), so a method registered later is one."""
    def get() -> tuple[str, ...]:
        from ..methods import METHODS

        return tuple(n for n in METHODS if method_has(n, capability))
    return get


@dataclass
class Context:
    """How to run: parallelism, cluster, progress."""

    n_jobs: int = -1
    cluster: str | None = None
    progress: bool = True
    log: Callable[[str], None] = field(default=print)


@dataclass
class Experiment:
    name: str
    config_cls: type
    presets: dict[str, dict[str, Any]]
    run: Callable[[Any, Path, Context], dict[str, Any]]
    help: str
    #: Presets for other models (``{"cnn": {"smoke": {...}, "small": {...}}}``), chosen by a ``model`` override.
    model_presets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    EXPERIMENTS[exp.name] = exp
    return exp


def make_config(name: str, preset: str, overrides: dict[str, Any] | None = None, *, source: str = "config"):
    """The experiment's config: dataclass defaults < preset < ``overrides`` (a YAML file's keys)."""
    if name not in EXPERIMENTS:
        raise SparsetopoError(f"experiment must be one of {', '.join(EXPERIMENTS)}; got {name!r}")
    if preset not in PRESETS:
        raise SparsetopoError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    exp = EXPERIMENTS[name]
    overrides = {str(k).replace("-", "_"): v for k, v in (overrides or {}).items()}
    values = _preset(exp, preset, overrides.get("model", DEFAULT_MODEL))
    allowed = {f.name for f in dataclasses.fields(exp.config_cls)}
    if "model" not in allowed and overrides.get("model") == DEFAULT_MODEL:
        overrides.pop("model")  # the experiments without a model choice are studies of the default model
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise SparsetopoError(f"{source}: unknown key(s) for {name}: {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(allowed))}")
    values.update(overrides)
    config = exp.config_cls(**values)
    try:
        # Types and ranges of every field (training fields borrow TrainConfig's checks),
        # then the experiment's own rules; bad settings fail before any work.
        check_config(config, borrow=TrainConfig)
        config.train_config().validate(flags=False)  # an experiment's settings are keys, not --flags
        if hasattr(config, "validate"):
            config.validate()
    except SparsetopoError as exc:
        raise SparsetopoError(f"{source}: {exc}") from None
    return config


#: The model a study runs on unless it says otherwise (``Experiment.presets`` are for it): TrainConfig's.
DEFAULT_MODEL = train_field("model").default


def _preset(exp: Experiment, preset: str, model: str) -> dict[str, Any]:
    """A copy of the experiment's ``preset`` for ``model``: its own presets are for the default model,
    ``exp.model_presets`` for others."""
    if model == DEFAULT_MODEL:
        return dict(exp.presets[preset])
    if model not in exp.model_presets:
        raise SparsetopoError(f"{exp.name} runs on model {DEFAULT_MODEL}"
                              + "".join(f" or {m}" for m in exp.model_presets) + f"; got {model!r}")
    presets = exp.model_presets[model]
    if preset not in presets:
        # Named as the CLI's options: the only way to ask for a model's preset is `sparsetopo experiment`.
        raise SparsetopoError(f"--preset {preset} is not available with --model {model} "
                              f"(presets: {', '.join(presets)})")
    return dict(presets[preset])


def exp_defaults(config):
    """A config of the same class with every field at its dataclass default."""
    return type(config)()


def run_experiment(name: str, preset: str, out: str | os.PathLike, *, config_file: str | None = None,
                   overrides: dict[str, Any] | None = None, ctx: Context | None = None) -> dict[str, Any]:
    """Run (or continue) one experiment; returns its summary (also in ``out/summary.json``)."""
    from ..training import load_config_file

    values = load_config_file(config_file) if config_file else {}
    values.update(overrides or {})
    config = make_config(name, preset, values, source=str(config_file or "overrides"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "experiment.yaml"
    resolved = {"experiment": name, "preset": preset, "config": dataclasses.asdict(config)}
    if saved.exists():
        previous = load_yaml_mapping(saved)
        if not isinstance(previous.get("config"), dict):
            previous["config"] = {}  # damaged or hand-written: every setting then differs
        # A setting added since that run was started had its default then.
        defaults = dataclasses.asdict(exp_defaults(config))
        previous["config"] = {**{k: v for k, v in defaults.items() if k not in previous["config"]},
                              **previous["config"]}
        if previous != resolved:
            diff = sorted(k for k in resolved["config"] if previous["config"].get(k) != resolved["config"][k])
            detail = ", ".join(f"{k}: {previous['config'].get(k)!r} -> {resolved['config'][k]!r}" for k in diff)
            raise SparsetopoError(f"{out}: holds a {previous.get('experiment')} experiment with other settings "
                                  f"(preset {previous.get('preset')}; differing: {detail or 'experiment'}; "
                                  "setting: recorded -> wanted); use another --out or the same settings")
    else:
        write_text_atomic(saved, yaml.safe_dump(resolved, sort_keys=False))
    summary = EXPERIMENTS[name].run(config, out, ctx or Context())
    summary = {"experiment": name, "preset": preset, "config": dataclasses.asdict(config), **summary}
    summary["files"] = output_files(out, summary.get("tables", {}), summary.get("figures", {}))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


def output_files(out: Path, tables: dict[str, str], figures: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What the report checks of each table and figure a summary names: its checksum, and a
    table's columns and row count (so that a damaged or changed file is named, not shown)."""
    import csv

    files = {}
    for rel_path in tables.values():
        with open(out / rel_path, newline="") as f:
            rows = list(csv.reader(f))
        files[rel_path] = {"columns": rows[0], "rows": len(rows) - 1, "sha256": file_sha256(out / rel_path)}
    for rel_path in figures.values():
        files[rel_path] = {"sha256": file_sha256(out / rel_path)}
    return files


def settings_table(config, sources: dict[str, str], path: Path) -> str:
    """Write each documented setting of this run beside where its ``paper`` value comes from."""
    rows = [{"setting": k, "this run": json.dumps(getattr(config, k)), "paper preset: source": src}
            for k, src in sources.items()]
    write_csv(path, rows)
    return path.name


def budget_gap(config, paper: dict[str, Any], keys: tuple[str, ...]) -> str:
    """Say how this run's budget falls short of the ``paper`` preset's, for a claim that did not show.

    A claim that fails at a small budget is not refuted: the finding names the budget that would
    test it (the ``paper`` preset) and what this run had instead.
    """
    ref = {**dataclasses.asdict(exp_defaults(config)), **paper}
    gaps = [f"{k} {getattr(config, k)} (paper preset: {ref[k]})"
            for k in keys if k in ref and getattr(config, k) != ref[k]]
    if not gaps:
        return "This run had the paper preset's budget."
    return ("This run's budget is smaller than the paper's: " + ", ".join(gaps)
            + ". The paper preset is the budget that would test the claim.")


def sparse_layers(topology) -> list[int]:
    """Layers that are not fully connected. A dense layer (the output layer; with ERK maybe a small
    first convolution) has NNSTD 0 by construction, so studies leave it out of means and figures.
    The rule is :func:`sparsetopo.nnstd.sparse_layers`, shared with the command line."""
    from ..nnstd import sparse_layers as rule

    return rule(topology)


def dense_layers_finding(n_layers: int, sparse: list[int], left_out_of: str) -> str | None:
    """The finding that says which layers are dense and what they are left out of (``None``: none)."""
    dense = [k for k in range(n_layers) if k not in sparse]
    if not dense:
        return None
    which = f"Layer {dense[0]} is" if len(dense) == 1 else f"Layers {', '.join(map(str, dense))} are"
    return f"{which} dense (NNSTD 0 by construction): left out of {left_out_of}."


def unlearning(metrics: list[dict[str, Any]], *, rise: float = 0.1) -> str | None:
    """Describe a run whose training loss rose by more than ``rise`` (relative) after its lowest
    point, ending higher -- a network that unlearned (e.g. SET far below its design density) --
    or return ``None``. A plateau or noise of a few percent is not flagged."""
    losses = [(m["epoch"], m["train_loss"]) for m in metrics if m.get("train_loss") is not None]
    if len(losses) < 3:
        return None
    best_epoch, best = min(losses, key=lambda e: e[1])
    last_epoch, last = losses[-1]
    if last <= best * (1 + rise):
        return None
    return (f"training loss rose from {best:.3f} (epoch {best_epoch}) to {last:.3f} (epoch {last_epoch}): "
            "the network unlearned")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Tables for people: floats to 6 significant digits."""
    _write_csv(path, rows, float_digits=6)


def rel(path: Path, out: Path) -> str:
    """Paths in summaries are relative to the experiment directory, so it can be moved."""
    return str(Path(path).relative_to(out))
