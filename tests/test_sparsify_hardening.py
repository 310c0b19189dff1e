"""sparsify and from_torch on unusual models (issue 16, item 5): tied weights, nothing to sparsify,
half/bfloat16/double models, grouped convolutions, tampered resume states, neuron-reordering ops."""

import copy
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import sparsify  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402


def _mlp(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.to(dtype)


# ------------------------------------------------------------------ tied weights
def test_two_layers_sharing_one_weight_parameter_are_refused_by_name_everywhere():
    a, b = nn.Linear(10, 10), nn.Linear(10, 10)
    b.weight = a.weight  # tied
    model = nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), nn.Linear(10, 3))
    message = "layers '0' and '2' share one weight parameter (tied weights); a topology gives every layer its own mask"
    with pytest.raises(SparsetopoError, match="^sparsify: " + re.escape(message)):
        sparsify(model, "set", density=0.3)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())  # nothing half-attached
    with pytest.raises(SparsetopoError, match="^from_torch: " + re.escape(message)):
        Topology.from_torch(model)
    # untied as the message says, both work and agree
    b.weight = nn.Parameter(a.weight.detach().clone())
    sp = sparsify(model, "set", density=0.3)
    assert sp.topology() == Topology.from_torch(model)
    assert all(int((m.weight[m.weight_mask == 0] != 0).sum()) == 0 for m in sp.masked_layers)


def test_a_layer_called_twice_is_refused_by_from_torch_and_masked_once_by_sparsify():
    shared = nn.Linear(10, 10)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(10, 3))
    with pytest.raises(SparsetopoError, match=r"^from_torch: layer '0' is called twice .*tied weights"):
        Topology.from_torch(model)
    sp = sparsify(model, "set", density=0.3, update_every=1)
    assert len(sp.masked_layers) == 2  # one parameter, one mask: what is claimed is what is non-zero
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 10)).sum().backward()
        opt.step()
        sp.step(opt)
    # the one mask holds: nothing outside it is non-zero, whichever call's gradient reached the weight
    assert int((shared.weight[shared.weight_mask == 0] != 0).sum()) == 0
    assert sp.topology().sizes == (10, 10, 3)  # its masks, one per masked module, in module order


# ------------------------------------------------------------------ nothing to sparsify
def test_a_model_with_only_its_dense_output_layer_is_refused_naming_what_was_found():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(SparsetopoError, match=re.escape(
            "sparsify has nothing to sparsify: it found 1 nn.Linear/nn.Conv2d layer ('0': Linear, weight (2, 4)) "
            "and the last stays dense (dense_output=True); pass dense_output=False to make it sparse")):
        sparsify(model, "set", density=0.1)
    assert not hasattr(model[0], "weight_mask")
    two = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    message = ("found 2 nn.Linear/nn.Conv2d layers ('0': Linear, weight (4, 4); '2': Linear, weight (2, 4)) and "
               "the last stays dense (dense_output=True) and the first stays dense (dense_first=True); "
               "pass dense_output=False or dense_first=False")
    with pytest.raises(SparsetopoError, match=re.escape(message)):
        sparsify(two, "set", density=0.1, dense_first=True)
    sp = sparsify(model, "set", density=0.5, dense_output=False)  # legitimate: the one layer made sparse
    assert float(model[0].weight_mask.mean()) == pytest.approx(0.5)
    assert sp.densities == [0.5]


