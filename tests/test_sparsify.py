"""sparsify in a user's own loop: step schedules, exact resume, snapshots, errors (issue 12)."""

import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import sparsify  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402


def _mlp(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def _masks(model):
    return [m.weight_mask.clone() for m in model.modules() if isinstance(m, nn.Linear)]


def _loop(model, sp, opt, steps, start=0, closure=False):
    changes = []
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(1000 + t)
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        lc = (lambda x=x, y=y: nn.functional.cross_entropy(model(x), y)) if closure else None
        changes.append((t + 1, sp.step(opt, loss_closure=lc)))
    return changes


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_masks_change_only_every_n_steps_up_to_end_step(method):
    model = _mlp()
    sp = sparsify(model, method, epsilon=3, seed=0, update_every=5, end_step=23, zeta=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = _masks(model)
    counts = [int(m.sum()) for m in before]
    moves = []
    for step in range(30):
        ((t, changed),) = _loop(model, sp, opt, 1, start=step, closure=method == "rigl")
        now = _masks(model)
        moved = any(not torch.equal(a, b) for a, b in zip(before, now))
        assert moved == bool(changed)
        if moved:
            moves.append(t)
        assert [int(m.sum()) for m in now] == counts
        before = now
    assert moves == [5, 10, 15, 20] and sp.steps == 30  # multiples of update_every before end_step


def test_cosine_schedule_fraction():
    sp = sparsify(_mlp(), "set", epsilon=3, update_every=10, end_step=100, drop_schedule="cosine", zeta=0.4)
    for t in (10, 50, 90):
        assert sp.drop_fraction(t) == pytest.approx(0.4 * (1 + math.cos(math.pi * t / 100)) / 2)
    assert sparsify(_mlp(), "set", epsilon=3, update_every=10).drop_fraction(70) == pytest.approx(0.3)


def test_bad_schedule_arguments_are_named():
    with pytest.raises(SparsetopoError, match="update_every must be an integer >= 1 .*got 0"):
        sparsify(_mlp(), "set", update_every=0)
    with pytest.raises(SparsetopoError, match=r"end_step must be an integer >= update_every \(10\); got 5"):
        sparsify(_mlp(), "set", update_every=10, end_step=5)
    with pytest.raises(SparsetopoError, match="drop_schedule must be one of constant, cosine; got 'linear'"):
        sparsify(_mlp(), "set", update_every=10, drop_schedule="linear")
    with pytest.raises(SparsetopoError, match="cosine.*give end_step"):
        sparsify(_mlp(), "set", update_every=10, drop_schedule="cosine")
    with pytest.raises(SparsetopoError, match="step\\(\\) needs sparsify\\(..., update_every=N\\)"):
        sparsify(_mlp(), "set").step(None)
    with pytest.raises(SparsetopoError, match="found no nn.Linear or nn.Conv2d layer"):
        sparsify(nn.Sequential(nn.ReLU()), "set")
    # the sparsity settings are checked as the keyword arguments the user gave, not as CLI flags
    with pytest.raises(SparsetopoError, match=r"^zeta must be a number in \(0, 1\); got 2$"):
        sparsify(_mlp(), "set", zeta=2)
    with pytest.raises(SparsetopoError, match=r"^regrow_init must be one of zero, normal; got 'ones'$"):
        sparsify(_mlp(), "set", regrow_init="ones")


def test_methods_do_not_depend_on_the_trainer():
    """The methods read only SparsitySettings: importing them (and sparsify) loads no training module."""
    import subprocess
    import sys

    code = ("import sys, sparsetopo.methods as m, torch\n"
            "m.sparsify(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)), 'set', epsilon=1)\n"
            "print('sparsetopo.training' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_state_dict_from_another_model_or_method_is_refused():
    a = sparsify(_mlp(), "set", epsilon=3, update_every=5)
    with pytest.raises(SparsetopoError, match="from another model or method .*method: 'set' in the state"):
        sparsify(_mlp(), "rigl", epsilon=3, update_every=5).load_state_dict(a.state_dict())
    other = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 3))
    with pytest.raises(SparsetopoError, match="shapes"):
        sparsify(other, "set", epsilon=3, update_every=5).load_state_dict(a.state_dict())
    with pytest.raises(SparsetopoError, match="not a Sparsifier state dict"):
        a.load_state_dict({"steps": 3})


RESUME = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
from torch import nn
from test_sparsify import _mlp, _loop
from sparsetopo.methods import sparsify
phase, path = sys.argv[2], sys.argv[3]
model = _mlp()
sp = sparsify(model, "set", epsilon=3, seed=0, update_every=4, end_step=40)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
if phase == "first":
    _loop(model, sp, opt, 18)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sp": sp.state_dict()}, path)
else:
    ck = torch.load(path, weights_only=False)
    model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sp.load_state_dict(ck["sp"])
    _loop(model, sp, opt, 18, start=18)
    torch.save(model.state_dict(), path + ".final")
"""


def test_a_checkpointed_loop_resumed_in_a_fresh_process_is_bit_identical(tmp_path):
    from pathlib import Path

    here = str(Path(__file__).parent)
    ck = str(tmp_path / "ck.pt")
    for phase in ("first", "second"):
        subprocess.run([sys.executable, "-c", RESUME, here, phase, ck], check=True)
    model = _mlp()
    sp = sparsify(model, "set", epsilon=3, seed=0, update_every=4, end_step=40)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _loop(model, sp, opt, 36)
    resumed = torch.load(ck + ".final")
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed[k]), k


def test_snapshots_like_train_with_itop_and_kept_fractions(tmp_path):
    model = _mlp()
    sp = sparsify(model, "set", epsilon=3, seed=0, update_every=5, zeta=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = sp.snapshot(tmp_path / "s0.npz")
    assert first["kept_since_last_snapshot"] == [1.0, 1.0, 1.0]
    density = [float(m.mean()) for m in _masks(model)]
    assert first["itop_rate"] == pytest.approx(density)
    _loop(model, sp, opt, 10)
    second = sp.snapshot(tmp_path / "s1.npz")
    t0, t1 = Topology.load(tmp_path / "s0.npz"), Topology.load(tmp_path / "s1.npz")
    assert t1 == sp.topology() == Topology.from_torch(model)
    kept0 = t0[0].multiply(t1[0]).nnz / t0[0].nnz
    assert second["kept_since_last_snapshot"][0] == pytest.approx(kept0) and kept0 < 1
    assert second["itop_rate"][0] > first["itop_rate"][0]  # connections that came and went still count
    assert second["itop_rate"][2] == pytest.approx(1.0)  # the dense output layer
    from sparsetopo.nnstd import nnstd

    assert 0 < nnstd(t0, t1).per_layer[0] < 1


def _wide():
    return nn.Sequential(nn.Linear(100, 300), nn.ReLU(), nn.Linear(300, 50), nn.ReLU(), nn.Linear(50, 50),
                         nn.ReLU(), nn.Linear(50, 10))


@pytest.mark.parametrize("distribution", ["uniform", "erdos_renyi", "erk"])
def test_sparsity_distributions(distribution):
    sp = sparsify(_wide(), "static", distribution=distribution, density=0.1, dense_first=True, seed=0)
    assert sp.config.distribution == distribution  # the settings the method sees describe this sparsifier
    masks = _masks(sp.model)
    dens = [float(m.mean()) for m in masks]
    assert dens[0] == 1.0 and dens[-1] == 1.0  # dense_first and the dense output layer
    sizes = [m.numel() for m in masks[1:-1]]
    overall = sum(d * n for d, n in zip(dens[1:-1], sizes)) / sum(sizes)
    assert overall == pytest.approx(0.1, abs=0.002)
    if distribution == "uniform":
        assert dens[1] == pytest.approx(dens[2], abs=0.002)
    else:  # proportional to (n_in + n_out) / (n_in n_out): the 50x50 layer is denser than the 300x50 one
        ratio = ((50 + 50) / 2500) / ((300 + 50) / 15000)
        assert dens[2] / dens[1] == pytest.approx(ratio, rel=0.02)
    assert sp.densities == pytest.approx(dens, abs=0.002)


def test_distribution_errors():
    with pytest.raises(SparsetopoError, match="distribution 'uniform' needs density in \\(0, 1\\]; got None"):
        sparsify(_wide(), "set", distribution="uniform")
    with pytest.raises(SparsetopoError, match="distribution must be one of erdos_renyi, erk, uniform; got 'x'"):
        sparsify(_wide(), "set", distribution="x")


DDP = r"""
import os, sys, socket, torch, torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
sys.path.insert(0, sys.argv[1])
from sparsetopo.methods import sparsify

def worker(rank, world, port, method, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same dense init on both ranks (DDP would broadcast it anyway)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
    sp = sparsify(model, method, epsilon=3, seed=0, update_every=3, zeta=0.3)   # 1. sparsify
    ddp = DDP(model, broadcast_buffers=False)                                    # 2. wrap
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)                # 3. optimizer
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    snaps = []
    for t in range(12):
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad(); nn.functional.cross_entropy(ddp(x), y).backward(); opt.step()
        # the closure uses the raw module, as in the reported bug: local gradients only
        changed = sp.step(opt, loss_closure=lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
        if changed:
            snaps.append({k: v.clone() for k, v in model.state_dict().items()})
    torch.save(snaps, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()

if __name__ == "__main__":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    torch.multiprocessing.spawn(worker, args=(2, port, sys.argv[2], sys.argv[3]), nprocs=2)
"""


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_ddp_ranks_hold_identical_masks_and_weights_after_every_update(tmp_path, method):
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    src = str(Path(__file__).resolve().parents[1] / "src")
    subprocess.run([sys.executable, str(script), src, method, str(tmp_path)], check=True, timeout=300)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert len(a) == len(b) == 4  # updates at steps 3, 6, 9, 12
    for sa, sb in zip(a, b):
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert not torch.equal(a[0]["0.weight_mask"], a[-1]["0.weight_mask"])  # the masks did evolve


def test_the_readme_example_runs_as_printed(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- sparsify-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    res = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("0 ITOP rate") and lines[-1].startswith("accuracy")
    assert float(lines[-1].split()[1]) > 0.9  # plain SGD learns the task on the sparse network
    assert sorted(p.name for p in tmp_path.glob("topology_epoch*.npz")) == [f"topology_epoch{i}.npz" for i in range(5)]
    assert Topology.load(tmp_path / "topology_epoch4.npz") != Topology.load(tmp_path / "topology_epoch0.npz")


def test_regrown_connections_start_as_configured():
    for regrow, nonzero in (("zero", False), ("normal", True)):
        model = _mlp()
        sp = sparsify(model, "set", epsilon=3, seed=0, update_every=1, regrow_init=regrow, init_std=0.5)
        before = _masks(model)[0]
        _loop(model, sp, torch.optim.SGD(model.parameters(), lr=0.0), 1)  # lr 0: only the update moves weights
        grown = (_masks(model)[0] != 0) & (before == 0)
        assert grown.any() and bool((model[0].weight[grown] != 0).all()) == nonzero


def test_rigl_step_without_loss_closure_is_named_and_steps_after_end_step_do_nothing():
    model = _mlp()
    sp = sparsify(model, "rigl", epsilon=3, update_every=1, end_step=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SparsetopoError, match="rigl needs loss_closure"):
        sp.step(opt)
    before = _masks(model)
    assert sp.step(opt) == [] and sp.step(opt) == []  # steps 2 and 3: at or after end_step, a no-op
    assert all(torch.equal(a, b) for a, b in zip(before, _masks(model)))
