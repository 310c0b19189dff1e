"""Truly sparse layers: kernels against dense references, optimizers, drop and grow."""

from types import SimpleNamespace

import numba
import numpy as np
import pytest
import scipy.sparse as ss
import torch

from sparsetopo.truly_sparse import (
    TrulySparseLinear,
    gradient_grow,
    magnitude_drop,
    merge_structure,
    random_grow,
    rigl_update,
    set_drop,
    set_update,
)
from sparsetopo.truly_sparse import kernels as K


def _layer(n_in, n_out, density, seed=0, *, empty_rows=0, empty_cols=0, dtype=torch.float32, bias=True):
    rng = np.random.default_rng(seed)
    m = rng.random((n_out, n_in)) < density
    if empty_rows:
        m[:empty_rows] = False
    if empty_cols:
        m[:, -empty_cols:] = False
    return TrulySparseLinear.from_csr(ss.csr_matrix(m), generator=seed, dtype=dtype, bias=bias)


def _dense(layer):
    """A dense float64 copy of the layer's weights (tests only: small layers)."""
    return torch.from_numpy(layer.weight_csr().toarray()).double()


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    scale = b.norm()
    return float((a - b).norm() / scale) if scale > 0 else float((a - b).norm())


def _coo(layer):
    m = layer.to_csr().tocoo()
    return torch.from_numpy(m.row.astype(np.int64)), torch.from_numpy(m.col.astype(np.int64))


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("n_in,n_out,density,batch,empty", [
    (1, 1, 1.0, 1, 0), (5, 3, 0.5, 2, 0), (50, 30, 0.2, 7, 3), (300, 700, 0.02, 2, 50), (700, 300, 0.05, 128, 40),
    (64, 16, 1.0, 9, 0), (40, 40, 0.0, 3, 0), (200, 5, 0.9, 130, 1),
])
def test_products_match_dense_reference(n_in, n_out, density, batch, empty):
    layer = _layer(n_in, n_out, density, seed=n_in + batch, empty_rows=empty, empty_cols=empty)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, n_in, generator=g, requires_grad=True)
    gy = torch.randn(batch, n_out, generator=g)
    y = layer(x)
    y.backward(gy)
    w = _dense(layer).requires_grad_(True)
    xd = x.detach().double().requires_grad_(True)
    yd = xd @ w.t() + layer.bias.detach().double()
    yd.backward(gy.double())
    assert y.shape == (batch, n_out) and y.dtype == torch.float32
    assert _rel(y, yd) <= 1e-6
    assert _rel(x.grad, xd.grad) <= 1e-6
    rows, cols = _coo(layer)
    assert _rel(layer.values.grad, w.grad[rows, cols]) <= 1e-6
    assert _rel(layer.bias.grad, gy.sum(0)) <= 1e-6
    if density == 0.0 or empty:
        zero_cols = np.flatnonzero(np.bincount(layer.indices.numpy(), minlength=n_in) == 0)
        assert torch.all(x.grad[:, zero_cols] == 0)


def test_gradcheck_float64():
    layer = _layer(6, 4, 0.5, seed=3, dtype=torch.float64, empty_rows=1)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v, b: _apply(layer, x, v, b), (x, layer.values, layer.bias))


def _apply(layer, x, v, b):
    from sparsetopo.truly_sparse.layer import _TrulySparseFunction

    return _TrulySparseFunction.apply(x, v, b, layer.structure())


