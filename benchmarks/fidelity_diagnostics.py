"""Issue 23: dead neurons, zero-valued connections, degrees and churn, ours beside the published networks.

    python benchmarks/fidelity_diagnostics.py --published /work/shared/paper_networks --out pub.csv
    python benchmarks/fidelity_diagnostics.py --ours EXPERIMENT_DIR --out ours.csv

``--published``: every ``netW/epoch_EEE`` directory, dead neurons on the 60,000 Fashion-MNIST
training images scaled to [0, 1] (which 48,000 the paper trained on is not known; a neuron
alive on the other 12,000 only is rare). ``--ours``: an ``experiment evolution`` directory
whose runs saved weights (``snapshot_weights``), each network on its own training split.
Prints the means over networks per epoch and layer; ``--out`` writes the per-network rows.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from sparsetopo.experiments.fidelity import run_network_stats
from sparsetopo.experiments.network_stats import network_stats, read_published_network, summarise

COLUMNS = ("dead_neurons", "dead_inputs", "zero_valued", "zero_on_dead", "connections", "no_input_neurons",
           "unused_inputs", "into_dead", "in_degree_std", "out_degree_std", "moved", "moved_zero_valued")


def published_rows(root: Path) -> list[dict]:
    from sparsetopo.data import load_dataset

    x = load_dataset("fashion-mnist", input_scaling="unit").x_train
    rows = []
    for net in sorted(root.glob("net*")):
        for ep in sorted(net.glob("epoch_*")):
            w, b = read_published_network(ep)
            for r in network_stats(w, b, x):
                rows.append({"network": net.name, "epoch": int(ep.name[len("epoch_"):]), **r})
        print(f"{net.name} done", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--published", type=Path)
    ap.add_argument("--ours", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rows", type=Path, help="summarise per-network rows written earlier by --out")
    args = ap.parse_args(argv)
    if sum(a is not None for a in (args.published, args.ours, args.rows)) != 1:
        ap.error("give exactly one of --published, --ours and --rows")
    if args.rows:
        with open(args.rows, newline="") as f:
            rows = [{k: (None if v == "" else v if k == "network" else float(v)) for k, v in r.items()}
                    for r in csv.DictReader(f)]
    else:
        rows = published_rows(args.published) if args.published else run_network_stats(
            sorted((args.ours / "runs").glob("net*")))
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print("| epoch | layer | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for r in summarise([{k: v for k, v in r.items() if k != "network"} for r in rows]):
        print(f"| {int(r['epoch'])} | {int(r['layer'])} | " + " | ".join(_cell(r.get(c), c) for c in COLUMNS) + " |")


def _cell(value, column: str) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if column.startswith("moved") else f"{value:.1f}"


if __name__ == "__main__":
    main()
