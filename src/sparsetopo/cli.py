"""The ``sparsetopo`` command line.

Every command is a thin shell over the Python API; errors from bad input are
shown as one line naming the option or file, never as a traceback (exit
status 2). Anything unexpected -- a bug, or input no check foresaw -- ends in
one line too, naming the command and the input being processed, with exit
status 1; ``sparsetopo --debug COMMAND`` (or ``SPARSETOPO_DEBUG=1``) shows the
traceback instead. Ctrl-C ends in "interrupted", exit status 130.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from .config import registry
from .errors import SparsetopoError


class _Group(click.Group):
    def list_commands(self, ctx):  # keep the order of definition, not alphabetical
        return list(self.commands)

    def get_command(self, ctx, name):
        if name == "train":  # built when used, so a method registered since import brings its own flags
            return _make_train_command()
        return super().get_command(ctx, name)


_DEBUG_KEY = "sparsetopo.debug"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sparsetopo")
@click.option("--debug", is_flag=True,
              help="Show the full traceback of an error, expected or not, instead of the one-line message "
                   "(also: environment variable SPARSETOPO_DEBUG=1).")
@click.pass_context
def app(ctx: click.Context, debug: bool) -> None:
    """Topology of sparse neural networks: train dense, static, SET, RigL and lottery-ticket
    networks, snapshot their topologies and compare them with NNSTD (Liu et al.,
    'Topological Insights into Sparse Neural Networks', ECML PKDD 2020)."""
    ctx.meta[_DEBUG_KEY] = debug


_SOLVER_HELP = (
    "Assignment solver: 'auto' (= 'ssp') is an exact solver on the sparse overlap graph, fast and light on "
    "memory; 'dense' is the reference implementation's linear_sum_assignment on the full cost matrix; "
    "'sparse' is scipy's sparse solver. All give the same layer-0 distance; deeper layers may differ through "
    "ties and with the direction, so no solver alone reproduces published values: use --reference."
)

_REFERENCE_HELP = (
    "Reproduce the implementation published with the paper: solver dense, computed in the direction given "
    "(A -> B; in a matrix, pair i < j as PATHS[i] -> PATHS[j]). Without it a pair is computed in a canonical "
    "direction, so that the distance is symmetric and independent of the order of the inputs."
)


_MAX_SECONDS_HELP = (
    "Bounds mode (solver auto/ssp): a time budget in seconds{per}. A layer whose exact matching would take "
    "longer is stopped and reported as [lower, upper] (a matching found and a certified lower bound) with its "
    "gap, never as an unlabelled value; layers after it are 'conditional' (scored under that matching)."
)


def _check_max_seconds(max_seconds, solver: str, reference: bool, graph: bool = False) -> None:
    """--max-seconds: the library's check, in flags (before reading the inputs, then with ``graph`` after)."""
    from .nnstd.core import check_max_seconds

    check_max_seconds(max_seconds, solver, reference, graph, option="--max-seconds")


def _solver_for(reference: bool, solver: str) -> str:
    """--reference means solver dense; an explicit other solver contradicts it (the rule is the library's
    ``reference_solver``; this says it in flags)."""
    from .nnstd.solvers import reference_solver

    try:
        return reference_solver(reference, solver)
    except SparsetopoError:
        raise SparsetopoError(f"--reference computes with --solver dense (the published code's solver); "
                              f"it cannot be combined with --solver {solver}") from None


class _LazyChoice(click.Choice):
    """A choice among a registry's names, looked up only when the command parses or shows its help,
    so that ``sparsetopo --help`` imports no registry (experiments pull in matplotlib, models torch)."""

    def __init__(self, load):
        self._load = load
        self.case_sensitive = True

    @property
    def choices(self) -> tuple:
        return tuple(self._load())


def _experiment_names() -> list[str]:
    from .experiments import EXPERIMENTS

    return list(EXPERIMENTS)


def _presets() -> tuple[str, ...]:
    from .experiments import PRESETS

    return PRESETS


