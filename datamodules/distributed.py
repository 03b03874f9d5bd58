"""A distributed sampler for evaluation that never pads.

torch's DistributedSampler (which Lightning installs by default) repeats samples so
that every rank gets the same count: 499 test videos are then scored as 512
(Lightning issue 4732). Here rank r takes videos r, r + W, r + 2W, ...: every video
goes to exactly one rank, and ranks may differ in length by one.
"""

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Shards ``range(len(dataset))`` over ranks without padding or shuffling.

    A ``DistributedSampler`` subclass because Lightning keeps a loader's sampler only
    when it is one; any other sampler it wraps in its own padding sampler.

    Args:
        dataset: anything with ``len()``.
        num_replicas: world size; from ``torch.distributed`` when initialised, else 1.
        rank: this process's rank; from ``torch.distributed`` when initialised, else 0.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        initialised = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if initialised else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        super().__init__(dataset, self.num_replicas, self.rank, shuffle=False)  # type: ignore[arg-type]
        self.dataset_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_size, self.num_replicas))