def test_results_do_not_depend_on_thread_count():
    layer = _layer(500, 400, 0.05, seed=4)
    x = torch.randn(16, 500, requires_grad=True)
    outs = []
    before = numba.get_num_threads()
    try:
        for n in sorted({1, before}):
            numba.set_num_threads(n)
            layer.values.grad = None
            x.grad = None
            y = layer(x)
            y.pow(2).sum().backward()
            outs.append((y.detach().clone(), x.grad.clone(), layer.values.grad.clone()))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(outs[0], outs[-1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("batch", [1, 2, 5, 8])
def test_scatter_and_csc_input_gradients_agree(batch):
    layer = _layer(300, 200, 0.05, seed=batch, empty_rows=10, empty_cols=10)
    s = layer.structure()
    v = layer.values.detach().numpy()
    gyt = np.random.default_rng(0).standard_normal((200, batch)).astype(np.float32)
    ipt, rows_t, perm, bounds_t = s.transposed()
    a = K.spmm_t(ipt, rows_t, perm, v, bounds_t, gyt)
    b = K.spmm_t_scatter(s.indptr, s.indices, v, gyt, 300, s.parts)
    ref = layer.weight_csr().T.astype(np.float64) @ gyt.astype(np.float64)
    assert np.abs(a - ref).max() <= 1e-5 and np.abs(b - ref).max() <= 1e-5


def test_balanced_bounds_cover_rows():
    ip = np.array([0, 0, 10, 10, 11, 40, 40], dtype=np.int64)
    b = K.balanced_bounds(ip, 4)
    assert b[0] == 0 and b[-1] == 6 and np.all(np.diff(b) >= 0)


def test_transpose_structure():
    m = ss.random(30, 20, density=0.3, format="csr", random_state=1)
    m.sort_indices()
    ipt, rows_t, perm = K.transpose_structure(m.indptr.astype(np.int64), m.indices.astype(np.int32), 20)
    c = m.tocsc()
    c.sort_indices()
    assert np.array_equal(ipt, c.indptr) and np.array_equal(rows_t, c.indices)
    assert np.array_equal(m.data[perm], c.data)


@pytest.mark.parametrize("n_out,n_in,count", [(1, 10, 10), (7, 9, 50), (300, 200, 1500), (2000, 3000, 40000),
                                              (5, 2, 0)])
def test_sample_rows_exact_sorted_unique(n_out, n_in, count):
    ip, ix = K.sample_rows(n_out, n_in, count, np.random.default_rng(5))
    assert ip[-1] == count and len(ix) == count and len(ip) == n_out + 1
    m = ss.csr_matrix((np.ones(count), ix, ip), shape=(n_out, n_in))
    assert m.has_sorted_indices
    m.sum_duplicates()
    assert m.nnz == count
    ip2, ix2 = K.sample_rows(n_out, n_in, count, np.random.default_rng(5))
    assert np.array_equal(ip, ip2) and np.array_equal(ix, ix2)


def test_sample_rows_uniform_cells():
    counts = np.zeros(4 * 6)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        ip, ix = K.sample_rows(4, 6, 5, rng)
        rows = np.repeat(np.arange(4), np.diff(ip))
        counts[rows * 6 + ix] += 1
    expected = 3000 * 5 / 24
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert counts.min() > 0 and chi2 < 80  # 23 degrees of freedom: mean 23, p(> 80) ~ 1e-8


# ----------------------------------------------------------------------------- layer
def test_layer_state_dict_and_topology():
    from sparsetopo.topology import Topology, erdos_renyi

    topo = erdos_renyi([40, 30, 20], 3.0, seed=2, dense_output=False)
    layers = [TrulySparseLinear.from_topology(topo, k, generator=k) for k in range(2)]
    back = Topology.from_masks([lay.to_csr() for lay in layers])
    assert all((a != b).nnz == 0 for a, b in zip(topo.layers, back.layers))
    sd = layers[0].state_dict()
    assert set(sd) == {"values", "bias", "indptr", "indices"}
    assert sd["indices"].dtype == torch.int32 and sd["indptr"].dtype == torch.int64
    assert all(t.dim() == 1 for t in sd.values())
    other = TrulySparseLinear.random(40, 30, count=17, seed=9)
    other.load_state_dict(sd)
    assert other.n_connections == layers[0].n_connections
    assert torch.equal(other.values, layers[0].values)
    x = torch.randn(3, 40)
    assert torch.allclose(other(x), layers[0](x))
    assert layers[0].to_csr(nonzero=True).nnz == layers[0].n_connections


def test_constructor_validation():
    with pytest.raises(ValueError, match="ascending"):
        TrulySparseLinear(4, 2, [0, 2, 3], [1, 1, 0])
    with pytest.raises(ValueError, match="indices must lie"):
        TrulySparseLinear(4, 2, [0, 1, 2], [0, 4])
    with pytest.raises(ValueError, match="indptr"):
        TrulySparseLinear(4, 2, [0, 1], [0])
    ok = TrulySparseLinear(4, 2, [0, 2, 3], [1, 3, 0], values=[1.0, 2.0, 3.0])
    assert ok.values.tolist() == [1.0, 2.0, 3.0]


def test_inits():
    he = TrulySparseLinear.random(1000, 50, density=0.01, seed=1, generator=3)
    bound = np.repeat(np.sqrt(6.0 / np.maximum(he.fan_in(), 1)), he.fan_in())
    v = he.values.detach().numpy()
    assert np.all(np.abs(v) <= bound + 1e-6) and np.abs(v).max() > 0.8 * bound.max()
    normal = TrulySparseLinear.random(1000, 50, density=0.05, seed=1, generator=3, init="normal", init_std=0.2)
    assert torch.all(normal.bias == 0) and abs(float(normal.values.detach().std()) - 0.2) < 0.02
    a = TrulySparseLinear.random(100, 50, density=0.05, seed=1, generator=7)
    b = TrulySparseLinear.random(100, 50, density=0.05, seed=1, generator=7)
    assert torch.equal(a.values, b.values) and torch.equal(a.indices, b.indices)
    er = TrulySparseLinear.random(300, 200, epsilon=2.0, seed=0)
    assert er.n_connections == round(2.0 * 500)


def test_capture_gives_dense_gradient():
    layer = _layer(30, 20, 0.2, seed=8)
    x = torch.randn(5, 30)
    w = _dense(layer).requires_grad_(True)
    with layer.capture() as cap:
        layer(x).pow(2).sum().backward()
    xc, gy = cap.tensors()
    (x.double() @ w.t() + layer.bias.detach().double()).pow(2).sum().backward()
    assert _rel(gy.t().double() @ xc.double(), w.grad) <= 1e-6


# ----------------------------------------------------------------------------- optimizers
def _masked_twin(layer):
    from sparsetopo.models import MaskedLinear

    m = MaskedLinear(layer.in_features, layer.out_features, sparse_kernel=False)
    mask = torch.from_numpy(layer.to_csr().toarray())
    with torch.no_grad():
        m.set_mask(mask)
        m.weight.copy_(torch.from_numpy(layer.weight_csr().toarray()))
        m.bias.copy_(layer.bias)
    return m


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, nesterov=True),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4),
])
def test_optimizer_step_equals_masked_dense(make_opt):
    layer = _layer(60, 40, 0.1, seed=11, empty_rows=2)
    dense = _masked_twin(layer)
    opt_s, opt_d = make_opt(layer.parameters()), make_opt(dense.parameters())
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, t = torch.randn(8, 60, generator=g), torch.randn(8, 40, generator=g)
        for model, opt in ((layer, opt_s), (dense, opt_d)):
            opt.zero_grad()
            (model(x) - t).pow(2).mean().backward()
            if model is dense:
                dense.mask_grad()
            opt.step()
            if model is dense:
                dense.apply_mask()
    rows, cols = _coo(layer)
    assert _rel(layer.values.detach(), dense.weight.detach()[rows, cols]) <= 1e-6
    assert _rel(layer.bias.detach(), dense.bias.detach()) <= 1e-6
    assert torch.count_nonzero(dense.weight) <= layer.n_connections


