"""flow/memory_store.py: flow extracted into memory is the extractor's own bytes, read as a folder is."""

import os
from dataclasses import asdict, replace

import numpy as np
import pytest

from flow.extract import ExtractionConfig, extract_video
from flow.frames import VideoError
from flow.memory_store import MemoryFlowStore
from flow.store import FolderFlowStore
from tests.test_flow_extract import write_moving_video

# Two flow threads in memory, one for the folder: the bytes must not depend on which thread drew
# which pair (OpenCV's DIS once kept state between calls on frames this small).
CONFIG = ExtractionConfig(algorithm="dis", short_side=32, backward=True, rgb=True, threads=2)


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[FolderFlowStore, MemoryFlowStore]:
    """One video extracted to a folder and into memory with the same settings."""
    root = tmp_path_factory.mktemp("memory_store")
    video = write_moving_video(root / "v.avi", frames=9)
    extract_video(video, root / "flow" / "v", replace(CONFIG, threads=1))
    memory = MemoryFlowStore()
    memory.extract(video, "v", CONFIG)
    return FolderFlowStore(root / "flow"), memory


def test_files_and_meta_are_the_folders_byte_for_byte(both) -> None:
    folder, memory = both
    on_disk = {name for name in os.listdir(folder.folder("v")) if name != "meta.json"}
    assert set(memory._files["v"]) == on_disk
    for name in on_disk:
        assert memory._files["v"][name] == (folder.folder("v") / name).read_bytes(), name
    assert asdict(memory.meta("v")) == asdict(folder.meta("v"))


def test_fields_and_frames_read_as_from_the_folder(both) -> None:
    folder, memory = both
    count = folder.meta("v").num_flows
    for backward in (False, True):
        expected = folder.read_fields("v", [0, 3, 3, count - 1], backward)
        got = memory.read_fields("v", [0, 3, 3, count - 1], backward)
        assert got.bound == expected.bound
        assert np.array_equal(got.planes.numpy(), expected.planes.numpy())
    assert np.array_equal(memory.read_rgb("v", [0, count]), folder.read_rgb("v", [0, count]))
    assert memory.num_flows("v") == count and memory.num_rgb("v") == count + 1 and memory.is_complete("v")


def test_a_span_reads_the_videos_fields_from_its_first_frame(both) -> None:
    _, memory = both
    memory.add_span("v@2", of="v", first=2, count=4)
    assert (memory.meta("v@2").num_frames, memory.num_flows("v@2")) == (4, 3)
    for backward in (False, True):
        assert np.array_equal(memory.read_fields("v@2", [0, 2], backward).planes.numpy(),
                              memory.read_fields("v", [2, 4], backward).planes.numpy())
    assert np.array_equal(memory.read_rgb("v@2", [3]), memory.read_rgb("v", [5]))
    with pytest.raises(IndexError):
        memory.read_fields("v@2", [3])  # past the span: refused as past a video's end
    with pytest.raises(ValueError, match="does not fit"):
        memory.add_span("late", of="v", first=7, count=4)


def test_the_batched_path_keeps_the_per_video_files(tmp_path) -> None:
    """With ``batch`` (a GPU's way: tvl1_torch or RAFT), the same bytes as the per-video path."""
    video = write_moving_video(tmp_path / "v.avi", frames=6)
    quick = {"nscales": 2, "warps": 1, "outer_iterations": 2, "inner_iterations": 3, "median_filtering": 1}
    config = ExtractionConfig(algorithm="tvl1_torch", params=quick, short_side=32, backward=True)
    per_video, batched = MemoryFlowStore(), MemoryFlowStore()
    per_video.extract(video, "v", config)
    result = batched.extract(video, "v", replace(config, batch=4, threads=1))
    assert result.pairs == per_video.meta("v").num_flows == 5
    assert batched._files["v"] == per_video._files["v"]
    assert asdict(batched.meta("v")) == asdict(per_video.meta("v"))
    with pytest.raises(VideoError):
        batched.extract(tmp_path / "missing.mp4", "missing", replace(config, batch=4, threads=1))
    assert not batched.exists("missing")


def test_a_bad_video_raises_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    memory = MemoryFlowStore()
    with pytest.raises(VideoError):
        memory.extract(broken, "broken", CONFIG)
    assert not memory.exists("broken") and memory.meta("broken") is None
    assert os.listdir(tmp_path) == ["broken.mp4"]  # no folder, no lock, no temporary name
    with pytest.raises(FileNotFoundError, match="no video 'broken' in memory"):
        memory.num_flows("broken")
