"""Pruning beside sparse training (issue 20): gmp, magnitude, snip, grasp and synflow.

Each method reaches its target density exactly (per layer, and overall under a global scope),
follows its schedule, is reproducible, runs through ``train`` and ``sparsify``, and the scores of
snip, grasp and synflow agree with an independent re-computation from the papers' formulas.
"""

import csv
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sparsetopo.cli import app  # noqa: E402
from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import METHODS, sparsify  # noqa: E402
from sparsetopo.methods.gmp import cubic_remaining  # noqa: E402
from sparsetopo.methods.pruning import interpolated_keep, select_kept  # noqa: E402
from sparsetopo.methods.synflow import exponential_keep  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402

PRUNING = ("gmp", "magnitude", "snip", "grasp", "synflow")
AT_INIT = ("snip", "grasp", "synflow")


def mlp(seed=0, sizes=(12, 20, 16, 3), dtype=torch.float32):
    torch.manual_seed(seed)  # the test's own model weights (the library never seeds globally)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def batches(n=2, seed=1, n_in=12, classes=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, n_in, generator=g, dtype=dtype), torch.randint(0, classes, (16,), generator=g))
            for _ in range(n)]


def counts(model):
    return [int(m.weight_mask.sum()) for m in model if isinstance(m, nn.Linear)]