# ----------------------------------------------------------------------------- drop and grow
def _check_csr(layer, n_expected):
    ip, ix = layer.indptr.numpy(), layer.indices.numpy()
    assert ip[-1] == n_expected == layer.n_connections == len(layer.values)
    rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
    same_row = rows[1:] == rows[:-1]
    assert np.all(np.diff(ix.astype(np.int64))[same_row] > 0), "columns must be sorted and unique within a row"


def _key_map(layer, tensor):
    ip, ix = layer.indptr.numpy(), layer.indices.numpy()
    rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
    return dict(zip((rows * layer.in_features + ix).tolist(), tensor.detach().numpy().tolist()))


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_set_update_keeps_state_and_counts(opt_name):
    layer = _layer(80, 50, 0.1, seed=12, empty_rows=3)
    n0 = layer.n_connections
    opt = (torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(layer.parameters(), lr=1e-2))
    x = torch.randn(16, 80)
    opt.zero_grad()
    layer(x).pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        layer.values[:5] = 0  # exact zeros always go
    names = ["momentum_buffer"] if opt_name == "sgd" else ["exp_avg", "exp_avg_sq"]
    before_v = _key_map(layer, layer.values)
    before_s = {n: _key_map(layer, opt.state[layer.values][n]) for n in names}
    param, bufs = layer.values, [opt.state[layer.values][n] for n in names]
    drop = set_drop(layer.values.detach().numpy(), 0.3)
    dropped_keys = {k for k, d in zip(before_v, drop) if d}
    stats = set_update(layer, opt, 0.3, np.random.default_rng(0))
    assert stats.dropped == stats.grown == len(dropped_keys) > 5
    _check_csr(layer, n0)
    assert layer.values is param and all(opt.state[layer.values][n] is b for n, b in zip(names, bufs))
    after_v = _key_map(layer, layer.values)
    after_s = {n: _key_map(layer, opt.state[layer.values][n]) for n in names}
    kept = set(before_v) - dropped_keys
    assert kept <= set(after_v)
    grown = set(after_v) - kept
    assert len(grown) == stats.grown
    for k in kept:
        assert after_v[k] == before_v[k]
        assert all(after_s[n][k] == before_s[n][k] for n in names)
    for k in grown:
        assert after_v[k] == 0 and all(after_s[n][k] == 0 for n in names)
    # The optimizer keeps working on the reordered parameter, the kernels on the new structure.
    opt.zero_grad()
    y = layer(x)
    assert _rel(y, x.double() @ _dense(layer).t() + layer.bias.detach().double()) <= 1e-6
    y.pow(2).sum().backward()
    opt.step()
    assert layer.values.grad is not None and layer.values.grad.shape == (n0,)


