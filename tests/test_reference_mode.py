"""Reference mode (issue 16, item 1): one switch reproduces the published code's values everywhere."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import official_dir
from sparsetopo.cli import app
from sparsetopo.errors import SparsetopoError
from sparsetopo.nnstd import load_matrix, nnstd, nnstd_many, pairwise_nnstd
from sparsetopo.topology import Topology, erdos_renyi, perturbation_chain
from test_hardening import one_line_error

runner = CliRunner()
_SPEC = importlib.util.spec_from_file_location(
    "reference_nnstd", Path(__file__).resolve().parents[1] / "benchmarks" / "reference_nnstd.py")
_REF = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_REF)


def published(a: Topology, b: Topology) -> np.ndarray:
    """The published double loop, A -> B, on dense masks."""
    return _REF.reference_nnstd(a.to_dense(), b.to_dense())


@pytest.fixture(scope="module")
def chain():
    # Few inputs per neuron: many ties, so that beyond layer 0 the direction changes the value.
    base = erdos_renyi([40, 40, 40, 40, 5], density=0.04, seed=1)
    return perturbation_chain(base, 4, 0.3, seed=2)


@pytest.fixture(scope="module")
def expected(chain):
    n = len(chain)
    ref = np.zeros((n, n, len(chain[0])))
    for i in range(n):
        for j in range(i + 1, n):
            ref[i, j] = ref[j, i] = published(chain[i], chain[j])
    return ref


@pytest.fixture
def dirs(chain, tmp_path):
    """The chain in the layout of the paper's published code, one directory per network."""
    return [official_dir(tmp_path / f"net{i}" / "epoch_000", t.to_dense()) for i, t in enumerate(chain)]


def test_the_case_is_one_where_direction_matters(chain, expected):
    canonical = pairwise_nnstd(chain, solver="dense")
    assert np.abs(canonical - expected).max() > 1e-3  # else the tests below could not fail
    np.testing.assert_allclose(canonical[:, :, 0], expected[:, :, 0], rtol=0, atol=1e-12)  # layer 0: no direction


def test_nnstd_reference_is_the_published_loop_in_both_directions(chain):
    differs = 0
    for i in range(len(chain)):
        for j in range(len(chain)):
            if i == j:
                continue
            ref = published(chain[i], chain[j])
            res = nnstd(chain[i], chain[j], reference=True)
            np.testing.assert_allclose(res.per_layer, ref, rtol=0, atol=1e-12)
            assert res.solvers == ("dense",) * len(chain[0])
            differs += not np.allclose(nnstd(chain[i], chain[j]).per_layer, ref, rtol=0, atol=1e-12)
            # reference ignores symmetric: it always keeps the given direction
            np.testing.assert_array_equal(
                nnstd(chain[i], chain[j], reference=True, symmetric=True, solver="dense").per_layer,
                res.per_layer)
    assert differs > 0


def test_pairwise_reference_follows_the_order_given(chain, expected):
    d = pairwise_nnstd(chain, reference=True)
    np.testing.assert_allclose(d, expected, rtol=0, atol=1e-12)
    # reversed order: pair (i, j), i < j, is now chain[n-1-i] -> chain[n-1-j]
    rev = pairwise_nnstd(chain[::-1], reference=True)
    n = len(chain)
    for i in range(n):
        for j in range(i + 1, n):
            np.testing.assert_allclose(rev[i, j], published(chain[n - 1 - i], chain[n - 1 - j]), rtol=0, atol=1e-12)
    assert not np.allclose(rev[::-1, ::-1], d, rtol=0, atol=1e-12)
    np.testing.assert_allclose(nnstd_many([(chain[1], chain[0])], reference=True)[0],
                               published(chain[1], chain[0]), rtol=0, atol=1e-12)


