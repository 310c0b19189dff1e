"""Anchor column for issue 18: SET's own truly sparse implementation, timed.

SET's "Implementation 2" (folder ``SET-MLP-Sparse-Python-Data-Structures`` of
dcmocanu/sparse-evolutionary-artificial-neural-networks: SciPy CSR weights and a
Cython kernel for the weight gradient) is run unmodified, from where
``benchmarks/set_anchor_setup.sh DIR`` extracted it (outside this repository),
with the interpreter of the venv that script made (numpy < 2, its kernel
compiled). Nothing of its code is in this repository.

    benchmarks/set_anchor_setup.sh /work/set-anchor      # once; prints the two variables
    export SET_ANCHOR_DIR=/work/set-anchor SET_ANCHOR_PYTHON=/work/set-anchor/.venv/bin/python
    python benchmarks/set_anchor.py --width 3000 [--epochs 2] [--seed 0] [--threads 1]

A small driver (the string ``DRIVER`` below, run with ``SET_ANCHOR_PYTHON -c``
in SET_ANCHOR_DIR) imports their module, builds random data of the lung data
set's shape (203 x 3312, 5 classes; the stored copy of their repository lacks
``data/lung.mat``), split 2/3 for training and standardised exactly as their
``__main__`` does, constructs their ``SET_MLP`` with their settings
(3312-W-W-W-5, ReLU, sigmoid output + squared error, epsilon 20) and calls
their ``fit`` (batch 2, lr 0.01, momentum 0.9, weight decay 2e-4, zeta 0.3,
testing on) for ``--epochs`` epochs. Their ``fit`` tests after every epoch and
evolves the topology (``weightsEvolution_Amar``) after every epoch but the
last, so 2 epochs give 2 trainings, 2 tests and 1 SET update. The driver times
those calls by wrapping the methods on a subclass (their file is not patched);
the per-epoch training time is the span from the epoch's start to its test,
cross-checked against the ``Training time`` their ``fit`` prints. Like their
``__main__``, it finishes with ``predict(..., batch_size=1)``.

Prints one JSON line: whole-process wall time (interpreter start-up and
imports included), build, per-epoch training, per-update and per-test times,
the final predict, peak RSS of the child (``getrusage(RUSAGE_CHILDREN)``).
Without SET_ANCHOR_DIR / SET_ANCHOR_PYTHON (or when they point at nothing) it
prints one line saying how to set them up and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

SETUP_HINT = (
    "set_anchor: skipped (SET's own implementation is not set up): run "
    "`benchmarks/set_anchor_setup.sh /work/set-anchor` and export the SET_ANCHOR_DIR and "
    "SET_ANCHOR_PYTHON it prints"
)

MODULE = "set_mlp_sparse_data_structures"

DRIVER = r'''
import json, resource, sys, time
T_START = time.perf_counter()
cpu = time.process_time
import numpy as np
import scipy
import set_mlp_sparse_data_structures as S   # their module, unmodified; imports their Cython kernel
T_IMPORTED = time.perf_counter()

ARGS = json.loads(sys.argv[1])
W, EPOCHS, SEED = ARGS["width"], ARGS["epochs"], ARGS["seed"]
EVENTS = []          # (kind, start, end, cpu start, cpu end) from the wrapped methods


class TimedSET(S.SET_MLP):
    def predict(self, *a, **k):
        t, c = time.perf_counter(), cpu()
        try:
            return super().predict(*a, **k)
        finally:
            EVENTS.append(("test", t, time.perf_counter(), c, cpu()))

    def weightsEvolution_Amar(self):
        t, c = time.perf_counter(), cpu()
        try:
            return super().weightsEvolution_Amar()
        finally:
            EVENTS.append(("update", t, time.perf_counter(), c, cpu()))

    def weightsEvolution(self):       # their slow original; fit does not call it
        t, c = time.perf_counter(), cpu()
        try:
            return super().weightsEvolution()
        finally:
            EVENTS.append(("update", t, time.perf_counter(), c, cpu()))


# random data of the lung data set's shape, split and standardised as their __main__ does
np.random.seed(SEED)
n_samples, n_features, n_classes = 203, 3312, 5
X = np.random.randn(n_samples, n_features)
labels = np.random.randint(1, n_classes + 1, size=n_samples)
Y = np.zeros((n_samples, n_classes))
Y[np.arange(n_samples), labels - 1] = 1
indices = np.arange(n_samples)
np.random.shuffle(indices)
cut = int(n_samples * 2 / 3)
X_train, Y_train = X[indices[:cut]], Y[indices[:cut]]
X_test, Y_test = X[indices[cut:]], Y[indices[cut:]]
mean, std = X_train.mean(axis=0), X_train.std(axis=0)
X_train = (X_train - mean) / (std + 0.0001)
X_test = (X_test - mean) / (std + 0.0001)

t, c = time.perf_counter(), cpu()
net = TimedSET((n_features, W, W, W, n_classes), (S.Relu, S.Relu, S.Relu, S.Sigmoid), epsilon=20)
build_s, build_cpu_s = time.perf_counter() - t, cpu() - c
nnz_built = [int(net.w[i].nnz) for i in sorted(net.w)]

t_fit, c_fit = time.perf_counter(), cpu()
metrics = net.fit(X_train, Y_train, X_test, Y_test, loss=S.MSE, epochs=EPOCHS, batch_size=2,
                  learning_rate=0.01, momentum=0.9, weight_decay=0.0002, zeta=0.3, testing=True,
                  save_filename="")
t_fit_end = time.perf_counter()
fit_events = list(EVENTS)
nnz_after = [int(net.w[i].nnz) for i in sorted(net.w)]

t = time.perf_counter()
final_acc, _ = S.SET_MLP.predict(net, X_test, Y_test, batch_size=1)
final_predict_s = time.perf_counter() - t

# epoch i: training runs from the epoch's start (fit start, or the end of the previous
# epoch's update) to its test
tests = [e for e in fit_events if e[0] == "test"]
updates = [e for e in fit_events if e[0] == "update"]
train_s, train_cpu_s, start, cstart = [], [], t_fit, c_fit
for i, (_, t0, t1, c0, c1) in enumerate(tests):
    train_s.append(t0 - start)
    train_cpu_s.append(c0 - cstart)
    start, cstart = (updates[i][2], updates[i][4]) if i < len(updates) else (t1, c1)

print(json.dumps({
    "driver": {
        "import_s": T_IMPORTED - T_START,
        "build_s": build_s,
        "train_epoch_s": train_s,
        "test_s": [e[2] - e[1] for e in tests],
        "update_s": [e[2] - e[1] for e in updates],
        "build_cpu_s": build_cpu_s,
        "train_epoch_cpu_s": train_cpu_s,
        "update_cpu_s": [e[4] - e[3] for e in updates],
        "fit_s": t_fit_end - t_fit,
        "final_predict_s": final_predict_s,
        "nnz_built": nnz_built,
        "nnz_after": nnz_after,
        "train_loss": [float(v) for v in metrics[:, 0]],
        "test_accuracy": [float(v) for v in metrics[:, 1]],
        "final_accuracy": float(final_acc),
        "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "numpy": np.__version__, "scipy": scipy.__version__,
        "python": sys.version.split()[0],
    }
}))
'''

_TIME_RE = re.compile(r"Training time:\s+(\d+):(\d+):([\d.]+)")


def _anchor_paths() -> tuple[Path, Path] | None:
    d, py = os.environ.get("SET_ANCHOR_DIR"), os.environ.get("SET_ANCHOR_PYTHON")
    if not d or not py:
        return None
    d, py = Path(d), Path(py)
    if not (d / f"{MODULE}.py").is_file() or not os.access(py, os.X_OK):
        return None
    return d, py


def run_anchor(width: int, epochs: int = 2, seed: int = 0, threads: int = 1,
               timeout: float | None = None) -> dict | None:
    """Run their implementation once; the figures as a dict, or None when it is not set up."""
    paths = _anchor_paths()
    if paths is None:
        return None
    d, py = paths
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    args = json.dumps({"width": width, "epochs": epochs, "seed": seed})
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    t = time.perf_counter()
    proc = subprocess.run([str(py), "-c", DRIVER, args], cwd=d, env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = usage.ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"their code failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    drv = json.loads(lines[-1])["driver"]
    printed = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in _TIME_RE.findall(proc.stdout)]
    n_updates = len(drv["update_s"])
    return {
        "what": "SET Implementation 2 (SciPy CSR + Cython), unmodified",
        "width": width,
        "architecture": f"3312-{width}-{width}-{width}-5",
        "connections": sum(drv["nnz_built"]),
        "epochs": epochs,
        "set_updates": n_updates,
        "threads": threads,
        "wall_s": round(wall, 2),
        "import_s": round(drv["import_s"], 2),
        "build_s": round(drv["build_s"], 2),
        "train_epoch_s": [round(v, 2) for v in drv["train_epoch_s"]],
        "train_epoch_s_their_print": [round(v, 2) for v in printed],
        "test_s": [round(v, 2) for v in drv["test_s"]],
        "set_update_s": [round(v, 2) for v in drv["update_s"]],
        "final_predict_batch1_s": round(drv["final_predict_s"], 2),
        # CPU seconds of the child (process_time): what the wall figures would be on an idle core
        "cpu_build_s": round(drv["build_cpu_s"], 2),
        "cpu_train_epoch_s": [round(v, 2) for v in drv["train_epoch_cpu_s"]],
        "cpu_set_update_s": [round(v, 2) for v in drv["update_cpu_s"]],
        "cpu_total_s": round(usage.ru_utime + usage.ru_stime - cpu_before, 2),
        # the children's maximum is this child's unless an earlier child of ours was larger;
        # then the child's own figure (the same measure, taken just before it exits)
        "peak_rss_mb": round(peak_kb / 1024 if peak_kb > before else drv["peak_rss_self_mb"], 1),
        "nnz_per_layer_built": drv["nnz_built"],
        "nnz_per_layer_after": drv["nnz_after"],
        "train_loss": [round(v, 5) for v in drv["train_loss"]],
        "test_accuracy": [round(v, 4) for v in drv["test_accuracy"]],
        "numpy": drv["numpy"], "scipy": drv["scipy"], "python": drv["python"],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=3000, help="hidden width W (3312-W-W-W-5)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs (their fit: epochs-1 SET updates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads in the child")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before the child is killed")
    a = ap.parse_args(argv)
    res = run_anchor(a.width, a.epochs, a.seed, a.threads, a.timeout)
    if res is None:
        print(SETUP_HINT)
        return 0
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