def test_set_drop_equals_masked_set():
    from sparsetopo.methods.set_ import SET

    for seed in range(3):
        layer = _layer(50, 40, 0.15, seed=seed)
        with torch.no_grad():
            layer.values[::17] = 0
        w = torch.from_numpy(layer.weight_csr().toarray())
        mask = torch.from_numpy(layer.to_csr().toarray())
        expected = SET(SimpleNamespace(zeta=0.3)).drop(w, mask, None)  # no context: the fraction is zeta
        mine = set_drop(layer.values.detach().numpy(), 0.3)
        rows, cols = _coo(layer)
        assert torch.equal(expected[rows, cols], torch.from_numpy(mine))
        assert int(expected.sum()) == int(mine.sum())


def test_magnitude_drop_count_and_order():
    v = np.random.default_rng(1).standard_normal(1000)
    d = magnitude_drop(v, 0.25)
    assert d.sum() == 250 and np.abs(v[d]).max() < np.abs(v[~d]).min()


def test_rigl_grows_top_dense_gradient():
    layer = _layer(40, 30, 0.1, seed=21)
    n0 = layer.n_connections
    x = torch.randn(12, 40, generator=torch.Generator().manual_seed(3))  # seeded: ties at the top-k cut would flake
    with layer.capture() as cap:
        layer(x).pow(2).sum().backward()
    xc, gy = cap.tensors()
    dense_grad = (gy.t() @ xc).abs()
    drop = magnitude_drop(layer.values.detach().numpy(), 0.3)
    keep = ~drop
    rows, cols = _coo(layer)
    kept_mask = torch.zeros(30, 40, dtype=torch.bool)
    kept_mask[rows[torch.from_numpy(keep)], cols[torch.from_numpy(keep)]] = True
    n = int(drop.sum())
    expected = set(torch.topk(dense_grad.masked_fill(kept_mask, -1).flatten(), n).indices.tolist())
    for block in (1 << 22, 40, 1):  # one block, one row per block, and smaller than a row
        got = gradient_grow(layer.indptr.numpy(), layer.indices.numpy(), keep, n, 40, xc, gy, block_elements=block)
        assert set(got.tolist()) == expected
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    opt.step()
    stats = rigl_update(layer, opt, 0.3, xc, gy)
    assert stats.grown == n
    _check_csr(layer, n0)
    now = set(_key_map(layer, layer.values))
    assert expected <= now


def test_random_grow_excludes_kept_and_is_reproducible():
    ip, ix = K.sample_rows(30, 20, 200, np.random.default_rng(0))
    keep = np.ones(200, dtype=bool)
    keep[::3] = False
    a = random_grow(ip, ix, keep, 150, 20, np.random.default_rng(4))
    b = random_grow(ip, ix, keep, 150, 20, np.random.default_rng(4))
    assert np.array_equal(a, b) and len(np.unique(a)) == 150
    rows = np.repeat(np.arange(30), np.diff(ip))
    kept_keys = (rows * 20 + ix)[keep]
    assert not np.isin(a, kept_keys).any()
    new_ip, new_ix, src = merge_structure(ip, ix, keep, a, 20)
    assert new_ip[-1] == keep.sum() + 150 and (src == -1).sum() == 150
    m = ss.csr_matrix((np.ones(len(new_ix)), new_ix, new_ip), shape=(30, 20))
    assert m.has_sorted_indices


