"""Issue 20: a topological map of sparse training and pruning methods.

Every method (dense, static, SET, RigL, gmp, magnitude, SNIP, GraSP, SynFlow, lottery) trains
the same network at each density with several seeds. Seed ``i`` of every method uses the same
base seed, so the methods start from the same initial weights and see the same data order.
The study reports accuracy (mean ± std over seeds), training FLOPs and parameters, the
per-layer density each method ends with, and the topological map: NNSTD between every final
subnetwork of the same architecture and density (NNSTD between densities is defined, but
mixes the density's effect with the method's), its heatmap ordered by method, a classical MDS
embedding, and how far each sparse-from-the-start method ends from its own initial topology.

A study has an MLP part (``hidden``) and, when ``cnn_methods`` names any, a CNN part on
SparseCNN (``cnn_channels``, ``cnn_hidden``, ERK densities as RigL spreads them in convnets).
The tables, figures and findings are in :mod:`.methods_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import registry
from ..nnstd import classical_mds, nnstd_many, pairwise_nnstd, save_matrix, sparse_layers
from ..topology import Topology
from ..training import TrainConfig, read_metrics
from .base import (
    TRAIN_SETTINGS,
    CommonConfig,
    Context,
    Experiment,
    method_has,
    register,
    settings_table,
    train_field,
)
from .runner import load_snapshot, run_trainings

#: Every method of the issue, in the order tables and heatmaps show them.
DENSE = "dense"
ALL_METHODS = ["dense", "static", "set", "rigl", "gmp", "magnitude", "snip", "grasp", "synflow", "lottery"]


def _methods_field(default: list[str], *, nonempty: bool = True):
    return field(default_factory=lambda: list(default),
                 metadata={"choices": registry("methods", "METHODS"), "nonempty": nonempty})


@dataclass
class MethodsConfig(CommonConfig):
    hidden: list[int] = train_field("hidden")
    #: How each layerwise method spreads a density over the MLP's layers (uniform: every sparse
    #: layer has it, so all layerwise methods have equal connection counts per layer).
    distribution: str = train_field("distribution", default="uniform")
    methods: list[str] = _methods_field(ALL_METHODS)
    densities: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.02],
                                   metadata={"gt": 0.0, "lt": 1.0, "nonempty": True})
    seeds: int = field(default=3, metadata={"min": 1, "max": 1000})
    #: The CNN part (SparseCNN, ERK densities); no methods: no CNN part.
    cnn_methods: list[str] = _methods_field([], nonempty=False)
    cnn_channels: list[int] = train_field("channels")
    cnn_hidden: list[int] = train_field("hidden", default_factory=lambda: [128])
    #: Method settings, each passed to the methods that have it.
    prune_rate: float = train_field("prune_rate")
    round_epochs: int | None = train_field("round_epochs")
    finetune_epochs: int = field(default=10, metadata={"min": 1})
    dense_epochs: int | None = field(default=None, metadata={"min": 1})
    end_epoch: int | None = field(default=None, metadata={"min": 1})
    rounds: int = field(default=100, metadata={"min": 1})

    def validate(self) -> None:
        for method in dict.fromkeys([*self.methods, *self.cnn_methods]):
            for density in self.densities:
                plan_config(self, "mlp", method, density, 0).validate(flags=False)


_SHARED = dict(lr=0.01, momentum=0.9, batch_size=100, weight_decay=2e-4, input_scaling="standardize")

PRESETS = {
    "smoke": dict(hidden=[64, 64], densities=[0.1], seeds=2, epochs=2, limit_train=2000, limit_test=500,
                  batch_size=64, lr=0.05, round_epochs=1, prune_rate=0.6, finetune_epochs=1, dense_epochs=1,
                  end_epoch=1, rounds=10, cnn_methods=["static", "set", "snip", "magnitude"],
                  cnn_channels=[4, 8], cnn_hidden=[16]),
    "small": dict(_SHARED, hidden=[300, 300, 300], densities=[0.05], seeds=2, epochs=3, limit_train=20000,
                  round_epochs=1, prune_rate=0.6, finetune_epochs=1, dense_epochs=2, end_epoch=2, rounds=20),
    "paper": dict(_SHARED, hidden=[1000, 1000, 1000], densities=[0.1, 0.05, 0.02], seeds=3, epochs=100,
                  round_epochs=20, prune_rate=0.2, finetune_epochs=10, end_epoch=75, rounds=100,
                  cnn_methods=list(ALL_METHODS), cnn_channels=[16, 16, 32, 32], cnn_hidden=[128]),
}

_SET_KERAS = "SET's Keras Fashion-MNIST code"
#: Where each setting of the ``paper`` preset comes from.
SOURCES = {
    "hidden": f"{_SET_KERAS}: three hidden layers of 1000 (the paper's 784-1000-1000-1000-10 MLP)",
    "densities": "issue 20: 10 %, 5 % and 2 %",
    "distribution": "guess: uniform, so that every layerwise method has equal connection counts per layer",
    "seeds": "guess",
    "epochs": "guess (SET trains 200; a budget for ten methods x three densities)",
    "lr": f"{_SET_KERAS}: SGD lr 0.01, momentum 0.9, batch 100; weight decay 2e-4",
    "methods": "issue 20; scopes as their papers: gmp (Zhu & Gupta 2017) and magnitude layerwise, SNIP (Lee "
               "et al. 2019), GraSP (Wang et al. 2020) and SynFlow (Tanaka et al. 2020) global, lottery "
               "(Frankle & Carbin 2019) layerwise IMP; static, SET, RigL at the distribution's layer densities",
    "prune_rate": "Lottery Ticket Hypothesis (Frankle & Carbin, 2019): 20 % of the remaining weights per round",
    "round_epochs": "guess",
    "finetune_epochs": "guess (magnitude prunes after --epochs of dense training, then fine-tunes)",
    "end_epoch": "Zhu & Gupta: the target is reached well before the end (3/4 of the epochs)",
    "rounds": "SynFlow (Tanaka et al., 2020): 100 pruning rounds",
    "cnn_methods": "issue 20: the small CNN (SparseCNN 16-16-32-32, 128), ERK densities as RigL's convnets",
}

#: The method settings of this config, each passed only to the methods that have it.
_METHOD_KEYS = ("prune_rate", "round_epochs", "finetune_epochs", "dense_epochs", "end_epoch", "rounds")


def plan_config(cfg: MethodsConfig, part: str, method: str, density: float | None, seed: int) -> TrainConfig:
    """The TrainConfig of one run: ``part`` "mlp" or "cnn", ``density`` ``None`` for dense."""
    from ..methods import method_class

    own = set(getattr(method_class(method).settings_cls, "__dataclass_fields__", ()))
    values = {n: getattr(cfg, n) for n in TRAIN_SETTINGS}
    # Lottery's settings are TrainConfig fields (harmless to others); the rest only for their methods.
    values.update(prune_rate=cfg.prune_rate, round_epochs=cfg.round_epochs)
    values.update({k: getattr(cfg, k) for k in _METHOD_KEYS if k in own and getattr(cfg, k) is not None})
    if part == "cnn":
        values.update(model="cnn", channels=list(cfg.cnn_channels), hidden=list(cfg.cnn_hidden), distribution="erk")
    else:
        values.update(model="mlp", hidden=list(cfg.hidden), distribution=cfg.distribution)
    values.update(method=method, seed=cfg.seed + seed, density=density, snapshot_epochs=[0])
    return TrainConfig.from_dict(values, source=f"methods study ({part} {method})")


@dataclass
class Run:
    part: str
    method: str
    density: float | None
    seed: int
    path: Path

    @property
    def name(self) -> str:
        return f"{self.method}/s{self.seed}"


def plan(cfg: MethodsConfig, out: Path) -> list[tuple[TrainConfig, Run]]:
    """Every run of the study: per part, the dense runs once per seed, the others per density and seed."""
    runs = []
    for part, methods in (("mlp", cfg.methods), ("cnn", cfg.cnn_methods)):
        for method in methods:
            for density in (cfg.densities if method != DENSE else [None]):
                for s in range(cfg.seeds):
                    tag = f"{method}_s{s}" if density is None else f"{method}_d{density:g}_s{s}"
                    r = Run(part, method, density, s, out / "runs" / part / tag)
                    runs.append((plan_config(cfg, part, method, density, s), r))
    return runs


@dataclass
class Final:
    """One finished run: its metrics and final topology (``initial``: its epoch-0 topology, when sparse)."""

    run: Run
    acc: float
    flops: float
    topology: Topology
    initial: Topology | None


@dataclass
class MapResult:
    """NNSTD among the final subnetworks of one part at one density (ordered by method, then seed)."""

    part: str
    density: float
    finals: list[Final]
    d: np.ndarray  # (n, n, layers)
    sparse_k: list[int]
    coords: np.ndarray  # (n, 2)

    def mean(self) -> np.ndarray:
        return self.d[:, :, self.sparse_k].mean(axis=2)


def _final(run: Run) -> Final:
    m = read_metrics(run.path)
    last = m[-1]
    topo = load_snapshot(run.path, last["epoch"], run.name)
    initial = None
    if run.method != DENSE and method_has(run.method, "starts_sparse"):
        initial = load_snapshot(run.path, 0, f"{run.name}@0")
    return Final(run, float(last["test_acc"]), float(last["train_flops"]), topo, initial)


def _maps(cfg: MethodsConfig, out: Path, ctx: Context, finals: list[Final]) -> list[MapResult]:
    maps = []
    for part in dict.fromkeys(f.run.part for f in finals):
        for density in cfg.densities:
            group = [f for f in finals if f.run.part == part and f.run.density == density]
            if len(group) < 2:
                continue
            tag = f"{part}_d{density:g}"
            d = pairwise_nnstd([f.topology for f in group], n_jobs=ctx.n_jobs, cluster=ctx.cluster,
                               cache_dir=out / "nnstd_cache", progress=ctx.progress, solver=cfg.solver,
                               desc=f"NNSTD {part} at density {density:g}")
            names = [f.run.name for f in group]
            save_matrix(d, names, npz=str(out / "nnstd" / f"{tag}.npz"), csv=str(out / "nnstd" / f"{tag}.csv"))
            k = sparse_layers(*[f.topology for f in group])
            maps.append(MapResult(part, density, group, d, k, classical_mds(d[:, :, k].mean(axis=2))))
    return maps


def initial_distances(cfg: MethodsConfig, ctx: Context, finals: list[Final]) -> dict[int, float]:
    """NNSTD (mean over sparse layers) of each sparse-from-the-start run's final topology from its own
    initial one, keyed by the run's index in ``finals`` (runs that start dense have no such distance)."""
    idx = [i for i, f in enumerate(finals) if f.initial is not None]
    per_layer = nnstd_many([(finals[i].initial, finals[i].topology) for i in idx], solver=cfg.solver,
                           n_jobs=ctx.n_jobs, cluster=ctx.cluster, progress=ctx.progress,
                           desc="NNSTD from the initial topologies")
    result = {}
    for i, d in zip(idx, per_layer):
        k = sparse_layers(finals[i].initial, finals[i].topology)
        result[i] = float(np.asarray(d)[k].mean())
    return result


