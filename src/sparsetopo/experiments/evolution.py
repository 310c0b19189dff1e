"""The paper's Figure 4 (RQ1, RQ3): do nearly identical sparse topologies drift apart under SET?

One Erdős–Rényi topology and ``networks - 1`` more, each made by moving
``perturb_fraction`` of the previous one's connections; all trained with SET;
the pairwise NNSTD of their snapshots per epoch and layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SparsetopoError
from ..nnstd import load_matrix, nnstd_many, pairwise_nnstd, save_matrix
from ..plots import heatmap_grid, line_plot
from ..topology import Topology, perturbation_chain
from ..training import TrainConfig, load_weights, read_metrics
from . import published
from .base import (
    CommonConfig,
    Context,
    Experiment,
    dense_layers_finding,
    register,
    rel,
    settings_table,
    sparse_layers,
    train_field,
    write_csv,
)
from .fidelity import connection_stats, fidelity_rows, network_finding, run_network_stats, write_fidelity_figure
from .network_stats import summarise
from .runner import initial_topology, load_snapshot, run_trainings, snapshot_path


@dataclass
class EvolutionConfig(CommonConfig):
    hidden: list[int] = train_field("hidden", default_factory=lambda: [784, 784, 784])
    density: float = field(default=0.006, metadata={"gt": 0, "max": 1})
    networks: int = field(default=10, metadata={"min": 2, "max": 1000})
    perturb_fraction: float = field(default=0.01, metadata={"gt": 0, "max": 1})
    snapshot_epochs: list[int] = field(default_factory=lambda: [0, 10, 30, 50, 100, 190])
    topology_seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 2})
    #: All networks start from the same initial weights (seeded by ``seed``), as the
    #: paper's published networks did; data order, dropout and regrowth differ.
    shared_init: bool = True
    #: ``mlp`` (the paper's study) or ``cnn`` (SparseCNN: ``channels``, then ``hidden``
    #: fully connected layers; sparsity spread by ``distribution``). Any registered model is a
    #: valid value; the study runs on those it has presets for (``Experiment.model_presets``).
    model: str = train_field("model")
    channels: list[int] = train_field("channels")
    #: The residual networks' width and depth (``--width``, ``--depth``: see TrainConfig).
    width: int | None = train_field("width")
    depth: int | None = train_field("depth")
    distribution: str = train_field("distribution")

    def validate(self) -> None:
        """``width`` and ``depth`` fit ``model`` (the training runs' rules, named as keys)."""
        from ..models_resnet import check_residual_options

        check_residual_options(self)


#: The training recipe of the paper's evolution study, as recovered from its
#: published networks (benchmarks/RESULTS.md has the evidence and the ablation):
#: pixels scaled to [0, 1] (70 first-layer neurons of the published networks are
#: dead from the start, which non-negative inputs explain and standardized ones
#: do not), weights N(0, 0.1^2) and zero biases (SET's original code), the same
#: initial weights for all ten networks, no weight decay (the dead neurons'
#: weights never shrink), regrown connections starting at zero (SET's Keras code)
#: and zeta 0.2 (a stable core of ~75 % of the connections over 10 epochs; 81 %
#: shared by two networks after the first update), cross-entropy, SGD lr 0.01 with
#: momentum 0.9, batch 100 (SET's Keras code), dropout 0.2, and a 48,000 / 12,000 split with accuracy
#: measured on the 12,000 (the published accuracies are multiples of 1/12000).
#: Snapshots are taken as the published files were written: after an epoch's
#: training, before its SET update, without connections whose weight is exactly zero.
PAPER_RECIPE = dict(
    input_scaling="unit", init="normal", init_std=0.1, shared_init=True, loss="cross_entropy", lr=0.01,
    momentum=0.9, weight_decay=0.0, batch_size=100, dropout=0.2, zeta=0.2, regrow_init="zero", val_fraction=0.2,
    regrow_where="anywhere", optimizer_reset="never",
    snapshot_timing="before_update", snapshot_connections="nonzero", snapshot_weights=True,
    density=3772 / (784 * 784), solver="dense",
)
#: Where each setting of the ``paper`` preset comes from (measured on the published networks
#: unless said otherwise; benchmarks/RESULTS.md has the ablation).
SOURCES = {
    "hidden": "published networks: 784-784-784-784-10",
    "density": "published networks: 3772 connections per hidden layer at epoch 0",
    "networks": "published: ten networks",
    "perturb_fraction": "paper: each network moves 1 % of the previous one's connections",
    "shared_init": "published weights correlate 0.999 across networks after one epoch (0.988 on the dense layer)",
    "input_scaling": "70 first-layer neurons dead from the start with all-negative weights: non-negative inputs",
    "init": "weights std 0.106 after one epoch, zero biases on dead neurons: SET's N(0, 0.1^2)",
    "weight_decay": "the dead neurons' weights are identical from epoch 10 to 150: no decay",
    "regrow_init": "~75 % of connections survive 10 epochs (regrown at random: 8 %); SET's Keras code",
    "zeta": "two networks share 81 % of their connections after the first update (zeta 0.3: 73 %)",
    "val_fraction": "accuracies are multiples of 1/12000: 48,000 / 12,000 split",
    "loss": "accuracy 0.19 / 0.39 / 0.51 after 1 / 2 / 3 epochs (squared error learns far slower here)",
    "lr": "the same accuracy curve (lr 0.02 learns too fast early)",
    "batch_size": "SET's Keras code (batch 100); fits the early accuracy curve",
    "dropout": "guess (SET's NumPy code: 0.2); little effect here",
    "regrow_where": "anywhere, SET's rule; growing only into live neurons removes most zero-valued connections "
                    "but leaves NNSTD and sharing as they were over 50 epochs (benchmarks/paper_evolution_50epochs)",
    "optimizer_reset": "never (momentum kept); a fresh SGD each epoch (SET's Keras code) changes nothing beyond "
                       "noise over 50 epochs (benchmarks/paper_evolution_50epochs)",
    "snapshot_timing": "files hold trained weights (a snapshot after the update would miss ~20 % zero-valued ones)",
    "snapshot_connections": "files are weight matrices: exactly-zero weights are missing",
    "solver": "the reference implementation's matchings (dense), to compare like with like",
}

#: Snapshot epochs of the full run: every published epoch E, and E + 1, E + 2 (a
#: published ``epoch_E`` file is the state after E + 2 epochs of training, see
#: ``published``; the neighbours show how much one epoch changes).
PAPER_SNAPSHOTS = sorted({e + d for e in (0, 10, 20, 30, 40, 50, 100, 150, 190) for d in (0, 1, 2)} | {200})

#: The evolution study on a small VGG-style CNN (issue 10): the same chain of perturbed
#: topologies and shared weights, ERK densities, SET; no published networks to compare with.
CNN_PRESETS = {
    "smoke": dict(PAPER_RECIPE, model="cnn", channels=[4, 8], hidden=[16], distribution="erk", density=0.3,
                  networks=4, epochs=2, snapshot_epochs=[0, 1, 2], limit_train=2000, limit_test=500, batch_size=32,
                  lr=0.05, input_scaling="standardize", init="he", snapshot_weights=False, solver="auto"),
    "small": dict(PAPER_RECIPE, model="cnn", channels=[16, 16, 32, 32], hidden=[128], distribution="erk",
                  density=0.1, networks=6, epochs=4, snapshot_epochs=[0, 1, 2, 4], limit_train=24000,
                  input_scaling="standardize", init="he", lr=0.02, snapshot_weights=False, solver="auto"),
}

#: The evolution study on a CIFAR-style ResNet-20 (issue 22): ``width`` is its first group's channels.
#: The same presets serve ``resnet32`` and ``resnet`` (``depth``), whose model replaces this one. The CNN's
#: ``channels`` are left out: with ``width`` they would contradict it.
RESNET_PRESETS = {
    "smoke": dict({k: v for k, v in CNN_PRESETS["smoke"].items() if k != "channels"}, model="resnet20",
                  width=4, networks=3, limit_train=512, limit_test=256),
    "small": dict({k: v for k, v in CNN_PRESETS["small"].items() if k != "channels"}, model="resnet20",
                  width=16, networks=4, epochs=3, snapshot_epochs=[0, 1, 3], limit_train=6000, limit_test=2000),
}
#: A WideResNet's presets: WRN-10-1 (16, 32, 64 channels), the smallest there is.
WRN_PRESETS = {p: dict(v, model="wrn", width=1, depth=10) for p, v in RESNET_PRESETS.items()}

PRESETS = {
    # smoke: a seconds-long miniature of the recipe (a higher lr so that it learns in 2 epochs); not comparable.
    "smoke": dict(PAPER_RECIPE, hidden=[64, 64, 64], density=0.05, networks=4, epochs=2, snapshot_epochs=[0, 1, 2],
                  limit_train=4000, limit_test=500, batch_size=32, lr=0.05),
    "small": dict(PAPER_RECIPE, hidden=[784, 784, 784], networks=10, epochs=10, snapshot_epochs=[0, 1, 2, 5, 10]),
    "paper": dict(PAPER_RECIPE, hidden=[784, 784, 784], networks=10, epochs=200, snapshot_epochs=PAPER_SNAPSHOTS),
}


#: Captions of the tables and figures that carry a note (:func:`_notes`).
ACCURACY_CURVE = "Mean accuracy by epoch beside the published networks'"
EVOLUTION_TABLE = "NNSTD and connections by epoch and hidden layer (dense layers are left out)"
NETWORK_TABLE = ("Dead neurons, zero-valued connections, degrees and what one SET update moves, by epoch and "
                 "hidden layer (mean over networks)")

#: The method the study's networks train with: the topology evolution it measures is SET's.
METHOD = "set"


@dataclass
class _Results:
    """What the study computed, for its tables, figures, findings and summary."""

    epochs: list[int]
    names: list[str]
    hidden: list[int]  # the sparse layers: a dense one has NNSTD 0 by construction
    matrices: dict[int, np.ndarray]  # epoch -> pairwise NNSTD (networks x networks x layers)
    means: dict[int, dict[int, float]]  # layer -> epoch -> mean off-diagonal NNSTD
    drift: np.ndarray  # (epochs, networks, layers): NNSTD of each network to its initial topology
    curve: dict[int, float]  # epoch -> mean accuracy on acc_key's split
    acc_key: str
    acc_rows: list[dict]
    test_curve: dict[int, float]  # epoch -> mean accuracy on the test set
    stats: dict[str, dict]  # fidelity.connection_stats
    fid: list[dict]  # fidelity.fidelity_rows (empty: nothing to compare with)
    net_stats: list[dict] = field(default_factory=list)  # network_stats.summarise of fidelity.run_network_stats


def _run(cfg: EvolutionConfig, out: Path, ctx: Context) -> dict:
    res = _compute(cfg, out, ctx)
    tables = _tables(cfg, res, out)
    figs = _figures(cfg, res, out)
    findings = _findings(cfg, res)
    settings_table(cfg, SOURCES, out / "tables" / "settings.csv")
    tables["Settings and the evidence for the paper recipe"] = "tables/settings.csv"
    hidden, stats = res.hidden, res.stats
    return {
        "title": "Topology evolution under SET (Figure 4; RQ1, RQ3)",
        "tables": tables,
        "figures": figs,
        "findings": findings,
        "notes": _notes(cfg, res, tables, figs),
        "hidden_layers": hidden,
        "nnstd_mean_by_layer_epoch": {str(k): {str(e): v for e, v in res.means[k].items()} for k in hidden},
        "accuracy_by_epoch": {str(e): v for e, v in res.curve.items()},
        "kept_by_layer": {str(k): {f"{a}-{b}": v for (a, b), v in stats["kept"][k].items()} for k in hidden},
        "shared_by_layer_epoch": {str(k): {str(e): v for e, v in stats["shared"][k].items()} for k in hidden},
        "weight_correlation_by_layer_epoch": {str(k): {str(e): v for e, v in stats["correlation"][k].items()}
                                              for k in hidden},
    }


def _compute(cfg: EvolutionConfig, out: Path, ctx: Context) -> _Results:
    epochs = sorted({e for e in cfg.snapshot_epochs if e <= cfg.epochs} | {0, cfg.epochs})
    names = [f"net{i}" for i in range(cfg.networks)]
    initial = _initial_topologies(cfg, out, names)
    run_dirs = _train_networks(cfg, out, names, epochs, ctx)

    shapes = initial[0].shapes
    snapshots = {e: [load_snapshot(d, e, n, shapes=shapes) for d, n in zip(run_dirs, names)] for e in epochs}
    # Fully dense layers (all of them at density 1) have NNSTD 0 by construction: nothing to evolve there.
    hidden = sparse_layers(initial[0])
    matrices = _nnstd_matrices(cfg, out, names, snapshots, ctx)
    off = ~np.eye(cfg.networks, dtype=bool)
    means = {k: {e: float(matrices[e][:, :, k][off].mean()) for e in epochs} for k in hidden}
    drift_pairs = [(initial[i], snapshots[e][i]) for e in epochs for i in range(cfg.networks)]
    drift = np.array(nnstd_many(drift_pairs, n_jobs=ctx.n_jobs, cluster=ctx.cluster, solver=cfg.solver))
    drift = drift.reshape(len(epochs), cfg.networks, -1)

    metrics = [read_metrics(d) for d in run_dirs]
    acc_key = "val_acc" if cfg.val_fraction > 0 else "test_acc"
    curve = {r["epoch"]: float(np.mean([m[i][acc_key] for m in metrics])) for i, r in enumerate(metrics[0])}
    test_curve = {r["epoch"]: float(np.mean([m[i]["test_acc"] for m in metrics])) for i, r in enumerate(metrics[0])}
    acc_rows = [{"network": n, f"final_{acc_key}": m[-1][acc_key], "final_test_acc": m[-1]["test_acc"],
                 f"best_{acc_key}": max(r[acc_key] for r in m)} for n, m in zip(names, metrics)]
    weights = None
    if cfg.snapshot_weights:
        weights = {e: [load_weights(snapshot_path(d, e, "weights"))[0] for d in run_dirs] for e in epochs}
    stats = connection_stats(snapshots, weights, layers=hidden)
    # The published networks are the paper's MLPs: a CNN study has nothing to be compared with
    # (nor a study without sparse layers: the published networks are sparse).
    comparable = cfg.model == published.MODEL and bool(hidden)
    # Dead neurons, zero-valued connections, degrees and one update's churn (issue 23): MLP weights only.
    net_stats = summarise([{k: v for k, v in r.items() if k != "network"}
                           for r in run_network_stats(run_dirs, layers=hidden)]) if comparable and weights else []
    fid = fidelity_rows(means, stats, curve, net_stats) if comparable else []
    return _Results(epochs, names, hidden, matrices, means, drift, curve, acc_key, acc_rows, test_curve, stats,
                    fid, net_stats)


def _tables(cfg: EvolutionConfig, res: _Results, out: Path) -> dict[str, str]:
    """Write the tables; returns their titles and paths in the report's order (fidelity first)."""
    off = ~np.eye(cfg.networks, dtype=bool)
    stats, rows = res.stats, []
    for i_e, e in enumerate(res.epochs):
        m = res.matrices[e]
        for k in res.hidden:
            neigh = np.array([m[i, i + 1, k] for i in range(cfg.networks - 1)])
            rows.append({"epoch": e, "layer": k, "mean_offdiag": res.means[k][e], "std_offdiag": m[:, :, k][off].std(),
                         "neighbours_mean": neigh.mean(), "first_last": m[0, -1, k],
                         "drift_from_initial_mean": res.drift[i_e, :, k].mean(),
                         "connections_mean": stats["connections"][k][e], "shared_mean": stats["shared"][k][e],
                         "weight_correlation": stats["correlation"][k].get(e)})
    kept_rows = [{"from_epoch": e1, "to_epoch": e2, "layer": k, "kept_mean": v}
                 for k in res.hidden for (e1, e2), v in stats["kept"][k].items()]
    # The published accuracies were measured on 12,000 images held out of the training set, as our
    # validation split is (val_fraction 0.2): that column stands beside theirs, the test set's after.
    ours = {"val_acc": "ours_heldout_acc", "test_acc": "ours_test_acc"}[res.acc_key]
    curve_rows = [{"epoch": e, ours: a, "published_heldout_acc":
                   published.accuracy_after(e) if 1 <= e <= len(published.ACCURACY) else None,
                   **({"ours_test_acc": res.test_curve[e]} if res.acc_key != "test_acc" else {})}
                  for e, a in res.curve.items()]
    tables = {}
    for title, path, table in (
            ("Fidelity: this run beside the paper's published networks, statistic by statistic",
             "tables/fidelity.csv", res.fid),  # the fidelity section leads: what a reader checks first
            (ACCURACY_CURVE, "tables/accuracy_curve.csv", curve_rows),
            (EVOLUTION_TABLE, "tables/evolution.csv", rows),
            ("Connections of a network kept between consecutive snapshots", "tables/kept.csv", kept_rows),
            (NETWORK_TABLE, "tables/network_stats.csv", res.net_stats),
            ("Final accuracy per network", "tables/accuracy.csv", res.acc_rows)):
        if table or path in ("tables/accuracy_curve.csv", "tables/accuracy.csv"):  # these two always exist
            write_csv(out / path, table)
            tables[title] = path
    return tables


def _set_config(cfg: EvolutionConfig, **settings) -> TrainConfig:
    """The training settings of the study's networks (``settings``: what differs between them)."""
    return cfg.train_config(method=METHOD, hidden=list(cfg.hidden), density=cfg.density, epsilon=None,
                            model=cfg.model, channels=list(cfg.channels), width=cfg.width, depth=cfg.depth,
                            distribution=cfg.distribution, **settings)


def _initial_topologies(cfg: EvolutionConfig, out: Path, names: list[str]) -> list[Topology]:
    """The method's initial topology and a chain of perturbed copies (made once, then read back)."""
    init_dir = out / "initial"
    if not all((init_dir / f"{n}.npz").exists() for n in names):
        base = initial_topology(_set_config(cfg), cfg.topology_seed)
        for t in perturbation_chain(base, cfg.networks, cfg.perturb_fraction, seed=cfg.topology_seed + 1):
            t.save(init_dir / f"{t.name}.npz")
    return [Topology.load(init_dir / f"{n}.npz").with_name(n) for n in names]


def _train_networks(cfg: EvolutionConfig, out: Path, names: list[str], epochs: list[int], ctx: Context):
    shared_init_seed = TrainConfig(seed=cfg.seed).named_seed("init")
    runs = []
    for i, name in enumerate(names):
        tc = _set_config(cfg, initial_topology=str((out / "initial" / f"{name}.npz").resolve()),
                         snapshot_epochs=epochs, seed=cfg.seed + i)
        if cfg.shared_init:
            tc.init_seed = shared_init_seed
        runs.append((tc, out / "runs" / name))
    return run_trainings(runs, n_jobs=ctx.n_jobs, cluster=ctx.cluster, progress=ctx.progress, desc="SET networks",
                         anchor=out, log=ctx.log, then=f"{len(epochs)} NNSTD matrices (one per snapshot epoch)")


def _nnstd_matrices(cfg, out: Path, names, snapshots, ctx: Context) -> dict[int, np.ndarray]:
    """The pairwise NNSTD of each epoch's snapshots, read back when already computed.

    A saved matrix is derived and cheap to recompute: one that cannot be read or does not
    fit this study (other networks, names or layers: e.g. left by an earlier run of the
    experiment) is recomputed and overwritten, with a log line naming it.
    """
    matrices = {}
    for e, tops in snapshots.items():
        path = out / "nnstd" / f"epoch_{e:03d}.npz"
        if path.exists():
            problem = None
            try:
                d, saved = load_matrix(str(path))
            except SparsetopoError as exc:
                problem = str(exc)
            else:
                if d.shape == (len(names), len(names), len(tops[0])) and saved == list(names):
                    matrices[e] = d
                    continue
                problem = (f"{path}: holds {d.shape[0]} networks x {d.shape[2]} layers ({', '.join(saved[:4])}"
                           f"{', ...' if len(saved) > 4 else ''}), this study {len(names)} x {len(tops[0])}")
            ctx.log(f"evolution: recomputing {path.name} ({problem})")
        d = pairwise_nnstd(tops, n_jobs=ctx.n_jobs, progress=ctx.progress, cache_dir=out / "nnstd_cache",
                           cluster=ctx.cluster, solver=cfg.solver, desc=f"NNSTD epoch {e}")
        save_matrix(d, names, npz=str(path), csv=str(path.with_suffix(".csv")))
        matrices[e] = d
    return matrices


def _figures(cfg: EvolutionConfig, res: _Results, out: Path) -> dict[str, str]:
    names, epochs, hidden, matrices, means, drift = (res.names, res.epochs, res.hidden, res.matrices, res.means,
                                                     res.drift)
    figs = {}
    if not hidden:
        return figs  # every layer dense: no NNSTD to draw
    grow = {k: means[k][epochs[-1]] - means[k][0] for k in hidden}
    titles = [_epoch_title(cfg, e) for e in epochs]
    for k in hidden:
        verdict = "drift apart" if grow[k] > 0.05 else "stay close"
        heatmap_grid([matrices[e][:, :, k] for e in epochs], titles, names,
                     p := out / "figures" / f"heatmaps_layer{k}.png", ncols=min(len(epochs), 6),
                     suptitle=f"Layer {k}: the networks {verdict} (mean NNSTD {means[k][0]:.2f} at epoch 0, "
                              f"{means[k][epochs[-1]]:.2f} at epoch {epochs[-1]})")
        figs[f"NNSTD heatmaps, hidden layer {k}"] = rel(p, out)
    line_plot(epochs, {f"layer {k}": [means[k][e] for e in epochs] for k in hidden},
              p := out / "figures" / "mean_nnstd_vs_epoch.png", xlabel="epoch", ylabel="mean off-diagonal NNSTD",
              ylim=(0, 1), title="Mean NNSTD " + ("rises" if min(grow.values()) > 0.05 else "does not rise in "
                                                  "every layer") + f" over {epochs[-1]} epochs")
    figs["Mean off-diagonal NNSTD vs epoch (hidden layers)"] = rel(p, out)
    travelled = drift[-1][:, hidden].mean()
    line_plot(epochs, {n: drift[:, i, hidden].mean(axis=1) for i, n in enumerate(names)},
              p := out / "figures" / "drift_from_initial.png", xlabel="epoch", ylabel="NNSTD to own initial topology",
              ylim=(0, 1), title=f"Each network ends {travelled:.2f} from its start (mean over hidden layers)")
    figs["Each network's NNSTD to its initial topology"] = rel(p, out)
    if res.fid:
        nn = [r for r in res.fid if r["statistic"] == "mean NNSTD"]
        close = sum(abs(r["difference"]) <= 0.05 for r in nn)
        write_fidelity_figure(p := out / "figures" / "fidelity.png", means, res.stats, res.curve,
                              f"Against the published networks: {close} of {len(nn)} NNSTD values within 0.05")
        figs = {"Fidelity: ours (lines) vs the paper's published networks (open circles)": rel(p, out), **figs}
    return figs


def _epoch_title(cfg: EvolutionConfig, epoch: int) -> str:
    """A heatmap panel's title: what that epoch's snapshot is (see :func:`epoch_note`)."""
    if epoch == 0:
        return "epoch 0 (initial)"
    if epoch == 1 and cfg.snapshot_timing == "before_update":
        return "epoch 1 (no update yet)"
    return f"epoch {epoch}"


def epoch_note(cfg: EvolutionConfig) -> str:
    """What the snapshot of each epoch is, so that equal epochs 0 and 1 are not a surprise."""
    if cfg.snapshot_timing == "before_update":
        return ("Epoch E's snapshot is taken after E epochs of training and before that epoch's SET update, as "
                "the published files were: epoch 0 is the initial topology and epoch 1 has the same connections "
                "(SET has not updated yet; only the weights trained), so their NNSTD, connection and shared "
                "values are equal. The first SET update shows from epoch 2 on.")
    return ("Epoch E's snapshot is taken after E epochs of training and the E-th SET update: epoch 0 is the "
            "initial topology, epoch 1 the topology after the first update.")


def _notes(cfg: EvolutionConfig, res: _Results, tables: dict[str, str], figs: dict[str, str]) -> dict[str, str]:
    """How to read a table or figure, by caption: which epochs are which, which accuracy is which."""
    split = (f"held-out accuracy (a validation split of {cfg.val_fraction:.0%} of the training images)"
             if res.acc_key == "val_acc" else "test accuracy")
    notes = {ACCURACY_CURVE: f"Ours: mean {split} of the {cfg.networks} networks"
             + (", and their test accuracy" if res.acc_key == "val_acc" else "")
             + ". Published: the mean of the paper's seven accuracy curves, measured on 12,000 images held out "
               "of the 60,000 training images (the published accuracies are multiples of 1/12000), i.e. the same "
               "kind of split as our held-out column, not the 10,000-image test set.",
             EVOLUTION_TABLE: epoch_note(cfg), NETWORK_TABLE: NETWORK_NOTE}
    for caption in figs:
        if caption.startswith("NNSTD heatmaps"):
            notes[caption] = epoch_note(cfg)
        elif caption.startswith("Fidelity"):
            notes[caption] = ("A published epoch-E file is the state after E + 2 epochs of training, so its point "
                              "is drawn at E + 2; published points are shown only at the epochs they exist and "
                              "no later than our last epoch.")
    return {c: n for c, n in notes.items() if c in tables or c in figs}


NETWORK_NOTE = (
    "From each network's weights snapshot (every connection of the mask, zeros included). A neuron is dead "
    "when its pre-activation is positive on no image of its training split (no dropout), so ReLU passes it "
    "no gradient; an input is dead when it is always 0. zero_on_dead: zero-valued connections on a dead "
    "neuron or input, which no gradient can revive. Degrees count non-zero connections (a published file "
    "holds no others). moved: the fraction of the connections the one SET update between this snapshot and "
    "the next epoch's moved, moved_zero_valued the share of those that were exactly zero (empty where the "
    "next epoch has no snapshot).")


def _findings(cfg: EvolutionConfig, res: _Results) -> list[str]:
    epochs, hidden, matrices, means, acc_rows, acc_key, fid = (res.epochs, res.hidden, res.matrices, res.means,
                                                               res.acc_rows, res.acc_key, res.fid)
    last = epochs[-1]
    accs = np.array([r[f"final_{acc_key}"] for r in acc_rows])
    split = "held-out" if acc_key == "val_acc" else "test"
    accuracy = (f"Final {split} accuracy of the {cfg.networks} networks: {accs.mean():.4f} ± {accs.std():.4f} "
                f"(min {accs.min():.4f}, max {accs.max():.4f}): "
                + ("all perform alike (spread < 2 points)." if accs.max() - accs.min() < 0.02
                   else "their accuracies differ by 2 points or more."))
    if not hidden:
        return [f"Every layer is dense at density {cfg.density:g} (NNSTD 0 by construction): all networks have the "
                "same topology and SET has nothing to evolve, so there are no NNSTD tables or figures. Choose a "
                "density below 1 to study how sparse topologies drift.", accuracy]
    neigh0 = float(np.mean([matrices[0][i, i + 1, hidden[0]] for i in range(cfg.networks - 1)]))
    grows = all(means[k][last] > 2 * max(means[k][0], 1e-9) and means[k][last] > means[k][0] + 0.05 for k in hidden)
    findings = [
        f"Before training, neighbours in the {cfg.perturb_fraction:.0%}-perturbation chain are "
        f"{neigh0:.3f} apart in layer {hidden[0]}"
        + (f" (published networks: {published.NEIGHBOURS_EPOCH0})." if cfg.model == published.MODEL else "."),
        "Mean off-diagonal NNSTD per hidden layer from epoch 0 to epoch "
        f"{last}: " + "; ".join(f"layer {k} {means[k][0]:.3f} -> {means[k][last]:.3f}" for k in hidden)
        + ": near-identical topologies drift apart under SET " + ("in every hidden layer." if grows else
                                                                  "- NOT in every hidden layer in this run."),
        accuracy,
    ]
    if note := dense_layers_finding(len(matrices[0][0, 0]), hidden, "the heatmaps and means"):
        findings.append(note)
    nn = [r for r in fid if r["statistic"] == "mean NNSTD"]
    if nn:
        worst = max(nn, key=lambda r: abs(r["difference"]))
        findings.append(
            f"Against the paper's published networks: {sum(abs(r['difference']) <= 0.05 for r in nn)} of {len(nn)} "
            f"mean-NNSTD values are within 0.05; the largest gap is layer {worst['layer']} at published epoch "
            f"{worst['published_epoch']} (ours {worst['ours']:.3f} at epoch {worst['our_epoch']}, published "
            f"{worst['published']:.3f}). A published epoch-E file is the state after E + 2 epochs of training; "
            "the fidelity table names the epoch of ours compared with each.")
        if note := network_finding(fid):
            findings.append(note)
        acc = [r for r in fid if r["statistic"].startswith("accuracy")]
        if acc:
            findings.append("Mean accuracy after " + ", ".join(
                f"{r['our_epoch']} epoch{'s' if r['our_epoch'] != 1 else ''}: {r['ours']:.3f} "
                f"(published {r['published']:.3f})" for r in acc) + ".")
    elif cfg.model == published.MODEL:
        findings.append("No snapshot epoch in common with the published networks' "
                        f"({', '.join(map(str, published.EPOCHS))}); nothing to compare side by side.")
    return findings


register(Experiment(
    name="evolution", config_cls=EvolutionConfig, presets=PRESETS, run=_run,
    model_presets={"cnn": CNN_PRESETS, "resnet20": RESNET_PRESETS, "resnet32": RESNET_PRESETS,
                   "resnet": RESNET_PRESETS, "wrn": WRN_PRESETS},
    help="Figure 4: a 1 %-perturbation chain of sparse topologies trained with SET; NNSTD per epoch and layer.",
))