def test_random_grow_rejection_path_large_layer():
    # 3000 x 2000 = 6 M cells: the rejection sampler (not the enumeration of free cells).
    ip, ix = K.sample_rows(3000, 2000, 60000, np.random.default_rng(1))
    keep = np.ones(60000, dtype=bool)
    keep[:20000] = False
    got = random_grow(ip, ix, keep, 20000, 2000, np.random.default_rng(2))
    rows = np.repeat(np.arange(3000), np.diff(ip))
    assert len(np.unique(got)) == 20000 and not np.isin(got, (rows * 2000 + ix)[keep]).any()
    # Rough uniformity over rows: each third of the rows gets about a third.
    thirds = np.bincount(got // 2000 // 1000, minlength=3)
    assert np.all(np.abs(thirds - 20000 / 3) < 500)


def test_random_grow_uniform_over_absent_positions():
    # 3 x 4 layer with 5 kept connections: 7 absent positions, grow 2 each time.
    ip = np.array([0, 2, 3, 5], dtype=np.int64)
    ix = np.array([0, 3, 1, 0, 2], dtype=np.int32)
    keep = np.ones(5, dtype=bool)
    rng = np.random.default_rng(123)
    counts = np.zeros(12)
    draws = 4000
    for _ in range(draws):
        counts[random_grow(ip, ix, keep, 2, 4, rng)] += 1
    kept = [0, 3, 5, 8, 10]
    assert np.all(counts[kept] == 0)
    free = np.delete(counts, kept)
    expected = draws * 2 / 7
    assert free.min() > 0 and float(((free - expected) ** 2 / expected).sum()) < 40  # 6 dof


def test_random_grow_rejection_path_uniform(monkeypatch):
    from sparsetopo.truly_sparse import evolve

    monkeypatch.setattr(evolve, "ENUMERATE_MAX_CELLS", 0)  # force the rejection sampler on a tiny layer
    ip = np.array([0, 1, 1, 2], dtype=np.int64)  # 3 x 4, kept (0, 2) and (2, 3): 10 absent cells
    ix = np.array([2, 3], dtype=np.int32)
    keep = np.ones(2, dtype=bool)
    rng = np.random.default_rng(7)
    counts = np.zeros(12)
    draws = 4000
    for _ in range(draws):
        got = random_grow(ip, ix, keep, 2, 4, rng)
        assert len(np.unique(got)) == 2
        counts[got] += 1
    assert counts[2] == 0 and counts[11] == 0
    free = np.delete(counts, [2, 11])
    expected = draws * 2 / 10
    assert free.min() > 0 and float(((free - expected) ** 2 / expected).sum()) < 45  # 9 dof


def test_set_update_seeded_reproducibility():
    tops = []
    for _ in range(2):
        layer = TrulySparseLinear.random(100, 60, density=0.1, seed=3, generator=5)
        rng = np.random.default_rng(9)
        for _ in range(3):
            set_update(layer, None, 0.3, rng, regrow_init="normal", init_std=0.1)
        tops.append((layer.indices.clone(), layer.indptr.clone(), layer.values.detach().clone()))
    assert all(torch.equal(a, b) for a, b in zip(*tops))


def test_training_with_set_updates_learns():
    g = torch.Generator().manual_seed(0)
    n, d, c = 1024, 64, 4
    centers = torch.randn(c, d, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    l1 = TrulySparseLinear.random(d, 256, epsilon=10, seed=1, generator=1)
    l2 = TrulySparseLinear.random(256, c, epsilon=10, seed=2, generator=2)
    params = list(l1.parameters()) + list(l2.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    losses = []
    for step in range(300):
        idx = torch.randint(0, n, (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(l2(torch.relu(l1(x[idx]))), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 and step + 1 < 300:
            for layer in (l1, l2):
                counts = layer.n_connections
                set_update(layer, opt, 0.3, rng)
                assert layer.n_connections == counts
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    with torch.no_grad():
        acc = float((l2(torch.relu(l1(x))).argmax(1) == y).float().mean())
    assert acc > 0.9


def test_huge_layer_never_goes_dense():
    # 200,000 x 200,000: a dense float32 weight would need 160 GB; every step here is O(connections).
    layer = TrulySparseLinear.random(200_000, 200_000, count=300_000, seed=0, generator=0)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    x = torch.randn(2, 200_000, requires_grad=True)
    layer(x).square().sum().backward()
    opt.step()
    assert x.grad.shape == (2, 200_000) and layer.values.grad.shape == (300_000,)
    stats = set_update(layer, opt, 0.3, np.random.default_rng(1))
    assert stats.grown > 0 and layer.n_connections == 300_000
    _check_csr(layer, 300_000)
    assert layer.to_csr().nnz == 300_000
    assert all(t.numel() <= 300_000 for t in layer.state_dict().values())
    assert all(t.numel() <= 300_000 for t in opt.state[layer.values].values())
