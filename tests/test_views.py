import torch
from torch import nn

from lightning_modules.evaluation.views import forward_views, video_scores


class CountingLinear(nn.Linear):
    """Records the largest batch it saw, to check the memory bound."""

    largest_batch = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest_batch = max(self.largest_batch, x.shape[0])
        return super().forward(x.flatten(1))


def test_chunked_views_equal_one_forward_and_respect_the_chunk() -> None:
    torch.manual_seed(0)
    network = CountingLinear(20 * 4 * 4, 5)
    views = torch.randn(3, 250, 20, 4, 4)
    logits = forward_views(network, views, chunk_size=32)
    assert logits.shape == (3, 250, 5)
    assert network.largest_batch == 32
    expected = network(views.reshape(750, 20, 4, 4)).reshape(3, 250, 5)
    torch.testing.assert_close(logits, expected)


def test_video_scores_average_softmax_over_views() -> None:
    logits = torch.tensor([[[10.0, 0.0], [0.0, 10.0], [0.0, 10.0]]])
    scores = video_scores(logits)
    torch.testing.assert_close(scores.sum(-1), torch.ones(1))
    assert scores[0, 1] > scores[0, 0]
    torch.testing.assert_close(scores, logits.softmax(-1).mean(1))


def test_chunks_keep_the_views_memory_layout() -> None:
    """Channels-last views (as lightning_modules.gpu_settings lays them out on a GPU) reach the
    network channels-last, with no copy of the batch."""
    views = torch.randn(2, 5, 8, 8, 3).movedim(-1, 2)  # N x V x C x H x W, channels innermost
    seen = []
    network = nn.Conv2d(3, 4, 3)
    network.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    forward_views(network, views, chunk_size=3)
    assert [len(x) for x in seen] == [3, 3, 3, 1]
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    assert seen[0].data_ptr() == views.data_ptr()