def _run(cfg: MethodsConfig, out: Path, ctx: Context) -> dict:
    from . import methods_report as report

    runs = plan(cfg, out)
    ctx.log(f"methods: {len(runs)} training runs ({len(cfg.methods)} methods on the MLP, "
            f"{len(cfg.cnn_methods)} on the CNN, densities {cfg.densities}, {cfg.seeds} seeds)")
    run_trainings([(c, r.path) for c, r in runs], n_jobs=ctx.n_jobs, cluster=ctx.cluster, progress=ctx.progress,
                  desc="runs", anchor=out, log=ctx.log, then="NNSTD among the final subnetworks per density")
    finals = [_final(r) for _, r in runs]
    maps = _maps(cfg, out, ctx, finals)
    moved = initial_distances(cfg, ctx, finals)
    tables = report.tables(cfg, finals, moved, out)
    figures = report.figures(cfg, finals, maps, out)
    findings = report.findings(cfg, finals, maps, moved, paper=PRESETS["paper"], scope=lambda part, method, d:
                               getattr(plan_config(cfg, part, method, d, 0), "scope", "layerwise"))
    settings_table(cfg, SOURCES, out / "tables" / "settings.csv")
    return {
        "title": "A topological map of sparse training and pruning methods (issue 20)",
        "tables": {**tables, "Settings and their sources": "tables/settings.csv"},
        "markdown_tables": {title: path.replace(".csv", ".md") for title, path in tables.items()},
        "figures": figures,
        "findings": findings,
    }


register(Experiment(
    name="methods", config_cls=MethodsConfig, presets=PRESETS, run=_run,
    help="Issue 20: ten sparse training and pruning methods at several densities and seeds: accuracy, FLOPs, "
         "per-layer densities, NNSTD map, MDS.",
))