def __getattr__(name: str):
    """``EXPERIMENT_NAMES``: the registered experiments, derived when asked for (importing them is not cheap)."""
    if name == "EXPERIMENT_NAMES":
        return _experiment_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` for an OSError, whether it carries a file name or not."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        return f"{where}: {reason[0].lower() + reason[1:] if reason else reason}"
    return str(exc)


#: The input a command is reading or processing now, named when something unexpected goes wrong.
_CURRENT_INPUT: contextvars.ContextVar[str | None] = contextvars.ContextVar("sparsetopo_input", default=None)

#: Options given an empty string, recorded while click converts them (an empty path reads as ".").
_EMPTY_KEY = "sparsetopo.empty-options"


@contextlib.contextmanager
def processing(what: object) -> Iterator[None]:
    """Name ``what`` as the input being processed inside the block (kept if the block fails); None: no change."""
    token = _CURRENT_INPUT.set(str(what) if what is not None else _CURRENT_INPUT.get())
    yield
    _CURRENT_INPUT.reset(token)  # only on success: a failure is reported with this input


def _read_topology(path: Path):
    from .topology import Topology

    with processing(path):
        return Topology.read(path)


def _debug_enabled(ctx: click.Context | None) -> bool:
    env = os.environ.get("SPARSETOPO_DEBUG", "").strip().lower()
    if env not in ("", "0", "false", "no", "off"):
        return True
    return bool(ctx is not None and ctx.find_root().meta.get(_DEBUG_KEY))


def _describe_inputs(ctx: click.Context | None) -> str | None:
    """The command's inputs: its path arguments, else its --config file, else its --out directory."""
    if ctx is None:
        return None
    values = []
    for param in ctx.command.params:
        if isinstance(param, click.Argument):
            value = ctx.params.get(param.name)
            values.extend(v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, Path))
    for name in ("config_file", "out"):
        if not values and isinstance(ctx.params.get(name), Path):
            values.append(ctx.params[name])
    if not values:
        return None
    shown = ", ".join(map(str, values[:3]))
    return shown + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def _unexpected_message(ctx: click.Context | None, exc: BaseException) -> str:
    command = f"sparsetopo {ctx.info_name}" if ctx is not None and ctx.info_name else "sparsetopo"
    detail = " ".join(str(exc).split())  # one line, whatever the exception's text holds
    message = f"{command}: unexpected {type(exc).__name__}" + (f": {detail}" if detail else "")
    where = _CURRENT_INPUT.get() or _describe_inputs(ctx)
    if where:
        message += f" (while processing {where})"
    return message + "; run again with --debug to see the traceback"


#: How to install PyTorch, named when a command that needs it finds it missing.
TORCH_INSTALL = ("pip install torch (CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu; "
                 "or pip install 'sparsetopo[torch]')")


def _missing_package(exc: ModuleNotFoundError) -> str | None:
    """The top-level package an import failed to find (``torch`` for ``torch.nn``)."""
    return exc.name.split(".")[0] if exc.name else None


def _needs_torch_message(ctx: click.Context | None) -> str:
    command = f"sparsetopo {ctx.info_name}" if ctx is not None and ctx.info_name else "this command"
    return f"{command} needs PyTorch, which is not installed; install it with {TORCH_INSTALL}"


def _refuse_empty_options(ctx: click.Context | None) -> None:
    empty = ctx.meta.get(_EMPTY_KEY, []) if ctx is not None else []
    if empty:
        raise SparsetopoError(f"{empty[0]} must not be empty; give a path (got '')")


def friendly(fn):
    """The error boundary of every command.

    Bad input (SparsetopoError, any ValueError), OS errors and a missing PyTorch
    become one red line and exit status 2; any other exception one red line naming the
    command and the input being processed, exit status 1 (``--debug``
    re-raises it); Ctrl-C the line "interrupted", exit status 130.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context(silent=True)
        token = _CURRENT_INPUT.set(None)
        status = 2
        try:
            _refuse_empty_options(ctx)
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own ways to end a command
        except ValueError as exc:  # SparsetopoError and the ValueErrors of the libraries we validate for
            if _debug_enabled(ctx):
                raise
            message = str(exc)
        except OSError as exc:
            if _debug_enabled(ctx):
                raise
            message = os_error_message(exc)
        except MemoryError:
            if _debug_enabled(ctx):
                raise
            message = "out of memory; use smaller inputs, fewer parallel jobs (-j) or a larger machine"
        except KeyboardInterrupt:
            if _debug_enabled(ctx):
                raise
            click.secho("interrupted", err=True, fg="red")
            raise SystemExit(130) from None
        except ModuleNotFoundError as exc:  # an optional dependency: PyTorch is the one commands need
            if _debug_enabled(ctx):
                raise
            if _missing_package(exc) == "torch":
                message = _needs_torch_message(ctx)
            else:
                message, status = _unexpected_message(ctx, exc), 1
        except Exception as exc:  # the last resort: anything no check turned into a message
            if _debug_enabled(ctx):
                raise
            message, status = _unexpected_message(ctx, exc), 1
        finally:
            _CURRENT_INPUT.reset(token)
        click.secho(f"Error: {message}", err=True, fg="red")
        raise SystemExit(status)

    return wrapper


def _check_jobs(jobs: int, option: str = "--jobs") -> None:
    """joblib's reading: -1 is all cores, a positive integer that many workers; 0 means nothing."""
    if jobs != -1 and jobs < 1:
        raise SparsetopoError(f"{option} must be -1 (all cores) or a positive integer; got {jobs}")


def _same_path(p: Path, q: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (both existing) the same inode."""
    try:
        if p.exists() and q.exists():
            return os.path.samefile(p, q)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(p)) == os.path.normcase(os.path.realpath(q))


def _input_files(path: Path) -> list[Path]:
    """An input and, for a directory in the paper's layout, the weight files it is read from."""
    return [path, *sorted(path.glob("weight_l*.npz"))] if path.is_dir() else [path]


def check_distinct_paths(outputs: dict[str, Path | None], inputs: Iterable[tuple[str, Path | None]] = ()) -> None:
    """Refuse, before anything is written, an output that is an input or another output.

    ``outputs`` maps option names to paths, ``inputs`` gives (option or
    argument name, path) pairs; ``None`` means not given.
    """
    given = [(name, p) for name, p in outputs.items() if p is not None]
    for k, (name, p) in enumerate(given):
        for other, q in given[:k]:
            if _same_path(p, q):
                raise SparsetopoError(f"{other} and {name} name the same file ({q} and {p}); "
                                      "give each output its own path")
        for what, q in inputs:
            if q is None:
                continue
            for f in _input_files(q):
                if _same_path(p, f):
                    raise SparsetopoError(f"{name} {p} would overwrite the input {what} {f}; "
                                          "write the output elsewhere")


def _labels(paths: list[Path]) -> list[str]:
    """Short unique labels for networks: the path components that tell them apart.

    ``runs/net0/topology/epoch_010.npz`` and ``runs/net1/topology/epoch_010.npz`` are ``net0`` and
    ``net1``; paths that differ in several components keep all of those (``net0/epoch_010``).
    Components shared by every path (at the same place) are dropped; paths of different depths lose
    their common leading and trailing components. Clashes fall back to the full paths.
    """
    parts = [p.with_suffix("").parts if p.suffix == ".npz" else p.parts for p in paths]
    if len({len(q) for q in parts}) == 1:
        differ = [k for k in range(len(parts[0])) if len({q[k] for q in parts}) > 1]
        labels = ["/".join(q[k] for k in differ) for q in parts]
    else:
        labels = ["/".join(q) for q in _strip_common(parts)]
    if all(labels) and len(set(labels)) == len(labels):
        return labels
    return [str(p) for p in paths]


def _strip_common(parts: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """``parts`` without their common leading and trailing components (at least one kept each)."""
    shortest = min(len(q) for q in parts)
    lead = 0
    while lead < shortest - 1 and len({q[lead] for q in parts}) == 1:
        lead += 1
    trail = 0
    while trail < shortest - lead - 1 and len({q[-1 - trail] for q in parts}) == 1:
        trail += 1
    return [q[lead:len(q) - trail] for q in parts]


class _OutPath(click.Path):
    """An output path. An empty string reads as '.', the current directory: record it to refuse it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value == "" and ctx is not None and param is not None:
            ctx.meta.setdefault(_EMPTY_KEY, []).append(param.opts[0])
        return super().convert(value, param, ctx)


_PATH = click.Path(path_type=Path)
_OUT = _OutPath(path_type=Path)


@app.command()
@click.argument("a", type=_PATH)
@click.argument("b", type=_PATH)
@click.option("--json", "json_out", is_flag=True, help="Print JSON instead of a table.")
@click.option("--solver", type=_LazyChoice(registry("nnstd", "SOLVERS")), default="auto", show_default=True,
              help=_SOLVER_HELP)
@click.option("--reference", is_flag=True, help=_REFERENCE_HELP)
@click.option("--identity-outputs", is_flag=True, help="Compare output neurons by identity (labelled classes).")
@click.option("--max-seconds", type=float, default=None, help=_MAX_SECONDS_HELP.format(per=" for the whole pair"))
@friendly
def distance(a: Path, b: Path, json_out: bool, solver: str, reference: bool, identity_outputs: bool,
             max_seconds: float | None) -> None:
    """Print the per-layer NNSTD between topologies A and B, the mean over the sparse layers (the
    network distance, as the report computes it) and the mean over all layers.

    A and B are saved topologies (.npz) or directories of weight_l<k>.npz files
    in the layout of the paper's published code; their layer shapes must match.
    A layer fully connected in both (a dense output layer) has NNSTD 0 by
    construction and is left out of the first mean.
    """
    from .nnstd import nnstd

    solver = _solver_for(reference, solver)
    _check_max_seconds(max_seconds, solver, reference)
    ta, tb = _read_topology(a), _read_topology(b)
    _check_max_seconds(max_seconds, solver, reference, ta.is_graph)
    res = nnstd(ta, tb, match_outputs=not identity_outputs, solver=solver, reference=reference,
                max_seconds=max_seconds)
    if json_out:
        click.echo(json.dumps({
            "a": str(a), "b": str(b),
            "per_layer": [float(x) for x in res.per_layer],
            "sparse_layers": list(res.sparse_layers),
            "nnstd": res.value,
            "mean_sparse_layers": res.value,
            "mean_all_layers": res.mean_all,
            "solvers": list(res.solvers),
            "reference": reference,
            "max_seconds": max_seconds,
            "exact": res.exact,
            "status": list(res.status),
            "lower": [float(x) for x in res.lower],
            "upper": [float(x) for x in res.upper],
        }, indent=2))
        return
    for line in _distance_table(a, b, ta.shapes, res, reference, bounds=max_seconds is not None):
        click.echo(line)


def _layer_list(layers) -> str:
    return ", ".join(map(str, layers)) if layers else "none"


def _distance_table(a: Path, b: Path, shapes, res, reference: bool, bounds: bool = False) -> list[str]:
    """The ``distance`` command's table: a row per layer (dense ones marked), then the two labelled means.

    With ``bounds`` (``--max-seconds``) each row also says ``exact`` or ``[lower, upper]`` and the gap.
    """
    lines = [f"NNSTD {a} vs {b}" + (" (reference mode: dense, A -> B)" if reference else ""),
             f"{'layer':>6}  {'shape':>14}  {'solver':>8}  {'nnstd':>8}"
             + (f"  {'status':<19}  bounds" if bounds else "")]
    for k, (v, shape, s) in enumerate(zip(res.per_layer, shapes, res.solvers)):
        note = "" if k in res.sparse_layers else "  dense in both: 0 by construction, not in the first mean"
        lines.append(f"{k:>6}  {str(shape):>14}  {s:>8}  {v:8.4f}" + (_bounds_cell(res, k) if bounds else "") + note)
    sparse = f"mean over the sparse layers ({_layer_list(res.sparse_layers)}; the network distance, as in the report)"
    every = f"mean over all {len(res.per_layer)} layers"
    width = max(len(sparse), len(every)) + 1
    lines.append(f"{sparse + ':':<{width}} {res.value:.4f}")
    lines.append(f"{every + ':':<{width}} {res.mean_all:.4f}")
    if not res.exact:
        stopped = [k for k, s in enumerate(res.status) if s.endswith("bounded")]
        later = [k for k, s in enumerate(res.status) if s.startswith("conditional")]
        lines.append(f"not exact: layer(s) {_layer_list(stopped)} stopped at --max-seconds; the values and means "
                     f"are those of the matchings returned (each bounded layer's upper bound)"
                     + (f"; layer(s) {_layer_list(later)} come after a bounded layer and are scored under its "
                        f"matching (conditional), so they do not bound the exact NNSTD's layers" if later else ""))
    return lines


def _bounds_cell(res, k: int) -> str:
    """``exact`` or ``[lower, upper]`` with the gap, absolute and relative to the layer's value."""
    s = res.status[k]
    if s in ("exact", "conditional"):
        return f"  {s:<19}"
    lo, up = res.lower[k], res.upper[k]
    rel = f"{100 * (up - lo) / up:.2f} %" if up > 0 else "-"
    return f"  {s:<19}  [{lo:.6f}, {up:.6f}] gap {up - lo:.2g} ({rel})"


@app.command()
@click.argument("paths", nargs=-1, type=_PATH)
@click.option("--out", type=_OUT, help="Write the (N, N, layers) matrix to this .npz file.")
@click.option("--csv", type=_OUT, help="Write a long-format CSV (a, b, layer, nnstd).")
@click.option("--plot", type=_OUT, help="Write a heatmap per sparse layer and of their mean (PNG/PDF).")
@click.option("--include-dense", is_flag=True,
              help="--plot: draw the layers dense in every network too (NNSTD 0 by construction) and average "
                   "them into the mean panel.")
@click.option("--jobs", "-j", default=-1, show_default=True, help="Parallel workers (-1: all cores).")
@click.option("--solver", type=_LazyChoice(registry("nnstd", "SOLVERS")), default="auto", show_default=True,
              help=_SOLVER_HELP)
@click.option("--reference", is_flag=True, help=_REFERENCE_HELP)
@click.option("--identity-outputs", is_flag=True, help="Compare output neurons by identity.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep finished pairs, and the finished layers of unfinished ones, in this directory: "
                   "run the same command again after it was stopped and it resumes each pair from its last "
                   "finished layer; adding a network computes only its new pairs.")
@click.option("--cluster", default=None,
              help="Compute on Dask, one task per layer pair: a scheduler address (tcp://host:8786) or local:N "
                   "(N single-threaded worker processes). Workers read the layers from PATHS, so they must see "
                   "them. Overrides --jobs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--max-seconds", type=float, default=None,
              help=_MAX_SECONDS_HELP.format(per=" per pair") + " --out and --csv then also hold lower, upper "
                   "and status; only exact pairs are cached.")
@friendly
def matrix(paths, out, csv, plot, include_dense, jobs, solver, reference, identity_outputs, cache_dir, cluster,
           quiet, max_seconds) -> None:
    """Compute the pairwise NNSTD matrix of PATHS (saved topologies or official-layout directories).

    Networks are labelled by the shortest part of their paths that tells them apart
    (runs/net0/topology/epoch_010.npz and runs/net1/topology/epoch_010.npz: net0, net1).
    """
    paths = list(paths)
    from .nnstd import pairwise_nnstd, save_matrix

    if len(paths) < 2:
        raise SparsetopoError(f"matrix needs at least two topologies, got {len(paths)}")
    if out is None and csv is None and plot is None:
        raise SparsetopoError("give at least one of --out, --csv and --plot")
    if include_dense and plot is None:
        raise SparsetopoError("--include-dense changes the --plot figure; give --plot too")
    _check_jobs(jobs)
    if cluster is not None:
        from .parallel import parse_cluster

        parse_cluster(cluster)
    solver = _solver_for(reference, solver)
    _check_max_seconds(max_seconds, solver, reference)
    check_distinct_paths({"--out": out, "--csv": csv, "--plot": plot}, [("PATHS", p) for p in paths])
    tops = [_read_topology(p) for p in paths]
    _check_max_seconds(max_seconds, solver, reference, tops[0].is_graph)
    d = pairwise_nnstd(tops, n_jobs=jobs, solver=solver, match_outputs=not identity_outputs,
                       progress=not quiet, reference=reference, names=_labels(paths),
                       desc=f"NNSTD of {len(tops)} networks", cache_dir=cache_dir, cluster=cluster,
                       paths=[p.resolve() for p in paths], max_seconds=max_seconds)
    save_matrix(d, d.names, npz=str(out) if out else None, csv=str(csv) if csv else None)
    if plot:
        _plot_matrix(d, plot, include_dense)
    for line in _matrix_summary(d) + (_matrix_bounds(d) if max_seconds is not None else []):
        click.echo(line)
    for label, p in (("matrix", out), ("csv", csv), ("heatmap", plot)):
        if p:
            click.echo(f"  {label}: {p}")


def _plot_matrix(d, path: Path, include_dense: bool, suptitle: str = "NNSTD") -> None:
    """Heatmaps of the sparse layers (every layer with ``include_dense``) and of their mean, in a grid."""
    from .plots import layer_matrix_grid

    n_layers = d.shape[2]
    layers = list(range(n_layers)) if include_dense or not d.sparse_layers else d.sparse_layers
    if not include_dense and not d.sparse_layers:
        click.echo("every layer is dense in every network (NNSTD 0 by construction): drawing them all", err=True)
    layer_matrix_grid(d, d.names, layers, path=path, suptitle=suptitle)


def _matrix_summary(d) -> list[str]:
    import numpy as np

    n = d.shape[0]
    off = ~np.eye(n, dtype=bool)
    sparse, every = d.value[off], d.mean_all[off]
    return [f"{n} networks, {n * (n - 1) // 2} pairs; mean off-diagonal NNSTD over the sparse layers "
            f"({_layer_list(d.sparse_layers)}): {sparse.mean():.4f} (min {sparse.min():.4f}, max {sparse.max():.4f}); "
            f"over all {d.shape[2]} layers: {every.mean():.4f}"]


def _matrix_bounds(d) -> list[str]:
    """--max-seconds: how many pairs are exact, and the largest gap of the others."""
    import numpy as np

    n = d.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    inexact = [(i, j) for i, j in pairs if not d.exact[i, j]]
    if not inexact:
        return [f"bounds: all {len(pairs)} pairs exact (no layer stopped at --max-seconds)"]
    gap = d.upper - d.lower
    i, j, k = np.unravel_index(np.argmax(gap), gap.shape)
    rel = f"{100 * gap[i, j, k] / d.upper[i, j, k]:.2f} %" if d.upper[i, j, k] > 0 else "-"
    return [f"bounds: {len(pairs) - len(inexact)} of {len(pairs)} pairs exact; {len(inexact)} not exact (a layer "
            f"stopped at --max-seconds: its value is that of the matching returned, within [lower, upper]; "
            f"later layers conditional); largest gap {gap[i, j, k]:.2g} ({rel}), {d.names[i]} vs {d.names[j]} "
            f"layer {k} [{d.lower[i, j, k]:.6f}, {d.upper[i, j, k]:.6f}]"]


@app.command()
@click.option("--out", type=_OUT, default=Path("chain_out"), show_default=True, help="Output directory.")
@click.option("--networks", default=10, show_default=True, help="Networks in the chain.")
@click.option("--fraction", default=0.01, show_default=True, help="Fraction of connections moved per step.")
@click.option("--density", default=0.006, show_default=True, help="Density of the sparse layers.")
@click.option("--seed", default=0, show_default=True, help="Topology seed.")
@click.option("--jobs", "-j", default=-1, show_default=True, help="Parallel workers.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@friendly
def chain(out, networks, fraction, density, seed, jobs, quiet) -> None:
    """A chain of perturbed Erdős–Rényi topologies (784-784-784-784-10) and its NNSTD matrix.

    The starting point of the paper's Figure 4: each network differs from the
    previous one by FRACTION of its connections; the heatmap shows NNSTD
    growing with the distance in the chain. No training, no PyTorch.
    """
    import numpy as np

    from .nnstd import pairwise_nnstd, save_matrix
    from .topology import check_density, erdos_renyi, perturbation_chain

    if networks < 2:
        raise SparsetopoError(f"--networks must be >= 2, got {networks}")
    if not 0 < fraction <= 1:
        raise SparsetopoError(f"--fraction must be in (0, 1], got {fraction}")
    check_density(density, "--density")
    _check_jobs(jobs)
    base = erdos_renyi([784, 784, 784, 784, 10], density=density, seed=seed)
    topologies = perturbation_chain(base, networks, fraction, seed=seed + 1)
    topo_dir = out / "topologies"
    for t in topologies:
        t.save(topo_dir / f"{t.name}.npz")
    d = pairwise_nnstd(topologies, n_jobs=jobs, progress=not quiet, desc=f"NNSTD of a {networks}-network chain")
    save_matrix(d, d.names, npz=str(out / "nnstd.npz"), csv=str(out / "nnstd.csv"))
    _plot_matrix(d, out / "heatmap.png", include_dense=False,
                 suptitle=f"NNSTD of a {fraction:.0%}-perturbation chain (before training)")
    neighbours = np.array([d[i, i + 1, 0] for i in range(networks - 1)])
    click.echo(f"{networks} topologies in {topo_dir}")
    click.echo(f"layer-0 NNSTD between neighbours: mean {neighbours.mean():.4f}; "
               f"first to last: {d[0, -1, 0]:.4f}")
    click.echo(f"matrix: {out / 'nnstd.npz'}, csv: {out / 'nnstd.csv'}, heatmap: {out / 'heatmap.png'}")


def _demo(**options) -> None:
    click.echo("warning: 'sparsetopo demo' is deprecated and will be removed in the next release; "
               "use 'sparsetopo chain' (default output chain_out)", err=True)
    return chain.callback(**options)


#: The command's name until issue 19: an alias of ``chain`` with its options, kept for one release.
app.add_command(click.Command("demo", params=chain.params, callback=_demo, hidden=True,
                              help="Deprecated: the old name of 'chain', which it runs (with a warning)."))


# -------------------------------------------------------------- experiments
# EXPERIMENT_NAMES (module __getattr__ above) is experiments.EXPERIMENTS' keys.


@app.command()
@click.argument("name", type=_LazyChoice(_experiment_names))
@click.option("--preset", type=_LazyChoice(_presets), default="small", show_default=True,
              help="smoke: about a minute; small: at most 10 minutes on 2 cores; paper: the paper's settings.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file overriding the preset's settings (keys as in the experiment's config).")
@click.option("--out", type=_OUT, required=True, help="Experiment directory; re-running continues where it stopped.")
@click.option("--jobs", "-j", default=-1, show_default=True, help="Parallel workers (-1: all cores).")
@click.option("--cluster", default=None,
              help="Run training runs and NNSTD pairs on Dask: a scheduler address (tcp://host:8786) or local:N.")
@click.option("--model", default=None, metavar="NAME",
              help="evolution: the network (default mlp, the paper's study; cnn: a small VGG-style CNN; resnet20, "
                   "resnet32, resnet: CIFAR-style ResNets; wrn: a WideResNet; presets smoke and small).")
@click.option("--width", type=int, default=None, metavar="W",
              help="evolution with a residual --model: resnet20/resnet32/resnet: the first group's channels "
                   "(groups of W, 2W, 4W); wrn: the widening factor k (16k, 32k, 64k). Default: the preset's.")
@click.option("--depth", type=int, default=None, metavar="D",
              help="evolution with --model resnet: 6k+2 (8, 14, 20, 32, 44, 56, 110; default 20); with --model "
                   "wrn: 6k+4 (10, 16, 22, 28, 40). resnet20 and resnet32 have their own depth.")
@click.option("--device", default=None, metavar="DEVICE",
              help="Where the training runs compute: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or "
                   "mps (default: the config's, else auto). NNSTD runs on the CPU.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def experiment(name, preset, config_file, out, jobs, cluster, model, width, depth, device, quiet) -> None:
    """Run one of the paper's studies: evolution (Figure 4), sparse-vs-dense (RQ2) or tickets (RQ4-5).

    Every step skips work whose outputs exist, so a stopped experiment continues
    where it stopped. Then `sparsetopo report DIR` gathers the results.
    """
    from .experiments import Context, run_experiment
    from .parallel import parse_cluster

    _check_jobs(jobs)
    _check_model(model, width, depth)
    _check_study_shape(name, model, width, depth, config_file)
    check_distinct_paths({"--out": out}, [("--config", config_file)])
    if cluster is not None:
        parse_cluster(cluster)
    ctx = Context(n_jobs=jobs, cluster=cluster, progress=not quiet, log=lambda m: click.echo(m, err=True))
    given = (("model", model), ("width", width), ("depth", depth), ("device", device))
    overrides = {k: v for k, v in given if v is not None} or None
    if device:
        from .training.device import resolve_device

        resolve_device(device, "--device")
    summary = run_experiment(name, preset, out, config_file=str(config_file) if config_file else None, ctx=ctx,
                             overrides=overrides)
    click.echo(f"{summary['title']}: results in {out}")
    for f in summary.get("findings", []):
        click.echo(f"  - {f}")


def _check_model(model: str | None, width: int | None = None, depth: int | None = None) -> None:
    """--model names a registered model (models.MODELS, looked up now: the experiment imports torch anyway);
    --width and --depth are positive and, with --model on the command line, fit it (named as flags here;
    a model from a --config file is checked with the study's config, by key)."""
    import dataclasses

    from .config import check_value, registry
    from .training import TrainConfig

    check_value("--model", model, str | None, {"choices": registry("models_resnet", "MODELS")})
    ranges = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}  # the bounds train's flags have
    check_value("--width", width, int | None, ranges["width"])
    check_value("--depth", depth, int | None, ranges["depth"])
    if model is not None:
        from .models_resnet import check_width_depth

        check_width_depth(model, width, depth, lambda field: "--" + field)


def _check_study_shape(name: str, model: str | None, width: int | None, depth: int | None,
                       config_file: Path | None) -> None:
    """--width and --depth go to a study with a model choice, and fit the model it will train: --model,
    else (no --config that could name one) the study's default model. (The width study's own ``depth``
    key, its MLPs' hidden layers, is another setting: these flags do not reach it.)"""
    import dataclasses

    from .experiments import EXPERIMENTS

    def takes(exp, flag: str) -> bool:
        return {"model", flag} <= {f.name for f in dataclasses.fields(exp.config_cls)}

    for flag, value in (("width", width), ("depth", depth)):
        if value is not None and not takes(EXPERIMENTS[name], flag):
            able = [n for n, e in EXPERIMENTS.items() if takes(e, flag)]
            raise SparsetopoError(f"--{flag} applies to experiment {' and '.join(able)} (with a residual --model); "
                                  f"got experiment {name}")
    if model is None and config_file is None and (width is not None or depth is not None):
        from .experiments.base import DEFAULT_MODEL
        from .models_resnet import check_width_depth

        check_width_depth(DEFAULT_MODEL, width, depth, lambda field: "--" + field)


@app.command()
@click.argument("directory", type=_PATH)
@friendly
def report(directory) -> None:
    """Write DIRECTORY/report.md and a self-contained DIRECTORY/report.html from the experiments found there."""
    from .report import write_report

    with processing(directory):
        md, page = write_report(directory)
    click.echo(f"report: {md} and {page}")


# ------------------------------------------------------------------- train
# The train command is generated from the TrainConfig dataclass: one flag per
# field, its help from the field's metadata, so config file keys and flags
# can never drift apart.

class _ListArgsCommand(click.Command):
    """Lets list options take several values: ``--hidden 1000 1000 1000``.

    click options take a fixed number of values, so the values following a
    list flag are joined with commas before click parses them.
    """

    list_flags: frozenset[str] = frozenset()

    def parse_args(self, ctx, args):
        out, i = [], 0
        while i < len(args):
            tok = args[i]
            out.append(tok)
            i += 1
            if tok in self.list_flags:
                # Values run up to the next option (-q, --x), so `--hidden 32 32 -q` works;
                # a negative number is still a value (and then fails validation, named).
                vals = []
                while i < len(args) and (not args[i].startswith("-") or _NUMBER.fullmatch(args[i])):
                    vals.append(args[i])
                    i += 1
                out.append(",".join(vals))
        return super().parse_args(ctx, out)


_NUMBER = re.compile(r"-?\d+(\.\d*)?")


class _IntList(click.ParamType):
    name = "INT..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(v) for v in str(value).replace(",", " ").split()]
        except ValueError:
            self.fail(f"expects integers, got {value!r}", param, ctx)


def _train_fields() -> tuple[list, dict]:
    """TrainConfig's fields, then those of every registered method's own settings (``settings_cls``)
    that TrainConfig lacks, with their type hints: one flag each."""
    import dataclasses
    import typing

    from .methods import METHODS
    from .training import TrainConfig

    fields, hints = list(dataclasses.fields(TrainConfig)), typing.get_type_hints(TrainConfig)
    for cls in METHODS.values():
        own = cls.settings_cls
        if own is not None and not issubclass(TrainConfig, own):
            extra = [f for f in dataclasses.fields(own) if f.name not in hints]
            fields += extra
            hints.update({f.name: typing.get_type_hints(own)[f.name] for f in extra})
    return fields, hints


def _train_params():
    import dataclasses
    import typing

    from .config import describe_default

    fields, hints = _train_fields()
    params, list_flags = [], set()
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args and type(None) in args else hint
        default = describe_default(f.default if f.default is not dataclasses.MISSING else f.default_factory())
        help_text = f.metadata.get("help", "") + (f"  [default: {default}]" if default is not None else "")
        if base is bool:
            params.append(click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=None, help=help_text))
            continue
        if typing.get_origin(base) is list:
            list_flags.add(flag)
            params.append(click.Option([flag, f.name], type=_IntList(), default=None, help=help_text))
            continue
        ptype = {int: click.INT, float: click.FLOAT, str: click.STRING}[base]
        choices = f.metadata.get("choices")
        # Fixed choices show in the synopsis; registries (methods, ...) are looked up only when a run
        # is validated, so that `sparsetopo --help` does not import torch.
        metavar = "[" + "|".join(choices) + "]" if isinstance(choices, tuple) else None
        params.append(click.Option([flag, f.name], type=ptype, default=None, help=help_text, metavar=metavar))
    return params, frozenset(list_flags)


def _train_callback(config_file, out, quiet, threads, **values):
    from .training import TrainConfig, load_config_file, train

    ctx = click.get_current_context()
    if threads is not None and threads < 1:
        raise SparsetopoError(f"--threads must be a positive integer; got {threads}")
    check_distinct_paths({"--out": out}, [("--config", config_file)])
    with processing(config_file):
        merged = load_config_file(config_file) if config_file else {}
    for name, value in values.items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            merged[name] = value
    config = TrainConfig.from_dict(merged, source=str(config_file or "options")).validate()
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = train(config, out, progress=not quiet, command="sparsetopo " + " ".join(sys.argv[1:]))
    final = result.final
    state = "already complete" if result.skipped else "done"
    click.echo(f"{out}: {state}; epoch {final['epoch']} test accuracy {float(final['test_acc']):.4f}")


def _make_train_command() -> click.Command:
    params, list_flags = _train_params()
    params = [
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="YAML file with the same keys as the options; options given here override it."),
        click.Option(["--out"], type=_OutPath(file_okay=False, path_type=Path), required=True,
                     help="Run directory; re-running the same command there resumes from its checkpoint."),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress bars (one log line per epoch either way)."),
        click.Option(["--threads"], type=click.INT, default=None, help="Torch CPU threads (default: torch's)."),
        *params,
    ]
    cmd = _ListArgsCommand(
        "train", params=params, callback=friendly(_train_callback),
        help=("Train one network with any registered --method and write a resumable run directory: "
              "config.yaml, metrics.csv, topology/epoch_XXX.npz snapshots, checkpoints and the final model.\n\n"
              "Example: sparsetopo train --method set --epsilon 20 --hidden 1000 1000 1000 --epochs 100 "
              "--dataset fashion-mnist --out runs/set-e20"),
        no_args_is_help=True,
    )
    cmd.list_flags = list_flags
    return cmd


app.add_command(_make_train_command())


def main() -> None:  # pragma: no cover - the console-script entry point
    app(prog_name="sparsetopo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
