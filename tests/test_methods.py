import pytest

torch = pytest.importorskip("torch")

from conftest import with_method  # noqa: E402
from sparsetopo.methods import METHODS, UpdateContext, drop_and_grow  # noqa: E402
from sparsetopo.models import SparseMLP  # noqa: E402
from sparsetopo.training import TrainConfig  # noqa: E402


def test_registry_has_all_methods():
    assert set(METHODS) == {"dense", "static", "set", "rigl", "lottery", "gmp", "magnitude", "snip", "grasp",
                            "synflow"}


def test_drop_and_grow_preserves_count_and_grows_only_empty_positions():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(30, 40, generator=g) < 0.1
    drop = mask & (torch.rand(30, 40, generator=g) < 0.3)
    score = torch.rand(30, 40, generator=g)
    new, grown = drop_and_grow(mask, drop, score)
    assert int(new.sum()) == int(mask.sum())
    assert not (grown & (mask & ~drop)).any()
    assert not (new & drop & ~grown).any()
    # grown positions are the highest-scoring eligible ones
    eligible = ~(mask & ~drop)
    threshold = score[grown].min()
    assert int((score[eligible & ~grown] > threshold).sum()) == 0


def _ctx(model, opt, epoch=1, total=5, seed=0, grads=None):
    return UpdateContext(model=model, optimizer=opt, epoch=epoch, total_epochs=total,
                         regrowth=torch.Generator().manual_seed(seed), dense_grads=lambda: grads)


def _model(method="set", **kw):
    cfg = TrainConfig(method=method, hidden=[40], epsilon=3, zeta=0.3, **kw)
    return with_method(cfg, SparseMLP([30, 40, 5], init_seed=0))


def test_set_drops_zeta_of_each_sign_closest_to_zero_and_regrows_randomly():
    cfg, method, model = _model("set")
    layer = model.layers[0]
    w = layer.weight.detach().clone()
    mask = layer.weight_mask.bool().clone()
    drop = method.drop(w, mask, None)
    pos, neg = mask & (w > 0), mask & (w < 0)
    assert int((drop & pos).sum()) == int(0.3 * int(pos.sum()))
    assert int((drop & neg).sum()) == int(0.3 * int(neg.sum()))
    # every dropped positive weight is below every kept positive weight (closest to zero)
    assert w[drop & pos].max() <= w[pos & ~drop].min()
    assert w[drop & neg].min() >= w[neg & ~drop].max()

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 30)).sum().backward()
    model.mask_grads()
    opt.step()
    model.apply_masks()
    before = [lay.n_connections for lay in model.layers]
    old_mask = model.layers[0].weight_mask.bool().clone()
    res = method.after_epoch(_ctx(model, opt))
    assert res.changed_layers == [0]  # output layer is dense and untouched
    assert [lay.n_connections for lay in model.layers] == before
    new_mask = model.layers[0].weight_mask.bool()
    grown = new_mask & ~old_mask
    assert grown.any()
    assert torch.count_nonzero(model.layers[0].weight[grown]) == 0  # new weights start at zero
    buf = opt.state[model.layers[0].weight]["momentum_buffer"]
    assert torch.count_nonzero(buf[grown]) == 0  # optimizer state reset
    assert torch.count_nonzero(buf[~new_mask]) == 0


def test_set_regrowth_depends_on_regrowth_seed_only():
    masks = []
    for seed in (0, 0, 1):
        _, method, model = _model("set")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        method.after_epoch(_ctx(model, opt, seed=seed))
        masks.append(model.layers[0].weight_mask.clone())
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def test_no_update_after_last_epoch_and_static_never_changes():
    _, method, model = _model("set")
    m0 = model.layers[0].weight_mask.clone()
    method.after_epoch(_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1), epoch=5, total=5))
    assert torch.equal(model.layers[0].weight_mask, m0)
    _, static, model = _model("static")
    m0 = model.layers[0].weight_mask.clone()
    assert static.after_epoch(_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1))).changed_layers == []
    assert torch.equal(model.layers[0].weight_mask, m0)


