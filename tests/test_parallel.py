import importlib

import numpy as np
import pytest

from sparsetopo.nnstd import pairwise_nnstd
from sparsetopo.parallel import map_tasks, parse_cluster
from sparsetopo.topology import erdos_renyi, perturbation_chain

# the package exports the function nnstd under the module's name, so fetch the module (pairwise_nnstd's) itself
nnstd_mod = importlib.import_module("sparsetopo.nnstd.pairwise")


def _square(x):
    return x * x


@pytest.fixture
def chain():
    return perturbation_chain(erdos_renyi([80, 60, 60, 5], epsilon=3, seed=0), 5, 0.1, seed=1)


def test_map_tasks_keeps_order_for_every_backend():
    items = list(range(20))
    expected = [i * i for i in items]
    assert list(map_tasks(_square, items, n_jobs=1)) == expected
    assert list(map_tasks(_square, items, n_jobs=2, backend="threads")) == expected
    assert list(map_tasks(_square, items, n_jobs=2, backend="processes")) == expected
    with pytest.raises(ValueError, match="backend must be"):
        list(map_tasks(_square, items, n_jobs=2, backend="gpu"))


def test_parse_cluster():
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.1:8786") == ("tcp://10.0.0.1:8786", None)
    for bad in ("local:0", "local:x", "nonsense"):
        with pytest.raises(ValueError, match="--cluster"):
            parse_cluster(bad)


def test_pairwise_does_not_depend_on_order(chain):
    d = pairwise_nnstd(chain)
    rev = pairwise_nnstd(chain[::-1])
    np.testing.assert_array_equal(d, rev[::-1, ::-1])


def test_cache_computes_only_new_pairs(chain, tmp_path, monkeypatch):
    calls = []
    real = nnstd_mod.nnstd_many

    def counting(pairs, **kw):
        calls.append(len(pairs))
        return real(pairs, **kw)

    monkeypatch.setattr(nnstd_mod, "nnstd_many", counting)
    first = pairwise_nnstd(chain[:4], cache_dir=tmp_path)
    assert calls == [6] and len(list(tmp_path.iterdir())) == 6
    full = pairwise_nnstd(chain, cache_dir=tmp_path)
    assert calls == [6, 4]  # only the new network's pairs
    np.testing.assert_array_equal(full[:4, :4], first)
    np.testing.assert_array_equal(full, pairwise_nnstd(chain))
    pairwise_nnstd(chain, cache_dir=tmp_path, solver="sparse")
    assert calls[-1] == 10  # another solver is another cache entry


def test_dask_local_cluster_matches_local_run(chain, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = pairwise_nnstd(chain, n_jobs=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        on_cluster = pairwise_nnstd(chain, cluster=cluster.scheduler_address)
        squares = list(map_tasks(_square, list(range(7)), cluster=cluster.scheduler_address))
    np.testing.assert_array_equal(local, on_cluster)
    assert squares == [i * i for i in range(7)]


def test_training_runs_on_dask_equal_local(tiny_data, tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("torch")
    from sparsetopo.experiments.runner import run_trainings
    from sparsetopo.training import TrainConfig, read_metrics

    def cfg(seed):
        return TrainConfig(method="set", data_dir=str(tiny_data), hidden=[16, 16], epsilon=3, epochs=2,
                           batch_size=32, lr=0.05, seed=seed)

    local = run_trainings([(cfg(s), tmp_path / "local" / f"r{s}") for s in range(2)], n_jobs=2, progress=False)
    dask = run_trainings([(cfg(s), tmp_path / "dask" / f"r{s}") for s in range(2)], cluster="local:2",
                         progress=False)
    timing = {"seconds", "train_seconds", "update_seconds"}
    for a, b in zip(local, dask):
        ra = [{k: v for k, v in r.items() if k not in timing} for r in read_metrics(a)]
        rb = [{k: v for k, v in r.items() if k not in timing} for r in read_metrics(b)]
        assert ra == rb


def test_process_workers_end_when_the_parent_is_killed(tmp_path):
    """A killed experiment leaves no worker training on (and holding its run locks)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = f"""
import os, time
from sparsetopo.parallel import map_tasks

def work(i):
    open(os.path.join({str(tmp_path)!r}, f"worker{{i}}.pid"), "w").write(str(os.getpid()))
    time.sleep(60)
    return i

if __name__ == "__main__":
    print(list(map_tasks(work, [0, 1], n_jobs=2, backend="processes")))
"""
    script = tmp_path / "parent.py"
    script.write_text(code)
    parent = subprocess.Popen([sys.executable, str(script)])
    pid_files = [tmp_path / "worker0.pid", tmp_path / "worker1.pid"]
    deadline = time.time() + 60
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert time.time() < deadline and parent.poll() is None, "workers did not start"
        time.sleep(0.2)
    workers = [int(p.read_text()) for p in pid_files]
    assert all(_alive(w) for w in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [w for w in workers if _alive(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "worker processes outlived their killed parent"


def _alive(pid: int) -> bool:
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
    except PermissionError:  # pragma: no cover
        os.kill(pid, 0)
        return True
