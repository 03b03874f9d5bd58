"""Many test views of a video through a network with bounded memory, and their per-video score."""

import torch
from torch import Tensor, nn

from datamodules.test_views import TestViews


def forward_views(network: nn.Module, views: Tensor | TestViews, chunk_size: int) -> Tensor:
    """Logits for every view of every video, at most ``chunk_size`` views per forward.

    The 2D test protocol gives 250 views per video (25 positions x 10 crops); one
    forward over all of them is the classic out-of-memory of 25x10 testing, so peak
    activation memory here is that of ``chunk_size`` views, whatever V is. Views given as
    ``TestViews`` (the datamodules' test batches) are also cut and converted a chunk at a
    time, so their inputs never exist all at once either.

    Args:
        network: maps (B, ...) inputs to (B, C) logits.
        views: (N, V, ...) a batch of N videos with V views each, or their ``TestViews``.
        chunk_size: views per forward pass.
    Returns:
        (N, V, C) logits.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_videos, num_views = views.shape[:2]
    if isinstance(views, TestViews):
        logits = torch.cat([network(chunk) for chunk in views.chunks(chunk_size)])
        return logits.reshape(num_videos, num_views, -1)
    # A view of the batch when it can be (no copy), so chunks keep its memory layout: channels-last
    # samples stay channels-last for a channels-last network (lightning_modules.gpu_settings).
    flat = views.reshape(num_videos * num_views, *views.shape[2:])
    logits = torch.cat([network(chunk) for chunk in flat.split(chunk_size)])
    return logits.reshape(num_videos, num_views, -1)


def video_scores(view_logits: Tensor) -> Tensor:
    """Per-video class scores: the softmax averaged over views, as both papers test."""
    return view_logits.float().softmax(dim=-1).mean(dim=1)