# ------------------------------------------------------------------ dtypes
def _steps(model, sp, opt, dtype, n, closure):
    g = torch.Generator().manual_seed(7)
    for _ in range(n):
        x, y = torch.randn(8, 12, generator=g).to(dtype), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x).float(), y).backward()
        opt.step()
        lc = (lambda x=x, y=y: F.cross_entropy(model(x).float(), y)) if closure else None
        assert sp.step(opt, loss_closure=lc) == [0, 1]


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_the_models_dtype_is_kept_through_masks_updates_gradients_and_resume(dtype, method):
    model = _mlp(dtype)
    sp = sparsify(model, method, density=0.3, seed=0, update_every=1, zeta=0.3, regrow_init="normal")
    assert all(m.weight_mask.dtype == dtype and m.weight.dtype == dtype for m in sp.masked_layers)
    counts = [int(m.weight_mask.bool().sum()) for m in sp.masked_layers]
    assert 0 < counts[0] < 12 * 20 and counts[-1] == 60
    before = [m.weight_mask.clone() for m in sp.masked_layers]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _steps(model, sp, opt, dtype, 2, closure=method == "rigl")
    model.zero_grad()
    model(torch.ones(2, 12, dtype=dtype)).float().sum().backward()
    for m, b in zip(sp.masked_layers[:2], before):
        assert m.weight_mask.dtype == m.weight.dtype == dtype
        assert not torch.equal(m.weight_mask, b)  # drop-and-grow moved connections
        assert int((m.weight[m.weight_mask == 0] != 0).sum()) == 0
        assert m.weight.grad.dtype == dtype and int((m.weight.grad[m.weight_mask == 0] != 0).sum()) == 0
    assert [int(m.weight_mask.bool().sum()) for m in sp.masked_layers] == counts
    grads = sp.dense_gradients(lambda: model(torch.ones(2, 12, dtype=dtype)).float().sum())
    assert all(g.dtype == dtype for g in grads) and bool((grads[0][model[0].weight_mask == 0] != 0).any())
    assert sp.topology() == Topology.from_torch(model) == Topology.from_torch(model.state_dict())
    # resume: model, optimizer and sparsifier state into a fresh copy, then both continue identically
    twin = _mlp(dtype, seed=1)
    sp2 = sparsify(twin, method, density=0.3, seed=5, update_every=1, zeta=0.3, regrow_init="normal")
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    ck = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "sp": sp.state_dict()})  # a checkpoint
    twin.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    sp2.load_state_dict(ck["sp"])
    _steps(model, sp, opt, dtype, 1, closure=method == "rigl")
    _steps(twin, sp2, opt2, dtype, 1, closure=method == "rigl")
    for k, v in model.state_dict().items():
        assert v.dtype == twin.state_dict()[k].dtype and torch.equal(v, twin.state_dict()[k]), k


# ------------------------------------------------------------------ grouped convolutions
def test_grouped_and_depthwise_convolutions_sparsify_and_read_alike(tmp_path):
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    sp = sparsify(model, "set", density=0.5, seed=0, update_every=1, distribution="uniform")
    assert model[0].weight_mask.shape == (8, 2, 3, 3)  # masked within the grouped weight
    topo = sp.topology()
    assert topo == Topology.from_torch(model) and topo.sizes == (4, 8, 8, 3)
    full = topo.layer_mask(0)
    assert full.shape == (8, 4, 3, 3) and not full[:4, 2:].any() and not full[4:, :2].any()
    assert int(full.sum()) == int(model[0].weight_mask.sum())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(2, 4, 8, 8)).sum().backward()
        opt.step()
        sp.step(opt)
    sp.snapshot(tmp_path / "s.npz")
    assert Topology.load(tmp_path / "s.npz") == sp.topology() == Topology.from_torch(model)


# ------------------------------------------------------------------ load_state_dict, all or nothing
def _snapshot(sp):
    st = sp.state_dict()
    return st["steps"], st["regrowth"].clone(), [s.clone() for s in st["seen"]], sp.itop_rate()


def _tamper(st, key, value):
    return {**st, key: value}


