"""``make bench`` section ``truly-sparse`` (issue 18): the truly sparse engine against its targets.

(a) SET's own truly sparse code ("Implementation 2") and ours, same lung-shaped data and settings
    (3312-W-W-W-5, batch 2), whole process: build the network and two epochs with one SET update;
(b) W = 600,000 (1,803,317 neurons): one epoch and its update, peak RSS;
(c) Fashion-MNIST 784-W-W-W-10 at epsilon 20: seconds per epoch, GFLOP/s over the connections,
    peak RSS; the masked engine where it fits;
(d) the floor: the same epoch's sparse products alone (forward, input gradient, weight gradient
    per layer and batch), timed bare with the kernels the engine uses.

Every run is a fresh ``sparsetopo train`` process (as a user runs it), its peak RSS the
child's ``ru_maxrss``. The anchor column needs SET's code set up (``benchmarks/set_anchor.md``);
without it the rows say so.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: SET's Implementation 2 settings (its ``__main__``), as ``sparsetopo train`` flags.
SET_RECIPE = ["--method", "set", "--epsilon", "20", "--zeta", "0.3", "--batch-size", "2", "--lr", "0.01",
              "--momentum", "0.9", "--weight-decay", "2e-4", "--loss", "mse", "--init", "normal",
              "--init-std", "0.1", "--regrow-init", "normal"]


def lung_like(path: Path, seed: int = 0) -> Path:
    """Random data of the lung data set's shape (203 x 3312, 5 classes) as an ``X``/``y`` archive."""
    rng = np.random.default_rng(seed)
    np.savez(path, X=rng.normal(size=(203, 3312)).astype(np.float32), y=rng.integers(0, 5, size=203))
    return path


def run_train(args: list[str], out: Path, timeout: float = 3600) -> dict:
    """``sparsetopo train ARGS --out OUT`` in a fresh process: wall seconds, peak RSS, metrics rows."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps({'wall': time.perf_counter() - t, 'rc': p.returncode, 'err': p.stderr[-2000:],"
               " 'rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n")
    cmd = [sys.executable, "-m", "sparsetopo.cli", "train", *args, "--out", str(out), "-q"]
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, timeout=timeout)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"train failed ({' '.join(args)}): {res['err']}")
    with open(out / "metrics.csv") as f:
        res["rows"] = [{k: (v if k == "phase" else float(v)) for k, v in r.items() if v != ""}
                       for r in csv.DictReader(f)]
    return res


def anchor(width: int) -> dict | None:
    """SET's own code at ``width`` (``benchmarks/set_anchor.py``), or None with the reason printed."""
    done = subprocess.run([sys.executable, str(HERE / "set_anchor.py"), "--width", str(width)],
                          capture_output=True, text=True, timeout=3600)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    try:
        return json.loads(line)
    except ValueError:
        print(f"  anchor skipped: {line or done.stderr.strip()[-300:]}", flush=True)
        return None


