"""Width: can sparse networks beat over-parameterized dense ones where dense networks cannot follow?

Static and SET networks at one epsilon (SET's 20) with three hidden layers of
widths from 1,000 to 100,000 (784-W-W-W-10 on Fashion-MNIST), beside a dense
network of SET's width 1,000 and the widest dense network that fits in memory
(computed from :func:`~sparsetopo.training.resources.estimate_memory` and
:func:`~sparsetopo.training.resources.available_memory`, capped by
``dense_max_width``, recorded in ``dense_width.json`` so that a resumed study keeps it).
Accuracy is set against width, parameter count and training FLOPs; the findings say
where, if anywhere, a sparse network overtakes the dense ones at equal parameters or
equal FLOPs.

The sparse runs use the truly sparse engine (``sparse_engine``): with it a network's
memory and time grow with its connections, not with width squared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FileFormatError
from ..fileio import write_text_atomic
from ..plots import scatter_panels, scatter_plot
from ..tables import markdown_table
from ..training import read_metrics
from ..training.resources import available_memory, estimate_memory
from .base import (
    CommonConfig,
    Context,
    Experiment,
    budget_gap,
    methods_that,
    register,
    rel,
    settings_table,
    unlearning,
    write_csv,
)
from .runner import run_trainings
from .sparse_vs_dense import SOURCES as _SHARED_SOURCES

#: The engines a sparse run may train with (TrainConfig's ``engine`` values).
SPARSE_ENGINES = ("masked", "truly-sparse")
_WIDTH = {"min": 1, "max": 1_000_000}


@dataclass
class WidthConfig(CommonConfig):
    #: The sparse networks' hidden widths (every hidden layer of a network has the same width).
    widths: list[int] = field(default_factory=lambda: [1000, 2000, 5000, 10000, 20000, 50000, 100000],
                              metadata={**_WIDTH, "nonempty": True})
    #: Hidden layers per network.
    depth: int = field(default=3, metadata={"min": 1, "max": 20})
    epsilon: float = field(default=20.0, metadata={"gt": 0})
    #: The sparse methods: any registered method that starts sparse.
    methods: list[str] = field(default_factory=lambda: ["static", "set"],
                               metadata={"choices": methods_that("starts_sparse"), "nonempty": True})
    #: The dense baseline's width (SET's).
    dense_width: int = field(default=1000, metadata=_WIDTH)
    #: The widest dense network trained, at most: the one that fits in memory unless that is wider.
    dense_max_width: int = field(default=10000, metadata=_WIDTH)
    #: The share of the available memory the widest dense network may take (other runs train beside it).
    dense_memory_fraction: float = field(default=0.5, metadata={"gt": 0, "max": 1})
    seeds: int = field(default=1, metadata={"min": 1, "max": 1000})
    sparse_engine: str = field(default="truly-sparse", metadata={"choices": SPARSE_ENGINES})


PRESETS = {
    "smoke": dict(widths=[64, 128, 256], dense_width=64, dense_max_width=256, seeds=1, epochs=1,
                  limit_train=1000, limit_test=300, batch_size=64),
    "small": dict(widths=[1000, 3000, 10000], dense_width=1000, dense_max_width=3000, seeds=1, epochs=3,
                  limit_train=20000),
    "paper": dict(widths=[1000, 2000, 5000, 10000, 20000, 50000, 100000], dense_width=1000,
                  dense_max_width=10000, seeds=3, epochs=200, batch_size=100, dropout=0.3, lr=0.01, momentum=0.9,
                  weight_decay=2e-4, zeta=0.3),
}

#: Where each setting of the ``paper`` preset comes from.
SOURCES = {
    "widths": "guess: from SET's width 1000 to 100x wider, where dense layers (W^2 weights) cannot follow",
    "depth": _SHARED_SOURCES["hidden"],
    "epsilon": "SET (Mocanu et al., 2018): epsilon 20",
    "dense_width": _SHARED_SOURCES["hidden"],
    "dense_max_width": "guess: a dense network's cost grows with width squared; at 10000 (2e8 weights, ~3 GiB to "
                       "train) 200 epochs take days on a CPU, wider ones weeks",
    "dense_memory_fraction": "guess: half the available memory, other runs train beside the widest dense one",
    "seeds": "guess",
    "sparse_engine": "the truly sparse engine: memory and time for the connections only",
    **{k: _SHARED_SOURCES[k] for k in ("epochs", "batch_size", "dropout", "lr", "momentum", "weight_decay", "zeta",
                                       "input_scaling", "init")},
}


def _run(cfg: WidthConfig, out: Path, ctx: Context) -> dict:
    probe = _probe(cfg)
    wide = dense_width_record(cfg, out, *probe)
    table, unlearned = _compute(cfg, out, ctx, wide, probe)
    _tables(table, wide, out)
    figures = _figures(cfg, table, out)
    settings_table(cfg, SOURCES, out / "tables" / "settings.csv")
    return {
        "title": "Width: sparse networks where dense ones cannot follow",
        "tables": {"Test accuracy, parameters, FLOPs and time by method and width": "tables/accuracy.csv",
                   "The widest dense network": "tables/dense_width.csv",
                   "Settings and their sources": "tables/settings.csv"},
        "markdown_tables": {"Test accuracy by method and width": "tables/accuracy.md"},
        "figures": {k: rel(v, out) for k, v in figures.items()},
        "findings": _findings(cfg, table, wide, unlearned),
    }


def _probe(cfg: WidthConfig) -> tuple[int, int]:
    """``(features, classes)`` of the data the runs train on."""
    from ..data import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                        input_scaling=cfg.input_scaling)
    return data.n_features, data.n_classes


def dense_memory(cfg: WidthConfig, width: int, n_features: int, n_classes: int) -> int:
    """Bytes that training the dense network of ``width`` needs (the masked engine's estimate)."""
    return estimate_memory(cfg.train_config(method="dense", hidden=[width] * cfg.depth), n_features, n_classes)


def widest_dense(cfg: WidthConfig, n_features: int, n_classes: int, available: int | None) -> int | None:
    """The widest dense network whose training needs at most ``dense_memory_fraction`` of ``available``
    bytes, at most ``dense_max_width`` (a width below the cap is rounded down to two significant digits);
    ``None`` when not even width 1 fits. Unknown memory (``None``) gives the cap."""
    cap = cfg.dense_max_width
    if available is None:
        return cap
    budget = cfg.dense_memory_fraction * available
    lo, hi = 0, cap  # dense_memory grows with the width: the largest width within the budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if dense_memory(cfg, mid, n_features, n_classes) <= budget else (lo, mid - 1)
    if lo in (0, cap):
        return lo or None
    step = 10 ** max(len(str(lo)) - 2, 0)
    return lo // step * step


_RECORD_KEYS = ("width", "fits", "cap", "available_bytes", "fraction", "estimate_bytes")


def dense_width_record(cfg: WidthConfig, out: Path, n_features: int, n_classes: int) -> dict:
    """The widest dense network, chosen once and kept in ``out/dense_width.json``: a resumed study trains
    the same networks whatever memory is free then."""
    path = out / "dense_width.json"
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except ValueError:
            record = None
        if not isinstance(record, dict) or set(record) != set(_RECORD_KEYS):
            raise FileFormatError(path, f"not a width-study record (keys {', '.join(_RECORD_KEYS)}); delete it to "
                                        "choose the widest dense network again")
        return record
    available = available_memory()
    fits = widest_dense(cfg, n_features, n_classes, available)
    width = fits if fits is not None and fits > cfg.dense_width else None
    record = {"width": width, "fits": fits, "cap": cfg.dense_max_width, "available_bytes": available,
              "fraction": cfg.dense_memory_fraction,
              "estimate_bytes": None if width is None else dense_memory(cfg, width, n_features, n_classes)}
    write_text_atomic(path, json.dumps(record, indent=2))
    return record


def _engine(cfg: WidthConfig) -> dict:
    """The sparse runs' engine setting."""
    return {"engine": cfg.sparse_engine}


def _plan(cfg: WidthConfig, out: Path, wide: dict):
    """Every training run, and the run directories of each (method, width) group."""
    groups: dict[tuple[str, int], list[Path]] = {}
    runs = []
    dense = [cfg.dense_width] + ([wide["width"]] if wide["width"] else [])
    for s in range(cfg.seeds):
        for w in dense:
            d = out / "runs" / f"dense_w{w}_s{s}"
            runs.append((cfg.train_config(method="dense", hidden=[w] * cfg.depth, seed=cfg.seed + s), d))
            groups.setdefault(("dense", w), []).append(d)
        for method in cfg.methods:
            for w in cfg.widths:
                d = out / "runs" / f"{method}_w{w}_s{s}"
                runs.append((cfg.train_config(method=method, hidden=[w] * cfg.depth, epsilon=float(cfg.epsilon),
                                              seed=cfg.seed + s, **_engine(cfg)), d))
                groups.setdefault((method, w), []).append(d)
    return runs, groups


def _compute(cfg: WidthConfig, out: Path, ctx: Context, wide: dict, probe: tuple[int, int]):
    """Train every network; returns the table's rows and the runs that unlearned."""
    runs, groups = _plan(cfg, out, wide)
    ctx.log(f"width: {len(runs)} training runs")
    run_trainings(runs, n_jobs=ctx.n_jobs, cluster=ctx.cluster, progress=ctx.progress, desc="runs", anchor=out,
                  log=ctx.log)
    table, unlearned = [], []
    for (method, width), dirs in groups.items():
        metrics = [read_metrics(d) for d in dirs]
        unlearned += [f"{d.name}: {note}" for d, m in zip(dirs, metrics) if (note := unlearning(m)) is not None]
        table.append(_row(cfg, method, width, metrics, probe))
    table.sort(key=lambda r: (r["method"] != "dense", r["method"], r["width"]))
    return table, unlearned


def _row(cfg: WidthConfig, method: str, width: int, metrics: list[list[dict]], probe: tuple[int, int]) -> dict:
    n_features, n_classes = probe
    sizes = [n_features, *[width] * cfg.depth, n_classes]
    full = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    lasts = [m[-1] for m in metrics]
    connections = float(np.mean([sum(v for k, v in r.items() if k.startswith("connections_l")) for r in lasts]))
    accs = np.array([r["test_acc"] for r in lasts])
    return {"method": method, "width": width, "parameters": int(round(connections)) + sum(sizes[1:]),
            "density": connections / full, "test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std()),
            "train_flops": float(np.mean([r["train_flops"] for r in lasts])),
            "seconds": float(np.mean([sum(r["seconds"] for r in m) for m in metrics])), "seeds": len(accs)}


def _tables(table: list[dict], wide: dict, out: Path) -> None:
    write_csv(out / "tables" / "accuracy.csv", table)
    md = markdown_table([{**r, "test_acc": f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}"} for r in table])
    write_text_atomic(out / "tables" / "accuracy.md", md)
    write_csv(out / "tables" / "dense_width.csv", [{k: "" if v is None else v for k, v in wide.items()}])


def _figures(cfg: WidthConfig, table: list[dict], out: Path) -> dict[str, Path]:
    def points(x):
        groups = {}
        for method in ("dense", *cfg.methods):
            sel = [r for r in table if r["method"] == method]
            if sel:
                groups[method] = ([r[x] for r in sel], [r["test_acc_mean"] for r in sel])
        return groups

    by_width, by_cost = out / "figures" / "accuracy_vs_width.png", out / "figures" / "accuracy_vs_cost.png"
    scatter_plot(points("width"), by_width, xlabel="hidden width (log scale)", ylabel="test accuracy",
                 title=f"Width (epsilon {cfg.epsilon:g})", logx=True, connect=True)
    scatter_panels([("vs parameters", "parameters (log scale)", points("parameters")),
                    ("vs training FLOPs", "training FLOPs (log scale)", points("train_flops")),
                    ("vs time", "seconds (log scale)", points("seconds"))], by_cost, ylabel="test accuracy")
    return {"Accuracy vs width": by_width, "Accuracy vs parameters, training FLOPs and time": by_cost}


def overtakes(method: str, table: list[dict], key: str, what: str) -> str:
    """Where ``method`` first beats every dense network with at least as much ``key`` (parameters,
    training FLOPs), said in words from ``table``'s rows."""
    dense = [r for r in table if r["method"] == "dense"]
    sel = sorted((r for r in table if r["method"] == method), key=lambda r: r[key])
    wins, unmatched = [], 0
    for r in sel:
        rivals = [d for d in dense if d[key] >= r[key]]
        if not rivals:
            unmatched += 1
        elif r["test_acc_mean"] > max(d["test_acc_mean"] for d in rivals):
            wins.append((r, max(rivals, key=lambda d: d["test_acc_mean"])))
    note = (f" ({unmatched} of the {method} networks have more {what} than every dense network here, so no "
            f"dense rival at equal {what})") if unmatched else ""
    if not wins:
        return f"At equal {what}: no {method} network beats a dense network with as many or more {what}{note}."
    r, d = wins[0]
    return (f"At equal {what}: {method} overtakes dense from width {r['width']} ({r[key]:.3g} {what}, "
            f"{r['test_acc_mean']:.4f}), above every dense network with as many or more {what} (best of them: "
            f"width {d['width']}, {d[key]:.3g} {what}, {d['test_acc_mean']:.4f}); "
            f"{len(wins)} of {len(sel)} {method} widths do{note}.")


def _findings(cfg: WidthConfig, table: list[dict], wide: dict, unlearned: list[str]) -> list[str]:
    dense = [r for r in table if r["method"] == "dense"]
    best_dense = max(dense, key=lambda r: r["test_acc_mean"])
    findings, shown = [_wide_finding(cfg, wide)], False
    for method in cfg.methods:
        sel = [r for r in table if r["method"] == method]
        best = max(sel, key=lambda r: r["test_acc_mean"])
        beats = best["test_acc_mean"] > best_dense["test_acc_mean"]
        shown = shown or beats
        findings.append(
            f"Best {method} network: width {best['width']} ({best['parameters']} parameters, density "
            f"{100 * best['density']:.3g} %), {best['test_acc_mean']:.4f} ± {best['test_acc_std']:.4f} vs best "
            "dense (width "
            f"{best_dense['width']}, {best_dense['parameters']} parameters) {best_dense['test_acc_mean']:.4f}: "
            + ("it beats every dense network, as the paper claims." if beats
               else "it does NOT beat the best dense network in this run."))
        findings += [overtakes(method, table, "parameters", "parameters"),
                     overtakes(method, table, "train_flops", "training FLOPs")]
    if unlearned:
        findings.append("Some networks unlearned, so their accuracy reflects that, not their width: "
                        + "; ".join(unlearned) + ".")
    if not shown:
        findings.append(budget_gap(cfg, PRESETS["paper"], ("widths", "dense_max_width", "epochs", "seeds",
                                                           "limit_train")))
    if cfg.sparse_engine != "truly-sparse":
        findings.append("The sparse networks trained in the masked engine (dense-shaped tensors): their seconds "
                        "are not what the truly sparse engine takes.")
    return findings


def _wide_finding(cfg: WidthConfig, wide: dict) -> str:
    avail = wide["available_bytes"]
    memory = "memory available unknown" if avail is None else \
        f"{wide['fraction']:g} of the {avail / 2**30:.1f} GiB available"
    fits = "no dense network" if wide["fits"] is None else f"width {wide['fits']}"
    if wide["width"] is None:
        return (f"Widest dense network: {fits} fits in {memory} (capped at dense_max_width {wide['cap']}), no wider "
                f"than the dense baseline {cfg.dense_width}: only that one was trained.")
    return (f"Widest dense network: width {wide['width']} ({wide['estimate_bytes'] / 2**30:.2f} GiB to train; "
            f"{fits} fits in {memory}, capped at dense_max_width {wide['cap']}), beside the dense baseline "
            f"{cfg.dense_width}; the sparse networks go to width {max(cfg.widths)}.")


register(Experiment(
    name="width", config_cls=WidthConfig, presets=PRESETS, run=_run,
    help="Static and SET at epsilon 20 and widths up to 100,000 beside dense 1,000 and the widest dense that fits.",
))
