"""Issue 19 (9): sparsify finds the output layer by execution order and says which layers it made sparse."""

import logging
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import sparsify  # noqa: E402
from sparsetopo.topology import Topology  # noqa: E402


class HeadFirst(nn.Module):
    """Declares its output layer before the body: declaration order would make the head sparse."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(40, 3)
        self.body = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())

    def forward(self, x):
        return self.head(self.body(x))


class Branchy(HeadFirst):
    """Python control flow on a value: torch.fx cannot trace it."""

    def forward(self, x):
        h = self.body(x)
        if h.sum() > -1e9:
            h = h * 1.0
        return self.head(h)


class WithSpare(HeadFirst):
    """A layer the forward pass never calls, declared last."""

    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(3, 3)


def _step(model, sp, opt):
    x, y = torch.randn(16, 20, generator=torch.Generator().manual_seed(1)), torch.randint(0, 3, (16,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sp.end_epoch(opt, 1, 3)


def test_head_declared_first_stays_dense_and_updates_leave_it_alone():
    torch.manual_seed(0)
    model = HeadFirst()
    sp = sparsify(model, "set", epsilon=3, seed=0)
    assert sp.layer_names == ["body.0", "body.2", "head"]
    assert sp.order_found_by == "torch.fx"
    assert bool((model.head.weight_mask == 1).all())
    assert float(model.body[0].weight_mask.mean()) < 0.5 and float(model.body[2].weight_mask.mean()) < 0.5
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _step(model, sp, opt)
    assert bool((model.head.weight_mask == 1).all())  # the update evolved the body, not the head
    assert sp.topology().shapes == ((40, 20), (40, 40), (3, 40))  # a chain: input to output
    assert sp.topology() == Topology.from_torch(model)


def test_summary_repr_and_log_say_which_layers_are_sparse(caplog):
    with caplog.at_level(logging.INFO, logger="sparsetopo.methods.sparsify"):
        sp = sparsify(HeadFirst(), "set", epsilon=3, seed=0)
    rows = sp.layer_summary
    assert [(r["name"], r["shape"], r["sparse"]) for r in rows] == [
        ("body.0", (40, 20), True), ("body.2", (40, 40), True), ("head", (3, 40), False)]
    assert rows[0]["density"] == pytest.approx(sp.densities[0]) and rows[2]["density"] == 1.0
    text = sp.summary()
    assert text.splitlines()[0] == "layers in execution order (found by tracing the forward pass (torch.fx)):"
    assert f"sparse, density {rows[0]['density']:.2%}" in text.splitlines()[1]
    assert text.splitlines()[-1] == "dense: head"
    assert repr(sp) == (f"Sparsifier(method='set', engine='masked', layers: body.0 {rows[0]['density']:.2%}, "
                        f"body.2 {rows[1]['density']:.2%}, head dense)")
    logged = [r.getMessage() for r in caplog.records if r.name == "sparsetopo.methods.sparsify"]
    assert len(logged) == 1 and logged[0].startswith("sparsify HeadFirst: body.0 40x20 ") \
        and logged[0].endswith("head 3x40 dense")


def test_untraceable_model_falls_back_to_declaration_order_with_a_warning():
    with pytest.warns(UserWarning, match=r"cannot trace Branchy with torch.fx .*declaration order, so 'body.2', "
                                         r"declared last, is taken for the output layer.*example_input="):
        sp = sparsify(Branchy(), "set", epsilon=3, seed=0)
    assert sp.order_found_by == "declaration" and sp.layer_names == ["head", "body.0", "body.2"]


def test_example_input_finds_the_order_by_running_the_model():
    model = Branchy()
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        sp = sparsify(model, "set", epsilon=3, seed=0, example_input=torch.zeros(2, 20))
    assert sp.order_found_by == "example_input" and sp.layer_names == ["body.0", "body.2", "head"]
    assert bool((model.head.weight_mask == 1).all())
    assert model.training and all(m.training for m in model.modules())  # the probe's eval mode was undone
    with pytest.raises(SparsetopoError, match=r"sparsify: example_input: Branchy failed on it \(RuntimeError"):
        sparsify(Branchy(), "set", epsilon=3, example_input=torch.zeros(2, 7))


def test_a_layer_never_called_is_sparse_and_not_the_output_layer():
    sp = sparsify(WithSpare(), "set", epsilon=3, seed=0)
    assert sp.layer_names == ["body.0", "body.2", "head", "spare"]
    assert [r["sparse"] for r in sp.layer_summary] == [True, True, False, True]


def test_dense_first_is_the_first_executed_and_no_update_touches_it():
    torch.manual_seed(0)
    model = HeadFirst()
    sp = sparsify(model, "set", epsilon=3, seed=0, dense_first=True)
    assert [r["sparse"] for r in sp.layer_summary] == [False, True, False]
    _step(model, sp, torch.optim.SGD(model.parameters(), lr=0.1))
    assert bool((model.body[0].weight_mask == 1).all()) and bool((model.head.weight_mask == 1).all())
