"""The proof of the contracts: a new method, and a new kind of layer, each defined in this file
only, run through ``train``, ``sparsify`` and a method's update without editing a package module."""

from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from sparsetopo import masking  # noqa: E402
from sparsetopo.cli import app  # noqa: E402
from sparsetopo.config import option  # noqa: E402
from sparsetopo.methods import METHODS, DropGrowMethod, UpdateContext, register, sparsify, unregister  # noqa: E402
from sparsetopo.methods.base import lowest  # noqa: E402
from sparsetopo.sparsity import SparsitySettings  # noqa: E402

ATTRIBUTES = ("needs_dense_gradients", "accepts_initial_topology", "starts_sparse", "evolves_topology",
              "works_with_sparsify", "description", "settings_cls")


@dataclass
class MagRandSettings:
    min_drop: int = option(1, min=0, help="magrand: drop at least this many connections per layer.")


class MagRand(DropGrowMethod):
    """Drop the lowest magnitudes (at least ``min_drop``), regrow at random."""

    name = "magrand"
    description = "drop the lowest magnitudes, regrow at random"
    evolves_topology = True
    settings_cls = MagRandSettings
    calls: list = []

    def drop(self, weight, mask, ctx):
        MagRand.calls.append((ctx.epoch, ctx.drop_fraction))
        k = max(self.config.min_drop, int(self.fraction(ctx) * int(mask.sum())))
        return lowest(weight.abs(), mask, k)

    def grow_score(self, layer_id, weight, mask, ctx):
        return torch.rand(weight.shape, generator=ctx.regrowth)


@pytest.fixture
def magrand():
    register(MagRand)
    MagRand.calls = []
    yield MagRand
    unregister("magrand")
    assert "magrand" not in METHODS


def test_builtin_methods_describe_themselves():
    assert list(METHODS) == ["dense", "static", "set", "rigl", "lottery", "gmp", "magnitude", "snip", "grasp",
                             "synflow"]
    for cls in METHODS.values():
        assert all(hasattr(cls, a) for a in ATTRIBUTES) and cls.description
    assert [k for k, c in METHODS.items() if c.works_with_sparsify] == ["static", "set", "rigl", "gmp", "magnitude",
                                                                         "snip", "grasp", "synflow"]
    assert [k for k, c in METHODS.items() if c.accepts_initial_topology] == ["static", "set", "rigl"]
    assert [k for k, c in METHODS.items() if c.needs_dense_gradients] == ["rigl"]
    assert METHODS["lottery"].settings_cls.__name__ == "LotterySettings"
    assert not METHODS["lottery"].starts_sparse and not METHODS["dense"].starts_sparse


def _train(tmp_path, data, *args, config=None):
    argv = ["train", "--data-dir", str(data), "--hidden", "16", "--epsilon", "3", "--batch-size", "100",
            "--limit-train", "600", "-q", "--out", str(tmp_path), *args]
    if config is not None:
        path = tmp_path.parent / f"{tmp_path.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    return res


def test_a_method_defined_here_trains_resumes_and_sparsifies(tmp_path, tiny_data, magrand):
    out = tmp_path / "run"
    _train(out, tiny_data, "--epochs", "2", config={"method": "magrand", "min_drop": 2})
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "magrand" and saved["min_drop"] == 2
    assert [e for e, _ in magrand.calls] == [1]  # per epoch, not after the last; one sparse layer
    assert "already complete" in _train(out, tiny_data, "--epochs", "2",
                                        config={"method": "magrand", "min_drop": 2}).output
    # Its own setting is a train flag too, with its help, though it was registered after the CLI was built.
    assert "--min-drop" in CliRunner().invoke(app, ["train", "--help"]).output
    flagged = tmp_path / "flagged"
    _train(flagged, tiny_data, "--method", "magrand", "--min-drop", "3", "--epochs", "1")
    assert yaml.safe_load((flagged / "config.yaml").read_text())["min_drop"] == 3

    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    sp = sparsify(model, "magrand", epsilon=2, min_drop=3, update_every=2)
    assert sp.config.min_drop == 3
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = sp.topology()
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(8, 12)).sum().backward()
        opt.step()
        sp.step(opt)
    assert sp.topology() != before and list(sp.n_connections()) == list(before.n_connections)
    with pytest.raises(ValueError, match="own settings are min_drop"):
        sparsify(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "magrand", min_dorp=3)


