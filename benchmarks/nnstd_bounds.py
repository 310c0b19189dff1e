"""NNSTD's bounds mode at scale (issue 21 item 2): one wide layer pair with ``max_seconds``.

Two independent ``n x n`` layers at epsilon 20 (40 inputs per neuron, ``sample_topology``, as in
``nnstd_scale.py``), compared with ``nnstd(a, b, max_seconds=T)`` in a fresh process: wall time of
the call, peak RSS (drawing included), the layer's status, lower and upper bound and the gap.
``--inputs M`` makes them ``n x M`` layers at the same epsilon (``20 (M + n)`` connections): with
``M = 3312`` the first layer of the truly sparse issue's 3312-600000-600000-600000-5 networks.

    python benchmarks/nnstd_bounds.py [--sizes 200000,1000000] [--max-seconds 300] [--inputs 3312]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from sparsetopo import nnstd
    from sparsetopo.truly_sparse.model import sample_topology
    n, budget, m = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    m = m or n
    a, b = (sample_topology([(n, m)], [20 * (m + n)], seed=s) for s in (0, 1))
    tiny = sample_topology([(50, 50)], [400], seed=0)
    nnstd(tiny, tiny, max_seconds=60)  # compile or load the kernels outside the timing
    t = time.perf_counter()
    r = nnstd(a, b, max_seconds=budget)
    print(json.dumps({"n": n, "inputs": m, "max_seconds": budget, "s": time.perf_counter() - t, "status": r.status[0],
                      "lower": float(r.lower[0]), "upper": float(r.upper[0]), "gap": float(r.gap[0]),
                      "rel_gap": float(r.gap[0] / r.upper[0]) if r.upper[0] else 0.0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def measure(n: int, budget: float, inputs: int = 0) -> dict:
    """One fresh process: ``nnstd`` of an independent ``n x inputs`` pair (``n x n`` when ``inputs`` is 0) at
    epsilon 20 with ``max_seconds``."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(budget), str(inputs)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe(r: dict) -> str:
    """One line: time, memory, status, bracket and gap."""
    return (f"{r['s']:.1f} s, peak RSS {r['rss_mb']:.0f} MB, {r['status']} [{r['lower']:.6f}, {r['upper']:.6f}], "
            f"gap {r['gap']:.2g} ({100 * r['rel_gap']:.3f} %)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200000,1000000")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--inputs", type=int, default=0, help="input neurons per layer (default: as many as neurons)")
    args = p.parse_args(argv)
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, args.max_seconds, args.inputs)
        print(f"{n:>9} neurons x {r['inputs']} inputs, max_seconds {r['max_seconds']:g}: {describe(r)}", flush=True)


if __name__ == "__main__":
    main()
