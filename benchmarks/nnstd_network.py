"""NNSTD between two whole truly sparse networks (issue 21's last target), in the bounds mode.

Two independent 3312-600000-600000-600000-5 networks at epsilon 20 (the truly sparse issue's largest:
20 inputs per first-layer neuron, 40 per hidden neuron, the output layer dense), drawn by
``sample_topology`` (seeds 0 and 1), compared with ``nnstd(a, b, max_seconds=T)`` in one process on
the cores it is given. Prints drawing time, the call's wall time, peak RSS, and per layer its status
and certified bracket.

    python benchmarks/nnstd_network.py [--width 600000] [--max-seconds 5400]
"""

from __future__ import annotations

import argparse
import resource
import time

from sparsetopo import nnstd
from sparsetopo.methods import METHODS
from sparsetopo.training import TrainConfig
from sparsetopo.truly_sparse.model import sample_topology

INPUTS, CLASSES, EPSILON = 3312, 5, 20


def network(width: int, seed: int):
    """A 3312-W-W-W-5 topology at epsilon 20, with the counts ``sparsetopo train --engine truly-sparse``
    draws (SET's rule, the output layer full)."""
    sizes = [INPUTS, width, width, width, CLASSES]
    shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    counts = METHODS["set"](TrainConfig(hidden=[width] * 3, epsilon=EPSILON)).target_counts(shapes)
    return sample_topology(shapes, counts, seed=seed)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=600_000, help="neurons per hidden layer")
    p.add_argument("--max-seconds", type=float, default=5400.0, help="the call's time budget")
    args = p.parse_args(argv)
    t = time.perf_counter()
    a, b = network(args.width, 0), network(args.width, 1)
    drawn = time.perf_counter() - t
    tiny = sample_topology([(50, 50)], [400], seed=0)
    nnstd(tiny, tiny, max_seconds=60)  # compile or load the kernels outside the timing
    t = time.perf_counter()
    r = nnstd(a, b, max_seconds=args.max_seconds)
    took = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"3312-{args.width}-{args.width}-{args.width}-5 x 2, max_seconds {args.max_seconds:g}: drawn in "
          f"{drawn:.1f} s; nnstd {took:.1f} s, peak RSS {rss:.0f} MB, value {r.value:.6f} (exact: {r.exact})")
    for k, (s, lo, up) in enumerate(zip(r.status, r.lower, r.upper)):
        rel = (up - lo) / up if up else 0.0
        print(f"  layer {k}: {s:>20} [{lo:.6f}, {up:.6f}] gap {100 * rel:.3f} %  ({r.solvers[k]})")


if __name__ == "__main__":
    main()
