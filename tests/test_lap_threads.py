"""The NNSTD solvers' first use from several threads at once (pairwise NNSTD solves layers on threads)."""

import subprocess
import sys

SCRIPT = r"""
import threading
import numpy as np
import scipy.sparse as ss
from sparsetopo.nnstd import nnstd
from sparsetopo.topology import Topology

rng = np.random.default_rng(0)
tops = [Topology([ss.random(60, 50, density=0.1, random_state=int(s), format="csr") != 0]) for s in range(8)]
errors, values = [], []

def work(k):
    try:
        values.append(nnstd(tops[k], tops[(k + 1) % 8]).value)
    except Exception as exc:  # noqa: BLE001 - any failure is the bug
        errors.append(repr(exc))

threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors", errors)
print("values", len(values))
"""


def test_first_use_from_eight_threads_at_once_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "errors []" in done.stdout and "values 8" in done.stdout, done.stdout + done.stderr[-2000:]
