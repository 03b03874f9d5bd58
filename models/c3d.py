"""The I3D paper's "3D-ConvNet" baseline: C3D (Tran et al. 2015) with batch norm.

Eight 3x3x3 convs, five max-pools and two 4096-unit fully connected layers on
16 x 112 x 112 clips, trained from scratch. As the I3D paper (Carreira & Zisserman 2017,
Section 2.2) describes its variant: batch norm after every conv and fully connected
layer, and a temporal stride of 2 in the first pool (C3D has 1), so the last pool works
on one time step and pools space only.
"""

import torch
from torch import Tensor, nn

from models.adapt import linear_classifier, replacement_classifier
from models.input_spec import InputSpec, symmetric_rgb


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]


def _fc(in_features: int, out_features: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features),
            nn.ReLU(inplace=True), nn.Dropout(dropout)]


class C3D(nn.Module):
    """C3D with batch norm; shapes for a 16 x 112 x 112 clip (the only size the FC layers fit).

    Args:
        num_classes: classes of the classifier.
        dropout: dropout probability after fc6 and fc7.
        input_size: square crop side declared in ``input_spec`` (112 in the paper; other
            sizes run, their last grid max-pooled to fc6's 1 x 4 x 4, which 112 gives as it is).
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.5, input_size: int = 112) -> None:
        super().__init__()
        self.input_spec: InputSpec = symmetric_rgb(frames=16, size=input_size)
        self.num_features = 4096
        self.features = nn.Sequential(
            *_conv(3, 64), nn.MaxPool3d(2, 2),                # N x 64 x 8 x 56 x 56
            *_conv(64, 128), nn.MaxPool3d(2, 2),                        # N x 128 x 4 x 28 x 28
            *_conv(128, 256), *_conv(256, 256), nn.MaxPool3d(2, 2),     # N x 256 x 2 x 14 x 14
            *_conv(256, 512), *_conv(512, 512), nn.MaxPool3d(2, 2),     # N x 512 x 1 x 7 x 7
            *_conv(512, 512), *_conv(512, 512),
            nn.MaxPool3d((1, 2, 2), (1, 2, 2), padding=(0, 1, 1)),      # N x 512 x 1 x 4 x 4
            nn.AdaptiveMaxPool3d((1, 4, 4)),                            # the identity at 16 x 112 x 112
        )
        self.pre_logits = nn.Sequential(*_fc(512 * 4 * 4, 4096, dropout),  # fc6: N x 4096
                                        *_fc(4096, 4096, dropout))         # fc7: N x 4096
        self.fc = linear_classifier(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """N x 3 x 16 x 112 x 112 -> N x 512 x 1 x 4 x 4."""
        return self.features(x)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """N x num_classes; ``pre_logits``: fc7's N x 4096."""
        x = self.pre_logits(torch.flatten(features, 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = replacement_classifier(self, num_classes)
