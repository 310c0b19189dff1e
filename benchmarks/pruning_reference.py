"""Our snip, grasp and synflow masks against those of the authors' public code (Tanaka et al.'s
Synaptic-Flow, ``Pruners/pruners.py`` and ``prune.py``), on the same small MLP with the same weights.

Their code is read at run time from a git mirror of https://github.com/ganguli-lab/Synaptic-Flow
(``git show`` into a temporary directory, then imported); nothing of it is copied into the project.

    python benchmarks/pruning_reference.py [--mirror /work/.mirror/ganguli-lab+Synaptic-Flow/repo]

Prints, per method and density, the connections each kept and the fraction of theirs we keep too
(the scoring time is ``benchmarks/pruning_scoring_bench.py``).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from sparsetopo.methods import sparsify

FILES = ("Pruners/__init__.py", "Pruners/pruners.py", "Layers/__init__.py", "Layers/layers.py", "prune.py")
SIZES = (64, 100, 100, 10)


def load_theirs(mirror: Path, into: Path):
    """Their pruners module, layers module and prune_loop, from the mirror's HEAD."""
    for name in FILES:
        text = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{name}"], check=True,
                              capture_output=True, text=True).stdout
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_text(text)
    sys.path.insert(0, str(into))
    return (importlib.import_module("Pruners.pruners"), importlib.import_module("Layers.layers"),
            importlib.import_module("prune").prune_loop)


def our_mlp(seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    mods = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        lin = nn.Linear(a, b)
        with torch.no_grad():  # He-uniform from our own generator (no global seeding)
            lin.weight.uniform_(-(6 / a) ** 0.5, (6 / a) ** 0.5, generator=g)
            lin.bias.uniform_(-a ** -0.5, a ** -0.5, generator=g)
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def their_mlp(layers, ours: nn.Sequential) -> nn.Sequential:
    """Their masked layers, every one prunable (no dense classifier), with our weights."""
    mods = []
    for m in ours:
        if isinstance(m, nn.Linear):
            t = layers.Linear(m.in_features, m.out_features)
            with torch.no_grad():
                t.weight.copy_(m.weight)
                t.bias.copy_(m.bias)
            mods.append(t)
        else:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def data(seed: int, n_batches: int = 2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(64, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (64,), generator=g))
            for _ in range(n_batches)]


def compare(theirs, method: str, density: float, seed: int):
    pruners, layers, prune_loop = theirs
    batches = data(seed + 1)
    ours = our_mlp(seed)
    model = their_mlp(layers, ours)
    masked = [(m.weight_mask, m.weight) for m in model if isinstance(m, layers.Linear)]
    pruner = {"snip": pruners.SNIP, "grasp": pruners.GraSP, "synflow": pruners.SynFlow}[method](masked)
    rounds = 100 if method == "synflow" else 1
    prune_loop(model, nn.CrossEntropyLoss(), pruner, batches, "cpu", density, "exponential", "global", rounds)
    own = {"rounds": rounds} if method == "synflow" else {"score_batches": len(batches)}
    sparsify(ours, method, density=density, distribution="uniform", dense_output=False, scope="global",
             data=batches, **own)
    mine = torch.cat([m.weight_mask.bool().flatten() for m in ours if isinstance(m, nn.Linear)])
    their = torch.cat([m.bool().flatten() for m, _ in masked])
    return int(mine.sum()), int(their.sum()), float((mine & their).sum()) / max(int(their.sum()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror/ganguli-lab+Synaptic-Flow/repo"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        theirs = load_theirs(args.mirror, Path(tmp))
        print("| method | density | seed | ours kept | theirs kept | of theirs also ours |")
        print("|---|---|---|---|---|---|")
        for method in ("snip", "grasp", "synflow"):
            for density in (0.1, 0.01):
                for seed in range(args.seeds):
                    n_ours, n_theirs, same = compare(theirs, method, density, seed)
                    print(f"| {method} | {density} | {seed} | {n_ours} | {n_theirs} | {same:.4f} |")


if __name__ == "__main__":
    main()
