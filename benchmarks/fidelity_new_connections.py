"""Issue 23: where new non-zero connections appear between two snapshots, dead neurons vs the rest.

    python benchmarks/fidelity_new_connections.py --published /work/shared/paper_networks --ours EXPERIMENT_DIR

Published: nets 0-3, epochs 10 -> 20 and 40 -> 50; ours: nets 0-1, epochs 2 -> 12 and 12 -> 22 (our
E + 2 is the published E). A neuron dead at both snapshots that gains a non-zero connection got a
gradient in between (dropout can revive an eval-dead neuron that has a positive weight) or was regrown
at a non-zero value. Dead on the 60,000 training images scaled to [0, 1].
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as ss

from sparsetopo.data import load_dataset
from sparsetopo.experiments.network_stats import max_pre_activations, read_published_network
from sparsetopo.training import load_weights


def _present(w) -> ss.csr_matrix:
    w = ss.csr_matrix(w, copy=True)
    w.eliminate_zeros()
    w.data[:] = 1
    return w


def analyse(tag: str, pairs, x: np.ndarray) -> None:
    out = []
    for (w1, b1), (w2, b2) in pairs:
        dead1 = [m <= 0 for m in max_pre_activations(w1, b1, x)]
        dead2 = [m <= 0 for m in max_pre_activations(w2, b2, x)]
        for k in range(len(w1) - 1):
            new = (_present(w2[k]) - _present(w2[k]).multiply(_present(w1[k]))).tocoo()
            both = dead1[k] & dead2[k]
            no_positive = np.asarray(w2[k].maximum(0).sum(axis=1)).ravel() == 0
            out.append((k, new.nnz, both.sum(), both[new.row].sum(), (no_positive & both).sum()))
    arr = np.array(out, float)
    for k in sorted(set(arr[:, 0])):
        m = arr[arr[:, 0] == k].mean(axis=0)
        print(f"{tag} layer {int(k)}: new non-zero connections {m[1]:.0f}; neurons dead at both {m[2]:.0f} "
              f"(no positive weight: {m[4]:.0f}), new non-zero connections on them {m[3]:.1f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--published", type=Path)
    ap.add_argument("--ours", type=Path)
    args = ap.parse_args(argv)
    x = load_dataset("fashion-mnist", input_scaling="unit").x_train
    if args.published:
        for e1, e2 in ((10, 20), (40, 50)):
            analyse(f"published {e1}->{e2}", [(read_published_network(args.published / f"net{i}" / f"epoch_{e1:03d}"),
                                               read_published_network(args.published / f"net{i}" / f"epoch_{e2:03d}"))
                                              for i in range(4)], x)
    if args.ours:
        w = args.ours / "runs"
        for e1, e2 in ((2, 12), (12, 22)):
            analyse(f"ours {e1}->{e2}", [(load_weights(w / f"net{i}" / "weights" / f"epoch_{e1:03d}.npz"),
                                          load_weights(w / f"net{i}" / "weights" / f"epoch_{e2:03d}.npz"))
                                         for i in range(2)], x)


if __name__ == "__main__":
    main()