@pytest.mark.parametrize("tamper,message", [
    (lambda st: _tamper(st, "regrowth", torch.zeros(7, dtype=torch.uint8)), r"'regrowth' is not a torch.Generator"),
    (lambda st: _tamper(st, "regrowth", "abc"), r"'regrowth' is not a torch.Generator"),
    (lambda st: _tamper(st, "seen", st["seen"][:1]), r"'seen' must hold one mask per masked layer \(3\); got 1"),
    (lambda st: _tamper(st, "seen", [s.float() for s in st["seen"]]), r"'seen' entry 0 \(layer '0'\) must be a "
                                                                       r"torch.bool tensor of shape \(20, 12\)"),
    (lambda st: _tamper(st, "seen", [st["seen"][0], st["seen"][0], st["seen"][2]]), r"'seen' entry 1 \(layer '2'\)"),
    (lambda st: _tamper(st, "seen", None), r"'seen' must hold one mask per masked layer \(3\); got NoneType"),
    (lambda st: _tamper(st, "last_snapshot", [st["seen"][0]]), r"'last_snapshot' must hold one mask"),
    (lambda st: _tamper(st, "steps", -1), r"'steps' must be an integer >= 0; got -1"),
    (lambda st: _tamper(st, "steps", "9"), r"'steps' must be an integer >= 0; got '9'"),
    (lambda st: _tamper(st, "method", [1]), r"'method' must be the set method's state"),
    (lambda st: {k: v for k, v in st.items() if k != "seen"},
     r"keys must be identity, steps, regrowth, method, seen, last_snapshot; missing \['seen'\], unexpected none"),
    (lambda st: _tamper(st, "extra", 1), r"keys must be .*; missing none, unexpected \['extra'\]"),
    (lambda st: _tamper(st, "identity", [1]), r"'identity' must be the dict state_dict\(\) wrote; got list"),
])
def test_a_tampered_state_is_refused_by_name_and_changes_nothing(tamper, message):
    model = _mlp()
    sp = sparsify(model, "set", density=0.3, seed=0, update_every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _steps(model, sp, opt, torch.float32, 2, closure=False)
    good = sparsify(_mlp(seed=3), "set", density=0.3, seed=9, update_every=1)
    before = _snapshot(sp)
    with pytest.raises(SparsetopoError, match="Sparsifier state: " + message):
        sp.load_state_dict(tamper(good.state_dict()))
    after = _snapshot(sp)
    assert after[0] == before[0] and torch.equal(after[1], before[1]) and after[3] == before[3]
    assert all(torch.equal(a, b) for a, b in zip(after[2], before[2]))
    sp.load_state_dict(good.state_dict())  # the untampered state still loads
    assert sp.itop_rate() == good.itop_rate() and len(sp.itop_rate()) == 3


# ------------------------------------------------------------------ from_torch: only neuron-keeping ops
class _Between(nn.Module):
    """Linear(6, 6), ``op``, Linear(6, 2)."""

    def __init__(self, op):
        super().__init__()
        self.a, self.b, self.op = nn.Linear(6, 6), nn.Linear(6, 2), op
        self.register_buffer("perm", torch.tensor([5, 4, 3, 2, 1, 0]))

    def forward(self, x):
        return self.b(self.op(self, self.a(x)))


@pytest.mark.parametrize("op,message", [
    (lambda s, y: y[:, [5, 4, 3, 2, 1, 0]], r"call_function 'getitem' .* indexes the tensor between layers, "
                                             r"which selects or reorders neurons"),
    (lambda s, y: y[:, :6], r"call_function 'getitem' .* selects or reorders neurons"),
    (lambda s, y: y.permute(1, 0), r"call_method 'permute' .* is not supported between layers: only operations "
                                   r"known to keep every neuron"),
    (lambda s, y: y.t(), r"call_method 't' .* is not supported between layers"),
    (lambda s, y: torch.transpose(y, 0, 1), r"call_function 'transpose' .* is not supported"),
    (lambda s, y: torch.roll(y, 1, 1), r"call_function 'roll' .* is not supported"),
    (lambda s, y: torch.flip(y, [1]), r"call_function 'flip' .* is not supported"),
    (lambda s, y: y.narrow(1, 0, 6), r"call_method 'narrow' .* is not supported"),
    (lambda s, y: torch.chunk(y, 1, 1)[0], r"call_function 'chunk' .* is not supported"),
    (lambda s, y: torch.cat([y], 1), r"call_function 'cat' .* is not supported"),
    (lambda s, y: y.index_select(1, s.perm), r"get_attr 'perm' .* uses a parameter, buffer or constant tensor "
                                             r"outside a layer"),
    (lambda s, y: y @ s.perm.float().diag(), r"get_attr '_tensor_constant0' .* outside a layer"),
    (lambda s, y: torch.gather(y, 1, s.perm.expand(3, 6)), r"get_attr '_tensor_constant0' .* outside a layer"),
    (lambda s, y: torch.matmul(y, y.new_ones(6, 6)), r"call_method 'new_ones' .* is not supported"),
    (lambda s, y: y.view(y.size(0), 2, 3).flatten(1), r"call_method 'view' .* reshapes to 3 dimensions between"),
    (lambda s, y: torch.flatten(y.unsqueeze(1), 2), r"call_function 'flatten' .* flattens dims 2 to -1"),
])
def test_from_torch_refuses_operations_that_may_move_neurons_by_name(op, message):
    with pytest.raises(SparsetopoError, match="^from_torch: " + message):
        Topology.from_torch(_Between(op))


@pytest.mark.parametrize("op", [
    lambda s, y: -(torch.relu(y) * 0.5 + 1) / 2,
    lambda s, y: 1 - F.softmax(y, dim=1),
    lambda s, y: F.layer_norm(y, (6,)),
    lambda s, y: y.view(y.shape[0], -1).reshape(-1, 6),
    lambda s, y: torch.flatten(y.unsqueeze(-1), 1).squeeze(-1).contiguous(),
])
def test_from_torch_reads_operations_that_keep_neurons_in_place(op):
    model = _Between(op)
    with torch.no_grad():
        model.a.weight[2:4] = 0  # neurons 2 and 3 have no inputs: kept in place, so visible as such
    t = Topology.from_torch(model)
    assert t.sizes == (6, 6, 2)
    assert np.array_equal(t[0].toarray(), (model.a.weight != 0).numpy())
