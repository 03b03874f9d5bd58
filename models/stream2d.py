"""Two-stream 2D streams on torchvision networks: ResNet-18..152 and GoogLeNet.

A spatial stream sees one RGB frame (3 channels), a temporal stream a stack of L
flow fields (2L channels, x1..xL, y1..yL). ImageNet weights reach a flow stream
through cross-modality initialisation of conv1 (``models.adapt.adapt_first_conv``).
"""

from typing import Literal

from torch import nn

from models.adapt import Backbone, Layout, adapt_first_conv, replace_module
from models.input_spec import InputSpec, flow_pixels, imagenet_rgb
from models.weights import torchvision_model

Modality = Literal["rgb", "flow"]

RESNET_DEPTHS = (18, 34, 50, 101, 152)
RESNET_LAYOUT = Layout(first_conv="conv1", classifier="fc")
GOOGLENET_LAYOUT = Layout(first_conv="conv1.conv", classifier="fc")


def stream_input_spec(modality: Modality, in_channels: int, size: int = 224) -> InputSpec:
    """A 2D stream's input: ImageNet-normalised RGB, or a stack of flow fields in pixels."""
    if modality == "rgb" and in_channels == 3:
        return imagenet_rgb(size=size)
    if modality == "flow" and in_channels % 2 == 0:
        return flow_pixels(fields=in_channels // 2, size=size)
    raise ValueError(f"modality={modality!r} does not take {in_channels} channels (rgb: 3, flow: 2L)")


def _stream_parts(net: nn.Module, layout: Layout, in_channels: int, modality: Modality,
                  input_size: int = 224) -> tuple[nn.Module, int, InputSpec]:
    """``net`` (changed in place) as a stream's (features, num_features, input_spec).

    The first conv is adapted to ``in_channels``; the classifier becomes ``nn.Identity``,
    so ``features(x)`` returns N x num_features.
    """
    spec = stream_input_spec(modality, in_channels, input_size)
    adapt_first_conv(net, layout.first_conv, in_channels)
    num_features = net.get_submodule(layout.classifier).in_features
    replace_module(net, layout.classifier, nn.Identity())
    return net, num_features, spec


class ResNetStream(Backbone):
    """A ResNet stream (torchvision's ResNet-``depth``) with a new dropout + linear head.

    Args:
        num_classes: classes of the classifier.
        depth: 18, 34, 50, 101 or 152.
        in_channels: 3 for RGB, 2L for a stack of L flow fields.
        modality: "rgb" (spatial stream) or "flow" (temporal stream).
        dropout: dropout probability before the classifier.
        weights: None (random), a torchvision weights name of the ResNet
            ("IMAGENET1K_V1", "DEFAULT"; downloaded on first use) or a local file
            with a torchvision ResNet state dict.
        input_size: square crop side the stream is fed (its ``input_spec``, which the data
            follows); the ResNet pools adaptively, so smaller crops make quick runs cheap.
    """

    def __init__(self, num_classes: int, depth: int = 50, in_channels: int = 3, modality: Modality = "rgb",
                 dropout: float = 0.5, weights: str | None = None, input_size: int = 224) -> None:
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"depth must be one of {RESNET_DEPTHS}, got {depth}")
        net = torchvision_model(f"resnet{depth}", weights, classifier=RESNET_LAYOUT.classifier)
        features, num_features, spec = _stream_parts(net, RESNET_LAYOUT, in_channels, modality, input_size)
        super().__init__(features, num_features, num_classes, dropout, spec)


class GoogLeNetStream(Backbone):
    """A GoogLeNet (Inception-v1 with batch norm, torchvision's) stream with a new head.

    The auxiliary classifiers are left out (their weights in a file are skipped).
    With weights and RGB input torchvision's ``transform_input`` is on, as its own
    builder sets it: the ImageNet weights expect the input it produces.

    Args:
        num_classes: classes of the classifier.
        in_channels: 3 for RGB, 2L for a stack of L flow fields.
        modality: "rgb" (spatial stream) or "flow" (temporal stream).
        dropout: dropout probability before the classifier.
        weights: None (random), a torchvision weights name of GoogLeNet
            ("IMAGENET1K_V1", "DEFAULT") or a local file with its state dict.
        input_size: square crop side the stream is fed (its ``input_spec``, which the data
            follows); GoogLeNet pools adaptively.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, modality: Modality = "rgb", dropout: float = 0.5,
                 weights: str | None = None, input_size: int = 224) -> None:
        net = torchvision_model("googlenet", weights, classifier=GOOGLENET_LAYOUT.classifier,
                                ignore=("aux1.", "aux2."), aux_logits=False, init_weights=weights is None,
                                transform_input=weights is not None and in_channels == 3)
        net.dropout = nn.Identity()  # the Backbone head has its own
        features, num_features, spec = _stream_parts(net, GOOGLENET_LAYOUT, in_channels, modality, input_size)
        super().__init__(features, num_features, num_classes, dropout, spec)
