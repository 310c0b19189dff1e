"""Registries (issue 17): a new data set is registered from outside the package and the CLI offers it;
the CLI's choices come from the registries; the nnstd package keeps its public names."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sparsetopo
from sparsetopo import data
from sparsetopo.cli import app
from sparsetopo.errors import SparsetopoError

runner = CliRunner()
PACKAGE = Path(sparsetopo.__file__).parent


def _blobs(directory):
    """Four Gaussian blobs in 12 dimensions: learnable in one epoch, no files involved."""
    assert directory is None  # reads_files=False: no directory is resolved
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, size=(4, 12))
    y_train, y_test = rng.integers(0, 4, size=400), rng.integers(0, 4, size=100)
    x_train = centres[y_train] + rng.normal(size=(400, 12))
    x_test = centres[y_test] + rng.normal(size=(100, 12))
    return data.Splits(x_train, y_train, x_test, y_test)


@pytest.fixture
def blobs():
    data.register_dataset("test-blobs", _blobs, description="four Gaussian blobs", reads_files=False)
    yield "test-blobs"
    data.unregister_dataset("test-blobs")


def test_a_registered_data_set_trains_from_the_command_line(blobs, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", blobs, "--method", "dense", "--hidden", "8", "--epochs", "1",
                              "--batch-size", "50", "--lr", "0.1", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "epoch 1 test accuracy" in res.output
    assert (out / "result.json").exists()
    assert "dataset: test-blobs" in (out / "config.yaml").read_text()


def test_an_unregistered_data_set_is_refused_by_name(blobs):
    loaded = data.load_dataset(blobs, val_fraction=0.25)
    assert loaded.n_features == 12 and loaded.n_classes == 4 and len(loaded.x_val) == 100
    assert blobs in data.datasets_help() and "four Gaussian blobs" in data.datasets_help()
    data.unregister_dataset(blobs)
    try:
        with pytest.raises(SparsetopoError, match="^dataset must be one of fashion-mnist, mnist, cifar10; got"):
            data.load_dataset(blobs)
        res = runner.invoke(app, ["train", "--dataset", blobs, "--out", "unused"])
        assert res.exit_code == 2 and "--dataset must be one of fashion-mnist, mnist, cifar10" in res.output
    finally:
        data.register_dataset(blobs, _blobs, reads_files=False)  # the fixture unregisters it


def test_register_dataset_validates_its_arguments(blobs):
    with pytest.raises(SparsetopoError, match="a data set named 'test-blobs' is already registered"):
        data.register_dataset(blobs, _blobs)
    with pytest.raises(SparsetopoError, match="loader must be callable; got 3"):
        data.register_dataset("other", 3)
    with pytest.raises(SparsetopoError, match="name must be a non-empty string"):
        data.register_dataset("", _blobs)
    with pytest.raises(SparsetopoError, match="no data set named 'other' is registered"):
        data.unregister_dataset("other")


def test_a_loader_returning_the_wrong_shapes_is_named(tmp_path):
    data.register_dataset("bad-labels", lambda d: data.Splits(np.zeros((4, 3)), np.array([0, 1, -1, 2]),
                                                              np.zeros((2, 3)), np.array([0, 1])), reads_files=False)
    try:
        with pytest.raises(SparsetopoError, match="data set 'bad-labels': the train split must be .* labels >= 0"):
            data.load_dataset("bad-labels")
    finally:
        data.unregister_dataset("bad-labels")


def test_load_dataset_names_its_parameters(blobs):
    for kwargs, message in [({"val_fraction": 1.0}, "val_fraction must be a number in [0, 1); got 1.0"),
                            ({"limit_train": 0}, "limit_train must be an integer >= 1; got 0"),
                            ({"limit_test": 2.5}, "limit_test must be an integer >= 1; got 2.5"),
                            ({"input_scaling": "x"}, "input_scaling must be one of standardize, unit; got 'x'")]:
        with pytest.raises(SparsetopoError, match=re.escape(message)):
            data.load_dataset(blobs, **kwargs)


@pytest.mark.parametrize("module", ["data.py", "nnstd"])
def test_library_messages_name_parameters_not_flags(module):
    """Only the CLI says ``--flag``; data.py and the nnstd package name their parameters."""
    paths = [PACKAGE / module] if module.endswith(".py") else sorted((PACKAGE / module).glob("*.py"))
    flag = re.compile(r"--[a-z]")
    found = [ast.unparse(node) for p in paths for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Raise)
             and any(isinstance(c, ast.Constant) and isinstance(c.value, str) and flag.search(c.value)
                     for c in ast.walk(node))]
    assert found == []


# ------------------------------------------------------------ the CLI's choices come from the registries
def _option(command, name):
    cmd = app.commands[command]
    return next(p for p in cmd.params if p.name == name)


def test_cli_choices_are_the_registries():
    from sparsetopo.experiments import EXPERIMENTS, PRESETS
    from sparsetopo.nnstd import SOLVERS

    assert tuple(_option("distance", "solver").type.choices) == SOLVERS
    assert tuple(_option("matrix", "solver").type.choices) == SOLVERS
    assert tuple(_option("experiment", "preset").type.choices) == PRESETS
    assert list(_option("experiment", "name").type.choices) == list(EXPERIMENTS)
    from sparsetopo.cli import EXPERIMENT_NAMES

    assert EXPERIMENT_NAMES == list(EXPERIMENTS)


def test_experiment_model_is_checked_against_the_models_registry(tmp_path):
    pytest.importorskip("torch")
    from sparsetopo.models import MODELS

    res = runner.invoke(app, ["experiment", "evolution", "--model", "resnet21", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert f"--model must be one of {', '.join(MODELS)}; got 'resnet21'" in res.output
    assert not (tmp_path / "x").exists()


def test_top_level_help_imports_neither_torch_nor_the_experiments():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom sparsetopo.cli import app\n"
            "res = CliRunner().invoke(app, ['--help'])\nassert res.exit_code == 0, res.output\n"
            "print(sorted(m for m in ('torch', 'sparsetopo.experiments', 'sparsetopo.models', 'matplotlib') "
            "if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------ the nnstd package
def test_nnstd_package_keeps_its_public_names():
    import importlib

    package = sys.modules["sparsetopo.nnstd"]
    for name in ("NNSTDResult", "SOLVERS", "DEFAULT_MAX_DENSE_BYTES", "classical_mds", "layer_cost_matrix",
                 "load_matrix", "match_layer", "nnstd", "nnstd_many", "pairwise_nnstd", "save_matrix"):
        assert hasattr(package, name), name
    assert set(package.__all__) <= set(dir(package))
    assert sparsetopo.nnstd is package.nnstd and callable(sparsetopo.nnstd)  # the function, as the README uses it
    for sub in ("core", "solvers", "pairwise", "cache", "matrix", "embedding"):
        assert importlib.import_module(f"sparsetopo.nnstd.{sub}").__doc__
    assert package.NNSTDResult.__module__ == "sparsetopo.nnstd.core"


def test_reversed_result_inverts_the_matchings():
    from sparsetopo.nnstd import NNSTDResult

    res = NNSTDResult(per_layer=np.array([0.5]), matchings=(np.array([2, 0, 1]),), solvers=("ssp",))
    back = res.reversed()
    np.testing.assert_array_equal(back.matchings[0][res.matchings[0]], np.arange(3))
    assert back.value == res.value and back.solvers == res.solvers
