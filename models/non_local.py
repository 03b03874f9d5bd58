"""The embedded-Gaussian non-local block (Wang et al., "Non-local Neural Networks", 2018).

Every position of a clip attends to every (subsampled) position:
``z = x + BN(W y)``, ``y = softmax(theta(x)^T phi(x)) g(x)``. The BN after W starts
with zero scale, so a freshly inserted block is the identity and a pretrained
network keeps its output.
"""

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block over N x C x T x H x W features, with a residual.

    Args:
        channels: input and output channels C.
        inner_channels: channels of theta, phi and g; default C // 2 (the paper).
        subsample: max-pool phi and g by 1x2x2 (the paper), quartering the attention cost.
    """

    def __init__(self, channels: int, inner_channels: int | None = None, subsample: bool = True) -> None:
        super().__init__()
        inner = inner_channels or channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2)) if subsample else nn.Identity()
        self.out = nn.Conv3d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)  # starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.theta(x).flatten(2)  # N x C' x THW
        phi = self.pool(self.phi(x)).flatten(2)  # N x C' x M
        g = self.pool(self.g(x)).flatten(2)  # N x C' x M
        attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # N x THW x M
        y = (attention @ g.transpose(1, 2)).transpose(1, 2)  # N x C' x THW
        return x + self.bn(self.out(y.reshape(n, -1, t, h, w)))  # N x C x T x H x W
