"""--width and --depth of the residual networks (issue 22, item 4): the network built, its streams, the
refusals, YAML keys, the train command and the evolution study."""

import importlib.util
import json
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from conftest import make_idx_dataset
from sparsetopo.cli import app
from sparsetopo.errors import SparsetopoError
from sparsetopo.experiments.base import make_config
from sparsetopo.models_resnet import CifarResNet
from sparsetopo.topology import Topology
from sparsetopo.training import TrainConfig, load_config_file

IMAGES = SimpleNamespace(image_shape=(1, 8, 8), n_classes=4, name="tiny")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_idx_dataset(tmp_path_factory.mktemp("data") / "d", n_train=80, n_test=40, side=8, n_classes=4)


def _build(**settings):
    return TrainConfig.from_dict(settings).validate(flags=False).build_model(IMAGES)


def _expected_streams(stem: int, groups: list[int], n: int) -> list[tuple[int, int]]:
    """The (read, write) streams of a CIFAR ResNet in call order, from its layout alone: the stem opens the
    first residual stream; a block's first convolution opens its own stream; its second convolution adds
    into the residual stream, a new one (with the 1x1 projection) where the channels or resolution change."""
    streams, residual, channels, fresh = [(0, 1)], 1, stem, iter(range(2, 10_000))
    for g, width in enumerate(groups):
        for b in range(n):
            inner = next(fresh)
            project = width != channels or (g > 0 and b == 0)
            out = next(fresh) if project else residual
            streams += [(residual, inner), (inner, out)] + ([(residual, out)] if project else [])
            residual, channels = out, width
    return streams + [(residual, next(fresh))]


def _canonical(streams):
    """Stream ids renumbered by first appearance: two numberings of one structure compare equal."""
    ids: dict[int, int] = {}
    return [tuple(ids.setdefault(s, len(ids)) for s in pair) for pair in streams]


@pytest.mark.parametrize("settings,stem,groups,n", [
    (dict(model="resnet", depth=8, width=8), 8, [8, 16, 32], 1),
    (dict(model="resnet", depth=14, width=3), 3, [3, 6, 12], 2),
    (dict(model="resnet", width=2), 2, [2, 4, 8], 3),  # resnet: depth 20 by default
    (dict(model="resnet20", width=5), 5, [5, 10, 20], 3),
    (dict(model="resnet32", depth=32), 16, [16, 32, 64], 5),  # width 16 by default; --depth may repeat the name's
    (dict(model="resnet20", channels=[6]), 6, [6, 12, 24], 3),  # as before --width: the first of --channels
    (dict(model="wrn", depth=10, width=2), 16, [32, 64, 128], 1),  # WRN-10-2: width is the widening factor
    (dict(model="wrn", depth=16, width=1), 16, [16, 32, 64], 2),  # k = 1: no projection in the first group
    (dict(model="wrn"), 16, [32, 64, 128], 3),  # WRN-22-2 by default
])
def test_the_network_has_the_asked_depth_width_and_streams(settings, stem, groups, n):
    m = _build(**settings)
    assert isinstance(m, CifarResNet) and m.preact == (settings["model"] == "wrn")
    assert m.conv1.out_channels == stem
    assert len(m.blocks) == 3 * n
    assert [blk.conv2.out_channels for blk in m.blocks] == [w for w in groups for _ in range(n)]
    t = Topology.from_torch(m)
    assert t.is_graph and t.shapes[-1] == (4, groups[-1])
    expected = _expected_streams(stem, groups, n)
    assert len(t) == len(expected) and _canonical(t.streams) == _canonical(expected)
    # a ResNet's depth counts the stem, two convolutions per block and the classifier; a WRN's two more
    # (6k + 4, as Zagoruyko and Komodakis count it)
    depth = settings.get("depth") or {"resnet32": 32, "wrn": 22}.get(settings["model"], 20)
    assert 2 * len(m.blocks) + (4 if m.preact else 2) == depth


