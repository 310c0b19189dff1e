"""Residual networks: the CIFAR-style ResNet-20/32, WideResNets, and torchvision's ResNet layout.

:class:`CifarResNet` is a masked network (:mod:`sparsetopo.masking`) built from
:class:`~sparsetopo.models.MaskedConv2d` and :class:`~sparsetopo.models.MaskedLinear`:
He et al.'s CIFAR ResNet (depth ``6n + 2``: a 3x3 stem, three groups of ``n``
basic blocks at ``width``, ``2 width`` and ``4 width`` channels, global average
pooling, a linear classifier), with 1x1 projection shortcuts where the shape
changes (option B, as most sparse-training code uses). ``preact=True`` gives
Zagoruyko and Komodakis' pre-activation WideResNet (depth ``6n + 4``, widen
factor ``widen``: :func:`wide_resnet`, e.g. WRN-22-2). Its topology is a graph
(:mod:`sparsetopo.topology.graph`): every block adds into its group's residual stream.

Registered as ``--model`` (:data:`RESIDUAL_MODELS`): ``resnet20``, ``resnet32``, ``resnet`` (any ``--depth``
6k+2) and ``wrn`` (WRN-``--depth``-``--width``); :func:`check_residual_options` holds the rules for
``--width`` and ``--depth``.

:func:`torchvision_resnet` builds the layout of ``torchvision.models.resnet18/34/50/101/152``
(same module names, BasicBlock and Bottleneck, ``downsample`` projections) from plain torch layers,
so that ``Topology.from_torch(torchvision_resnet(50), state_dict=checkpoint)`` reads a checkpoint's
masks where torchvision is not installed, and benchmarks have a ResNet-50 to measure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import SparsetopoError
from .models import MODELS, MaskedConv2d, MaskedLinear, _MaskedNetwork, register_model
from .topology.graph import LayerShapes

__all__ = ["DEPTH_RULES", "MODELS", "RESIDUAL_MODELS", "CifarResNet", "ResidualModel", "blocks_per_group",
           "check_residual_options", "check_width_depth", "torchvision_resnet", "wide_resnet"]


def _conv(cin: int, cout: int, k: int, stride: int, gen, init: str, init_std: float) -> MaskedConv2d:
    conv = MaskedConv2d(cin, cout, k, padding=k // 2, generator=gen, init=init, init_std=init_std)
    conv.stride = (stride, stride)  # MaskedConv2d takes no stride argument; Conv2d reads this attribute
    conv.bias = None  # batch norm follows (or precedes) every convolution: a bias would be redundant
    return conv


class _Block(nn.Module):
    """A basic block: two 3x3 convolutions added into the residual stream (a projection if the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, preact: bool, gen, init: str, init_std: float):
        super().__init__()
        self.preact = preact
        self.conv1 = _conv(cin, cout, 3, stride, gen, init, init_std)
        self.bn1 = nn.BatchNorm2d(cin if preact else cout)
        self.conv2 = _conv(cout, cout, 3, 1, gen, init, init_std)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = _conv(cin, cout, 1, stride, gen, init, init_std) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:  # BN-ReLU-conv; the projection reads the activated input, as in the WRN code
            x = self.relu(self.bn1(x))
            out = self.conv2(self.relu(self.bn2(self.conv1(x))))
            return out + (x if self.shortcut is None else self.shortcut(x))
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet(_MaskedNetwork):
    """A CIFAR-style residual network of masked layers (ResNet-20/32/56, WideResNet).

    Parameters
    ----------
    image_shape : (channels, height, width)
    n_classes : int
    depth : int
        ``6n + 2`` (post-activation ResNet: 20, 32, 44, 56) or, with ``preact``, ``6n + 4`` (WRN-22, WRN-28).
    width : int
        Channels of the first group (16 in He et al.); the groups have ``width``, ``2 width``, ``4 width``
        times ``widen``.
    widen : int
        WideResNet's widen factor ``k``.
    preact : bool
        Pre-activation blocks and a final BN-ReLU (WideResNet).
    """

    def __init__(self, image_shape: Sequence[int], n_classes: int, *, depth: int = 20, width: int = 16,
                 widen: int = 1, preact: bool = False, init_seed: int = 0, dropout_seed: int = 0, init: str = "he",
                 init_std: float = 0.1):
        super().__init__()
        n = blocks_per_group(depth, preact)
        c, h, w = (int(v) for v in image_shape)
        self.image_shape, self.init = (c, h, w), init
        gen = torch.Generator().manual_seed(int(init_seed))
        # no dropout here; the trainer checkpoints every network's dropout generator all the same
        self.dropout_generator = torch.Generator().manual_seed(int(dropout_seed))
        self.conv1 = _conv(c, width, 3, 1, gen, init, init_std)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for g, cout in enumerate((width * widen, 2 * width * widen, 4 * width * widen)):
            for b in range(n):
                blocks.append(_Block(cin, cout, 2 if g and not b else 1, preact, gen, init, init_std))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn_out = nn.BatchNorm2d(cin) if preact else nn.Identity()
        self.relu, self.preact = nn.ReLU(), preact
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = MaskedLinear(cin, int(n_classes), generator=gen, init=init, init_std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], *self.image_shape)
        x = self.conv1(x)
        x = self.blocks(x if self.preact else self.relu(self.bn1(x)))
        x = self.relu(self.bn_out(x)) if self.preact else x
        return self.fc(torch.flatten(self.pool(x), 1))

    def _graph(self) -> tuple[list[str], list[tuple[int, int]] | None]:
        """The layers in call order and their streams, traced once (the structure never changes)."""
        if "_traced" not in self.__dict__:
            from ._torch_graph import trace_structure

            self.__dict__["_traced"] = trace_structure(self)
        return self.__dict__["_traced"]

    @property
    def masked_layers(self) -> list[nn.Module]:
        return [self.get_submodule(t) for t in self._graph()[0]]

    @property
    def layer_shapes(self) -> LayerShapes:
        """The masked layers' weight shapes, with their streams (so a random start is a graph)."""
        return LayerShapes(super().layer_shapes, self.streams)

    @property
    def streams(self) -> list[tuple[int, int]] | None:
        """Each masked layer's ``(read, write)`` stream (:mod:`sparsetopo.topology.graph`)."""
        return self._graph()[1]



