import errno
import os
import threading
from dataclasses import replace
from pathlib import Path

import av
import cv2
import decord
import numpy as np
import pytest

import flow.extract
import flow.extraction_config
import flow.outputs
import flow.frames
from flow.algorithms import FlowAlgorithm
from flow.codec import decode_jpeg, dequantize
from flow.extract import (
    ExtractionConfig,
    FatalError,
    VideoError,
    extract_many,
    extract_video,
)  # fmt: skip
from flow.meta import META_FILE, read_meta
from flow.store import FolderFlowStore
from flow.videos import list_videos

FOURCC = {".avi": "XVID", ".mp4": "mp4v"}


def write_moving_video(path: Path, frames: int = 8, speed: int = 2, size: tuple[int, int] = (64, 48)) -> Path:
    """A blurred random texture sliding right by ``speed`` px per frame, written with OpenCV."""
    width, height = size
    rng = np.random.default_rng(len(path.name))
    texture = cv2.GaussianBlur((rng.random((height, width + speed * frames + 8)) * 255).astype(np.uint8), (5, 5), 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), 25, size)
    assert writer.isOpened(), path
    start = speed * frames
    for t in range(frames):
        # The window moves left over the texture, so the content moves right.
        window = texture[:, start - speed * t : start - speed * t + width]
        writer.write(cv2.cvtColor(np.ascontiguousarray(window), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


FAST = ExtractionConfig(algorithm="dis", short_side=32)


def stored_flow(out_dir: Path, backward: bool = False) -> np.ndarray:
    store = FolderFlowStore(out_dir.parent)
    meta = store.meta(out_dir.name)
    return dequantize(store.read_flow(out_dir.name, range(meta.num_flows), backward), meta.bound)


def test_names_numbering_and_meta(tmp_path):
    video = write_moving_video(tmp_path / "v.avi")
    config = ExtractionConfig(algorithm="dis", short_side=32, bound=15)
    result = extract_video(video, tmp_path / "out" / "v", config)
    folder = tmp_path / "out" / "v"
    names = sorted(p.name for p in folder.iterdir())
    expected = [f"flow_{axis}_{k:05d}.jpg" for axis in "xy" for k in range(1, 8)]
    assert names == sorted(expected + [META_FILE])
    meta = read_meta(folder)
    assert (meta.num_frames, meta.num_flows, meta.start_index, meta.step) == (8, 7, 1, 1)
    assert (meta.algorithm, meta.bound, meta.jpeg_quality) == ("dis", 15, 95)
    assert (meta.width, meta.height) == (43, 32)  # 64x48 with the short side at 32
    assert decode_jpeg((folder / "flow_x_00007.jpg").read_bytes()).shape == (32, 43)
    assert meta.source == str(video) and meta.fps == pytest.approx(25)
    assert result.pairs == 7 and result.num_frames == 8
    assert result.bytes_written == sum(p.stat().st_size for p in folder.glob("flow_*.jpg"))
    # Summed over the flow threads, which run pairs at once: up to their number times the wall clock.
    assert 0 < result.flow_seconds < result.seconds * config.flow_threads()


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_rightward_motion_forward_positive_backward_negative(tmp_path, suffix):
    video = write_moving_video(tmp_path / f"v{suffix}")
    extract_video(video, tmp_path / "v", ExtractionConfig(algorithm="dis", short_side=0, backward=True))
    forward, backward = stored_flow(tmp_path / "v"), stored_flow(tmp_path / "v", backward=True)
    assert forward.shape == backward.shape == (7, 2, 48, 64)
    assert forward[:, 0].mean() > 1.0 and abs(forward[:, 1].mean()) < 0.3
    assert backward[:, 0].mean() < -1.0
    assert (tmp_path / "v" / "flow_bx_00007.jpg").is_file() and (tmp_path / "v" / "flow_by_00001.jpg").is_file()


def test_tvl1_on_a_tiny_video(tmp_path):
    video = write_moving_video(tmp_path / "v.avi", frames=3, speed=1, size=(32, 24))
    result = extract_video(video, tmp_path / "v", ExtractionConfig(algorithm="tvl1", short_side=0))
    assert result.pairs == 2
    assert read_meta(tmp_path / "v").params["tau"] == 0.25
    assert stored_flow(tmp_path / "v")[:, 0].mean() > 0.5


def test_rgb_frames_and_step(tmp_path):
    video = write_moving_video(tmp_path / "v.mp4", frames=9)
    extract_video(video, tmp_path / "v", ExtractionConfig(algorithm="dis", short_side=32, rgb=True, step=2))
    meta = read_meta(tmp_path / "v")
    assert (meta.num_frames, meta.num_flows, meta.step, meta.rgb) == (5, 4, 2, True)  # frames 0, 2, 4, 6, 8
    images = sorted(p.name for p in (tmp_path / "v").glob("img_*.jpg"))
    assert images == [f"img_{k:05d}.jpg" for k in range(1, 6)]
    assert decode_jpeg((tmp_path / "v" / "img_00005.jpg").read_bytes(), color=True).shape == (32, 43, 3)
    # Two frames apart, the texture moved 4 px: 4 * 32/48 at the new size.
    assert stored_flow(tmp_path / "v")[:, 0].mean() == pytest.approx(4 * 32 / 48, abs=0.6)


def test_one_frame_video_fails_with_the_reason(tmp_path):
    video = write_moving_video(tmp_path / "still.avi", frames=1)
    with pytest.raises(VideoError, match="1 frame.*needs 2"):
        extract_video(video, tmp_path / "still", FAST)
    assert not (tmp_path / "still").exists()


def extraction_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("flow-")]


def corrupt_decord_batch(monkeypatch) -> None:
    """decord raises on the second batch of frames, as on a corrupt packet."""
    real_get_batch = decord.VideoReader.get_batch
    calls = []

    def get_batch(reader, indices):
        calls.append(indices)
        if len(calls) == 2:
            raise decord.DECORDError("corrupt packet")
        return real_get_batch(reader, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", get_batch)


def corrupt_pyav_frame(monkeypatch) -> None:
    """PyAV raises on the tenth frame, as FFmpeg does on an undecodable packet."""
    real_array = flow.frames._array
    calls = []

    def array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise av.error.InvalidDataError(errno.EINVAL, "corrupt packet")
        return real_array(*args, **kwargs)

    monkeypatch.setattr(flow.frames, "_array", array)


@pytest.mark.parametrize(("decoder", "corrupt"), [("decord", corrupt_decord_batch), ("pyav", corrupt_pyav_frame)])
def test_a_decode_error_mid_video_fails_the_video_and_stops_its_threads(tmp_path, monkeypatch, decoder, corrupt):
    write_moving_video(tmp_path / "videos" / "v.avi", frames=30)
    corrupt(monkeypatch)
    config = replace(FAST, decoder=decoder, threads=2)
    summary = extract_many(tmp_path / "videos", ["v.avi"], tmp_path / "out", config, progress=False)
    assert [f.video for f in summary.failures] == ["v.avi"]
    reason = summary.failures[0].reason
    assert reason.startswith("cannot decode frame") and "corrupt packet" in reason
    assert not (tmp_path / "out" / "v").exists()
    assert not extraction_threads()


class BrokenFlow(FlowAlgorithm):
    name = "broken"

    def __call__(self, prev, nxt):
        raise RuntimeError("solver failed")


def test_a_flow_error_stops_the_decoding_and_flow_threads(tmp_path):
    video = write_moving_video(tmp_path / "v.avi", frames=30)
    with pytest.raises(RuntimeError, match="solver failed"):
        extract_video(video, tmp_path / "v", FAST, algorithms=[BrokenFlow(), BrokenFlow()])
    assert not extraction_threads()


def fail_writing(monkeypatch, name: str) -> None:
    """Writing the file called ``name`` fails with an I/O error; every other write succeeds."""
    real_write_file = flow.outputs.write_file

    def write_file(path, data):
        if path.name == name:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_write_file(path, data)

    monkeypatch.setattr(flow.outputs, "write_file", write_file)


def test_an_error_on_the_last_write_is_raised_and_nothing_is_complete(tmp_path, monkeypatch):
    video = write_moving_video(tmp_path / "v.avi")
    fail_writing(monkeypatch, "flow_y_00007.jpg")
    with pytest.raises(OSError, match="Input/output error"):
        extract_video(video, tmp_path / "v", FAST)
    assert not (tmp_path / "v" / META_FILE).exists()


def test_bad_videos_are_reported_and_the_good_ones_extracted(tmp_path):
    root = tmp_path / "videos"
    good = [write_moving_video(root / "a" / "good1.avi"), write_moving_video(root / "b" / "good2.mp4")]
    (root / "a" / "random.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    real = good[0].read_bytes()
    (root / "b" / "truncated.avi").write_bytes(real[: len(real) // 2])
    (root / "b" / "empty.mp4").write_bytes(b"")
    write_moving_video(root / "c" / "still.avi", frames=1)
    videos = list_videos(root) + ["../outside.avi"]
    summary = extract_many(root, videos, tmp_path / "out", FAST, failures_file=tmp_path / "failures.txt", progress=False)
    bad = ["../outside.avi", "a/random.avi", "b/empty.mp4", "b/truncated.avi", "c/still.avi"]
    assert (summary.done, summary.failed, summary.pairs) == (2, 5, 14)
    lines = (tmp_path / "failures.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == bad
    assert "1 frame(s)" in lines[-1] and "empty file" in lines[2]
    assert {p.parent.name for p in (tmp_path / "out").rglob(META_FILE)} == {"good1", "good2"}
    # Failed folders are not left half-written, and nothing escaped the output root.
    assert not (tmp_path / "out" / "a" / "random").exists() and not (tmp_path / "outside").exists()


def test_resume_skips_complete_folders_and_redoes_half_written_ones(tmp_path):
    root = tmp_path / "videos"
    for name in ["v1.avi", "v2.avi", "v3.mp4"]:
        write_moving_video(root / name)
    out = tmp_path / "out"
    extract_many(root, list_videos(root), out, FAST, progress=False)
    # A run killed midway on v2: meta.json not yet written, one file stale, one from a longer run.
    (out / "v2" / META_FILE).unlink()
    (out / "v2" / "flow_x_00003.jpg").write_bytes(b"half")
    (out / "v2" / "flow_x_00099.jpg").write_bytes(b"stale")
    (out / "v2" / "keep.txt").write_text("not ours")
    before = {p: p.stat().st_mtime_ns for p in (out / "v1").iterdir()}

    summary = extract_many(root, list_videos(root), out, FAST, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "v1").iterdir()} == before
    assert read_meta(out / "v2").num_flows == 7
    assert not (out / "v2" / "flow_x_00099.jpg").exists() and (out / "v2" / "keep.txt").exists()
    assert decode_jpeg((out / "v2" / "flow_x_00003.jpg").read_bytes()).shape == (32, 43)


def test_disk_full_stops_the_run_and_leaves_nothing_complete(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    for name in ["v1.avi", "v2.avi"]:
        write_moving_video(root / name)
    calls = []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.write_bytes(data)
        return len(data)

    monkeypatch.setattr(flow.outputs, "write_file", full_disk)
    with pytest.raises(FatalError, match="No space left on device"):
        extract_many(root, list_videos(root), tmp_path / "out", FAST, progress=False)
    assert len(calls) == 4  # stopped at the first failing write, not retried per video
    assert not list((tmp_path / "out").rglob(META_FILE))


def test_unwritable_output_root_is_one_clear_error(tmp_path):
    write_moving_video(tmp_path / "videos" / "v.avi")
    (tmp_path / "file").write_text("a regular file, so nothing can be created under it")
    with pytest.raises(FatalError, match="not writable"):
        extract_many(tmp_path / "videos", ["v.avi"], tmp_path / "file" / "out", FAST, progress=False)


def test_same_video_id_twice_fails_both_on_every_run(tmp_path):
    write_moving_video(tmp_path / "videos" / "v.avi")
    write_moving_video(tmp_path / "videos" / "v.mp4")
    for listed in (["v.avi", "v.mp4"], ["v.mp4"]):  # the second: a rerun from the failures list
        summary = extract_many(tmp_path / "videos", listed, tmp_path / "out", FAST, progress=False)
        assert summary.done == 0 and [f.video for f in summary.failures] == listed
        assert all("same video id" in failure.reason for failure in summary.failures)
    assert not (tmp_path / "out" / "v").exists()


def test_two_workers_write_the_same_files_as_one(tmp_path):
    root = tmp_path / "videos"
    for name in ["a/v1.avi", "a/v2.mp4", "b/v3.avi"]:
        write_moving_video(root / name)
    (root / "b" / "bad.avi").write_bytes(b"not a video")
    # Farneback: OpenCV's DIS carries state between calls (~1e-6 px), which can flip a level.
    config = ExtractionConfig(algorithm="farneback", short_side=32, backward=True)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        summary = extract_many(root, list_videos(root), out, config, workers=workers,
                               failures_file=out / "failures.txt", progress=False)
        assert (summary.done, summary.failed) == (3, 1)
        results[workers] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len(results[1]) == 3 * (4 * 7 + 1) + 1
    assert results[1] == results[2]


def worker_crashing_on_marked_videos(config, workers):
    """Stands in for a worker process's extractor: dies like a segfaulting decoder on videos named 'crash'."""
    extract = _real_process_worker(config, workers)

    def run(job):
        if "crash" in job.listed:
            os._exit(11)
        return extract(job)

    return run


_real_process_worker = flow.extract._process_worker


def test_a_crashing_worker_fails_only_its_video(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    for name in ["a.avi", "b_crash.avi", "c.avi"]:
        write_moving_video(root / name, frames=3)
    # Workers import this test module to unpickle the function: they crash for real.
    monkeypatch.setattr(flow.extract, "_process_worker", worker_crashing_on_marked_videos)
    summary = extract_many(root, list_videos(root), tmp_path / "out", FAST, workers=2, progress=False)
    assert summary.done == 2 and [f.video for f in summary.failures] == ["b_crash.avi"]
    assert "crashed" in summary.failures[0].reason
    assert {p.parent.name for p in (tmp_path / "out").rglob(META_FILE)} == {"a", "c"}


@pytest.mark.parametrize("algorithm", ["dis", "farneback"])
def test_flow_threads_write_the_same_files_as_one(tmp_path, algorithm):
    video = write_moving_video(tmp_path / "v.avi", frames=12)
    outputs = []
    for threads in (1, 3):
        out = tmp_path / f"threads{threads}"
        # At 64x48: below ~40 px OpenCV's DIS carries state from call to call.
        config = ExtractionConfig(algorithm=algorithm, short_side=0, backward=True, threads=threads)
        extract_video(video, out, config)
        outputs.append({p.name: p.read_bytes() for p in out.glob("flow_*.jpg")})
    assert len(outputs[0]) == 4 * 11
    assert outputs[0] == outputs[1]


def test_flow_threads_default_to_the_cores_over_the_workers(monkeypatch):
    monkeypatch.setattr(flow.extraction_config, "usable_cores", lambda: 8)
    assert ExtractionConfig(algorithm="dis").flow_threads() == 8
    assert ExtractionConfig(algorithm="dis").flow_threads(workers=3) == 2
    assert ExtractionConfig(algorithm="dis").flow_threads(workers=16) == 1
    assert ExtractionConfig(algorithm="dis", threads=5).flow_threads(workers=3) == 5
    # RAFT parallelises inside the call (torch threads, GPU): one instance, whatever is asked.
    assert ExtractionConfig(algorithm="raft", threads=4).flow_threads() == 1
    assert len(ExtractionConfig(algorithm="farneback", threads=3).create_algorithms()) == 3


def test_opencv_threads_are_restored_after_a_video(tmp_path, opencv_three_threads):
    video = write_moving_video(tmp_path / "v.avi")
    extract_video(video, tmp_path / "v", replace(FAST, threads=2))
    assert cv2.getNumThreads() == opencv_three_threads


def test_a_write_error_mid_video_stops_every_thread_before_it_is_raised(tmp_path, monkeypatch):
    video = write_moving_video(tmp_path / "v.avi", frames=30)
    fail_writing(monkeypatch, "flow_x_00003.jpg")
    with pytest.raises(OSError, match="Input/output error") as raised:
        extract_video(video, tmp_path / "v", replace(FAST, threads=2))
    # Checked while the traceback (which holds the function's frame) is still alive.
    assert raised.value is not None and not extraction_threads()


def test_a_raft_worker_takes_its_share_of_the_cores_for_torch(tmp_path, monkeypatch):
    import torch
    from torchvision.models.optical_flow import raft_small

    weights = tmp_path / "raft_small.pt"
    torch.save(raft_small(weights=None).state_dict(), weights)
    config = ExtractionConfig(algorithm="raft", params={"model": "small", "weights": str(weights)})
    monkeypatch.setattr(flow.extract, "usable_cores", lambda: 4)
    torch_threads, opencv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        flow.extract._process_worker(config, workers=2)
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(opencv_threads)


@pytest.mark.parametrize(("algorithm", "torch_threads"), [("tvl1_torch", 1), ("dis", None)])
def test_a_worker_sizes_the_thread_pool_its_algorithm_declares(monkeypatch, algorithm, torch_threads):
    import torch

    monkeypatch.setattr(flow.extract, "usable_cores", lambda: 4)
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(3)
    try:
        flow.extract._process_worker(ExtractionConfig(algorithm=algorithm), workers=2)
        # tvl1_torch: one torch thread (not the worker's 2 cores); OpenCV's solvers leave torch alone.
        assert torch.get_num_threads() == (torch_threads or 3) and cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
