"""Issue 18's "done when": a 3312-600000-600000-600000-5 SET network trains, is interrupted, resumes
bit-identically and writes its topology snapshots.

Two ``sparsetopo train`` processes with the same command (SET's settings, batch 2, lung-shaped
random data, ``--engine truly-sparse``):

* ``whole``: two epochs straight through;
* ``cut``: the same command, stopped with SIGINT (Ctrl-C) once epoch 1's checkpoint is written,
  then run again, which resumes from that checkpoint.

It then compares every tensor of ``model_final.pt``, every topology snapshot and the metrics rows
(timings aside), and prints one line per check. Usage::

    python benchmarks/truly_sparse_resume.py [--width 600000] [--out DIR]

At W = 600,000 this takes about three whole trainings (~8 minutes on two quiet cores) and 2.6 GB.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from truly_sparse_bench import SET_RECIPE, lung_like  # noqa: E402

TIMING = {"train_seconds", "update_seconds", "eval_seconds", "seconds", "wall_seconds"}


def _command(data: Path, width: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "sparsetopo.cli", "train", "--dataset", str(data), "--engine", "truly-sparse",
            "--hidden", *[str(width)] * 3, "--epochs", "2", "--snapshot-every", "1", *SET_RECIPE,
            "--out", str(out), "-q"]


def _rows(out: Path) -> list[dict]:
    path = out / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _interrupted(cmd: list[str]) -> float:
    """Run ``cmd`` and send SIGINT (Ctrl-C) once it logs epoch 1, which it does after epoch 1's
    snapshot and checkpoint are written; the seconds it ran."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "epoch 1/" in line:
            proc.send_signal(signal.SIGINT)
            break
    else:
        raise RuntimeError(f"the run ended before it could be interrupted (exit {proc.wait()})")
    rest = proc.stderr.read()
    proc.wait(timeout=600)
    print(f"interrupted after epoch 1: exit {proc.returncode} ({rest.strip()[-200:]!r})", flush=True)
    return time.perf_counter() - t


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in done.stderr.splitlines():
        print(f"  | {line}", flush=True)
    return time.perf_counter() - t


def compare(cut: Path, whole: Path) -> bool:
    """Print and return whether the two run directories hold identical training results."""
    import torch

    from sparsetopo.topology import Topology

    a = torch.load(cut / "model_final.pt", weights_only=True)
    b = torch.load(whole / "model_final.pt", weights_only=True)
    same_tensors = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    n_values = sum(v.numel() for k, v in a.items() if k.endswith("values"))
    print(f"model_final.pt: {len(a)} tensors ({n_values:,} connection values), identical: {same_tensors}")
    snaps = sorted(p.name for p in (whole / "topology").glob("*.npz"))
    same_snaps = snaps == sorted(p.name for p in (cut / "topology").glob("*.npz"))
    for name in snaps:
        ta, tb = Topology.load(cut / "topology" / name), Topology.load(whole / "topology" / name)
        same = ta == tb
        same_snaps &= same
        size = (whole / "topology" / name).stat().st_size / 2**20
        print(f"topology/{name}: {sum(ta.sizes):,} neurons, {sum(ta.n_connections):,} connections, "
              f"{size:.0f} MiB, identical: {same}")
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in _rows(cut)]
    same_rows = strip == [{k: v for k, v in r.items() if k not in TIMING} for r in _rows(whole)]
    print(f"metrics.csv rows (timings aside): {len(strip)}, identical: {same_rows}")
    return same_tensors and same_snaps and same_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=600_000)
    parser.add_argument("--out", type=Path, default=None, help="keep the run directories here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / "cut", ignore_errors=True)
        data = lung_like(root / "lung.npz")
        print(f"3312-{args.width}-{args.width}-{args.width}-5, SET, batch 2, 2 epochs", flush=True)
        if not (root / "whole" / "result.json").exists():  # kept from an earlier call with --out
            print(f"whole run: {_run(_command(data, args.width, root / 'whole')):.0f} s", flush=True)
        cut = _interrupted(_command(data, args.width, root / "cut"))
        print(f"cut run, first part: {cut:.0f} s", flush=True)
        print(f"cut run, resumed: {_run(_command(data, args.width, root / 'cut')):.0f} s", flush=True)
        return 0 if compare(root / "cut", root / "whole") else 1


if __name__ == "__main__":
    raise SystemExit(main())
