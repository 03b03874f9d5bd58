"""I3D-ResNet of the Non-local paper (Wang et al. 2018): torchvision's ResNet inflated.

Layers (Non-local paper, Table 1; 32 x 224 x 224 input):

    conv1  5x7x7, stride 1x2x2 (time stride configurable)   32 x 112 x 112
    pool1  3x3x3 max, stride 2x2x2 (time stride configurable) 16 x 56 x 56
    res2   bottlenecks                                        16 x 56 x 56
    pool2  3x1x1 max, stride 2x1x1                             8 x 56 x 56
    res3, res4, res5                                           8 x 7 x 7 after res5
    global average pool, dropout, fc

Temporal kernels: the first (1x1) conv of a bottleneck becomes 3x1x1 in every
block of res2, in every other block of res3 and res4 (from the first) and in the
middle block of res5 (every other from the second): mmaction2's I3D-R50 pattern,
the one with released Kinetics results. All other convs are 1xkxk.
Non-local blocks (optional): after every other block of res3 (from the second)
and after the second, fourth and sixth blocks of res4: the paper's 5-block setting.
"""

from collections import OrderedDict
from collections.abc import Collection
from typing import Literal

from torch import nn

from models.adapt import Backbone, adapt_first_conv
from models.inflate import TimePaddingMode, inflate
from models.input_spec import flow_unit, imagenet_rgb
from models.non_local import NonLocalBlock
from models.stream2d import RESNET_DEPTHS, RESNET_LAYOUT
from models.weights import torchvision_model


def default_inflated_blocks(layers: list[int]) -> set[str]:
    """Blocks ("layer3.2") whose first conv gets a 3x1x1 kernel (see the module docstring)."""
    res2, res3, res4, res5 = layers
    return ({f"layer1.{i}" for i in range(res2)} | {f"layer2.{i}" for i in range(0, res3, 2)}
            | {f"layer3.{i}" for i in range(0, res4, 2)} | {f"layer4.{i}" for i in range(1, res5, 2)})


def default_non_local_blocks(layers: list[int]) -> set[str]:
    """Blocks followed by a non-local block: 2 in res3, 3 in res4 (the paper's 5 blocks)."""
    return {f"layer2.{i}" for i in range(1, layers[1], 2)} | {f"layer3.{i}" for i in range(1, 6, 2)}


def _block_counts(net: nn.Module) -> list[int]:
    return [len(getattr(net, f"layer{k}")) for k in range(1, 5)]


def _out_channels(block: nn.Module) -> int:
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2  # Bottleneck / BasicBlock
    return last_bn.num_features


def _check_blocks(names: set[str], layers: list[int], what: str) -> None:
    known = {f"layer{k + 1}.{i}" for k, count in enumerate(layers) for i in range(count)}
    if names - known:
        raise ValueError(f"{what}: no such blocks {sorted(names - known)}")


class ResNetI3D(Backbone):
    """I3D-ResNet: a torchvision ResNet inflated to 3D (bootstrapped 2D weights).

    Args:
        num_classes: classes of the classifier.
        depth: ResNet depth (the paper: 50 or 101).
        in_channels: 3 for RGB, 2 for flow (x, y per frame).
        modality: "rgb" (ImageNet mean/std, mmaction2's convention) or "flow"
            (clipped to +-20 px and scaled to [-1, 1], I3D's convention).
        dropout: dropout probability before the classifier.
        weights: 2D weights to inflate: None (random), a torchvision weights name
            ("IMAGENET1K_V1"; downloaded on first use) or a local file with a
            torchvision ResNet state dict. Flow adapts conv1 by cross-modality init.
        non_local: insert non-local blocks after ``non_local_blocks``.
        frames: frames per clip the network is fed (recorded in ``input_spec``).
        conv1_time_stride: temporal stride of conv1 (1 in the paper, 2 in some recipes).
        pool1_time_stride: temporal stride of pool1.
        inflated_blocks: names ("layer3.0") of the blocks whose first conv gets a
            3x1x1 kernel; default ``default_inflated_blocks``.
        non_local_blocks: names of the blocks followed by a non-local block;
            default ``default_non_local_blocks``.
        time_padding_mode: "zeros" (papers) or "replicate" (exact boring-video check).
        input_size: square crop side declared in ``input_spec`` (the data crops to it; the
            network pools globally, so any size runs).
    """

    def __init__(self, num_classes: int, depth: int = 50, in_channels: int = 3,
                 modality: Literal["rgb", "flow"] = "rgb", dropout: float = 0.5, weights: str | None = None,
                 non_local: bool = False, frames: int = 32, conv1_time_stride: int = 1,
                 pool1_time_stride: int = 2, inflated_blocks: Collection[str] | None = None,
                 non_local_blocks: Collection[str] | None = None,
                 time_padding_mode: TimePaddingMode = "zeros", input_size: int = 224) -> None:
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"depth must be one of {RESNET_DEPTHS}, got {depth}")
        if modality == "rgb" and in_channels == 3:
            spec = imagenet_rgb(dims=3, frames=frames, size=input_size)
        elif modality == "flow" and in_channels == 2:
            spec = flow_unit(dims=3, frames=frames, size=input_size)
        else:
            raise ValueError(f"modality={modality!r} does not take {in_channels} channels (rgb: 3, flow: 2)")

        net2d = torchvision_model(f"resnet{depth}", weights, classifier=RESNET_LAYOUT.classifier)
        adapt_first_conv(net2d, RESNET_LAYOUT.first_conv, in_channels)
        layers = _block_counts(net2d)
        inflated = set(default_inflated_blocks(layers) if inflated_blocks is None else inflated_blocks)
        _check_blocks(inflated, layers, "inflated_blocks")

        def time_kernel(name: str, conv: nn.Conv2d) -> int:
            if name == "conv1":
                return 5
            block, _, conv_name = name.rpartition(".")
            return 3 if block in inflated and conv_name == "conv1" else 1

        time_strides = {"conv1": conv1_time_stride, "maxpool": pool1_time_stride}
        net = inflate(net2d, time_kernel, time_stride=lambda name, module: time_strides.get(name, 1),
                      pool_time_kernel=lambda name, module: 3 if name == "maxpool" else 1,
                      time_padding_mode=time_padding_mode)
        net.layer1.add_module("pool2", nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)))

        if non_local:
            chosen = set(default_non_local_blocks(layers) if non_local_blocks is None else non_local_blocks)
            _check_blocks(chosen, layers, "non_local_blocks")
            for k in range(2, 5):
                stage = getattr(net, f"layer{k}")
                children = OrderedDict()
                for i, block in enumerate(stage):
                    children[str(i)] = block  # block keys stay those of the 2D weights
                    if f"layer{k}.{i}" in chosen:
                        children[f"non_local{i}"] = NonLocalBlock(_out_channels(block))
                setattr(net, f"layer{k}", nn.Sequential(children))

        num_features = net.fc.in_features
        net.fc = nn.Identity()  # net(x) now returns N x num_features
        super().__init__(net, num_features, num_classes, dropout, spec)
