"""Issue 21 item 4: ``auto`` (= ``ssp``) against ``solver="dense"`` on 784-neuron layers at 1-5 % density.

One layer pair per case (independent, or B = A with a fraction of its connections moved), the
whole ``match_layer`` call timed (conversion to CSR included), median of ``--runs`` runs, solvers
interleaved run by run so that a neighbour's load hits both alike. Both wall time and the process's
CPU time are reported: on a shared machine a few-millisecond call's wall time is mostly waiting for
a core, and CPU time (both solvers run on one thread) is what compares them there.

    python benchmarks/ssp_small.py [--runs 9] [--densities 0.01,0.02,0.045]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    from sparsetopo.nnstd import match_layer
    from sparsetopo.topology import Topology, erdos_renyi, perturb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--densities", default="0.01,0.02,0.045")
    parser.add_argument("--n", type=int, default=784)
    args = parser.parse_args()
    n = args.n
    tiny = erdos_renyi([50, 50], density=0.1, seed=0, dense_output=False)[0]
    match_layer(tiny, tiny)  # compile / load the kernels outside the timings
    for d in (float(x) for x in args.densities.split(",")):
        a = erdos_renyi([n, n], density=d, seed=0, dense_output=False)[0]
        for kind, b in (("independent", erdos_renyi([n, n], density=d, seed=1, dense_output=False)[0]),
                        ("1 % apart", perturb(Topology([a]), 0.01, seed=3)[0]),
                        ("20 % apart", perturb(Topology([a]), 0.2, seed=3)[0])):
            times = {"auto": [], "dense": []}
            cpu = {"auto": [], "dense": []}
            values = {}
            for _ in range(args.runs):
                for solver in times:
                    t, c = time.perf_counter(), time.process_time()
                    values[solver], _ = match_layer(a, b, solver=solver)
                    times[solver].append(time.perf_counter() - t)
                    cpu[solver].append(time.process_time() - c)
            med = {s: statistics.median(ts) * 1e3 for s, ts in times.items()}
            mc = {s: statistics.median(ts) * 1e3 for s, ts in cpu.items()}
            print(f"{n} @ {d * 100:g} %, {kind}: wall auto {med['auto']:.1f} ms, dense {med['dense']:.1f} ms "
                  f"({med['dense'] / med['auto']:.2f}x); CPU auto {mc['auto']:.1f} ms, dense {mc['dense']:.1f} ms "
                  f"({mc['dense'] / mc['auto']:.2f}x); values differ by {abs(values['auto'] - values['dense']):.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
