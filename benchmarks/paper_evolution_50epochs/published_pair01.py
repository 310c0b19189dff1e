"""NNSTD of the published networks 0 and 1 (dense solver) beside one pair of ours, per layer.

The 2-network runs in this folder have one pair (nets 0 and 1, neighbours in the perturbation
chain); the fidelity tables compare it with the published mean over ten networks, which includes
pairs further apart. This prints the like-for-like figure: the published pair 0-1 at epoch E beside
our pair at E + 2.

    python benchmarks/paper_evolution_50epochs/published_pair01.py PUBLISHED_DIR OURS/evolution.csv
"""

import csv
import sys

from sparsetopo.nnstd import nnstd
from sparsetopo.topology import Topology


def main(published: str, evolution_csv: str) -> None:
    ours = {(int(r["epoch"]), int(r["layer"])): float(r["mean_offdiag"]) for r in csv.DictReader(open(evolution_csv))}
    print("published epoch | layer 0 published / ours | layer 1 | layer 2")
    for e in (10, 20, 30, 40, 50):
        a, b = (Topology.from_official_npz(f"{published}/net{i}/epoch_{e:03d}") for i in (0, 1))
        r = nnstd(a, b, solver="dense")
        print(e, " ".join(f"{r.per_layer[k]:.3f}/{ours[(e + 2, k)]:.3f}" for k in range(3)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
