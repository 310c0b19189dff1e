"""The ``sparsetopo`` command line.

Every command is a thin shell over the Python API; errors from bad input are
shown as one line naming the option or file, never as a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="sparsetopo",
    help=(
        "Topology of sparse neural networks: train dense, static, SET, RigL and lottery-ticket "
        "networks, snapshot their topologies and compare them with NNSTD "
        "(Liu et al., 'Topological Insights into Sparse Neural Networks', ECML PKDD 2020)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_SOLVER_HELP = (
    "Assignment solver: 'dense' reproduces the reference implementation's matchings; "
    "'sparse' gives the same per-layer minimum on a sparse graph (large layers); "
    "'auto' uses dense while the cost matrix fits in memory."
)


def friendly(fn):
    """Turn expected errors into a one-line message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, NotADirectoryError, KeyError, TypeError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            typer.secho(f"Error: {msg}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper


def _check_solver(solver: str) -> str:
    from .nnstd import SOLVERS

    if solver not in SOLVERS:
        raise ValueError(f"--solver must be one of {', '.join(SOLVERS)}; got {solver!r}")
    return solver


def _labels(paths: list[Path]) -> list[str]:
    """Short unique labels for networks: the file or folder name, more of the path on clashes."""
    for depth in range(1, 6):
        labels = []
        for p in paths:
            parts = p.with_suffix("").parts if p.suffix == ".npz" else p.parts
            labels.append("/".join(parts[-depth:]))
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


@app.command()
@friendly
def distance(
    a: Annotated[Path, typer.Argument(help="A saved topology (.npz) or a directory of weight_l<k>.npz files.")],
    b: Annotated[Path, typer.Argument(help="The topology to compare with, same layer shapes as A.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    solver: Annotated[str, typer.Option(help=_SOLVER_HELP)] = "auto",
    identity_outputs: Annotated[
        bool, typer.Option("--identity-outputs", help="Compare output neurons by identity (labelled classes).")
    ] = False,
) -> None:
    """Print the per-layer and mean NNSTD between two topologies."""
    from .nnstd import nnstd
    from .topology import Topology

    _check_solver(solver)
    ta, tb = Topology.read(a), Topology.read(b)
    res = nnstd(ta, tb, match_outputs=not identity_outputs, solver=solver)
    if json_out:
        typer.echo(json.dumps({
            "a": str(a), "b": str(b),
            "per_layer": [float(x) for x in res.per_layer],
            "nnstd": res.value,
            "solvers": list(res.solvers),
        }, indent=2))
        return
    typer.echo(f"NNSTD {a} vs {b}")
    typer.echo(f"{'layer':>6}  {'shape':>14}  {'solver':>8}  {'nnstd':>8}")
    for k, (v, shape, s) in enumerate(zip(res.per_layer, ta.shapes, res.solvers)):
        typer.echo(f"{k:>6}  {str(shape):>14}  {s:>8}  {v:8.4f}")
    typer.echo(f"{'mean':>6}  {'':>14}  {'':>8}  {res.value:8.4f}")


@app.command()
@friendly
def matrix(
    paths: Annotated[list[Path], typer.Argument(help="Saved topologies (.npz) or official-layout directories.")],
    out: Annotated[Path | None, typer.Option(help="Write the (N, N, layers) matrix to this .npz file.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write a long-format CSV (a, b, layer, nnstd).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a heatmap per layer and of the mean (PNG/PDF).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers (-1: all cores).")] = -1,
    solver: Annotated[str, typer.Option(help=_SOLVER_HELP)] = "auto",
    identity_outputs: Annotated[
        bool, typer.Option("--identity-outputs", help="Compare output neurons by identity.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compute the pairwise NNSTD matrix of several topologies."""
    import numpy as np

    from .nnstd import pairwise_nnstd, save_matrix
    from .plots import heatmap_grid
    from .topology import Topology

    _check_solver(solver)
    if len(paths) < 2:
        raise ValueError(f"matrix needs at least two topologies, got {len(paths)}")
    if out is None and csv is None and plot is None:
        raise ValueError("give at least one of --out, --csv and --plot")
    tops = [Topology.read(p) for p in paths]
    names = _labels(paths)
    d = pairwise_nnstd(tops, n_jobs=jobs, solver=solver, match_outputs=not identity_outputs,
                       progress=not quiet)
    save_matrix(d, names, npz=str(out) if out else None, csv=str(csv) if csv else None)
    if plot:
        mats = [d[:, :, k] for k in range(d.shape[2])] + [d.mean(axis=2)]
        titles = [f"layer {k}" for k in range(d.shape[2])] + ["mean"]
        heatmap_grid(mats, titles, names, plot, suptitle="NNSTD")
    mean = d.mean(axis=2)
    off = mean[~np.eye(len(tops), dtype=bool)]
    typer.echo(f"{len(tops)} networks, {len(tops) * (len(tops) - 1) // 2} pairs; "
               f"mean off-diagonal NNSTD {off.mean():.4f} (min {off.min():.4f}, max {off.max():.4f})")
    for label, p in (("matrix", out), ("csv", csv), ("heatmap", plot)):
        if p:
            typer.echo(f"  {label}: {p}")


@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo_out"),
    networks: Annotated[int, typer.Option(help="Networks in the chain.")] = 10,
    fraction: Annotated[float, typer.Option(help="Fraction of connections moved per step.")] = 0.01,
    density: Annotated[float, typer.Option(help="Density of the sparse layers.")] = 0.006,
    seed: Annotated[int, typer.Option(help="Topology seed.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers.")] = -1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """A chain of perturbed Erdős–Rényi topologies (784-784-784-784-10) and its NNSTD matrix.

    The starting point of the paper's Figure 4: each network differs from the
    previous one by FRACTION of its connections; the heatmap shows NNSTD
    growing with the distance in the chain.
    """
    import numpy as np

    from .nnstd import pairwise_nnstd, save_matrix
    from .plots import heatmap_grid
    from .topology import erdos_renyi, perturbation_chain

    if networks < 2:
        raise ValueError(f"--networks must be >= 2, got {networks}")
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if not 0 < density <= 1:
        raise ValueError(f"--density must be in (0, 1], got {density}")
    base = erdos_renyi([784, 784, 784, 784, 10], density=density, seed=seed)
    chain = perturbation_chain(base, networks, fraction, seed=seed + 1)
    topo_dir = out / "topologies"
    for t in chain:
        t.save(topo_dir / f"{t.name}.npz")
    d = pairwise_nnstd(chain, n_jobs=jobs, progress=not quiet)
    names = [t.name for t in chain]
    save_matrix(d, names, npz=str(out / "nnstd.npz"), csv=str(out / "nnstd.csv"))
    mats = [d[:, :, k] for k in range(d.shape[2])] + [d.mean(axis=2)]
    titles = [f"layer {k}" for k in range(d.shape[2])] + ["mean"]
    heatmap_grid(mats, titles, names, out / "heatmap.png",
                 suptitle=f"NNSTD of a {fraction:.0%}-perturbation chain (before training)")
    neighbours = np.array([d[i, i + 1, 0] for i in range(networks - 1)])
    typer.echo(f"{networks} topologies in {topo_dir}")
    typer.echo(f"layer-0 NNSTD between neighbours: mean {neighbours.mean():.4f}; "
               f"first to last: {d[0, -1, 0]:.4f}")
    typer.echo(f"matrix: {out / 'nnstd.npz'}, csv: {out / 'nnstd.csv'}, heatmap: {out / 'heatmap.png'}")


def main() -> None:  # pragma: no cover - the console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