def test_train_update_every_moves_masks_every_n_steps(tmp_path, tiny_data, magrand):
    # 600 samples / batch 100 = 6 steps per epoch: updates after steps 2, 4, ..., 12.
    _train(tmp_path / "steps", tiny_data, "--method", "magrand", "--epochs", "2", "--update-every", "2")
    assert magrand.calls == [(t, 0.3) for t in range(2, 13, 2)]
    magrand.calls.clear()
    _train(tmp_path / "cos", tiny_data, "--method", "magrand", "--epochs", "1", "--update-every", "3",
           "--drop-schedule", "cosine", "--end-step", "6")
    assert magrand.calls == [(3, pytest.approx(0.15))]


def test_step_schedule_flags_are_checked_and_named(tmp_path, tiny_data):
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"),
                                   "--method", "lottery", "--update-every", "2"])
    assert res.exit_code == 2 and "--update-every applies to" in res.output
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"),
                                   "--update-every", "2", "--drop-schedule", "cosine"])
    assert res.exit_code == 2 and "give --end-step" in res.output


# ------------------------------------------------------------ a new kind of layer
class ProductMaskedLinear(nn.Module):
    """A masked layer computing ``x @ (W * M).T + b``: the mask enters the forward pass."""

    def __init__(self, n_in, n_out, generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator) / n_in ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.register_buffer("weight_mask", torch.ones(n_out, n_in))
        self.force_dense = False

    def forward(self, x):
        w = self.weight if self.force_dense else self.weight * self.weight_mask
        return x @ w.T + self.bias

    @torch.no_grad()
    def set_mask(self, mask):
        self.weight_mask.copy_(torch.as_tensor(mask) != 0)
        self.weight.mul_(self.weight_mask)

    @torch.no_grad()
    def apply_mask(self):
        self.weight.mul_(self.weight_mask)

    def mask_grad(self):
        pass  # the product in forward already masks the gradient


class ProductNet(nn.Module, masking.MaskedNetwork):
    def __init__(self, sizes):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.layers = nn.ModuleList(ProductMaskedLinear(a, b, g) for a, b in zip(sizes[:-1], sizes[1:]))

    @property
    def masked_layers(self):
        return list(self.layers)

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def test_a_layer_kind_defined_here_runs_through_a_methods_update():
    net = ProductNet([12, 20, 20, 3])
    assert all(isinstance(layer, masking.MaskedLayer) for layer in net.masked_layers)
    settings = SparsitySettings(method="rigl", epsilon=2, zeta=0.3).validate()
    net.set_topology(masking.initial_topology(settings, net.layer_shapes, seed=0), rescale=True)
    counts = net.n_connections()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        net.mask_grads()
        opt.step()
        net.apply_masks()
    before = net.topology()
    grads = net.dense_gradients(lambda: nn.functional.cross_entropy(net(x), y).backward())
    assert bool((grads[0][net.masks()[0] == 0] != 0).any())  # gradients outside the mask: dense compute worked
    method = METHODS["rigl"](settings)
    res = method.after_epoch(UpdateContext(model=net, optimizer=opt, epoch=1, total_epochs=5,
                                           regrowth=torch.Generator().manual_seed(0), dense_grads=lambda: grads))
    assert res.changed_layers == [0, 1]
    assert net.n_connections() == counts and net.topology() != before
    for layer in net.masked_layers:
        assert torch.count_nonzero(layer.weight[layer.weight_mask == 0]) == 0


def test_the_readme_method_example_registers_a_working_method(tmp_path):
    """The README's one-file method runs as printed and trains through ``sparsify``."""
    import torch
    from torch import nn

    from sparsetopo.methods import METHODS, sparsify, unregister

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- method-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README method example", "exec"), {})
    try:
        assert "magnitude-random" in METHODS and METHODS["magnitude-random"].description.startswith("drop the smallest")
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
        sp = sparsify(model, "magnitude-random", epsilon=4, seed=0)
        before = sp.topology()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(64, 20), torch.randint(0, 2, (64,))
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        assert sp.end_epoch(opt, 1, 3) == [0]
        after = sp.topology()
        assert after.n_connections == before.n_connections and after != before
    finally:
        unregister("magnitude-random")
