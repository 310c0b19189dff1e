"""Issue 20's bench rows: each pruning method's scoring time and the ``methods`` study's ``small`` wall time.

Scoring runs on the paper's Fashion-MNIST MLP shape (784-1000-1000-1000-10, one random batch of 128),
density 5 %: snip, grasp and synflow through ``sparsify`` (as pruning_scoring_bench.py), gmp and
magnitude as one pruning step of theirs (rank ``|w|`` per layer and keep the top), which both repeat
at every pruning time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pruning_scoring_bench import model
from sparsetopo.methods import sparsify
from sparsetopo.methods.pruning import select_kept

#: The ``small`` preset's budget (issue 20: at most 10 minutes on 2 cores).
SMALL_LIMIT_S = 600


def _magnitude_step(net) -> None:
    layers = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]  # the output layer stays dense
    scores = {k: m.weight.detach().abs() for k, m in enumerate(layers)}
    eligible = {k: torch.ones_like(s, dtype=torch.bool) for k, s in scores.items()}
    select_kept(scores, eligible, {k: int(0.05 * s.numel()) for k, s in scores.items()}, "layerwise")


def scoring_times(repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(128, 784, generator=g), torch.randint(0, 10, (128,), generator=g))]
    cases = {"gmp / magnitude (one pruning step)": lambda net: _magnitude_step(net),
             "snip": lambda net: sparsify(net, "snip", density=0.05, data=data),
             "grasp": lambda net: sparsify(net, "grasp", density=0.05, data=data),
             "synflow (100 rounds)": lambda net: sparsify(net, "synflow", density=0.05, data=data, rounds=100)}
    result = {}
    for name, fn in cases.items():
        times = []
        for r in range(repeats):
            net = model(r)
            t = time.perf_counter()
            fn(net)
            times.append(time.perf_counter() - t)
        result[name] = statistics.median(times)
    return result


def bench(row, ok, quick: bool) -> None:
    print("Methods study (issue 20)", flush=True)
    repeats = 1 if quick else 3
    for name, seconds in scoring_times(repeats).items():
        row(f"pruning score {name}, 784-1000-1000-1000-10 to 5 % (median of {repeats})", f"{seconds:.3f} s",
            "report")
    if quick:
        return
    exe = str(Path(sys.executable).with_name("sparsetopo"))
    tmp = tempfile.mkdtemp()
    try:
        t = time.perf_counter()
        subprocess.run([exe, "experiment", "methods", "--preset", "small", "--out", f"{tmp}/methods", "-q"],
                       check=True, capture_output=True)
        t = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp)
    row("experiment methods --preset small (1 run)", f"{t:.0f} s", "<= 10 min on 2 cores", ok(t <= SMALL_LIMIT_S))
