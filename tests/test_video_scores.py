import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from datamodules.distributed import UnpaddedDistributedSampler
from lightning_modules.evaluation.scores import (
    VideoScoreCollector,
    load_video_scores,
    save_video_scores,
)

NUM_VIDEOS, NUM_CLASSES = 7, 4


def _scores_for(index: int) -> np.ndarray:
    return np.random.default_rng(index).random(NUM_CLASSES, dtype=np.float32)


def _collect(world_size: int, rank: int) -> dict[str, np.ndarray]:
    collector = VideoScoreCollector()
    indices = list(UnpaddedDistributedSampler(range(NUM_VIDEOS), world_size, rank))
    for batch in (indices[:2], indices[2:]):
        if batch:
            collector.add(
                torch.tensor(batch),
                torch.tensor(batch) % NUM_CLASSES,
                {"rgb": torch.from_numpy(np.stack([_scores_for(i) for i in batch]))},
            )
    return collector.gather()


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        results = _collect(world_size, rank)
        np.savez(f"{out}_{rank}.npz", **results)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_gather_is_sorted_and_complete() -> None:
    results = _collect(1, 0)
    assert results["index"].tolist() == list(range(NUM_VIDEOS))
    np.testing.assert_array_equal(results["scores_rgb"][3], _scores_for(3))


@pytest.mark.parametrize("world_size", [3])  # 7 videos: uneven shards 3, 2, 2
def test_ddp_gather_counts_every_video_once(tmp_path, world_size: int) -> None:
    out = str(tmp_path / "rank")
    mp.spawn(_worker, args=(world_size, _free_port(), out), nprocs=world_size)
    single = _collect(1, 0)
    for rank in range(world_size):
        with np.load(f"{out}_{rank}.npz") as gathered:
            for key in single:
                np.testing.assert_array_equal(gathered[key], single[key])


def test_duplicates_raise() -> None:
    collector = VideoScoreCollector()
    collector.add(torch.tensor([0, 0]), torch.tensor([1, 1]), {"rgb": torch.zeros(2, 3)})
    with pytest.raises(RuntimeError, match="more than once"):
        collector.gather()


def test_save_and_load_round_trip(tmp_path) -> None:
    results = _collect(1, 0)
    ids = [f"Class/v_{i}" for i in range(NUM_VIDEOS)]
    path = save_video_scores(tmp_path / "scores.npz", results, ids)
    loaded = load_video_scores(path)
    assert loaded["video_ids"].tolist() == ids
    np.testing.assert_array_equal(loaded["scores_rgb"], results["scores_rgb"])