#: What a depth must be, with examples, as messages say it: He et al.'s ResNets (two convolutions per block,
#: a stem and a classifier: 6k + 2) and Zagoruyko and Komodakis' WideResNets (6k + 4, as they count it).
DEPTH_RULES = {False: "6k+2 (8, 14, 20, 32, 44, 56, 110)", True: "6k+4 (10, 16, 22, 28, 40)"}


def blocks_per_group(depth, preact: bool = False, label: str = "depth", model: str = "") -> int:
    """The basic blocks per group of a ResNet (``6k + 2``) or, with ``preact``, a WideResNet (``6k + 4``) of
    ``depth``; a depth that is neither is refused naming ``label`` (``--depth`` on the command line) and
    ``model`` (the option that chose the network) if given."""
    extra = 4 if preact else 2
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 6 + extra or (depth - extra) % 6:
        raise SparsetopoError(f"{label} must be {DEPTH_RULES[preact]}{' for ' + model if model else ''}; "
                              f"got {depth!r}")
    return (depth - extra) // 6


def wide_resnet(image_shape: Sequence[int], n_classes: int, *, depth: int = 22, widen: int = 2,
                **kwargs) -> CifarResNet:
    """WRN-``depth``-``widen`` (Zagoruyko and Komodakis): pre-activation blocks of 16/32/64 x ``widen`` channels."""
    return CifarResNet(image_shape, n_classes, depth=depth, width=16, widen=widen, preact=True, **kwargs)


# ------------------------------------------------------------------ torchvision's layout
class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (module names included)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)  # torchvision's call order
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (ResNet v1.5: the stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


_TORCHVISION = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
                101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}


