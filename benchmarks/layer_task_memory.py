"""Peak memory of one layer-pair task of a pairwise NNSTD matrix (issue 21 item 3).

A task as a Dask worker runs it (:func:`sparsetopo.nnstd.layer_tasks.layer_task`): both layers read
from their topology files by path (:class:`~sparsetopo.nnstd.layer_tasks.LayerFile`), B's inputs
renamed by the previous layer's matching (a random permutation here, as for any layer after the
first), then the ``ssp`` solver. Layers: two independent ``n x n`` layers with ``d`` inputs per neuron
(``sample_topology``), saved first by this process. Each measurement is a fresh child process; its
baseline is the RSS after the imports and the kernel's warm-up on a tiny layer, its peak the kernel's
high-water mark (``VmHWM``) when the task ends or after ``--max-seconds`` (the task is then cut off:
``finished`` false; the layers, their copies and the solver's per-row candidate lists are all
allocated in the first seconds, so the peak is reached long before).

    python benchmarks/layer_task_memory.py --sizes 100000:40,600000:4,600000:40 [--max-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

_CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    import numpy as np
    from sparsetopo.nnstd.layer_tasks import LayerFile, layer_task
    from sparsetopo.topology import erdos_renyi

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    path_a, path_b, digest_a, digest_b, n, limit = sys.argv[1:7]
    n, limit = int(n), float(limit)
    tiny = erdos_renyi([50, 50, 5], epsilon=5, seed=0).layers[0]  # (no torch import: a worker has none)
    layer_task(tiny, tiny, None, 1, "ssp")  # load the compiled kernel outside the measurement
    previous = np.random.default_rng(2).permutation(n)
    base = status("VmRSS")
    done = {}
    def run():
        t = time.perf_counter()
        total, _ = layer_task(LayerFile(path_a, 0, digest_a), LayerFile(path_b, 0, digest_b), previous, 1, "ssp")
        done.update(total=total, s=time.perf_counter() - t)
    worker = threading.Thread(target=run, daemon=True)
    t0 = time.perf_counter()
    worker.start()
    worker.join(limit)
    print(json.dumps({"finished": not worker.is_alive(), "s": done.get("s", time.perf_counter() - t0),
                      "total": done.get("total"), "base_mb": base, "peak_mb": status("VmHWM")}), flush=True)
    os._exit(0)
""")


def measure(n: int, d: int, max_seconds: float, folder: Path) -> dict:
    from sparsetopo.nnstd.layer_tasks import layer_digest
    from sparsetopo.truly_sparse.model import sample_topology

    paths, digests = [], []
    for seed in (0, 1):
        t = sample_topology([(n, n)], [d * n], seed=seed)
        paths.append(str(t.save(folder / f"layer{seed}-{n}-{d}.npz")))
        digests.append(layer_digest(t.layers[0]))
        del t
    out = subprocess.run([sys.executable, "-c", _CHILD, *paths, *digests, str(n), str(max_seconds)],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"n={n}, d={d}: the measuring process failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(n=n, inputs=d, connections=n * d)
    res["bytes_per_connection"] = (res["peak_mb"] - res["base_mb"]) * 2**20 / (n * d)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000:40,600000:4,600000:40", help="n:inputs per neuron, ...")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.sizes.split(","):
            n, d = map(int, item.split(":"))
            print(json.dumps(measure(n, d, args.max_seconds, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
