"""Inflating 2D networks into 3D ones (I3D, Carreira & Zisserman 2017).

Every N x N kernel becomes T x N x N. Bootstrapped weights ("bootstrap": the 2D
kernel repeated T times along time, divided by T) make a "boring" video, one
image repeated, give the 3D network the 2D network's output on that image.

Zero padding in time (the papers' choice) breaks that property at the first and
last frames of a clip: a bootstrapped kernel there sees zeros instead of the
repeated image. ``time_padding_mode="replicate"`` pads time by repeating the
border frames (space is still zero-padded, as in the 2D network), which keeps
the property exact on every frame; the weights are the same either way, so a
network can be checked with "replicate" and trained with "zeros". The
"centre" init (2D kernel in the middle slice, zeros elsewhere) is exact with
either padding.
"""

import copy
import itertools
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

Init = Literal["bootstrap", "centre"]
TimePaddingMode = Literal["zeros", "replicate"]


class ReplicateTimePadConv3d(nn.Conv3d):
    """A Conv3d that pads time by repeating the border frames and space by zeros.

    Its parameters and state dict are those of an ``nn.Conv3d``; ``padding`` holds
    only the spatial padding (time padding 0), ``time_padding`` the frames added
    on each side.
    """

    def __init__(self, *args, time_padding: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.time_padding
        x = F.pad(x, (0, 0, 0, 0, p, p), mode="replicate")  # N x C x (T + 2p) x H x W
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, time_padding={self.time_padding} (replicate)"


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def inflate_conv(
    conv: nn.Conv2d,
    time_kernel: int,
    *,
    time_stride: int = 1,
    time_padding: int | None = None,
    init: Init = "bootstrap",
    time_padding_mode: TimePaddingMode = "zeros",
) -> nn.Conv3d:
    """Turn a Conv2d into a Conv3d with a ``time_kernel x kh x kw`` kernel.

    Args:
        conv: the 2D convolution; its weights are copied, it is left unchanged.
        time_kernel: temporal kernel size T.
        time_stride: temporal stride.
        time_padding: frames padded on each side in time; default
            ``(time_kernel - 1) // 2`` (keeps the length for odd T at stride 1).
        init: "bootstrap" repeats the 2D kernel T times and divides by T (I3D);
            "centre" puts it in slice ``T // 2`` with zeros elsewhere.
        time_padding_mode: "zeros" (the papers) or "replicate" (border frames
            repeated: a boring video then gives the 2D output on every frame).
    """
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError(f"cannot inflate {conv}: only numeric zero padding is supported")
    if time_padding is None:
        time_padding = (time_kernel - 1) // 2
    kernel = (time_kernel, *_pair(conv.kernel_size))
    stride = (time_stride, *_pair(conv.stride))
    dilation = (1, *_pair(conv.dilation))
    space_padding = _pair(conv.padding)
    common = dict(stride=stride, dilation=dilation, groups=conv.groups, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
    if time_padding_mode == "replicate":
        conv3d: nn.Conv3d = ReplicateTimePadConv3d(conv.in_channels, conv.out_channels, kernel,
                                                   padding=(0, *space_padding),
                                                   time_padding=time_padding, **common)
    elif time_padding_mode == "zeros":
        conv3d = nn.Conv3d(conv.in_channels, conv.out_channels, kernel,
                           padding=(time_padding, *space_padding), **common)
    else:
        raise ValueError(f"time_padding_mode must be 'zeros' or 'replicate', got {time_padding_mode!r}")

    with torch.no_grad():
        weight2d = conv.weight.unsqueeze(2)  # out x in/groups x 1 x kh x kw
        if init == "bootstrap":
            conv3d.weight.copy_(weight2d.expand_as(conv3d.weight) / time_kernel)
        elif init == "centre":
            conv3d.weight.zero_()
            conv3d.weight[:, :, time_kernel // 2].copy_(conv.weight)
        else:
            raise ValueError(f"init must be 'bootstrap' or 'centre', got {init!r}")
        if conv.bias is not None:
            conv3d.bias.copy_(conv.bias)
    return conv3d


def inflate_batchnorm(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """Turn a BatchNorm2d into a BatchNorm3d with the same affine parameters and running stats."""
    bn3d = nn.BatchNorm3d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                          track_running_stats=bn.track_running_stats)
    # Parameters and buffers share their names and shapes between the two classes.
    bn3d.load_state_dict(bn.state_dict())
    state = next(itertools.chain(bn.parameters(), bn.buffers()), None)
    if state is not None:
        bn3d.to(state.device)
    bn3d.train(bn.training)
    return bn3d


def inflate_pool(pool: nn.Module, time_kernel: int = 1, time_stride: int = 1, *,
                 time_padding: int | None = None) -> nn.Module:
    """Turn a 2D pooling layer into its 3D equivalent.

    MaxPool2d / AvgPool2d get a ``time_kernel x kh x kw`` window with ``time_stride``
    and ``time_padding`` (default ``(time_kernel - 1) // 2``; max pooling pads with
    -inf, so a boring video is unaffected). AdaptiveAvgPool2d / AdaptiveMaxPool2d
    with output (h, w) become (1, h, w): time is pooled to one step, so the
    ``torch.flatten(x, 1)`` + Linear heads of torchvision networks work unchanged.
    """
    if time_padding is None:
        time_padding = (time_kernel - 1) // 2
    if isinstance(pool, nn.MaxPool2d):
        return nn.MaxPool3d((time_kernel, *_pair(pool.kernel_size)),
                            stride=(time_stride, *_pair(pool.stride)),
                            padding=(time_padding, *_pair(pool.padding)),
                            dilation=(1, *_pair(pool.dilation)), ceil_mode=pool.ceil_mode)
    if isinstance(pool, nn.AvgPool2d):
        return nn.AvgPool3d((time_kernel, *_pair(pool.kernel_size)),
                            stride=(time_stride, *_pair(pool.stride)),
                            padding=(time_padding, *_pair(pool.padding)), ceil_mode=pool.ceil_mode,
                            count_include_pad=pool.count_include_pad,
                            divisor_override=pool.divisor_override)
    if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = (1, *_pair(pool.output_size))
        return nn.AdaptiveAvgPool3d(size) if isinstance(pool, nn.AdaptiveAvgPool2d) else nn.AdaptiveMaxPool3d(size)
    raise TypeError(f"no 3D equivalent known for {type(pool).__name__}")


_POOLS_2D = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PerLayer = Callable[[str, nn.Module], int]


def _per_layer(choice: int | PerLayer | None, default: int) -> PerLayer:
    if choice is None:
        return lambda name, module: default
    if isinstance(choice, int):
        return lambda name, module: choice
    return choice


def inflate(
    model: nn.Module,
    time_kernel: int | PerLayer = 3,
    *,
    init: Init = "bootstrap",
    time_stride: PerLayer | None = None,
    pool_time_kernel: int | PerLayer = 1,
    time_padding_mode: TimePaddingMode = "zeros",
) -> nn.Module:
    """A 3D copy of a 2D network: Conv2d, BatchNorm2d and pools replaced by 3D ones.

    Works on any network whose forward only calls its modules and shape-agnostic
    functions (torchvision's ResNet, and GoogLeNet without auxiliary heads, whose
    ``transform_input`` indexes channels only). Other modules (ReLU, Linear after
    ``torch.flatten(x, 1)``, Dropout) are kept. ``model`` is left unchanged.

    Args:
        model: the 2D network.
        time_kernel: temporal kernel of the convolutions; an int applies to every
            conv with a spatial kernel larger than 1x1 (1x1 convs become 1x1x1, as
            in I3D), a function of (qualified name, Conv2d) decides per layer.
        init: "bootstrap" or "centre" (see ``inflate_conv``).
        time_stride: function of (qualified name, module) giving the temporal stride
            of each conv and pool; default 1 everywhere.
        pool_time_kernel: temporal window of MaxPool2d / AvgPool2d, an int or a
            function of (qualified name, pool); adaptive pools always pool time to 1.
        time_padding_mode: "zeros" (papers) or "replicate" (exact boring-video check).
    """
    if isinstance(time_kernel, int):
        kernel_for = lambda name, conv: time_kernel if max(_pair(conv.kernel_size)) > 1 else 1  # noqa: E731
    else:
        kernel_for = time_kernel
    stride_for = _per_layer(time_stride, 1)
    pool_kernel_for = _per_layer(pool_time_kernel, 1)

    model3d = copy.deepcopy(model)
    for name, module in list(model3d.named_modules()):
        if isinstance(module, nn.Conv2d):
            new = inflate_conv(module, kernel_for(name, module), time_stride=stride_for(name, module),
                               init=init, time_padding_mode=time_padding_mode)
        elif isinstance(module, nn.BatchNorm2d):
            new = inflate_batchnorm(module)
        elif isinstance(module, _POOLS_2D):
            new = inflate_pool(module, pool_kernel_for(name, module), stride_for(name, module))
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model3d.get_submodule(parent_name), child, new)
    return model3d