def floor_seconds(sizes: list[int], epsilon: float, batch: int, n_samples: int, repeats: int = 3) -> float:
    """Seconds of one epoch's sparse products alone: per batch and layer forward, weight gradient and
    (beyond the first layer) input gradient, with the engine's kernels on layers of the epoch's shapes."""
    steps = -(-n_samples // batch)
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(_layer_floor(k, n_in, n_out, k == len(layers) - 1, epsilon, batch, repeats) * steps
               for k, (n_in, n_out) in enumerate(layers))


def _layer_floor(k: int, n_in: int, n_out: int, last: bool, epsilon: float, batch: int, repeats: int) -> float:
    """Median seconds of one batch's products for one layer (the output layer dense, as the engine's)."""
    from sparsetopo.truly_sparse import TrulySparseLinear
    from sparsetopo.truly_sparse import kernels as K

    dense = last or epsilon * (n_in + n_out) >= n_in * n_out
    layer = TrulySparseLinear.random(n_in, n_out, **({"density": 1.0} if dense else {"epsilon": epsilon}), seed=k)
    s, v = layer.structure(), layer.values.detach().numpy()
    rng = np.random.default_rng(k)
    xt = rng.normal(size=(n_in, batch)).astype(np.float32)
    gyt = rng.normal(size=(n_out, batch)).astype(np.float32)

    def products():
        K.spmm(s.indptr, s.indices, v, s.bounds, xt)
        K.sddmm(s.indptr, s.indices, s.bounds, gyt, xt)
        if k > 0:  # the first layer's input needs no gradient
            if batch <= K.SCATTER_MAX_BATCH:
                K.spmm_t_scatter(s.indptr, s.indices, v, gyt, n_in, s.parts)
            else:
                indptr_t, rows_t, perm, bounds_t = s.transposed()
                K.spmm_t(indptr_t, rows_t, perm, v, bounds_t, gyt)

    products()  # compile and build the CSC structure outside the timing
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(50):
            products()
        times.append((time.perf_counter() - t) / 50)
    return float(np.median(times))


def _epoch(res: dict, k: int = 0) -> dict:
    return res["rows"][k]


def bench(row, ok, quick: bool) -> None:
    """The section: rows through ``row(what, measured, target, verdict)``."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lung = lung_like(tmp / "lung.npz")
        _anchor_rows(row, ok, tmp, lung, quick)
        _w600k_rows(row, ok, tmp, lung)
        _fashion_rows(row, ok, tmp, quick)


def _anchor_rows(row, ok, tmp: Path, lung: Path, quick: bool) -> None:
    print("Truly sparse (a): SET's Implementation 2 vs ours, 3312-W-W-W-5, batch 2, 2 epochs, 1 update", flush=True)
    for width in (3000, 30000):
        ours = run_train(["--dataset", str(lung), "--engine", "truly-sparse", "--hidden", *[str(width)] * 3,
                          "--epochs", "2", *SET_RECIPE], tmp / f"lung-{width}")
        e1, e2 = _epoch(ours, 0), _epoch(ours, 1)
        theirs = anchor(width)
        ours_txt = (f"ours {ours['wall']:.1f} s whole process (epochs {e1['train_seconds']:.2f} / "
                    f"{e2['train_seconds']:.2f} s, update {e1['update_seconds']:.2f} s), {ours['rss_mb']:.0f} MB")
        if theirs is None:
            row(f"(a) W = {width:,}: build + 2 epochs + 1 SET update", ours_txt + "; SET's code not set up",
                ">= 20x SET's code" if width == 30000 else "(measure)")
            continue
        speedup = theirs["wall_s"] / ours["wall"]
        row(f"(a) W = {width:,}: build + 2 epochs + 1 SET update, SET's code vs ours",
            f"SET {theirs['wall_s']:.1f} s (CPU {theirs['cpu_total_s']:.1f} s), {theirs['peak_rss_mb']:.0f} MB; "
            f"{ours_txt}; {speedup:.1f}x",
            ">= 20x SET's code" if width == 30000 else "(measure)", ok(speedup >= 20) if width == 30000 else "")


def _w600k_rows(row, ok, tmp: Path, lung: Path) -> None:
    print("Truly sparse (b): 3312-600000-600000-600000-5 (1,803,317 neurons), SET, batch 2", flush=True)
    res = run_train(["--dataset", str(lung), "--engine", "truly-sparse", "--hidden", "600000", "600000", "600000",
                     "--epochs", "2", *SET_RECIPE], tmp / "lung-600k", timeout=7200)
    e1 = _epoch(res, 0)
    conns = sum(v for k, v in e1.items() if k.startswith("connections_l"))
    epoch_s = e1["train_seconds"] + e1["update_seconds"]
    row("(b) W = 600,000: one epoch (training + SET update), peak RSS",
        f"{e1['train_seconds']:.1f} s + {e1['update_seconds']:.1f} s update, {res['rss_mb'] / 1024:.2f} GB "
        f"({conns / 1e6:.1f} M connections; whole 2-epoch process {res['wall']:.0f} s)",
        "<= 5 min, <= 4 GB", ok(epoch_s <= 300 and res["rss_mb"] <= 4096))


def _fashion_rows(row, ok, tmp: Path, quick: bool) -> None:
    print("Truly sparse (c, d): Fashion-MNIST 784-W-W-W-10, epsilon 20, SET, batch 128", flush=True)
    widths = (1000, 10000) if quick else (1000, 10000, 100000)
    masked_at = {}
    for width in widths:
        limit = ["--limit-train", "6000"] if width == 100000 and quick else []
        common = ["--method", "set", "--epsilon", "20", "--hidden", *[str(width)] * 3, "--epochs", "1", *limit]
        ts = run_train([*common, "--engine", "truly-sparse"], tmp / f"fm-ts-{width}", timeout=7200)
        e = _epoch(ts)
        n = 6000 if limit else 60000
        gflops = e["train_flops"] / e["train_seconds"] / 1e9
        floor = floor_seconds([784, width, width, width, 10], 20.0, 128, n)
        row(f"(c) W = {width:,}: truly sparse epoch{' (6,000 samples)' if limit else ''}, GFLOP/s, peak RSS",
            f"{e['train_seconds']:.1f} s, {gflops:.2f} GFLOP/s, {ts['rss_mb']:.0f} MB",
            "<= 30 min, <= 3 GB" if width == 100000 else "(measure)",
            ok(e["train_seconds"] * 60000 / n <= 1800 and ts["rss_mb"] <= 3072) if width == 100000 else "")
        row(f"(d) W = {width:,}: epoch / floor (sparse products alone {floor:.1f} s)",
            f"{e['train_seconds'] / floor:.2f}x", "<= 1.5x", ok(e["train_seconds"] <= 1.5 * floor))
        if width <= 10000:
            masked = run_train([*common, "--engine", "masked"], tmp / f"fm-m-{width}", timeout=7200)
            masked_at[width] = (masked, e["train_seconds"])
    for width, (masked, ts_s) in masked_at.items():
        me = _epoch(masked)
        speedup = me["train_seconds"] / ts_s
        row(f"(c) W = {width:,}: masked engine epoch, peak RSS; truly sparse speed-up",
            f"{me['train_seconds']:.1f} s, {masked['rss_mb']:.0f} MB; {speedup:.1f}x",
            ">= 5x at 10,000" if width == 10000 else "(measure)", ok(speedup >= 5) if width == 10000 else "")


if __name__ == "__main__":  # pragma: no cover - `python benchmarks/run.py --only truly-sparse` is the way in
    sys.path.insert(0, str(HERE))
    from run import ok, row

    bench(row, ok, "--quick" in sys.argv)
