import pytest

torch = pytest.importorskip("torch")

from sparsetopo.models import SparseMLP  # noqa: E402
from sparsetopo.optim import MaskedSGD  # noqa: E402
from sparsetopo.topology import erdos_renyi  # noqa: E402


def _pair(sizes, density, seed=0):
    """Two identical masked MLPs: one computing through sparse kernels with sparse
    gradients (MaskedSGD's fast path), one through dense matmuls (torch's SGD)."""
    topo = erdos_renyi(sizes, density=density, seed=seed)
    fast = SparseMLP(sizes, init_seed=seed, sparse_kernel=True)
    ref = SparseMLP(sizes, init_seed=seed, sparse_kernel=False)
    for m in (fast, ref):
        m.set_topology(topo)
    for layer in fast.layers:
        layer.sparse_grad = True
    return fast, ref


def _step(model, opt, x, y, backwards=1):
    opt.zero_grad(set_to_none=True)
    for _ in range(backwards):  # gradient accumulation adds sparse gradients with repeated positions
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.mask_grads()
    opt.step()
    model.apply_masks()


@pytest.mark.parametrize("backwards", [1, 2])
@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_masked_sgd_on_sparse_gradients_equals_torch_sgd(momentum, wd, backwards):
    sizes = [30, 40, 40, 5]
    fast, ref = _pair(sizes, 0.1)
    opt_f = MaskedSGD(fast.parameters(), lr=0.05, momentum=momentum, weight_decay=wd)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=momentum, weight_decay=wd)
    g = torch.Generator().manual_seed(1)
    for _ in range(15):
        x, y = torch.randn(16, 30, generator=g), torch.randint(0, 5, (16,), generator=g)
        _step(fast, opt_f, x, y, backwards)
        _step(ref, opt_r, x, y, backwards)
    assert any(layer.weight.grad.is_sparse for layer in fast.layers)  # the fast path was taken
    for lf, lr_ in zip(fast.layers, ref.layers):
        torch.testing.assert_close(lf.weight, lr_.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lf.bias, lr_.bias, rtol=1e-5, atol=1e-6)
        outside = lf.weight_mask == 0
        assert torch.count_nonzero(lf.weight[outside]) == 0
        if momentum:
            assert torch.count_nonzero(opt_f.state[lf.weight]["momentum_buffer"][outside]) == 0


def test_masked_sgd_state_dict_round_trip():
    fast, _ = _pair([20, 20, 4], 0.2)
    opt = MaskedSGD(fast.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 20), torch.randint(0, 4, (8,))
    _step(fast, opt, x, y)
    clone = MaskedSGD(fast.parameters(), lr=0.1, momentum=0.9)
    clone.load_state_dict(opt.state_dict())
    for p in fast.parameters():
        assert torch.equal(clone.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])


def test_masked_sgd_rejects_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr must be > 0"):
        MaskedSGD(p, lr=0)
    with pytest.raises(ValueError, match="momentum and weight_decay must be >= 0"):
        MaskedSGD(p, lr=0.1, momentum=-1)
