"""CNN-M-2048 (Chatfield et al. 2014), the network of both two-stream streams (2014).

Pooling rounds up (``ceil_mode``) as in the Caffe original, so a 224 x 224 input
reaches fc6 as 512 x 6 x 6 (fc6 is sized for that input).
The temporal net drops the LRN after conv2.
"""

from collections import OrderedDict
from typing import Literal

from torch import nn

from models.adapt import Backbone
from models.stream2d import stream_input_spec


def _lrn() -> nn.LocalResponseNorm:
    # Krizhevsky et al.'s across-channel LRN, which CNN-M takes over.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class CNNM2048(Backbone):
    """CNN-M-2048 with dropout after fc6 and fc7; features are fc7's 2048 activations.

    Args:
        num_classes: classes of the classifier.
        in_channels: 3 for the spatial stream, 2L (20 in the paper) for the temporal one.
        modality: "rgb" or "flow"; sets the input spec and the LRN default.
        lrn_after_conv2: keep the LRN after conv2; default True for rgb, False for
            flow (the paper's temporal net drops it).
        dropout: dropout probability after fc6 and fc7 (the paper: 0.5, or 0.9
            when fine-tuning all layers of the spatial net).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, modality: Literal["rgb", "flow"] = "rgb",
                 lrn_after_conv2: bool | None = None, dropout: float = 0.5) -> None:
        spec = stream_input_spec(modality, in_channels)
        if lrn_after_conv2 is None:
            lrn_after_conv2 = modality == "rgb"
        features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 96, 7, stride=2)),  # N x 96 x 109 x 109
            ("relu1", nn.ReLU(inplace=True)),
            ("norm1", _lrn()),
            ("pool1", _pool()),  # N x 96 x 54 x 54
            ("conv2", nn.Conv2d(96, 256, 5, stride=2, padding=1)),  # N x 256 x 26 x 26
            ("relu2", nn.ReLU(inplace=True)),
            ("norm2", _lrn() if lrn_after_conv2 else nn.Identity()),
            ("pool2", _pool()),  # N x 256 x 13 x 13
            ("conv3", nn.Conv2d(256, 512, 3, padding=1)),
            ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(512, 512, 3, padding=1)),
            ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(512, 512, 3, padding=1)),  # N x 512 x 13 x 13
            ("relu5", nn.ReLU(inplace=True)),
            ("pool5", _pool()),  # N x 512 x 6 x 6
            ("flatten", nn.Flatten(1)),  # N x 18432
            ("fc6", nn.Linear(512 * 6 * 6, 4096)),  # the 224 x 224 input of the paper
            ("relu6", nn.ReLU(inplace=True)),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 2048)),  # N x 2048
            ("relu7", nn.ReLU(inplace=True)),
        ]))
        super().__init__(features, 2048, num_classes, dropout, spec)
