"""The I3D paper's "3D-Fused Two-Stream" baseline (Carreira & Zisserman 2017, Section 2.4).

Two 2D Inception-V1 towers, one on 5 RGB frames 10 frames apart, one on the 10-field flow
stack that starts at each of them. Their last conv features (before the average pool,
1024 x 7 x 7 per time point) are stacked over the 5 time points, concatenated along
channels and fused by a 3x3x3 conv with 512 outputs (batch norm and ReLU, as after every
conv in the paper), a 3x3x3 max-pool and a fully connected layer. The paper does not say
how the pooled grid meets that layer; averaging it keeps the count at the paper's 39M
(flattening the 2 x 3 x 3 grid would add ~3.7M at 400 classes).
"""

import torch
from torch import Tensor, nn

from models.adapt import linear_classifier, replacement_classifier
from models.input_spec import InputSpec, flow_unit, symmetric_rgb
from models.stream2d import GoogLeNetStream

# torchvision GoogLeNet up to its last conv features; its forward's ``transform_input`` is
# skipped, so ImageNet weights see what they expect there: inputs in [-1, 1].
GOOGLENET_TRUNK = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                   "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                   "inception4e", "maxpool4", "inception5a", "inception5b")


def googlenet_tower(in_channels: int, weights: str | None) -> nn.Sequential:
    """torchvision GoogLeNet's conv layers: N x in_channels x 224 x 224 -> N x 1024 x 7 x 7.

    Args:
        in_channels: 3 for RGB; 2L for a flow stack (ImageNet conv1 then cross-modality
            initialised).
        weights: None (random), a local torchvision GoogLeNet state-dict file or a
            torchvision weights name.
    """
    modality = "rgb" if in_channels == 3 else "flow"
    net = GoogLeNetStream(1, in_channels, modality, weights=weights).features
    return nn.Sequential(*(net.get_submodule(name) for name in GOOGLENET_TRUNK))


def flow_stacks(flow: Tensor, fields: int) -> Tensor:
    """N x 2 x T*L x H x W consecutive flow -> N x 2L x T x H x W, one stack per time point.

    Each stack's channels are x1..xL, y1..yL, the two-stream paper's order.

    Args:
        flow: consecutive flow fields, x and y as the 2 channels.
        fields: fields per stack L.
    """
    n, _, total, h, w = flow.shape
    stacks = flow.reshape(n, 2, total // fields, fields, h, w)    # N x 2 x T x L x H x W
    return stacks.transpose(2, 3).reshape(n, 2 * fields, -1, h, w)  # N x 2L x T x H x W


class FusedTwoStream3D(nn.Module):
    """3D-Fused Two-Stream; shapes for 5 time points of 224 x 224.

    Inputs: ``rgb`` N x 3 x T x H x W (T time points) and ``flow`` N x 2 x (T*L) x H x W,
    the T*L consecutive flow fields that start at the T frames (L per stack). Each input is
    described in `input_specs`.

    Args:
        num_classes: classes of the classifier.
        weights: both towers' GoogLeNet weights (see `googlenet_tower`).
        time_points: frames T (5 in the paper).
        flow_fields: flow fields per stack L (10 in the paper).
        dropout: dropout probability before the classifier.
    """

    def __init__(self, num_classes: int = 400, weights: str | None = None, time_points: int = 5,
                 flow_fields: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.input_specs: dict[str, InputSpec] = {
            "rgb": symmetric_rgb(frames=time_points),
            "flow": flow_unit(frames=time_points * flow_fields),
        }
        self.flow_fields = flow_fields
        self.rgb_tower = googlenet_tower(3, weights)
        self.flow_tower = googlenet_tower(2 * flow_fields, weights)
        self.fusion = nn.Sequential(
            nn.Conv3d(2 * 1024, 512, 3, padding=1, bias=False),  # N x 512 x 5 x 7 x 7
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),                # N x 512 x 3 x 4 x 4
        )
        self.num_features = 512
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(self.num_features, num_classes)

    def _tower(self, tower: nn.Sequential, x: Tensor) -> Tensor:
        """Run a 2D tower on every time point: N x C x T x H x W -> N x 1024 x T x h x w."""
        n, t = x.shape[0], x.shape[2]
        frames = x.transpose(1, 2).flatten(0, 1)  # N*T x C x H x W
        features = tower(frames)                  # N*T x 1024 x 7 x 7
        return features.unflatten(0, (n, t)).transpose(1, 2)

    def forward_features(self, rgb: Tensor, flow: Tensor) -> Tensor:
        """N x 3 x T x H x W and N x 2 x T*L x H x W -> fused grid N x 512 x t x h x w."""
        stacks = flow_stacks(flow, self.flow_fields)  # N x 20 x 5 x 224 x 224
        both = torch.cat([self._tower(self.rgb_tower, rgb), self._tower(self.flow_tower, stacks)], dim=1)
        return self.fusion(both)  # N x 2048 x 5 x 7 x 7 -> N x 512 x 3 x 4 x 4

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(features.mean(dim=(2, 3, 4)))  # N x 512
        return x if pre_logits else self.fc(x)  # N x num_classes

    def forward(self, rgb: Tensor, flow: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(rgb, flow))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = replacement_classifier(self, num_classes)
