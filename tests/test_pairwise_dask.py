"""Pairwise NNSTD one layer pair per task (issue 21 item 3): Dask equals serial, a killed matrix resumes
from its layer entries, damaged layer entries are recomputed."""

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparsetopo.cli import app
from sparsetopo.errors import SparsetopoError
from sparsetopo.nnstd import load_matrix, nnstd, nnstd_many, pairwise_nnstd
from sparsetopo.nnstd.cache import PairCache, cache_tag
from sparsetopo.topology import erdos_renyi, perturbation_chain, random_topology

layer_tasks = importlib.import_module("sparsetopo.nnstd.layer_tasks")
_LAYER_STEP = layer_tasks.layer_step

GRAPH_STREAMS = [(0, 1), (1, 2), (2, 1), (1, 3), (3, 4), (1, 4), (4, 5)]
GRAPH_SHAPES = [(8, 3, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (16, 8, 1, 1), (10, 64)]


def _expected(tops, **kw):
    """The matrix from nnstd itself, pair by pair (the independent reference)."""
    n = len(tops)
    out = np.zeros((n, n, len(tops[0])))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = nnstd(tops[i], tops[j], **kw).per_layer
    return out


@pytest.fixture(scope="module")
def chain():
    base = erdos_renyi([70, 60, 50, 40, 5], epsilon=3, seed=0)
    return [t.with_name(f"n{i}") for i, t in enumerate(perturbation_chain(base, 5, 0.3, seed=1))]


@pytest.fixture(scope="module")
def cluster_address():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_layer_tasks_equal_nnstd_serial_threads_and_dask(chain, cluster_address, tmp_path):
    expected = _expected(chain)
    paths = [t.save(tmp_path / f"{t.name}.npz") for t in chain]
    np.testing.assert_array_equal(pairwise_nnstd(chain, n_jobs=1), expected)
    np.testing.assert_array_equal(pairwise_nnstd(chain, n_jobs=2), expected)
    np.testing.assert_array_equal(pairwise_nnstd(chain, cluster=cluster_address), expected)  # layers scattered
    on_files = pairwise_nnstd(chain, cluster=cluster_address, paths=paths, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(on_files, expected)  # layers read by the workers
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".npz"] * 10  # finished: pair entries only
    # identity outputs (the last layer by identity) and reference mode (dense, i -> j) split the same way
    np.testing.assert_array_equal(pairwise_nnstd(chain, cluster=cluster_address, match_outputs=False),
                                  _expected(chain, match_outputs=False))
    ref = pairwise_nnstd(chain[:3], cluster=cluster_address, reference=True)
    for i in range(3):
        for j in range(i + 1, 3):
            np.testing.assert_array_equal(ref[i, j], nnstd(chain[i], chain[j], reference=True).per_layer)


def test_graph_and_conv_topologies_on_dask(cluster_address):
    graphs = [random_topology(GRAPH_SHAPES, [0.3] * 7, s, streams=GRAPH_STREAMS) for s in range(3)]
    convs = [random_topology(GRAPH_SHAPES[:2] + [(10, 8 * 4)], [0.3] * 3, s) for s in range(3)]
    assert graphs[0].is_graph and not convs[0].is_graph and convs[0].blocks == (9, 9, 4)
    for tops in (graphs, convs):
        np.testing.assert_array_equal(pairwise_nnstd(tops, cluster=cluster_address), _expected(tops))
        np.testing.assert_array_equal(pairwise_nnstd(tops, n_jobs=2), _expected(tops))


class _Stop(Exception):
    pass


def _interrupt_after(monkeypatch, n_calls: int) -> list:
    """Make layer_step fail after ``n_calls`` layers (a kill, as far as the cache can tell); returns the log."""
    real, calls = _LAYER_STEP, []

    def step(*args):
        if n_calls is not None and len(calls) >= n_calls:
            raise _Stop
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(layer_tasks, "layer_step", step)
    return calls


def _left_to_compute(tops, cache_dir, n_layers, tag=cache_tag("auto", True, False)):
    """Layer pairs a resumed run must compute: all but the cached pairs and each pair's finished layers."""
    cache, left = PairCache(cache_dir, tag, n_layers), 0
    prints = [t.fingerprint() for t in tops]
    n_outs = [m.shape[0] for m in tops[0].layers]
    for i in range(len(tops)):
        for j in range(i + 1, len(tops)):
            key = tuple(sorted((prints[i], prints[j])))
            if cache.get(key) is None:
                left += n_layers - len(cache.layers(key, n_outs).totals)
    return left


def test_interrupted_matrix_resumes_from_its_finished_layers(chain, tmp_path, monkeypatch):
    expected = _expected(chain)
    cache = tmp_path / "cache"
    calls = _interrupt_after(monkeypatch, 13)  # 10 pairs x 4 layers: 3 pairs and one layer of the 4th
    with pytest.raises(_Stop):
        pairwise_nnstd(chain, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 3 and len(list(cache.glob("*.layers/layer_*.npz"))) == 1
    assert _left_to_compute(chain, cache, 4) == 40 - 13
    calls = _interrupt_after(monkeypatch, None)
    np.testing.assert_array_equal(pairwise_nnstd(chain, cache_dir=cache), expected)
    assert len(calls) == 40 - 13  # nothing finished was computed again
    assert not list(cache.glob("*.layers"))  # finished pairs keep only their pair entry


def test_damaged_layer_entries_are_recomputed(chain, tmp_path, monkeypatch):
    pairs = [(chain[0], chain[1]), (chain[0], chain[2]), (chain[1], chain[2])]
    expected = [nnstd(a, b).per_layer for a, b in pairs]
    cache = tmp_path / "cache"
    _interrupt_after(monkeypatch, 3)  # the first pair's layers 0-2
    with pytest.raises(_Stop):
        nnstd_many(pairs, cache_dir=cache)
    (folder,) = cache.glob("*.layers")
    entries = sorted(folder.iterdir())
    assert [p.name for p in entries] == ["layer_0.npz", "layer_1.npz", "layer_2.npz"]

    def resume_calls() -> int:
        calls = _interrupt_after(monkeypatch, None)
        got = nnstd_many(pairs, cache_dir=cache, n_jobs=1)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        return len(calls)

    # layer 1 truncated (half written by a crash that bypassed the temporary file): layers 1-3 again
    good = {p.name: p.read_bytes() for p in entries}
    entries[1].write_bytes(good["layer_1.npz"][:100])
    assert resume_calls() == 4 - 1 + 8

    def damaged(edit) -> int:
        cache_dir = tmp_path / f"cache-{edit.__name__}"
        folder_copy = cache_dir / folder.name
        folder_copy.mkdir(parents=True)
        for name, data in good.items():
            (folder_copy / name).write_bytes(data)
        edit(folder_copy)
        nonlocal cache
        cache = cache_dir
        return resume_calls()

    def wrong_total(d):  # readable, but fails its checksum
        z = dict(np.load(d / "layer_2.npz"))
        z["total"] = z["total"] * 0.5
        with open(d / "layer_2.npz", "wb") as f:
            np.savez(f, **z)

    def not_a_permutation(d):  # checksum recomputed to match, but not a matching: still refused
        from sparsetopo.nnstd.cache import _layer_digest

        z = dict(np.load(d / "layer_0.npz"))
        z["matching"] = np.zeros_like(z["matching"])
        key = (str(z["a"]), str(z["b"]))
        z["digest"] = np.array(_layer_digest(key, str(z["tag"]), 0, "", float(z["total"]), z["matching"]))
        with open(d / "layer_0.npz", "wb") as f:
            np.savez(f, **z)

    def other_chain(d):  # layer 1 valid on its own but after another layer 0: layers 0 on again
        from sparsetopo.nnstd.cache import _layer_digest

        z = dict(np.load(d / "layer_0.npz"))
        z["total"] = z["total"] + 1.0
        key = (str(z["a"]), str(z["b"]))
        z["digest"] = np.array(_layer_digest(key, str(z["tag"]), 0, "", float(z["total"]), z["matching"]))
        with open(d / "layer_0.npz", "wb") as f:
            np.savez(f, **z)

    assert damaged(wrong_total) == 4 - 2 + 8
    assert damaged(not_a_permutation) == 4 + 8
    # a valid-looking layer 0 is used (its total is not checked against anything), but layer 1 no longer
    # continues its chain, so the pair resumes after layer 0: the total counts in, as the checksum says
    calls = _interrupt_after(monkeypatch, None)
    cache = tmp_path / "cache-x"
    (cache / folder.name).mkdir(parents=True)
    for name, data in good.items():
        (cache / folder.name / name).write_bytes(data)
    other_chain(cache / folder.name)
    got = nnstd_many(pairs, cache_dir=cache)
    assert len(calls) == 4 - 1 + 8
    assert got[0][0] != expected[0][0]  # the edited (validly re-signed) layer-0 total was trusted
    np.testing.assert_array_equal(got[0][1:], expected[0][1:])


def test_layer_file_refuses_a_changed_file(tmp_path):
    a, b = erdos_renyi([30, 20, 4], epsilon=2, seed=0), erdos_renyi([30, 20, 4], epsilon=2, seed=1)
    path = a.save(tmp_path / "a.npz")
    src = layer_tasks.LayerFile(str(path), 0, layer_tasks.layer_digest(a.layers[0]))
    assert (src.load() != a.layers[0]).nnz == 0
    b.save(path)
    with pytest.raises(SparsetopoError, match=r"a\.npz: layer 0 is not the one this matrix started from"):
        src.load()


def test_matrix_cluster_option_equals_serial(chain, tmp_path):
    paths = [str(t.save(tmp_path / f"{t.name}.npz")) for t in chain[:3]]
    runner = CliRunner()
    for tag, extra in (("serial", ["-j", "1"]), ("dask", ["--cluster", "local:2", "--cache", str(tmp_path / "c")])):
        res = runner.invoke(app, ["matrix", *paths, "--out", str(tmp_path / f"{tag}.npz"), "-q", *extra])
        assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(load_matrix(str(tmp_path / "dask.npz"))[0],
                                  load_matrix(str(tmp_path / "serial.npz"))[0])
    res = runner.invoke(app, ["matrix", *paths, "--out", str(tmp_path / "x.npz"), "--cluster", "local:0"])
    assert res.exit_code == 2 and "--cluster local:N needs a positive worker count" in res.output


_COUNTING_MAIN = textwrap.dedent("""
    import os, sys
    from sparsetopo.nnstd import solvers

    log = open(os.environ["SOLVER_LOG"], "a", buffering=1)
    for name, fn in list(solvers.SOLVER_FUNCS.items()):
        def counted(a, b, _fn=fn, _name=name):
            out = _fn(a, b)
            log.write(f"{_name} {a.shape[0]}\\n")
            return out
        solvers.SOLVER_FUNCS[name] = counted
    from sparsetopo.cli import main
    sys.argv = ["sparsetopo", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow
def test_killed_matrix_command_resumes_from_its_cache(tmp_path):
    """SIGKILL `sparsetopo matrix` once layer entries exist; the rerun computes only what was not cached."""
    shape = [2000, 2000, 2000, 2000, 5]  # a layer pair takes about a second: the run lasts a while
    tops = [erdos_renyi(shape, epsilon=10, seed=s).with_name(f"net{s}") for s in range(4)]
    paths = [str(t.save(tmp_path / f"net{t.name[-1]}.npz")) for t in tops]
    cache, script = tmp_path / "cache", tmp_path / "counting_main.py"
    script.write_text(_COUNTING_MAIN)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start(log: Path, out: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), "matrix", *paths, "--out", str(tmp_path / out), "-q",
                                 "-j", "1", "--cache", str(cache)], env={**env, "SOLVER_LOG": str(log)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    first = start(tmp_path / "first.log", "killed.npz")
    deadline = time.time() + 300
    while len(list(cache.glob("*.layers/layer_*.npz"))) + 4 * len(list(cache.glob("*.npz"))) < 3:
        assert first.poll() is None, first.stdout.read().decode()
        assert time.time() < deadline, "no layer entry appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "killed.npz").exists()
    left = _left_to_compute(tops, cache, 4)
    assert 0 < left < 6 * 4 - 2

    second = start(tmp_path / "second.log", "resumed.npz")
    assert second.wait(timeout=600) == 0, second.stdout.read().decode()
    solves = (tmp_path / "second.log").read_text().splitlines()
    assert len(solves) == left  # the finished layer pairs were not recomputed
    resumed, _ = load_matrix(str(tmp_path / "resumed.npz"))
    np.testing.assert_array_equal(resumed, _expected(tops))


def test_pairs_of_different_depths_in_one_call(tmp_path):
    """nnstd_many may mix networks of different depths (the methods study: MLP and CNN runs)."""
    shallow = [erdos_renyi([30, 20, 4], epsilon=2, seed=s) for s in range(2)]
    deep = [erdos_renyi([30, 20, 20, 20, 4], epsilon=2, seed=s) for s in range(2)]
    pairs = [tuple(shallow), tuple(deep)]
    for _ in range(2):  # computed, then read back from the cache
        got = nnstd_many(pairs, cache_dir=tmp_path)
        for (a, b), g in zip(pairs, got):
            np.testing.assert_array_equal(g, nnstd(a, b).per_layer)