def test_cache_keeps_reference_entries_apart(chain, expected, tmp_path):
    cache = tmp_path / "cache"
    canonical = pairwise_nnstd(chain, solver="dense", cache_dir=cache)
    n_canonical = len(list(cache.iterdir()))
    # a warm canonical cache must not leak into reference mode, nor the other way round
    np.testing.assert_allclose(pairwise_nnstd(chain, reference=True, cache_dir=cache), expected, rtol=0, atol=1e-12)
    assert len(list(cache.iterdir())) == 2 * n_canonical
    np.testing.assert_array_equal(pairwise_nnstd(chain, solver="dense", cache_dir=cache), canonical)
    # the reversed list asks for the other direction of every pair: new ordered entries, the published values
    rev = pairwise_nnstd(chain[::-1], reference=True, cache_dir=cache)
    assert len(list(cache.iterdir())) == 3 * n_canonical
    np.testing.assert_allclose(rev[0, 1], published(chain[-1], chain[-2]), rtol=0, atol=1e-12)
    # and read back from the cache, the same values
    np.testing.assert_array_equal(pairwise_nnstd(chain, reference=True, cache_dir=cache),
                                  pairwise_nnstd(chain, reference=True))


def test_reference_refuses_other_solvers(chain):
    for solver in ("ssp", "sparse"):
        with pytest.raises(SparsetopoError, match=f"reference mode computes with solver 'dense'.*'{solver}'"):
            nnstd(chain[0], chain[1], reference=True, solver=solver)
        with pytest.raises(SparsetopoError, match="reference mode"):
            pairwise_nnstd(chain, reference=True, solver=solver)


def test_distance_reference_json_is_the_published_value(chain, dirs):
    assert Topology.read(dirs[0]) == chain[0]
    differs = 0
    for i, j in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]:
        res = runner.invoke(app, ["distance", str(dirs[i]), str(dirs[j]), "--reference", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        ref = published(chain[i], chain[j])
        np.testing.assert_allclose(out["per_layer"], ref, rtol=0, atol=1e-12)
        # the published code averages every layer; "nnstd" (issue 19) is the mean over the sparse layers
        assert out["mean_all_layers"] == pytest.approx(ref.mean(), abs=1e-12)
        assert out["nnstd"] == pytest.approx(ref[out["sparse_layers"]].mean(), abs=1e-12)
        assert out["reference"] is True and out["solvers"] == ["dense"] * 4
        plain = json.loads(runner.invoke(app, ["distance", str(dirs[i]), str(dirs[j]), "--solver", "dense",
                                               "--json"]).output)
        differs += not np.allclose(plain["per_layer"], ref, rtol=0, atol=1e-12)
    assert differs > 0  # --solver dense alone does not reproduce the published values


def test_matrix_reference_out_is_the_published_matrix(dirs, expected, tmp_path):
    out = tmp_path / "D.npz"
    res = runner.invoke(app, ["matrix", *map(str, dirs), "--reference", "--out", str(out), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    d, _ = load_matrix(str(out))
    np.testing.assert_allclose(d, expected, rtol=0, atol=1e-12)
    plain = tmp_path / "P.npz"
    assert runner.invoke(app, ["matrix", *map(str, dirs), "--solver", "dense", "--out", str(plain), "-q",
                               "-j", "1"]).exit_code == 0
    assert not np.allclose(load_matrix(str(plain))[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("command", ["distance", "matrix"])
@pytest.mark.parametrize("solver", ["ssp", "sparse"])
def test_cli_reference_with_another_solver_is_refused(dirs, tmp_path, command, solver):
    extra = ["--out", str(tmp_path / "D.npz")] if command == "matrix" else []
    res = runner.invoke(app, [command, str(dirs[0]), str(dirs[1]), "--reference", "--solver", solver, *extra])
    one_line_error(res, "--reference", f"--solver {solver}", "--solver dense")
    assert not (tmp_path / "D.npz").exists()


def test_help_no_longer_claims_dense_alone_reproduces_published_values():
    import sys

    mod = sys.modules["sparsetopo.nnstd"]  # the package's attribute `nnstd` is the function
    for command in ("distance", "matrix"):
        text = " ".join(runner.invoke(app, [command, "--help"]).output.split())
        assert "--reference" in text and "reproduce published values" not in text
        assert "no solver alone reproduces published values: use --reference" in text
    assert "use it to reproduce published values" not in " ".join(nnstd.__doc__.split())
    assert "reproduces the paper's published values" in " ".join(mod.__doc__.split())
