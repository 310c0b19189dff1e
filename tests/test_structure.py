"""The package's structure (issue 17): imports without circles, small functions, one home per helper.

These tests read the source with ``ast`` rather than importing it, except the
one that imports every module in a fresh interpreter.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sparsetopo

PACKAGE = Path(sparsetopo.__file__).parent


def _modules() -> dict[str, Path]:
    """``{"sparsetopo.topology.core": path, ...}`` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, module_level: bool) -> set[str]:
    """The package's modules that ``name`` imports: at module level only, or anywhere in it.

    ``from .x import y`` is an import of ``x`` (or of ``x.y`` when that is a module);
    a package's ``__init__`` importing its own submodules is an ordinary edge. Imports under
    ``if TYPE_CHECKING:`` are for annotations only and never run, so they are no edge.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    nodes = [n for n in (tree.body if module_level else ast.walk(tree)) if id(n) not in typing_only]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    found.add(sub)
                elif source in MODULES:
                    found.add(source)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    found.discard(name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


@pytest.mark.parametrize("module_level", [True, False], ids=["module-level", "with-function-level"])
def test_imports_have_no_cycle(module_level):
    """Module-level imports must be acyclic: a cycle there makes importing depend on which module comes
    first. Function-level (lazy) imports count too: Python copes with such a cycle, but it ties the
    layers together (``topology -> _torch_graph -> models -> topology`` was one), so none is allowed."""
    graph = {name: _imports(name, path, module_level=module_level) for name, path in MODULES.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(MODULES)
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_util_grab_bag_is_gone():
    """``_util``'s helpers live in ``fileio``, ``seeding`` and ``tables``; no module imports ``_util``."""
    import importlib.util

    assert importlib.util.find_spec("sparsetopo._util") is None
    users = [n for n, p in MODULES.items() if "sparsetopo._util" in _imports(n, p, module_level=False)]
    assert users == []


#: Functions longer than the rule allows, to be split by the files' owners (``_lap._solve`` is the numba kernel).
_LONG_FUNCTIONS = {"sparsetopo._lap._solve"}
MAX_FUNCTION_LINES = 60


def test_no_new_function_over_60_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in _LONG_FUNCTIONS:
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert long == []


def test_topology_messages_name_parameters_not_flags():
    """Only the CLI knows ``--flags``; the library's errors (the strings in ``raise`` statements) name its
    parameters."""
    flag = re.compile(r"--[a-z]")
    raises = [node for p in (PACKAGE / "topology").glob("*.py") for node in ast.walk(ast.parse(p.read_text()))
              if isinstance(node, ast.Raise)]
    assert raises
    found = [ast.unparse(r) for r in raises for node in ast.walk(r)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and flag.search(node.value)]
    assert found == []


def test_topology_package_keeps_its_public_names():
    import sparsetopo.topology as topology

    for name in ("Topology", "DISTRIBUTIONS", "erdos_renyi", "er_density", "layer_densities", "random_topology",
                 "epsilon_for_density", "perturb", "perturbation_chain", "check_density", "check_epsilon"):
        assert hasattr(topology, name), name
    assert set(topology.__all__) <= set(dir(topology))
    assert topology.Topology.__module__ == "sparsetopo.topology.core"


def test_a_module_declaring_keeps_neurons_passes_between_layers():
    torch = pytest.importorskip("torch")
    from sparsetopo.errors import SparsetopoError
    from sparsetopo.models import SeededDropout
    from sparsetopo.topology import Topology

    class Gate(torch.nn.Module):  # elementwise, but traced through it is a product of two tensors
        def forward(self, x):
            return x * torch.ones_like(x)

    class Marked(Gate):
        keeps_neurons = True  # kept whole by the tracer, and allowed between layers

    def chain(middle):
        return torch.nn.Sequential(torch.nn.Linear(3, 4), middle, torch.nn.Linear(4, 2))

    assert Topology.from_torch(chain(Marked())).sizes == (3, 4, 2)
    assert Topology.from_torch(chain(SeededDropout(0.5, torch.Generator()))).sizes == (3, 4, 2)
    with pytest.raises(SparsetopoError, match="from_torch: .*not supported between layers"):
        Topology.from_torch(chain(Gate()))


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "0.5", None, True])
def test_check_density_is_the_one_density_rule(bad):
    from sparsetopo.errors import SparsetopoError
    from sparsetopo.topology import check_density, epsilon_for_density, layer_densities

    with pytest.raises(SparsetopoError, match=re.escape(f"density must be in (0, 1]; got {bad!r}")):
        check_density(bad)
    with pytest.raises(SparsetopoError, match=re.escape(f"--density must be in (0, 1]; got {bad!r}")):
        check_density(bad, "--density")
    if bad is not None:  # the library's entry points use it
        with pytest.raises(SparsetopoError, match=re.escape("density must be in (0, 1]")):
            epsilon_for_density([4, 4, 2], bad)
        with pytest.raises(SparsetopoError, match=re.escape("density must be in (0, 1]")):
            layer_densities([(4, 4), (2, 4)], [0], "uniform", density=bad)
    assert check_density(1) == 1.0 and check_density(0.25) == 0.25


def test_check_epsilon():
    from sparsetopo.errors import SparsetopoError
    from sparsetopo.topology import check_epsilon, er_density, erdos_renyi

    for bad in (0, -1, float("nan")):
        with pytest.raises(SparsetopoError, match=re.escape(f"epsilon must be > 0; got {bad!r}")):
            er_density(4, 4, bad)
        with pytest.raises(SparsetopoError, match=re.escape(f"epsilon must be > 0; got {bad!r}")):
            erdos_renyi([4, 4, 2], epsilon=bad, seed=0)
    assert check_epsilon(20) == 20.0
