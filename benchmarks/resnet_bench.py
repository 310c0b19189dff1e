"""Issue 22's speed figures: NNSTD between two residual networks' topologies at 90 % sparsity (ERK masks).

Targets: two ResNet-50s (torchvision's layout) within 30 s on 2 cores, two CIFAR ResNet-20s within 1 s.
"""

from __future__ import annotations


def erk_pair(model, density: float = 0.1):
    """Two random topologies of ``model``'s structure at ERK densities (``density`` overall), seeds 1 and 2."""
    from sparsetopo.topology import Topology, layer_densities, random_topology

    t = Topology.from_torch(model)
    shapes = [t.layer_mask(k).shape for k in range(len(t))]
    d = layer_densities(shapes, list(range(len(shapes))), "erk", density=density)
    return tuple(random_topology(shapes, d, seed, streams=t.streams) for seed in (1, 2))


def bench(row, ok, quick: bool) -> None:
    from threadpoolctl import threadpool_limits

    from run import median_time  # the bench's own timer (benchmarks/run.py imports this module)
    from sparsetopo.models_resnet import CifarResNet, torchvision_resnet
    from sparsetopo.nnstd import nnstd

    print("ResNets", flush=True)
    runs = 3 if quick else 5
    with threadpool_limits(2):
        a, b = erk_pair(CifarResNet((3, 32, 32), 10))
        nnstd(a, b)  # load the compiled kernel outside the timing
        t = median_time(lambda: nnstd(a, b), runs)
        row(f"NNSTD, two ResNet-20s at 90 % sparsity (ERK), 2 cores (median of {runs})",
            f"{t:.3f} s", "<= 1 s", ok(t <= 1.0))
        a, b = erk_pair(torchvision_resnet(50))
        t = median_time(lambda: nnstd(a, b), 1 if quick else 3)
        row(f"NNSTD, two ResNet-50s at 90 % sparsity (ERK), 2 cores (median of {1 if quick else 3})",
            f"{t:.1f} s", "<= 30 s", ok(t <= 30.0))
