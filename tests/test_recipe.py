"""Each switch of the paper's training recipe changes what it claims to (no ../shared needed)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sparsetopo.data import load_dataset  # noqa: E402
from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import METHODS, UpdateContext  # noqa: E402
from sparsetopo.models import SparseMLP  # noqa: E402
from sparsetopo.topology import Topology, erdos_renyi, perturb  # noqa: E402
from sparsetopo.training import TrainConfig, load_weights, loss_function, read_metrics, train  # noqa: E402


def test_normal_init_is_set_scale_with_zero_bias_and_no_rescaling():
    model = SparseMLP([400, 300, 10], init="normal", init_std=0.1, init_seed=0)
    topo = erdos_renyi(model.sizes, density=0.05, seed=0)
    model.set_topology(topo)
    w = model.layers[0].weight.detach()[model.layers[0].weight_mask.bool()]
    assert abs(float(w.std()) - 0.1) < 0.01 and abs(float(w.mean())) < 0.01
    assert torch.count_nonzero(model.layers[0].bias) == 0
    he = SparseMLP([400, 300, 10], init="he", init_seed=0)
    he.set_topology(topo)
    assert float(he.layers[0].weight.detach()[he.layers[0].weight_mask.bool()].std()) > 0.3  # rescaled to the fan-in
    with pytest.raises(ValueError, match="^init must be one of he, normal; got 'xavier'$"):
        SparseMLP([4, 3], init="xavier")


@pytest.mark.parametrize("init", ["he", "normal"])
def test_one_init_seed_gives_identical_weights_on_shared_connections(init):
    base = erdos_renyi([50, 60, 60, 5], density=0.2, seed=0)
    other = perturb(base, 0.2, seed=1)
    a, b = (SparseMLP(base.sizes, init=init, init_seed=7) for _ in range(2))
    a.set_topology(base, rescale=False)
    b.set_topology(other, rescale=False)
    c = SparseMLP(base.sizes, init=init, init_seed=8)
    c.set_topology(base, rescale=False)
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        shared = la.weight_mask.bool() & lb.weight_mask.bool()
        assert torch.equal(la.weight[shared], lb.weight[shared])
        assert not torch.equal(la.weight[la.weight_mask.bool()], lc.weight[lc.weight_mask.bool()])


def _set_update(regrow_init, zero_some=False):
    cfg = TrainConfig(method="set", hidden=[40], epsilon=3, zeta=0.3, regrow_init=regrow_init, init_std=0.5)
    model = SparseMLP([30, 40, 5], init_seed=0)
    method = METHODS["set"](cfg)
    model.set_topology(method.initial_topology(model.layer_shapes, seed=1))
    layer = model.layers[0]
    if zero_some:
        with torch.no_grad():
            live = layer.weight_mask.bool().nonzero()
            layer.weight[tuple(live[:5].t())] = 0.0
    old_mask, old_w = layer.weight_mask.bool().clone(), layer.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = UpdateContext(model=model, optimizer=opt, epoch=1, total_epochs=5,
                        regrowth=torch.Generator().manual_seed(3), dense_grads=lambda: None)
    method.after_epoch(ctx)
    new_mask = layer.weight_mask.bool()
    return old_mask, old_w, new_mask, layer.weight.detach()


def test_regrown_connections_start_at_zero_or_normal_as_configured():
    old, _, new, w = _set_update("zero")
    grown = new & ~old
    assert grown.sum() > 20 and torch.count_nonzero(w[grown]) == 0
    old, _, new, w = _set_update("normal")
    grown = new & ~old
    assert torch.count_nonzero(w[grown]) == int(grown.sum())
    assert 0.3 < float(w[grown].std()) < 0.7  # N(0, init_std^2) with init_std 0.5


def test_set_drops_every_exactly_zero_weight():
    old, old_w, new, _ = _set_update("zero", zero_some=True)
    zeros = old & (old_w == 0)
    assert int(zeros.sum()) == 5
    dropped = old & ~new
    regrown_same = zeros & new  # only possible if drawn again at random
    assert int((zeros & dropped).sum()) + int(regrown_same.sum()) == 5
    assert int((zeros & dropped).sum()) >= 4


def test_mse_loss_is_sets_squared_error_on_sigmoid_outputs():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.5, 0.0]])
    y = torch.tensor([1, 0])
    target = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    expected = 0.5 * ((torch.sigmoid(logits) - target) ** 2).sum(1)
    mse = loss_function("mse")
    assert torch.allclose(mse(logits, y), expected.mean())
    assert torch.allclose(mse(logits, y, reduction="sum"), expected.sum())
    assert loss_function("cross_entropy") is torch.nn.functional.cross_entropy
    with pytest.raises(ValueError, match="^loss must be one of cross_entropy, mse; got 'hinge'$"):
        loss_function("hinge")


def test_unit_input_scaling_divides_pixels_by_255(tiny_data):
    unit = load_dataset("fashion-mnist", tiny_data, input_scaling="unit")
    std = load_dataset("fashion-mnist", tiny_data)
    assert unit.x_train.min() >= 0 and unit.x_train.max() <= 1 and unit.x_train.max() > 0.9
    assert std.x_train.min() < 0  # standardized: mean 0 per pixel
    np.testing.assert_allclose(unit.x_test * 255, np.round(unit.x_test * 255), atol=1e-3)
    with pytest.raises(ValueError, match="input_scaling must be one of standardize, unit; got 'minmax'"):
        load_dataset("fashion-mnist", tiny_data, input_scaling="minmax")


def _run(tmp_path, tiny_data, name, **kw):
    cfg = TrainConfig(method="set", dataset="fashion-mnist", data_dir=str(tiny_data), hidden=[32, 32], epsilon=2,
                      epochs=3, batch_size=50, seed=0, snapshot_epochs=[1, 2, 3], **kw)
    train(cfg, tmp_path / name, progress=False, log=lambda m: None)
    return tmp_path / name


def _topo(run, e):
    return Topology.load(run / "topology" / f"epoch_{e:03d}.npz")


def test_snapshot_timing_before_update_holds_only_trained_connections(tmp_path, tiny_data):
    after = _run(tmp_path, tiny_data, "after", snapshot_weights=True)
    before = _run(tmp_path, tiny_data, "before", snapshot_timing="before_update", snapshot_weights=True)
    # Same seeds, same training: the runs differ only in when the snapshot is taken.
    assert [r["test_acc"] for r in read_metrics(after)] == [r["test_acc"] for r in read_metrics(before)]
    assert _topo(before, 3) == _topo(after, 3)  # no update after the last epoch
    assert _topo(before, 1) != _topo(after, 1)
    # Before the update every connection has trained for an epoch; after it, the regrown ones are fresh zeros.
    w_after, _ = load_weights(after / "weights" / "epoch_001.npz")
    w_before, _ = load_weights(before / "weights" / "epoch_001.npz")
    assert (w_after[0].data == 0).sum() > (w_before[0].data == 0).sum()
    # The weights file's entries (zeros included) are exactly the snapshot's mask.
    w = w_after[0]
    pattern = type(w)((np.ones(w.nnz, dtype=bool), w.indices, w.indptr), shape=w.shape)
    assert w.nnz == _topo(after, 1)[0].nnz and (pattern != _topo(after, 1)[0]).nnz == 0


def test_nonzero_snapshots_leave_out_exactly_zero_weights(tmp_path, tiny_data):
    mask = _run(tmp_path, tiny_data, "mask", snapshot_weights=True)
    nonzero = _run(tmp_path, tiny_data, "nz", snapshot_connections="nonzero")
    w, _ = load_weights(mask / "weights" / "epoch_001.npz")
    zeros = int((w[0].data == 0).sum())
    assert zeros > 0  # regrown at zero just now
    assert _topo(nonzero, 1)[0].nnz == _topo(mask, 1)[0].nnz - zeros


def test_new_config_fields_are_validated():
    for key, bad, allowed in (("init", "x", "he, normal"), ("regrow_init", "x", "zero, normal"),
                              ("loss", "x", "cross_entropy, mse"), ("input_scaling", "x", "standardize, unit"),
                              ("snapshot_timing", "x", "after_update, before_update"),
                              ("snapshot_connections", "x", "mask, nonzero")):
        with pytest.raises(ValueError, match=f"--{key.replace('_', '-')} must be one of {allowed}; got 'x'"):
            TrainConfig(**{key: bad}).validate()
    with pytest.raises(ValueError, match="--init-std must be a number > 0; got 0"):
        TrainConfig(init_std=0).validate()


def _live_update(regrow_where):
    """One SET update of a layer in which neurons 0-19 have only negative weights and zero biases."""
    cfg = TrainConfig(method="set", hidden=[40], epsilon=3, zeta=0.3, regrow_where=regrow_where,
                      input_scaling="unit")
    model = SparseMLP([30, 40, 5], init_seed=0)
    method = METHODS["set"](cfg)
    model.set_topology(method.initial_topology(model.layer_shapes, seed=1))
    layer = model.layers[0]
    with torch.no_grad():
        layer.weight[:20] = -layer.weight[:20].abs() - 0.01
        layer.bias.zero_()
        layer.bias[25] = 1.0  # a neuron whose weights are all negative but whose bias lets it fire
        layer.weight[25] = -layer.weight[25].abs() - 0.01
        layer.weight.mul_(layer.weight_mask)
    old = layer.weight_mask.bool().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = UpdateContext(model=model, optimizer=opt, epoch=1, total_epochs=5,
                        regrowth=torch.Generator().manual_seed(3), dense_grads=lambda: None)
    method.after_epoch(ctx)
    return old, layer.weight_mask.bool()


def test_regrow_where_live_grows_only_into_neurons_that_can_fire():
    from sparsetopo.methods.set_ import live_neurons

    old, new = _live_update("live")
    grown = new & ~old
    assert int(grown.sum()) == int((old & ~new).sum()) > 10  # as many grown as dropped
    assert not grown[:20].any()  # no positive weight, zero bias: dead on non-negative inputs
    assert grown[20:].any()
    assert int(new.sum()) == int(old.sum())
    old, new = _live_update("anywhere")
    assert (new & ~old)[:20].any()  # SET's rule grows into them too (20 of 40 rows)
    w = torch.tensor([[-1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    mask = torch.tensor([[True, False], [True, False], [True, True]])
    assert live_neurons(w, mask, None).tolist() == [False, False, False]  # row 1's 2.0 is not active
    assert live_neurons(w, mask, torch.tensor([0.0, 0.0, 0.5])).tolist() == [False, False, True]


def test_regrow_where_is_refused_off_set_and_off_the_masked_engine():
    with pytest.raises(SparsetopoError, match=r"^--regrow-where live is a rule of --method set; got --method rigl: "
                                              r"use --regrow-where anywhere$"):
        TrainConfig(method="rigl", hidden=[40], regrow_where="live").validate()
    with pytest.raises(SparsetopoError, match=r"regrow.where must be one of anywhere, live; got 'dead'"):
        TrainConfig(method="set", hidden=[40], regrow_where="dead").validate()
    with pytest.raises(SparsetopoError,
                       match=r"^--regrow-where live runs on --engine masked only; got --engine truly-sparse$"):
        TrainConfig(method="set", hidden=[40], regrow_where="live", input_scaling="unit",
                    engine="truly-sparse").validate()
    with pytest.raises(SparsetopoError, match=r"^--regrow-where live needs non-negative inputs to every layer: "
                                              r"--model mlp, --input-scaling unit and --activation relu; got "
                                              r"--model mlp, --input-scaling standardize, --activation relu$"):
        TrainConfig(method="set", hidden=[40], regrow_where="live").validate()
    with pytest.raises(SparsetopoError, match=r"got --model mlp, --input-scaling unit, --activation tanh$"):
        TrainConfig(method="set", hidden=[40], regrow_where="live", input_scaling="unit",
                    activation="tanh").validate()
    with pytest.raises(SparsetopoError, match=r"got --model cnn, --input-scaling unit, --activation relu$"):
        TrainConfig(method="set", model="cnn", hidden=[40], regrow_where="live", input_scaling="unit").validate()