def fit(model, sp, steps, *, epoch_end=None):
    """A hand-written loop: SGD steps on random data, ``sp.step`` after each; returns counts per step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(3)
    seen = []
    for _ in range(steps):
        x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sp.step(opt)
        seen.append(counts(model))
    return seen


# ------------------------------------------------------------------ registry
def test_pruning_methods_describe_themselves():
    for name in PRUNING:
        cls = METHODS[name]
        assert not cls.starts_sparse and cls.works_with_sparsify and not cls.accepts_initial_topology
        assert cls.engines == ("masked",) and cls.description and cls.settings_cls is not None
    assert "--scope" in CliRunner().invoke(app, ["train", "--help"]).output


# ------------------------------------------------------------ exact densities
@pytest.mark.parametrize("method", AT_INIT)
@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_pruning_at_init_reaches_the_target_exactly(method, scope):
    model = mlp()
    own = {"rounds": 10} if method == "synflow" else {}
    sp = sparsify(model, method, density=0.2, distribution="uniform", scope=scope, data=batches(), **own)
    targets = [round(0.2 * 240), round(0.2 * 320), 48]
    got = counts(model)
    assert got[2] == 48  # the output layer stays dense
    if scope == "layerwise":
        assert got == targets
    else:
        assert sum(got[:2]) == sum(targets[:2]) and got[:2] != targets[:2]  # one ranking: densities differ
    for m in model:
        if isinstance(m, nn.Linear):
            assert bool(((m.weight != 0) <= (m.weight_mask != 0)).all())  # zero outside the mask
    assert sp.scoring_flops > 0


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_magnitude_prunes_once_to_the_target_by_magnitude(scope):
    model = mlp()
    sp = sparsify(model, "magnitude", density=0.25, distribution="uniform", scope=scope, dense_epochs=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert sp.end_epoch(opt, 1, 4) == [] and counts(model) == [240, 320, 48]
    w = [model[0].weight.detach().abs().clone(), model[2].weight.detach().abs().clone()]
    assert sp.end_epoch(opt, 2, 4) == [0, 1]
    got = counts(model)
    if scope == "layerwise":
        assert got[:2] == [60, 80]
        for k, layer in enumerate((model[0], model[2])):  # exactly the largest magnitudes survive
            kept = w[k][layer.weight_mask.bool()]
            assert kept.min() >= w[k][~layer.weight_mask.bool()].max()
    else:
        assert sum(got[:2]) == 140
        kept = torch.cat([w[0][model[0].weight_mask.bool()], w[1][model[2].weight_mask.bool()]])
        gone = torch.cat([w[0][~model[0].weight_mask.bool()], w[1][~model[2].weight_mask.bool()]])
        assert kept.min() >= gone.max()
    assert sp.end_epoch(opt, 3, 4) == [] and counts(model) == got


def test_select_kept_never_revives_and_keeps_the_best():
    scores = {0: torch.tensor([[5.0, 4.0, 3.0, 2.0]]), 1: torch.tensor([[9.0, 1.0]])}
    eligible = {0: torch.tensor([[False, True, True, True]]), 1: torch.tensor([[True, True]])}
    out = select_kept(scores, eligible, 3, "global")
    assert out[0].tolist() == [[False, True, True, False]] and out[1].tolist() == [[True, False]]
    out = select_kept(scores, eligible, {0: 1, 1: 1}, "layerwise", largest=False)
    assert out[0].tolist() == [[False, False, False, True]] and out[1].tolist() == [[False, True]]


# ----------------------------------------------------------------- schedules
def test_cubic_schedule_values():
    assert cubic_remaining(0, 0, 10) == 1.0 and cubic_remaining(10, 0, 10) == 0.0
    assert cubic_remaining(5, 0, 10) == pytest.approx(0.125)
    assert cubic_remaining(12, 2, 22) == pytest.approx(0.125) and cubic_remaining(30, 2, 22) == 0.0
    assert interpolated_keep(1000, 100, 0.125) == 100 + round(900 * 0.125)
    # s_t = s_f + (s_i - s_f)(1 - p)^3 with s_i = 0, s_f = 0.9: density 1 - s_t
    for t in (0, 3, 7, 10):
        s_t = 0.9 + (0 - 0.9) * (1 - t / 10) ** 3
        assert interpolated_keep(1000, 100, cubic_remaining(t, 0, 10)) == round(1000 * (1 - s_t))


def test_gmp_in_a_users_loop_follows_the_cubic_schedule_per_layer():
    model = mlp()
    sp = sparsify(model, "gmp", density=0.1, distribution="uniform", start_step=2, end_step=12, update_every=3)
    seen = fit(model, sp, 15)
    full, target = [240, 320], [24, 32]
    for t in range(1, 16):
        last = max([e for e in (2, 5, 8, 11, 12) if e <= t], default=None)  # pruning steps t0 + 3k, and t1
        want = full if last is None else [interpolated_keep(f, g, (1 - (last - 2) / 10) ** 3)
                                          for f, g in zip(full, target)]
        assert seen[t - 1][:2] == want, t
    assert seen[-1] == [24, 32, 48]


def test_synflow_exponential_keep():
    assert exponential_keep(1000, 10, 100, 100) == 10
    assert exponential_keep(1000, 10, 50, 100) == 100  # 1000 * 0.01^0.5
    # density^(r/R) of the full count, rounded up as in the authors' code; the target after the last round
    assert [exponential_keep(1000, 10, r, 4) for r in range(1, 5)] == [317, 100, 32, 10]
    assert exponential_keep(1000, 10, 0, 4) == 1000 and exponential_keep(50, 50, 1, 4) == 50


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(method="snip", density=1.0, data=[]), "density must be in \\(0, 1\\)"),
    (dict(method="gmp", density=0.0), "density must be a number in \\(0, 1\\]; got 0.0"),
    (dict(method="snip", density=0.1), "give data="),
    (dict(method="grasp", density=0.1), "give data="),
    (dict(method="set", density=0.1, data=[(1, 2)]), "data and loss_fn apply to"),
    (dict(method="gmp", density=0.1, update_every=2, end_step=4, start_step=4), "end_step \\(t_1\\) must be > "
                                                                                "start_step"),
    (dict(method="gmp", density=0.1, update_every=2), "give end_step"),
    (dict(method="gmp", density=0.1, scope="local"), "scope must be one of layerwise, global; got 'local'"),
    (dict(method="magnitude", density=0.1), "give dense_epochs"),
    (dict(method="snip", density=0.1, data=[torch.zeros(3)]), "data must yield \\(inputs, targets\\)"),
])
def test_bad_input_is_named(kwargs, match):
    method = kwargs.pop("method")
    with pytest.raises(SparsetopoError, match=match):
        sparsify(mlp(), method, **kwargs)


# ---------------------------------------- agreement with the papers' formulas
def _prunable_weights(model):
    return [m.weight for m in model if isinstance(m, nn.Linear)][:-1]


def _top(scores, k, largest=True):
    flat = torch.cat([s.flatten() for s in scores])
    idx = torch.topk(flat, k, largest=largest).indices
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[idx] = True
    return keep


def _kept(model):
    return torch.cat([m.weight_mask.bool().flatten() for m in model if isinstance(m, nn.Linear)][:-1])


def test_snip_agrees_with_finite_differences_on_a_mask():
    model = mlp(sizes=(6, 5, 3), dtype=torch.float64)
    data = batches(2, n_in=6, dtype=torch.float64)
    w = model[0].weight.detach().clone()

    def loss(scale):  # the summed loss with W1 multiplied elementwise by `scale`
        with torch.no_grad():
            model[0].weight.copy_(w * scale)
            total = sum(F.cross_entropy(model(x), y) for x, y in data)
            model[0].weight.copy_(w)
        return float(total)

    ref = torch.zeros_like(w)
    h = 1e-6
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            e = torch.ones_like(w)
            e[i, j] += h
            up = loss(e)
            e[i, j] -= 2 * h
            ref[i, j] = abs(up - loss(e)) / (2 * h)  # |dL/dm| = |dL/dw * w| at m = 1
    sparsify(model, "snip", density=0.3, distribution="uniform", data=data, score_batches=2)
    assert torch.equal(model[0].weight_mask.bool().flatten(), _top([ref], round(0.3 * 30)))


def test_grasp_agrees_with_an_hvp_on_a_flat_parameter_vector():
    model = mlp(sizes=(6, 7, 5, 3), dtype=torch.float64)
    data = batches(2, n_in=6, dtype=torch.float64)
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    theta = torch.cat([params[n].detach().flatten() for n in names])

    def loss(vec):
        parts = dict(zip(names, (p.view(s) for p, s in zip(vec.split([math.prod(s) for s in shapes]), shapes))))
        return sum(F.cross_entropy(torch.func.functional_call(model, {**params, **parts}, (x,)) / 200.0, y)
                   for x, y in data)

    theta.requires_grad_()
    g = torch.autograd.grad(loss(theta), theta)[0].detach()
    hg = torch.autograd.functional.hvp(loss, theta.detach(), g)[1]
    score = -theta.detach() * hg
    sparsify(model, "grasp", density=0.3, distribution="uniform", data=data, score_batches=2)
    assert torch.equal(_kept(model), _top([score], round(0.3 * 42) + round(0.3 * 35), largest=False))


def _synflow_reference(w1, b1, w2, b2, keep_per_round):
    """The iterative SynFlow masks of a 2-layer net from the explicit formula:
    R = 1^T |W2| (|W1| 1 + |b1|) + 1^T |b2|, so dR/dW1_ij = sum_k |W2_ki| and dR/dW2_ki = (|W1| 1 + |b1|)_i."""
    m1, m2 = np.ones_like(w1, dtype=bool), np.ones_like(w2, dtype=bool)
    for keep in keep_per_round:
        a1, a2 = np.abs(w1) * m1, np.abs(w2) * m2
        s1 = a2.sum(0)[:, None] * a1
        s2 = (a1.sum(1) + np.abs(b1))[None, :] * a2
        flat = np.concatenate([np.where(m1, s1, -np.inf).ravel(), np.where(m2, s2, -np.inf).ravel()])
        kept = np.zeros(flat.size, bool)
        kept[np.argsort(-flat, kind="stable")[:keep]] = True
        m1, m2 = kept[:w1.size].reshape(w1.shape), kept[w1.size:].reshape(w2.shape)
    return np.concatenate([m1.ravel(), m2.ravel()])


@pytest.mark.parametrize("rounds", [1, 20])
def test_synflow_agrees_with_the_explicit_formula(rounds):
    model = mlp(sizes=(6, 8, 4), dtype=torch.float64)
    w1, b1, w2, b2 = (p.detach().numpy().copy() for p in model.parameters())
    sparsify(model, "synflow", density=0.2, distribution="uniform", dense_output=False, rounds=rounds)
    full, target = 48 + 32, round(0.2 * 48) + round(0.2 * 32)
    ref = _synflow_reference(w1, b1, w2, b2, [exponential_keep(full, target, r, rounds) for r in
                                              range(1, rounds + 1)])
    got = torch.cat([model[0].weight_mask.bool().flatten(), model[2].weight_mask.bool().flatten()]).numpy()
    assert got.sum() == target and (got == ref).all()
    assert np.allclose(model[0].weight.detach().numpy(), w1 * got[:48].reshape(8, 6))  # signs restored


# -------------------------------------------------------------- through train
def _train(out, data, *args):
    argv = ["train", "--data-dir", str(data), "--hidden", "16", "--batch-size", "100", "--limit-train", "600",
            "-q", "--out", str(out), *args]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _conn(row):
    return [int(row[k]) for k in ("connections_l0", "connections_l1")]


@pytest.mark.parametrize("method, extra", [("snip", []), ("grasp", ["--score-batches", "2"]),
                                           ("synflow", ["--rounds", "5"])])
def test_pruning_at_init_through_train(tmp_path, tiny_data, method, extra):
    rows = _train(tmp_path / "a", tiny_data, "--method", method, "--density", "0.2", "--distribution", "uniform",
                  "--epochs", "2", *extra)
    assert _conn(rows[0]) == _conn(rows[1]) == [round(0.2 * 64 * 16), 64]  # the output layer stays dense
    first = Topology.load(tmp_path / "a" / "topology" / "epoch_000.npz")
    assert list(first.n_connections) == _conn(rows[0])  # pruned before training
    live = sum(_conn(rows[0]))
    # the first epoch's FLOPs include the scoring passes; the second only training
    assert float(rows[0]["train_flops"]) > 6.0 * live * 600
    assert float(rows[1]["train_flops"]) - float(rows[0]["train_flops"]) == 6.0 * live * 600
    again = _train(tmp_path / "b", tiny_data, "--method", method, "--density", "0.2", "--distribution", "uniform",
                   "--epochs", "2", *extra)
    assert Topology.load(tmp_path / "b" / "topology" / "epoch_000.npz") == first  # same seed, same topology
    if method != "synflow":  # data-free: its topology does not depend on the seed
        _train(tmp_path / "c", tiny_data, "--method", method, "--density", "0.2", "--distribution", "uniform",
               "--epochs", "1", "--topology-seed", "7", *extra)
        assert Topology.load(tmp_path / "c" / "topology" / "epoch_000.npz") != first
    assert again[-1]["test_acc"] == rows[-1]["test_acc"]


def test_gmp_through_train_counts_dense_steps_at_full_cost(tmp_path, tiny_data):
    # 6 steps per epoch; pruning at steps 2, 4, ..., 10; target reached at step 10 of 18.
    rows = _train(tmp_path / "g", tiny_data, "--method", "gmp", "--density", "0.1", "--distribution", "uniform",
                  "--epochs", "3", "--update-every", "2", "--start-step", "2", "--end-step", "10")
    assert _conn(rows[-1]) == [round(0.1 * 1024), 64] and _conn(rows[1]) == _conn(rows[2])
    live = [1024 + 64]
    for t in range(1, 18):
        live.append(live[-1])
        if t in (2, 4, 6, 8, 10):
            live[-1] = interpolated_keep(1024, 102, cubic_remaining(t, 2, 10)) + 64
    assert float(rows[-1]["train_flops"]) == sum(6.0 * c * 100 for c in live)
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"),
                                   "--method", "gmp", "--density", "0.1", "--hidden", "16", "--epochs", "1",
                                   "--limit-train", "600", "--batch-size", "100", "--update-every", "2",
                                   "--end-step", "8"])
    assert res.exit_code != 0 and "--end-step must be at most the run's 6 optimizer steps" in res.output


def test_gmp_and_magnitude_by_epochs_through_train(tmp_path, tiny_data):
    rows = _train(tmp_path / "e", tiny_data, "--method", "gmp", "--density", "0.1", "--distribution", "uniform",
                  "--epochs", "4", "--end-epoch", "2", "--scope", "global")
    assert [sum(_conn(r)) - 64 for r in rows] == [interpolated_keep(1024, 102, cubic_remaining(1, 0, 2)), 102,
                                                 102, 102]
    saved = yaml.safe_load((tmp_path / "e" / "config.yaml").read_text())
    assert saved["scope"] == "global" and saved["end_epoch"] == 2
    rows = _train(tmp_path / "m", tiny_data, "--method", "magnitude", "--density", "0.1", "--distribution",
                  "uniform", "--epochs", "2", "--finetune-epochs", "2")
    assert [r["phase"] for r in rows] == ["dense", "dense", "finetune", "finetune"]
    assert [_conn(r) for r in rows] == [[1024, 64], [102, 64], [102, 64], [102, 64]]
    dense = 6.0 * (1024 + 64) * 600
    assert float(rows[1]["train_flops"]) == 2 * dense  # the dense epochs at full cost
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"),
                                   "--method", "gmp", "--density", "0.1", "--epochs", "2", "--end-epoch", "2"])
    assert res.exit_code != 0 and "--end-epoch must be before the last epoch" in res.output
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"),
                                   "--method", "snip", "--engine", "truly-sparse"])
    assert res.exit_code != 0 and "runs on --engine masked only" in res.output
