from collections import Counter

import pytest

from datamodules.distributed import UnpaddedDistributedSampler


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 7, 499])
def test_every_video_on_exactly_one_rank(world_size: int, size: int) -> None:
    dataset = range(size)
    shards = [list(UnpaddedDistributedSampler(dataset, world_size, rank)) for rank in range(world_size)]
    counts = Counter(i for shard in shards for i in shard)
    assert sorted(counts) == list(range(size))
    assert all(c == 1 for c in counts.values())
    for rank, shard in enumerate(shards):
        assert len(UnpaddedDistributedSampler(dataset, world_size, rank)) == len(shard)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_rank_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        UnpaddedDistributedSampler(range(4), num_replicas=2, rank=2)
