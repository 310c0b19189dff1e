"""``make gpu-check``: train dense, SET and RigL on CUDA and check them against the CPU (issue 19).

For each method it trains a 784-1000-1000-1000-10 network a few hundred optimizer steps on CUDA (a
synthetic, learnable 10-class task written to a temporary ``.npz``, so no data set is needed; SET with
dropout and normal regrowth, SET and RigL also with step-scheduled updates, so every device path runs),
then checks

* the masks: every weight outside its mask is exactly zero and each layer's mask holds the connection
  count that metrics.csv records, the same after every epoch (drop-and-grow keeps it);
* one epoch's training and test loss against the same one-epoch run on the CPU (the random draws are the
  same on both devices, only float rounding differs), within ``--tolerance``;
* the time of one CPU epoch against one CUDA epoch (after the first, which warms CUDA up).

It prints a table and exits 1 when a check fails. Without CUDA it prints why it skipped and exits 0, so
``make gpu-check`` is harmless on a CPU-only machine (CI stays CPU-only).

    python benchmarks/gpu_check.py [--epochs 4] [--tolerance 0.05] [--samples 4500]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

SKIP = "gpu-check: skipped (no CUDA device: torch.cuda.is_available() is False)"
METHODS = {  # method -> its settings beyond the common ones
    "dense": {},
    "set": {"dropout": 0.1, "regrow_init": "normal", "update_every": 40},
    "rigl": {"update_every": 40, "drop_schedule": "cosine", "end_step": 300},
}


def _write_task(path: Path, n: int, seed: int = 0) -> None:
    """A learnable 10-class task: each class a random 784-pixel prototype plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(10, 784))
    y = rng.integers(0, 10, size=n)
    x = protos[y] + rng.normal(scale=2.0, size=(n, 784))
    np.savez(path, X=x.astype(np.float32), y=y)


def _config(method: str, data: Path, device: str, epochs: int, width: int):
    from sparsetopo.training import TrainConfig

    return TrainConfig(method=method, dataset=str(data), hidden=[width] * 3, epsilon=20, epochs=epochs,
                       batch_size=32, lr=0.01, seed=0, device=device, **METHODS[method])


def _train(method: str, data: Path, device: str, epochs: int, out: Path, width: int):
    from sparsetopo.training import train

    return train(_config(method, data, device, epochs, width), out, progress=False, log=lambda m: None)


def _mask_problems(out: Path, last_row: dict) -> list[str]:
    """What is wrong with the final model's masks: weights off the mask, counts unlike metrics.csv's."""
    import torch

    state = torch.load(out / "model_final.pt", map_location="cpu")
    problems = []
    for k, name in enumerate(sorted(n for n in state if n.endswith("weight_mask"))):
        mask, weight = state[name] != 0, state[name.replace("weight_mask", "weight")]
        if bool((weight[~mask] != 0).any()):
            problems.append(f"{name}: nonzero weights outside the mask")
        if int(mask.sum()) != int(last_row[f"connections_l{k}"]):
            problems.append(f"{name}: {int(mask.sum())} connections, metrics.csv {last_row[f'connections_l{k}']}")
    return problems


def _check(method: str, data: Path, tmp: Path, args) -> dict:
    gpu = _train(method, data, args.device, args.epochs, tmp / f"{method}-gpu", args.width)
    gpu_one = _train(method, data, args.device, 1, tmp / f"{method}-gpu-1", args.width)
    cpu_one = _train(method, data, "cpu", 1, tmp / f"{method}-cpu-1", args.width)
    tolerance = args.tolerance
    rows = gpu.metrics
    problems = _mask_problems(gpu.out_dir, rows[-1])
    counts = {k: {r[k] for r in rows} for k in rows[0] if k.startswith("connections_l")}
    problems += [f"{k} changed over the epochs: {sorted(v)}" for k, v in counts.items() if len(v) != 1]
    device = json.loads((gpu.out_dir / "result.json").read_text())["device"]
    if not device.startswith(args.device):
        problems.append(f"result.json records device {device}")
    diffs = {}
    for key in ("train_loss", "test_loss"):
        a, b = cpu_one.final[key], gpu_one.final[key]
        diffs[key] = abs(a - b) / max(abs(a), 1e-12)
        if diffs[key] > tolerance:
            problems.append(f"epoch-1 {key} cpu {a:.5f} vs {args.device} {b:.5f} "
                            f"(relative {diffs[key]:.2e} > {tolerance})")
    gpu_seconds = rows[-1]["train_seconds"] if len(rows) > 1 else rows[0]["train_seconds"]
    return {"method": method, "steps": len(rows) * _steps_per_epoch(data), "test_acc": rows[-1]["test_acc"],
            "loss_cpu": cpu_one.final["train_loss"], "loss_gpu": gpu_one.final["train_loss"],
            "rel_diff": max(diffs.values()), "cpu_s": cpu_one.final["train_seconds"], "gpu_s": gpu_seconds,
            "problems": problems}


def _steps_per_epoch(data: Path) -> int:
    from sparsetopo.data import load_dataset

    return -(-len(load_dataset(str(data)).x_train) // 32)  # batch_size 32 (see _config)


def _table(results: list[dict]) -> str:
    head = (f"{'method':<6} {'steps':>5} {'test_acc':>8} {'loss cpu':>9} {'loss gpu':>9} {'rel diff':>9} "
            f"{'cpu s/ep':>8} {'gpu s/ep':>9} {'speedup':>7}  checks")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['method']:<6} {r['steps']:>5} {r['test_acc']:>8.4f} {r['loss_cpu']:>9.5f} "
                     f"{r['loss_gpu']:>9.5f} {r['rel_diff']:>9.2e} {r['cpu_s']:>8.2f} {r['gpu_s']:>9.2f} "
                     f"{r['cpu_s'] / max(r['gpu_s'], 1e-9):>6.1f}x  {'ok' if not r['problems'] else 'FAILED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="CUDA epochs per method (about 95 steps each)")
    parser.add_argument("--samples", type=int, default=4500, help="synthetic samples (2/3 train)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative epoch-1 loss difference allowed")
    parser.add_argument("--width", type=int, default=1000, help="hidden layer width")
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (cpu: a dry run of "
                                                         "this script itself)")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(SKIP)
        return 0
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    print(f"gpu-check on {name} (torch {torch.__version__})", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = Path(tmp) / "task.npz"
        _write_task(data, args.samples)
        results = []
        for method in METHODS:
            results.append(_check(method, data, Path(tmp), args))
            print(f"  {method}: done", flush=True)
    print(_table(results))
    failed = [(r["method"], p) for r in results for p in r["problems"]]
    for method, problem in failed:
        print(f"FAILED {method}: {problem}")
    print("gpu-check: " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
