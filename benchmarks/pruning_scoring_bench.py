"""How long pruning at initialisation takes to choose a topology (snip, grasp, synflow) on the paper's
Fashion-MNIST MLP shape (784-1000-1000-1000-10, random inputs of one --batch-size batch).

    python benchmarks/pruning_scoring_bench.py [--repeats 3] [--rounds 100]

Prints one Markdown row per method: the median wall time of ``sparsify(...)`` over the repeats (the
constructor scores and prunes) and the FLOPs it reports (``scoring_flops``, counted as ``train`` does).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from sparsetopo.methods import sparsify

SIZES = (784, 1000, 1000, 1000, 10)


def model(seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    mods = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.uniform_(-(6 / a) ** 0.5, (6 / a) ** 0.5, generator=g)
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(args.batch_size, SIZES[0], generator=g), torch.randint(0, 10, (args.batch_size,),
                                                                                 generator=g))]
    print(f"| method | median seconds ({args.repeats} runs) | scoring FLOPs |")
    print("|---|---|---|")
    for method, own in (("snip", {}), ("grasp", {}), ("synflow", {"rounds": args.rounds})):
        times, flops = [], 0.0
        for r in range(args.repeats):
            net = model(r)
            t0 = time.perf_counter()
            sp = sparsify(net, method, density=0.05, data=data, **own)
            times.append(time.perf_counter() - t0)
            flops = sp.scoring_flops
        label = f"synflow ({args.rounds} rounds)" if method == "synflow" else method
        print(f"| {label} | {statistics.median(times):.3f} | {flops:.3g} |")


if __name__ == "__main__":
    main()
