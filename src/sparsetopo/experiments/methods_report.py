"""The ``methods`` study's tables, figures and findings in words (the runs and NNSTD are in :mod:`.methods`)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from ..fileio import write_text_atomic
from ..plots import heatmap_grid, scatter_panels, scatter_plot
from ..tables import markdown_table
from .base import budget_gap, method_has, rel, write_csv

#: Scope of each pruning method as the study runs it (its method's default, which follows its paper).
_SCOPE_NOTE = "gmp, magnitude and lottery prune per layer; snip, grasp and synflow rank all layers at once"


def _groups(finals):
    """``{(part, method, density): [finals]}`` in the order of the runs."""
    groups = {}
    for f in finals:
        groups.setdefault((f.run.part, f.run.method, f.run.density), []).append(f)
    return groups


def _pct(density) -> str:
    return "dense" if density is None else f"{100 * density:g} %"


def accuracy_rows(finals) -> list[dict]:
    rows = []
    for (part, method, density), fs in _groups(finals).items():
        acc = np.array([f.acc for f in fs])
        t = fs[0].topology
        rows.append({"model": part, "method": method, "target_density": "" if density is None else density,
                     "density": float(np.mean([f.topology.density for f in fs])),
                     "parameters": int(np.mean([sum(f.topology.n_connections) for f in fs])) + sum(t.sizes[1:]),
                     "train_flops": float(np.mean([f.flops for f in fs])),
                     "test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std()), "seeds": len(fs)})
    return rows


def layer_rows(finals) -> list[dict]:
    """The per-layer density each method ends with (mean over seeds; layer 0 is the input layer's)."""
    rows = []
    for (part, method, density), fs in _groups(finals).items():
        if density is None:
            continue
        per_layer = np.mean([f.topology.densities for f in fs], axis=0)
        rows.append({"model": part, "method": method, "target_density": density,
                     **{f"layer_{k}": float(v) for k, v in enumerate(per_layer)}})
    # The MLP and the CNN have different layer counts: one table, blanks where a model has no such layer.
    n = max((len(r) for r in rows), default=0)
    keys = next((list(r) for r in rows if len(r) == n), [])
    return [{k: r.get(k, "") for k in keys} for r in rows]


def moved_rows(finals, moved: dict[int, float]) -> list[dict]:
    """How far each sparse-from-the-start method ends from its own initial topology."""
    by_group = {}
    for i, dist in moved.items():
        r = finals[i].run
        by_group.setdefault((r.part, r.method, r.density), []).append(dist)
    return [{"model": p, "method": m, "target_density": d, "nnstd_from_initial_mean": float(np.mean(v)),
             "nnstd_from_initial_std": float(np.std(v)), "seeds": len(v)} for (p, m, d), v in by_group.items()]


def tables(cfg, finals, moved, out: Path) -> dict[str, str]:
    acc = accuracy_rows(finals)
    spec = {"Test accuracy (mean ± std over seeds), training FLOPs and parameters": ("accuracy", acc),
            "Per-layer density each method ends with": ("layer_densities", layer_rows(finals)),
            "NNSTD of each final subnetwork from its own initial topology": ("from_initial",
                                                                           moved_rows(finals, moved))}
    result = {}
    for title, (name, rows) in spec.items():
        if not rows:
            continue
        write_csv(out / "tables" / f"{name}.csv", rows)
        shown = rows if name != "accuracy" else [
            {k: v for k, v in r.items() if not k.startswith("test_acc")}
            | {"test_acc": f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}"} for r in rows]
        write_text_atomic(out / "tables" / f"{name}.md", markdown_table(shown))
        result[title] = f"tables/{name}.csv"
    return result


def _acc_panels(rows, x_key: str, xlabel: str):
    panels = []
    for part in dict.fromkeys(r["model"] for r in rows):
        groups = {}
        for r in rows:
            if r["model"] == part:
                xs, ys = groups.setdefault(r["method"], ([], []))
                xs.append(r[x_key])
                ys.append(r["test_acc_mean"])
        panels.append((part.upper(), xlabel, groups))
    return panels


def figures(cfg, finals, maps, out: Path) -> dict[str, str]:
    rows = accuracy_rows(finals)
    figs = {}
    for key, xlabel, name in (("density", "density (log scale)", "accuracy_vs_density"),
                              ("train_flops", "training FLOPs (log scale)", "accuracy_vs_flops")):
        path = out / "figures" / f"{name}.png"
        scatter_panels(_acc_panels(rows, key, xlabel), path, ylabel="test accuracy (mean over seeds)",
                       suptitle=name.replace("_", " "), logx=True)
        figs[f"Accuracy vs {'density' if key == 'density' else 'training FLOPs'}"] = rel(path, out)
    for m in maps:
        tag = f"{m.part}_d{m.density:g}"
        names = [f.run.name for f in m.finals]
        path = out / "figures" / f"nnstd_{tag}.png"
        heatmap_grid([m.mean()], ["mean over the sparse layers"], names, path,
                     suptitle=f"NNSTD among final subnetworks: {m.part.upper()}, density {_pct(m.density)}")
        figs[f"NNSTD heatmap ({m.part.upper()}, density {_pct(m.density)}), ordered by method"] = rel(path, out)
        points = {}
        for f, (x, y) in zip(m.finals, m.coords):
            xs, ys = points.setdefault(f.run.method, ([], []))
            xs.append(float(x))
            ys.append(float(y))
        path = out / "figures" / f"mds_{tag}.png"
        scatter_plot(points, path, xlabel="MDS 1", ylabel="MDS 2",
                     title=f"Final subnetworks, classical MDS of NNSTD ({m.part.upper()}, {_pct(m.density)})")
        figs[f"2-D embedding of the final subnetworks ({m.part.upper()}, density {_pct(m.density)})"] = \
            rel(path, out)
    return figs


def method_distances(m) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Mean NNSTD within each method (between its seeds) and between each pair of methods."""
    d = m.mean()
    idx = {}
    for i, f in enumerate(m.finals):
        idx.setdefault(f.run.method, []).append(i)
    within = {k: float(np.mean([d[i, j] for i, j in combinations(v, 2)])) for k, v in idx.items() if len(v) > 1}
    between = {(a, b): float(d[np.ix_(idx[a], idx[b])].mean()) for a, b in combinations(idx, 2)}
    return within, between


def _seeds_closer(m) -> list[str]:
    """Methods whose seeds are all closer to each other than any of them is to another method's subnetwork."""
    d = m.mean()
    methods = [f.run.method for f in m.finals]
    closer = []
    for method in dict.fromkeys(methods):
        own = [i for i, x in enumerate(methods) if x == method]
        other = [i for i, x in enumerate(methods) if x != method]
        if len(own) > 1 and other and max(d[i, j] for i, j in combinations(own, 2)) < d[np.ix_(own, other)].min():
            closer.append(method)
    return closer


def map_findings(m) -> list[str]:
    within, between = method_distances(m)
    where = f"{m.part.upper()} at density {_pct(m.density)}"
    out = []
    if within:
        closer = _seeds_closer(m)
        n = len(within)
        verdict = "closer to each other than to any other method's subnetwork"
        out.append(f"{where}: seeds of one method are {verdict}"
                   f" for {len(closer)} of {n} methods ({', '.join(closer) or 'none'}); mean NNSTD within a "
                   f"method {np.mean(list(within.values())):.3f}, between methods "
                   f"{np.mean(list(between.values())):.3f}.")
    if between:
        (a, b), near = min(between.items(), key=lambda kv: kv[1])
        (c, e), far = max(between.items(), key=lambda kv: kv[1])
        out.append(f"{where}: the most similar subnetworks come from {a} and {b} (mean NNSTD {near:.3f}), the "
                   f"most different from {c} and {e} ({far:.3f}).")
    return out


def _accuracy_findings(finals) -> list[str]:
    rows = accuracy_rows(finals)
    out = []
    for part in dict.fromkeys(r["model"] for r in rows):
        dense = [r["test_acc_mean"] for r in rows if r["model"] == part and r["target_density"] == ""]
        for density in dict.fromkeys(r["target_density"] for r in rows if r["model"] == part):
            if density == "":
                continue
            sel = sorted((r for r in rows if r["model"] == part and r["target_density"] == density),
                         key=lambda r: -r["test_acc_mean"])
            ranking = ", ".join(f"{r['method']} {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}" for r in sel)
            ref = f" (dense {dense[0]:.4f})" if dense else ""
            out.append(f"{part.upper()} at density {_pct(density)}, test accuracy best first{ref}: {ranking}.")
    return out


def _moved_finding(finals, moved) -> str | None:
    rows = moved_rows(finals, moved)
    if not rows:
        return None
    text = "; ".join(f"{r['model'].upper()} {r['method']} at {_pct(r['target_density'])}: "
                     f"{r['nnstd_from_initial_mean']:.3f}" for r in rows)
    return ("How far each sparse-from-the-start method ends from its own initial topology (mean NNSTD over the "
            f"sparse layers): {text}. Static and the prune-at-initialisation methods never change their topology "
            "(0 by construction); methods that start dense (gmp, magnitude, lottery) have no sparse initial "
            "topology to compare with.")


def _layer_finding(scope, finals) -> str | None:
    """Which methods end with other per-layer densities than the distribution gives every layerwise method;
    ``scope(part, method, density)`` is a run's scope."""
    rows = layer_rows(finals)
    vals = {id(r): [r[k] for k in r if k.startswith("layer_") and r[k] != ""] for r in rows}
    layerwise = [r for r in rows if scope(r["model"], r["method"], r["target_density"]) == "layerwise"]
    spread = []
    for r in rows:
        ref = next((vals[id(q)] for q in layerwise
                    if (q["model"], q["target_density"]) == (r["model"], r["target_density"])), None)
        if ref is not None and max(abs(v - w) for v, w in zip(vals[id(r)], ref)) > 0.01 * r["target_density"]:
            spread.append(f"{r['model'].upper()} {r['method']} at {_pct(r['target_density'])}: "
                          + "/".join(f"{100 * v:.3g}" for v in vals[id(r)]) + " % (layerwise: "
                          + "/".join(f"{100 * w:.3g}" for w in ref) + " %)")
    if not spread:
        return "Every method ends with the same density in each layer, so the maps compare like for like."
    return ("Methods with a global scope end with other per-layer densities than the layerwise ones (" + _SCOPE_NOTE
            + "; the same total connection count), so their subnetworks differ from the others partly by where "
            "the connections are, not only by which: " + "; ".join(spread) + ".")


def findings(cfg, finals, maps, moved, *, paper: dict, scope) -> list[str]:
    """The study's findings; ``paper`` is the paper preset, ``scope(part, method, density)`` a run's scope."""
    out = _accuracy_findings(finals)
    for m in maps:
        out += map_findings(m)
    out += [x for x in (_moved_finding(finals, moved), _layer_finding(scope, finals)) if x]
    if any(not method_has(f.run.method, "starts_sparse") and f.run.method != "dense" for f in finals):
        out.append("Training FLOPs count every epoch a method trains, dense phases included (magnitude's dense "
                   "training, lottery's pruning rounds); the table's parameters are the final network's.")
    out.append(budget_gap(cfg, paper, ("hidden", "densities", "seeds", "epochs", "limit_train",
                                                  "cnn_methods")))
    out.append("Where these numbers compare with published ones: the accuracies of the methods' papers come from "
               "other networks, budgets and data (CIFAR, ImageNet), so they cannot be set beside ours; ours "
               "compare with each other (same network, data, optimizer, initial weights per seed, connection "
               "count) and, at the paper preset, with SET's Fashion-MNIST MLP accuracy.")
    return out
