"""The truly sparse engine's fused optimizers against torch.optim, and their state_dict layout."""

import pytest
import torch

from sparsetopo.truly_sparse.optim import ValuesAdam, ValuesSGD

CASES = [
    (ValuesSGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "weight_decay": 2e-4}),
    (ValuesSGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0}),
    (ValuesAdam, torch.optim.Adam, {"lr": 1e-3, "weight_decay": 1e-4}),
    (ValuesAdam, torch.optim.Adam, {"lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6}),
]


def _pair(n=5000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(7, generator=g, dtype=dtype).requires_grad_()
    return [a, bias], [a.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()]


def _steps(opt, params, grads):
    for gs in grads:
        for p, gr in zip(params, gs):
            p.grad = gr.clone()
        opt.step()
        opt.zero_grad()


def _grads(params, steps=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params] for _ in range(steps)]


@pytest.mark.parametrize("ours, theirs, kw", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps_equal_torch_optim(ours, theirs, kw, dtype):
    mine, ref = _pair(dtype=dtype)
    grads = _grads(mine)
    _steps(ours(mine, **kw), mine, grads)
    _steps(theirs(ref, **kw), ref, grads)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for a, b in zip(mine, ref):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("ours, theirs, kw", CASES)
def test_state_dicts_load_across_the_two_implementations(ours, theirs, kw):
    """Old truly sparse checkpoints hold torch's optimizer state: they resume with ours, and back."""
    mine, ref = _pair()
    grads = _grads(mine, steps=8)
    torch_opt = theirs(ref, **kw)
    _steps(torch_opt, ref, grads[:4])
    with torch.no_grad():
        for a, b in zip(mine, ref):
            a.copy_(b)
    ours_opt = ours(mine, **kw)
    ours_opt.load_state_dict(torch_opt.state_dict())
    _steps(ours_opt, mine, grads[4:])
    _steps(torch_opt, ref, grads[4:])
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    back = theirs([p.detach().clone().requires_grad_() for p in mine], **kw)
    back.load_state_dict(ours_opt.state_dict())
    assert back.state_dict()["state"].keys() == torch_opt.state_dict()["state"].keys()
    for i, s in torch_opt.state_dict()["state"].items():
        for name, t in s.items():
            torch.testing.assert_close(back.state_dict()["state"][i][name], t, rtol=1e-6, atol=1e-6)


def test_state_is_keyed_by_parameter_with_torch_names():
    """evolve moves optimizer state with the connections through these names."""
    (a, b), _ = _pair()
    sgd = ValuesSGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    sgd.step()
    assert set(sgd.state[a]) == {"momentum_buffer"} and torch.equal(sgd.state[a]["momentum_buffer"], a.grad)
    adam = ValuesAdam([a], lr=0.1)
    adam.step()
    assert set(adam.state[a]) == {"step", "exp_avg", "exp_avg_sq"} and float(adam.state[a]["step"]) == 1.0


def test_parameters_without_gradients_are_left_alone():
    (a, b), _ = _pair()
    before = b.detach().clone()
    opt = ValuesSGD([a, b], lr=0.1, momentum=0.9)
    a.grad = torch.ones_like(a)
    opt.step()
    assert torch.equal(b, before) and b not in opt.state


@pytest.mark.parametrize("make, fragment", [
    (lambda: ValuesSGD([torch.zeros(3, 3, requires_grad=True)], lr=0.1), "1-D contiguous"),
    (lambda: ValuesSGD([torch.zeros(4, dtype=torch.float16)], lr=0.1), "float32/float64"),
    (lambda: ValuesSGD([], lr=0.1), "empty parameter list"),
    (lambda: ValuesSGD([torch.zeros(3)], lr=-1.0), "lr, momentum and weight_decay must be >= 0"),
    (lambda: ValuesAdam([torch.zeros(3)], betas=(0.9, 1.0)), "betas in [0, 1)"),
])
def test_bad_arguments_are_refused_clearly(make, fragment):
    with pytest.raises(ValueError, match=pytest.importorskip("re").escape(fragment)):
        make()


def test_a_state_dict_of_another_shape_is_refused():
    (a, b), _ = _pair()
    opt = ValuesSGD([a, b], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="different number of parameters"):
        opt.load_state_dict(ValuesSGD([a], lr=0.1, momentum=0.9).state_dict())


@pytest.mark.parametrize("cls, kw", [(ValuesSGD, {"lr": 0.01, "momentum": 0.9, "weight_decay": 2e-4}),
                                     (ValuesAdam, {"lr": 1e-3, "weight_decay": 1e-4})])
def test_the_serial_and_parallel_kernels_agree_bit_for_bit(cls, kw, monkeypatch):
    """Small tensors step on one thread; the result must not depend on which path ran."""
    from sparsetopo.truly_sparse import optim

    results = []
    for threshold in (0, 10**9):  # everything parallel, then everything serial
        monkeypatch.setattr(optim, "PARALLEL_MIN", threshold)
        params, _ = _pair(n=70000)
        _steps(cls(params, **kw), params, _grads(params))
        results.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*results))