@pytest.mark.parametrize("settings,message", [
    (dict(model="resnet", depth=21), "--depth must be 6k+2 (8, 14, 20, 32, 44, 56, 110); got 21"),
    (dict(model="resnet", depth=2), "--depth must be 6k+2 (8, 14, 20, 32, 44, 56, 110); got 2"),
    (dict(model="resnet32", depth=20),
     "--depth 20 contradicts --model resnet32 (a ResNet-32): give --model resnet --depth 20, or leave --depth out"),
    (dict(model="resnet20", depth=8), "--depth 8 contradicts --model resnet20 (a ResNet-20)"),
    (dict(model="wrn", depth=20), "--depth must be 6k+4 (10, 16, 22, 28, 40) for --model wrn; got 20"),
    (dict(model="cnn", width=4), "--width applies to the residual networks (--model resnet20, resnet32, resnet, "
                                 "wrn); got --model cnn"),
    (dict(model="mlp", depth=8), "--depth applies to the residual networks"),
    (dict(model="resnet", width=0), "--width must be an integer in [1, 100000]; got 0"),
    (dict(model="resnet", depth=2000), "--depth must be an integer in [1, 1202]; got 2000"),
    (dict(model="resnet", depth=8.0), "--depth must be an integer in [1, 1202]; got 8.0 (write an integer"),
    (dict(model="resnet20", width=8, channels=[4]),
     "--width 8 and --channels 4 both set the first group's width of --model resnet20; give --width alone"),
    (dict(model="wrn", channels=[4, 8]), "--channels does not apply to --model wrn: its groups have 16k, 32k and "
                                         "64k channels, k given by --width; got --channels 4 8"),
])
def test_bad_width_and_depth_are_refused_by_name(settings, message):
    with pytest.raises(SparsetopoError) as err:
        TrainConfig.from_dict(settings).validate()
    assert message in str(err.value)


def test_width_equal_to_the_first_channel_is_no_conflict():
    assert _build(model="resnet20", width=4, channels=[4]).conv1.out_channels == 4


def test_the_library_names_the_depth_rule():
    with pytest.raises(SparsetopoError, match=r"^depth must be 6k\+2 \(8, 14, 20, 32, 44, 56, 110\); got 21$"):
        CifarResNet((3, 32, 32), 10, depth=21)
    with pytest.raises(SparsetopoError, match=r"^depth must be 6k\+4 \(10, 16, 22, 28, 40\); got 20$"):
        CifarResNet((3, 32, 32), 10, depth=20, preact=True)


def test_yaml_keys_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resnet\nwidth: 8\ndepth: 14\n")
    cfg = TrainConfig.from_dict(load_config_file(path), source=str(path)).validate(flags=False)
    assert (cfg.model, cfg.width, cfg.depth) == ("resnet", 8, 14)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(cfg.to_dict()))
    assert TrainConfig.from_dict(load_config_file(again)) == cfg
    path.write_text("model: resnet\ndepth: 15\n")
    with pytest.raises(SparsetopoError, match=r"depth must be 6k\+2 .*; got 15"):
        TrainConfig.from_dict(load_config_file(path), source=str(path)).validate(flags=False)


def test_train_command_with_width_and_depth(tmp_path, tiny_data):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--model", "resnet", "--width", "8", "--depth", "8", "--method", "set",
                                   "--distribution", "erk", "--density", "0.3", "--epochs", "1", "--batch-size", "40",
                                   "--data-dir", str(tiny_data), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["model"], saved["width"], saved["depth"]) == ("resnet", 8, 8)
    t = Topology.load(out / "topology" / "epoch_001.npz")
    assert t.is_graph and len(t) == len(_expected_streams(8, [8, 16, 32], 1)) and t.shapes[-1] == (4, 32)
    assert t.shapes[0] == (8, 1 * 3 * 3)  # the stem: W channels, each reading a 3x3 patch of the one input


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet20", "--depth", "8"], "--depth 8 contradicts --model resnet20 (a ResNet-20): give --model "
                                              "resnet --depth 8, or leave --depth out"),
    (["--model", "resnet", "--depth", "21"], "--depth must be 6k+2 (8, 14, 20, 32, 44, 56, 110); got 21"),
    (["--model", "cnn", "--width", "8"], "--width applies to the residual networks"),
])
def test_train_command_refuses_bad_shapes_before_writing(tmp_path, tiny_data, args, message):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", *args, "--data-dir", str(tiny_data), "--out", str(out), "-q"])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_help_explains_width_and_depth():
    train = CliRunner().invoke(app, ["train", "--help"]).output
    experiment = CliRunner().invoke(app, ["experiment", "--help"]).output
    for text in (train, experiment):
        flat = " ".join(text.split())
        assert "--width" in flat and "--depth" in flat and "6k+2 (8, 14, 20, 32, 44, 56, 110" in flat
        assert "widening factor k" in flat
    assert "--model resnet" in " ".join(train.split())


