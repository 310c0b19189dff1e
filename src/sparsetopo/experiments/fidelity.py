"""Our evolution study beside the networks published with the paper, statistic by statistic.

Every statistic is computed on our runs exactly as it was measured on the
published files (see :mod:`.published`): mean off-diagonal NNSTD per hidden
layer, test accuracy, the fraction of a network's connections kept between
two epochs, the fraction two networks share, and the correlation of their
weights on shared connections. A published ``epoch_E`` file holds the state
after E + 2 epochs of training (see :mod:`.published`), so it is compared with
our snapshot after E + 2 epochs where we have one, else E + 1, else E; the
table names both epochs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from ..topology import Topology
from . import published
from .network_stats import churn, network_stats

__all__ = ["connection_stats", "fidelity_rows", "network_finding", "our_epoch_for", "run_network_stats",
           "training_inputs", "write_fidelity_figure"]


def _pairs(n: int):
    return itertools.combinations(range(n), 2)


def connection_stats(snapshots: Mapping[int, Sequence[Topology]],
                     weights: Mapping[int, Sequence[Sequence[ss.csr_matrix]]] | None = None,
                     layers: Sequence[int] = (0, 1, 2)) -> dict[str, dict]:
    """Connection statistics of N networks' snapshots, per hidden layer.

    Returns ``{"shared": {k: {epoch: v}}, "kept": {k: {(e1, e2): v}},
    "correlation": {k: {epoch: v}}, "connections": {k: {epoch: v}}}``:
    the fraction of network i's connections that network j also has (mean
    over pairs i < j); the fraction of a network's connections at ``e1``
    still there at ``e2`` (consecutive snapshot epochs, mean over networks);
    the correlation of two networks' weights on the connections both have
    (mean over pairs; needs ``weights``, CSR matrices over each snapshot's
    mask); the mean connection count.
    """
    epochs = sorted(snapshots)
    out: dict[str, dict] = {"shared": {}, "kept": {}, "correlation": {}, "connections": {}}
    for k in layers:
        shared, kept, corr, conns = {}, {}, {}, {}
        for e in epochs:
            masks = [t[k] for t in snapshots[e]]
            conns[e] = float(np.mean([m.nnz for m in masks]))
            shared[e] = float(np.mean([masks[i].multiply(masks[j]).nnz / max(masks[i].nnz, 1)
                                       for i, j in _pairs(len(masks))]))
            if weights and e in weights:
                vals = []
                for i, j in _pairs(len(masks)):
                    both = masks[i].multiply(masks[j]).tocoo()
                    a = np.asarray(weights[e][i][k][both.row, both.col]).ravel()
                    b = np.asarray(weights[e][j][k][both.row, both.col]).ravel()
                    if len(a) > 1 and a.std() > 0 and b.std() > 0:
                        vals.append(float(np.corrcoef(a, b)[0, 1]))
                if vals:
                    corr[e] = float(np.mean(vals))
        for e1, e2 in zip(epochs[:-1], epochs[1:]):
            kept[(e1, e2)] = float(np.mean([a[k].multiply(b[k]).nnz / max(a[k].nnz, 1)
                                            for a, b in zip(snapshots[e1], snapshots[e2])]))
        out["shared"][k], out["kept"][k], out["correlation"][k], out["connections"][k] = shared, kept, corr, conns
    return out


def training_inputs(run_dir: Path) -> np.ndarray:
    """The training split a run trained on (its ``config.yaml``: data set, scaling, validation split, seed)."""
    from ..data import load_dataset
    from ..training import TrainConfig
    from ..training.config import load_config_file

    c = TrainConfig.from_dict(load_config_file(Path(run_dir) / "config.yaml"), source=str(run_dir))
    return load_dataset(c.dataset, c.data_dir, val_fraction=c.val_fraction, seed=c.named_seed("data"),
                        limit_train=c.limit_train, input_scaling=c.input_scaling).x_train


def run_network_stats(run_dirs: Sequence[Path], layers: Sequence[int] | None = None,
                      inputs=training_inputs) -> list[dict]:
    """:func:`.network_stats.network_stats` of every weights snapshot of every run, one row per layer.

    Dead neurons are counted on each run's own training split (``inputs(run_dir)``). Where the
    next epoch's snapshot exists too, ``moved`` is the fraction of the connections that the one
    SET update between the two snapshots moved and ``moved_zero_valued`` the share of those
    that were exactly zero (``None`` elsewhere).
    """
    from ..training import load_weights

    rows = []
    for d in map(Path, run_dirs):
        snaps = {int(p.stem[len("epoch_"):]): p for p in sorted((d / "weights").glob("epoch_*.npz"))}
        if not snaps:
            continue
        x = inputs(d)
        loaded = {e: load_weights(p) for e, p in snaps.items()}
        for e, (w, b) in loaded.items():
            for r in network_stats(w, b, x, layers=layers):
                nxt = churn(w[r["layer"]], loaded[e + 1][0][r["layer"]]) if e + 1 in loaded else {
                    "moved": None, "moved_zero_valued": None}
                rows.append({"network": d.name, "epoch": e, **r, **nxt})
    return rows


def our_epoch_for(published_epoch: int, available: Sequence[int]) -> int | None:
    """Our snapshot epoch to compare with a published one: the same training (E + 2), else E + 1, else E.

    The fallbacks are for later epochs, where one or two epochs change little;
    published epoch 0 (after the first update) is compared only with our
    epoch 2, never with the untrained epoch 0.
    """
    options = [published.trained_epochs(published_epoch)]
    if published_epoch > 0:
        options += [published_epoch + 1, published_epoch]
    return next((e for e in options if e in available), None)


#: Rows of the fidelity table from :func:`run_network_stats` (means over networks): statistic,
#: its column there, the published table.
NETWORK_STATISTICS = (
    ("dead hidden neurons (no positive pre-activation on the training split)", "dead_neurons",
     published.DEAD_NEURONS),
    ("zero-valued connections (published: 3772 minus the file's)", "zero_valued", published.ZERO_VALUED),
    ("non-zero connections into dead neurons", "into_dead", published.INTO_DEAD),
    ("neurons with no non-zero input", "no_input_neurons", published.NO_INPUT_NEURONS),
    ("inputs with no non-zero connection", "unused_inputs", published.UNUSED_INPUTS),
)


def fidelity_rows(nnstd_means: Mapping[int, Mapping[int, float]], stats: Mapping[str, dict],
                  accuracy: Mapping[int, float], net_stats: Sequence[dict] = ()) -> list[dict]:
    """One row per statistic, layer and published epoch we can compare with.

    ``nnstd_means[k][epoch]`` are our mean off-diagonal NNSTD values,
    ``stats`` comes from :func:`connection_stats`, ``accuracy[epoch]`` is our
    mean accuracy after that many epochs (on the held-out split when there is one),
    ``net_stats`` the means over networks of :func:`run_network_stats` (rows with
    ``epoch`` and ``layer``; none: no such rows).
    """
    rows = []

    def add(statistic, layer, pub_label, pub_value, our_label, our_value):
        rows.append({"statistic": statistic, "layer": layer, "published_epoch": pub_label,
                     "published": pub_value, "our_epoch": our_label, "ours": our_value,
                     "difference": our_value - pub_value})

    for k, table in published.NNSTD_MEAN.items():
        for e, v in table.items():
            ours = our_epoch_for(e, list(nnstd_means.get(k, {})))
            if ours is not None:
                add("mean NNSTD", k, e, v, ours, nnstd_means[k][ours])
    for name, ref in (("connections shared by two networks", published.SHARED),
                      ("weight correlation on shared connections", published.WEIGHT_CORRELATION),
                      ("connections per network", published.CONNECTIONS)):
        key = {"connections shared by two networks": "shared",
               "weight correlation on shared connections": "correlation",
               "connections per network": "connections"}[name]
        for k, table in ref.items():
            for e, v in table.items():
                mine = stats[key].get(k, {})
                ours = our_epoch_for(e, list(mine))
                if ours is not None:
                    add(name, k, e, v, ours, mine[ours])
    for k, table in published.KEPT.items():
        mine = stats["kept"].get(k, {})
        for (e1, e2), v in table.items():
            for o1, o2 in ((published.trained_epochs(e1), published.trained_epochs(e2)), (e1 + 1, e2 + 1), (e1, e2)):
                if (o1, o2) in mine and (e1 > 0 or o1 == published.trained_epochs(e1)):
                    add("connections kept between the two epochs", k, f"{e1}-{e2}", v, f"{o1}-{o2}", mine[(o1, o2)])
                    break
    for name, column, ref in NETWORK_STATISTICS:
        for k, table in ref.items():
            mine = {r["epoch"]: r[column] for r in net_stats if r["layer"] == k and r.get(column) is not None}
            for e, v in table.items():
                ours = our_epoch_for(e, list(mine))
                if ours is not None:
                    add(name, k, e, v, ours, mine[ours])
    for trained, v in enumerate(published.ACCURACY, start=1):
        if trained in accuracy and (trained in (1, 2, 3, 6, 11, 21, 51, 101, 200) or trained == max(accuracy)):
            add("accuracy after this many epochs", "", trained, v, trained, accuracy[trained])
    return rows


def write_fidelity_figure(path: Path, nnstd_means, stats, accuracy: Mapping[int, float], title: str) -> Path:
    """Ours (lines) against the published networks' (open circles, at the epochs they exist and no later
    than our last), one panel per statistic."""
    from ..plots import comparison_panels

    # Published points only where we have a run to compare them with: none past our last epoch.
    horizon = max([max(t) for t in nnstd_means.values() if t] + list(accuracy) + [0])

    def pub(table):  # published epoch E -> its E + 2 training epochs, within our horizon
        es = [e for e in sorted(table) if published.trained_epochs(e) <= horizon]
        return ([published.trained_epochs(e) for e in es], [table[e] for e in es])

    def mine(table):
        return (sorted(table), [table[e] for e in sorted(table)])

    panels = [(f"mean NNSTD, layer {k}", "mean off-diagonal NNSTD",
               {"ours": mine(nnstd_means[k]), "published": pub(published.NNSTD_MEAN[k])})
              for k in sorted(nnstd_means) if k in published.NNSTD_MEAN]
    acc_pub = published.ACCURACY[: max(accuracy)] if accuracy else published.ACCURACY[:horizon]
    panels.append(("accuracy", "accuracy", {"ours": mine(accuracy),
                                            "published": (list(range(1, len(acc_pub) + 1)), list(acc_pub))}))
    panels.append(("connections shared by two networks, layer 0", "fraction",
                   {"ours": mine(stats["shared"][0]), "published": pub(published.SHARED[0])}))
    if stats["correlation"].get(0):
        panels.append(("weight correlation on shared connections, layer 0", "correlation",
                       {"ours": mine(stats["correlation"][0]), "published": pub(published.WEIGHT_CORRELATION[0])}))
    comparison_panels(panels, path, xlabel="epochs of training", suptitle=title)
    return path


def network_finding(rows: Sequence[dict]) -> str | None:
    """One sentence on dead neurons and zero-valued connections against the published networks, at the
    latest published epoch compared (``None`` without such rows)."""
    names = {NETWORK_STATISTICS[0][0]: "dead neurons", NETWORK_STATISTICS[1][0]: "zero-valued connections"}
    mine = [r for r in rows if r["statistic"] in names]
    if not mine:
        return None
    last = max(r["published_epoch"] for r in mine)
    parts = []
    for statistic, label in names.items():
        at = sorted((r for r in mine if r["statistic"] == statistic and r["published_epoch"] == last),
                    key=lambda r: r["layer"])
        if at:
            parts.append(f"{label} per hidden layer " + " / ".join(f"{r['ours']:.0f}" for r in at)
                         + " (published " + " / ".join(f"{r['published']:.0f}" for r in at) + ")")
    ours = next(r["our_epoch"] for r in mine if r["published_epoch"] == last)
    return (f"At published epoch {last} (ours: epoch {ours}): " + "; ".join(parts)
            + ". A connection regrown at zero on a dead neuron or input gets no gradient and "
            "stays zero, so it is missing from a snapshot of non-zero weights.")