def test_rigl_grows_where_dense_gradient_is_largest():
    _, method, model = _model("rigl")
    grads = [torch.zeros(40, 30), torch.zeros(5, 40)]
    empty = ~model.layers[0].weight_mask.bool()
    target = torch.nonzero(empty)[:5]
    for r, c in target:
        grads[0][r, c] = 10.0
    old = model.layers[0].weight_mask.bool().clone()
    method.after_epoch(_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1), grads=grads))
    new = model.layers[0].weight_mask.bool()
    assert int(new.sum()) == int(old.sum())
    for r, c in target:
        assert new[r, c]


def test_lottery_prunes_to_target_and_rewinds():
    cfg, method, model = _model("lottery", epochs=2, round_epochs=1, prune_rate=0.5)
    assert method.initial_topology(model.layer_shapes, 0) is None
    method.on_start(model)
    init = model.layers[0].weight.detach().clone()
    target = method.target_counts(model.layer_shapes)[0]
    rounds = method.n_rounds(model.layer_shapes)
    assert method.total_epochs(model.layer_shapes) == rounds + 2
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for epoch in range(1, rounds + 1):
        model(torch.randn(16, 30)).pow(2).sum().backward()
        opt.step()
        res = method.after_epoch(_ctx(model, opt, epoch=epoch, total=rounds + 2))
        assert res.reset_optimizer
        assert method.phase(epoch, model.layer_shapes) == f"prune-round-{epoch}"
    assert model.layers[0].n_connections == target
    assert model.layers[1].n_connections == 200  # dense output layer
    m = model.layers[0].weight_mask.bool()
    assert torch.equal(model.layers[0].weight[m], init[m])  # rewound to initialisation
    assert method.phase(rounds + 1, model.layer_shapes) == "ticket"


def test_sparsify_a_users_own_model_and_loop():
    from torch import nn

    from sparsetopo.methods import sparsify
    from sparsetopo.topology import Topology

    torch.manual_seed(0)  # the test's own model init; the library never seeds globally
    model = nn.Sequential(nn.Linear(40, 60), nn.ReLU(), nn.Linear(60, 50), nn.ReLU(), nn.Linear(50, 4))
    sp = sparsify(model, "set", epsilon=3, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    counts = [int(m.weight_mask.sum()) for m in sp.masked_layers]
    assert counts[-1] == 200 and counts[0] < 40 * 60
    g = torch.Generator().manual_seed(0)
    before = sp.topology()
    for epoch in (1, 2):
        for _ in range(10):  # the user's loop: no masking calls in it
            x, y = torch.randn(16, 40, generator=g), torch.randint(0, 4, (16,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        for m in sp.masked_layers:
            assert torch.count_nonzero(m.weight[m.weight_mask == 0]) == 0
        changed = sp.end_epoch(opt, epoch, 3)
        assert changed == [0, 1]
    assert [int(m.weight_mask.sum()) for m in sp.masked_layers] == counts
    assert sp.topology() != before
    assert Topology.from_torch(model) == sp.topology()
    assert "0.weight_mask" in model.state_dict()
    with pytest.raises(ValueError, match="static, set, rigl, gmp, magnitude, snip, grasp or synflow"):
        sparsify(model, "lottery")
    rigl = sparsify(nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)), "rigl", epsilon=2)
    with pytest.raises(ValueError, match="loss_closure"):
        rigl.end_epoch(opt, 1, 3)
    net = rigl.model
    assert rigl.end_epoch(torch.optim.SGD(net.parameters(), lr=0.1), 1, 3,
                          loss_closure=lambda: net(torch.randn(8, 10)).pow(2).mean()) == [0]


def test_sparsify_rescales_init_so_plain_sgd_learns():
    """A 100-256-256-2 MLP on a linearly separable task, plain SGD: with the dense init merely masked
    the sparse network stays near chance; rescaled to each neuron's fan-in it learns."""
    from torch import nn

    from sparsetopo.methods import sparsify

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 100, generator=g)
    w = torch.randn(100, generator=g)
    y = (x @ w > 0).long()

    def accuracy(rescale):
        torch.manual_seed(0)  # nn.Linear's own init draws from the global generator; test only
        model = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
        sparsify(model, "set", epsilon=5, seed=0, rescale_init=rescale)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(2):
            for i in range(0, 2000, 50):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
                opt.step()
        return float((model(x).argmax(1) == y).float().mean())

    assert accuracy(False) < 0.6  # measured 0.50: chance
    assert accuracy(True) > 0.8  # measured 0.86