class TorchvisionResNet(nn.Module):
    """torchvision's ``ResNet`` module tree (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``)."""

    def __init__(self, block, layers: Sequence[int], n_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for g, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if g == 0 else 2
            blocks = []
            for b in range(n):
                down = None
                if b == 0 and (stride != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, stride if b == 0 else 1, down))
                cin = planes * block.expansion
            setattr(self, f"layer{g + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torchvision_resnet(depth: int = 50, n_classes: int = 1000) -> TorchvisionResNet:
    """The structure of ``torchvision.models.resnet{depth}()`` (no weights), for reading checkpoints."""
    if depth not in _TORCHVISION:
        raise SparsetopoError(f"depth must be one of {', '.join(map(str, _TORCHVISION))}; got {depth!r}")
    block, layers = _TORCHVISION[depth]
    return TorchvisionResNet(block, layers, n_classes)


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class ResidualModel:
    """What ``--depth`` and ``--width`` mean for one registered residual network.

    ``fixed_depth``: the name says the depth (``resnet20``), so a different ``--depth`` is refused rather
    than silently building another network under that name. ``widen``: ``--width`` is WideResNet's
    widening factor ``k`` (WRN-``depth``-``k``, groups of 16k, 32k, 64k channels after a 16-channel stem),
    else the first group's channels ``W`` (groups of W, 2W, 4W, the stem W too).
    """

    depth: int
    width: int
    fixed_depth: bool = False
    widen: bool = False

    @property
    def preact(self) -> bool:
        return self.widen  # the WideResNets are the pre-activation ones


#: The registered residual networks (``--model``) and their defaults. ``resnet`` takes any ``--depth``.
RESIDUAL_MODELS = {
    "resnet20": ResidualModel(20, 16, fixed_depth=True),
    "resnet32": ResidualModel(32, 16, fixed_depth=True),
    "resnet": ResidualModel(20, 16),
    "wrn": ResidualModel(22, 2, widen=True),
}


def _channels_given(config) -> bool:
    """Whether ``config.channels`` differs from its field's default (so it was set, by a flag or a key)."""
    field = {f.name: f for f in dataclasses.fields(config)}["channels"]
    return list(config.channels) != list(field.default_factory())


def check_width_depth(model: str, width: int | None, depth: int | None, name=lambda field: field) -> None:
    """Refuse a ``width`` or ``depth`` for a ``model`` that takes none, and a depth the model cannot have
    (``name`` spells a field as the user does: ``--depth`` on the command line, ``depth`` in a study's config)."""
    spec = RESIDUAL_MODELS.get(model)
    if spec is None:
        given = [f for f, v in (("width", width), ("depth", depth)) if v is not None]
        if given:
            raise SparsetopoError(f"{name(given[0])} applies to the residual networks ({name('model')} "
                                  f"{', '.join(RESIDUAL_MODELS)}); got {name('model')} {model}")
        return
    if depth is not None:
        if spec.fixed_depth and depth != spec.depth:
            raise SparsetopoError(f"{name('depth')} {depth} contradicts {name('model')} {model} (a "
                                  f"ResNet-{spec.depth}): give {name('model')} resnet {name('depth')} {depth}, "
                                  f"or leave {name('depth')} out")
        blocks_per_group(depth, spec.preact, name("depth"), f"{name('model')} {model}" if spec.preact else "")


def check_residual_options(config, name=lambda field: field) -> None:
    """:func:`check_width_depth` on ``config.model``, ``width`` and ``depth``, and refuse ``channels`` that
    contradict them. Reads those four fields of a dataclass (and ``channels``' default), so that a
    training config and a study's config are checked by the same rules."""
    check_width_depth(config.model, config.width, config.depth, name)
    spec = RESIDUAL_MODELS.get(config.model)
    if spec is None or not _channels_given(config):
        return
    model, channels = f"{name('model')} {config.model}", " ".join(map(str, config.channels))
    if spec.widen:
        raise SparsetopoError(f"{name('channels')} does not apply to {model}: its groups have 16k, 32k and 64k "
                              f"channels, k given by {name('width')}; got {name('channels')} {channels}")
    if config.width is not None and config.channels[0] != config.width:
        raise SparsetopoError(f"{name('width')} {config.width} and {name('channels')} {channels} both set the "
                              f"first group's width of {model}; give {name('width')} alone")


def _residual_builder(model: str):
    spec = RESIDUAL_MODELS[model]

    def build(config, data) -> CifarResNet:
        if data.image_shape is None:
            raise SparsetopoError(f"model {model} needs image data (its image_shape); "
                                  f"dataset {getattr(data, 'name', '?')!r} has none")
        depth = config.depth if config.depth is not None else spec.depth
        seeds = dict(init_seed=config.named_seed("init"), dropout_seed=config.named_seed("dropout"),
                     init=config.init, init_std=config.init_std)
        if spec.widen:
            return wide_resnet(data.image_shape, data.n_classes, depth=depth,
                               widen=config.width if config.width is not None else spec.width, **seeds)
        # Without --width the first value of --channels is the width, as before --width existed: the runs
        # saved then resume with the network they started with (the default channels start with 16).
        width = config.width if config.width is not None else int(config.channels[0])
        return CifarResNet(data.image_shape, data.n_classes, depth=depth, width=width, **seeds)
    return build


# Importing this module adds these to sparsetopo.models.MODELS (the config looks models up here, so that
# models.py, which this module builds on, need not import it back).
for _name in RESIDUAL_MODELS:
    register_model(_name)(_residual_builder(_name))