@pytest.mark.parametrize("args,message", [
    (["evolution", "--model", "resnet", "--depth", "21"], "--depth must be 6k+2 (8, 14, 20, 32, 44, 56, 110); got 21"),
    (["evolution", "--model", "resnet32", "--depth", "20"], "--depth 20 contradicts --model resnet32"),
    (["evolution", "--depth", "8"], "--depth applies to the residual networks (--model resnet20, resnet32, resnet, "
                                    "wrn); got --model mlp"),
    (["evolution", "--model", "cnn", "--width", "8"], "--width applies to the residual networks"),
    (["evolution", "--model", "resnet", "--width", "0"], "--width must be an integer in [1, 100000]; got 0"),
    (["tickets", "--width", "8"], "--width applies to experiment evolution (with a residual --model); "
                                  "got experiment tickets"),
    (["width", "--depth", "4"], "--depth applies to experiment evolution"),  # not the width study's MLP depth
])
def test_experiment_refuses_bad_shapes_by_flag(tmp_path, args, message):
    out = tmp_path / "x"
    res = CliRunner().invoke(app, ["experiment", *args, "--out", str(out)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_a_study_config_file_is_checked_by_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resnet\ndepth: 9\n")
    with pytest.raises(SparsetopoError, match=r"depth must be 6k\+2 .*; got 9"):
        make_config("evolution", "smoke", load_config_file(path), source=str(path))


@pytest.mark.parametrize("model,width,depth", [("resnet20", 4, None), ("resnet32", 4, None), ("resnet", 4, None),
                                               ("wrn", 1, 10)])
def test_evolution_presets_for_every_residual_model(model, width, depth):
    for preset in ("smoke", "small"):
        cfg = make_config("evolution", preset, {"model": model})
        assert cfg.model == model and cfg.depth == depth and (cfg.width == width or preset == "small")
    cfg = make_config("evolution", "smoke", {"model": "resnet", "width": 2, "depth": 8})
    assert (cfg.width, cfg.depth) == (2, 8)


def test_evolution_study_with_width_and_depth(tmp_path, tiny_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tiny_data}\nnetworks: 2\nepochs: 1\nsnapshot_epochs: [0, 1]\n"
                   "limit_train: 80\nlimit_test: 40\nbatch_size: 40\n")
    out = tmp_path / "evo"
    res = CliRunner().invoke(app, ["experiment", "evolution", "--model", "resnet", "--width", "2", "--depth", "8",
                                   "--preset", "smoke", "--config", str(cfg), "--out", str(out), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["config"]["model"], summary["config"]["width"], summary["config"]["depth"]) == ("resnet", 2, 8)
    run = yaml.safe_load((out / "runs" / "net1" / "config.yaml").read_text())
    assert (run["model"], run["width"], run["depth"]) == ("resnet", 2, 8)
    t = Topology.load(out / "runs" / "net1" / "topology" / "epoch_001.npz")
    assert t.is_graph and _canonical(t.streams) == _canonical(_expected_streams(2, [2, 4, 8], 1))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_a_pruned_torchvision_resnet18_reads_as_the_local_layout_and_compares(tmp_path):
    """Real torchvision (PyPI's default torch + torchvision pair; the CPU torch's wheel index cannot be
    reached here): masks from torch.nn.utils.prune, read from the module and from a saved state dict."""
    import torch
    import torchvision
    from torch import nn
    from torch.nn.utils import prune

    from sparsetopo.models_resnet import torchvision_resnet

    gen = torch.Generator().manual_seed(0)
    m = torchvision.models.resnet18()
    layers = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    for mod in layers:
        with torch.no_grad():
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
        prune.l1_unstructured(mod, "weight", amount=0.9)
    t = Topology.from_torch(m)
    assert t.is_graph and len(t) == 21 and abs(t.density - 0.1) < 0.001
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    local = Topology.from_torch(torchvision_resnet(18), state_dict=torch.load(tmp_path / "sd.pt"))
    assert local == t
    t.save(tmp_path / "a.npz")
    res = CliRunner().invoke(app, ["distance", str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["per_layer"] == [0.0] * 21, res.output
