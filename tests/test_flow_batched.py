import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_flow_extract import corrupt_pyav_frame, write_moving_video

import flow.batched
import flow.frames
import flow.outputs
from flow.algorithms import ALGORITHMS, FlowAlgorithm
from flow.extract import ExtractionConfig, FatalError, extract_many, list_videos
from flow.meta import META_FILE, read_meta


class DifferenceFlow(FlowAlgorithm):
    """A deterministic stand-in with a batched form: x = (next - prev) / 8, y = (prev + next) / 64 - 4
    px (exact in float32 in numpy and torch, beyond the bound where frames differ much, on the
    rounding ties often). ``sizes`` records the batches it was called on."""

    name = "difference"
    parallel_copies = False
    defaults = {"device": "cpu"}
    sizes: list[int] = []

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        first, second = prev.astype(np.float32), nxt.astype(np.float32)
        return np.stack([(second - first) / 8, (first + second) / 64 - 4], axis=-1)

    def batch(self, prev, nxt) -> torch.Tensor:
        device = self.params()["device"]
        first, second = (torch.as_tensor(frames).to(device).float() for frames in (prev, nxt))
        type(self).sizes.append(len(first))
        return torch.stack([(second - first) / 8, (first + second) / 64 - 4], dim=-1)


@pytest.fixture(autouse=True)
def difference_flow(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, DifferenceFlow.name, DifferenceFlow)
    monkeypatch.setattr(DifferenceFlow, "sizes", [])
    return DifferenceFlow


def per_video(**changes) -> ExtractionConfig:
    """The per-video path's settings (built when the test has registered its algorithm)."""
    return ExtractionConfig(**{"algorithm": "difference", "short_side": 32, "backward": True, "rgb": True, **changes})


def batched(**changes) -> ExtractionConfig:
    return per_video(**{"batch": 4, "threads": 2, **changes})


# Two sizes (43 x 32 after resizing, and 32 x 43), frame counts 6 to 12.
VIDEOS = {"a/v1.avi": ((64, 48), 9), "a/v2.mp4": ((64, 48), 12), "b/v3.avi": ((48, 64), 6), "b/v4.avi": ((64, 48), 7)}


@pytest.fixture
def video_root(tmp_path) -> Path:
    root = tmp_path / "videos"
    for name, (size, frames) in VIDEOS.items():
        write_moving_video(root / name, frames=frames, size=size)
    return root


def extracted(out: Path) -> dict[str, bytes]:
    """Every file written under ``out`` but the failures list."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "failures.txt"}  # fmt: skip


def extraction_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("flow-")]


def run(root: Path, out: Path, config: ExtractionConfig, videos: list[str] | None = None):
    return extract_many(root, videos or list_videos(root), out, config, failures_file=out / "failures.txt",
                        progress=False)  # fmt: skip


def per_video_files(root: Path, tmp_path: Path, videos: list[str] | None = None) -> dict[str, bytes]:
    summary = run(root, tmp_path / "per_video", per_video(), videos)
    assert summary.failed == 0
    return extracted(tmp_path / "per_video")


def test_batched_files_are_byte_identical_to_the_per_video_path(tmp_path, video_root, monkeypatch):
    mixed = []
    real_write = flow.batched.BatchedRun._write

    def write(run_, pairs, payloads, seconds):
        mixed.append(len({pair.video.job.listed for pair in pairs}))
        return real_write(run_, pairs, payloads, seconds)

    monkeypatch.setattr(flow.batched.BatchedRun, "_write", write)
    summary = run(video_root, tmp_path / "batched", batched())
    assert (summary.done, summary.failed, summary.pairs) == (4, 0, 8 + 11 + 5 + 6)
    assert summary.bytes_written == sum(len(data) for name, data in extracted(tmp_path / "batched").items()
                                        if name.endswith(".jpg"))
    assert max(mixed) > 1  # pairs of several videos shared a call
    assert max(DifferenceFlow.sizes) == 4 and sum(DifferenceFlow.sizes) == 2 * summary.pairs
    files = extracted(tmp_path / "batched")
    assert files == per_video_files(video_root, tmp_path)  # meta.json included
    assert read_meta(tmp_path / "batched" / "b" / "v3").width == 32
    assert not extraction_threads()


@pytest.mark.parametrize("batch", [1, 3])
def test_batch_size_does_not_change_the_files(tmp_path, video_root, batch):
    videos = ["a/v1.avi", "b/v3.avi"]
    summary = run(video_root, tmp_path / "batched", batched(batch=batch, threads=1), videos)
    assert summary.done == 2
    assert extracted(tmp_path / "batched") == per_video_files(video_root, tmp_path, videos)


def test_batched_tvl1_torch_writes_the_per_video_files(tmp_path, video_root):
    # Few iterations keep the CPU solver quick; the solver is the same at any setting.
    params = {"nscales": 2, "warps": 1, "outer_iterations": 2, "inner_iterations": 3, "median_filtering": 1}
    per_video = ExtractionConfig(algorithm="tvl1_torch", params=params, short_side=32)
    videos = ["a/v1.avi", "b/v3.avi", "b/v4.avi"]
    for name, config in (("per_video", per_video), ("batched", replace(per_video, batch=4, threads=2))):
        assert run(video_root, tmp_path / name, config, videos).done == 3
    assert extracted(tmp_path / "batched") == extracted(tmp_path / "per_video")


@pytest.mark.parametrize("batch", [2, 8])  # its first pairs written before it fails; all still waiting
def test_a_video_failing_mid_decode_fails_alone(tmp_path, video_root, monkeypatch, batch):
    write_moving_video(video_root / "a/v0_long.avi", frames=30)
    (video_root / "b" / "broken.avi").write_bytes(b"not a video")
    real_array = flow.frames._array
    corrupt_pyav_frame(monkeypatch)  # the tenth frame converted in the process fails
    config = batched(batch=batch, threads=1)  # one decoding thread: the long video comes first
    summary = run(video_root, tmp_path / "batched", config)
    assert (summary.done, summary.failed) == (4, 2)
    lines = (tmp_path / "batched" / "failures.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["a/v0_long.avi", "b/broken.avi"]
    assert lines[0].split("\t")[1].startswith("cannot decode frame ") and "corrupt packet" in lines[0]
    assert not (tmp_path / "batched" / "a" / "v0_long").exists()  # its partial files are gone
    monkeypatch.setattr(flow.frames, "_array", real_array)
    files = extracted(tmp_path / "batched")
    assert files == per_video_files(video_root, tmp_path, list(VIDEOS))
    assert not extraction_threads()


def test_resume_skips_complete_videos_and_redoes_half_written_ones(tmp_path, video_root):
    out = tmp_path / "batched"
    run(video_root, out, batched())
    (out / "a" / "v2" / META_FILE).unlink()
    (out / "a" / "v2" / "flow_x_00003.jpg").write_bytes(b"half")
    (out / "a" / "v2" / "flow_x_00099.jpg").write_bytes(b"stale")
    before = {p: p.stat().st_mtime_ns for p in (out / "a" / "v1").iterdir()}
    summary = run(video_root, out, batched())
    assert (summary.done, summary.skipped, summary.failed) == (1, 3, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "a" / "v1").iterdir()} == before
    files = extracted(out)
    assert files == per_video_files(video_root, tmp_path)


def out_of_memory_above(monkeypatch, limit: int, sizes: tuple[int, int] | None = None) -> None:
    """The algorithm's batch raises CUDA's out-of-memory error for batches above ``limit`` pairs,
    and for any batch of frames of ``sizes`` (H, W)."""
    real_batch = DifferenceFlow.batch

    def batch(self, prev, nxt):
        if len(prev) > limit or tuple(prev.shape[1:3]) == sizes:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_batch(self, prev, nxt)

    monkeypatch.setattr(DifferenceFlow, "batch", batch)


def test_out_of_memory_halves_the_batch_with_one_warning(tmp_path, video_root, monkeypatch):
    real_batch = DifferenceFlow.batch
    out_of_memory_above(monkeypatch, 2)
    with pytest.warns(RuntimeWarning, match="out of memory computing 8 pairs at once; going on with batches of 4") \
            as caught:  # fmt: skip
        summary = run(video_root, tmp_path / "batched", batched(batch=8))
    assert len([w for w in caught if "out of memory" in str(w.message)]) == 1
    assert (summary.done, summary.failed) == (4, 0)
    assert set(DifferenceFlow.sizes) <= {1, 2} and 2 in DifferenceFlow.sizes
    files = extracted(tmp_path / "batched")
    monkeypatch.setattr(DifferenceFlow, "batch", real_batch)
    assert files == per_video_files(video_root, tmp_path)


def test_out_of_memory_on_a_single_pair_fails_its_video(tmp_path, video_root, monkeypatch):
    out_of_memory_above(monkeypatch, 8, sizes=(43, 32))  # b/v3.avi is the only upright video
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = run(video_root, tmp_path / "batched", batched())
    assert (summary.done, [f.video for f in summary.failures]) == (3, ["b/v3.avi"])
    assert summary.failures[0].reason.startswith("OutOfMemoryError: CUDA out of memory")
    assert not (tmp_path / "batched" / "b" / "v3").exists()


def test_a_flow_error_in_a_shared_batch_fails_only_its_video(tmp_path, video_root, monkeypatch):
    real_batch = DifferenceFlow.batch

    def batch(self, prev, nxt):
        # NaN for the pairs that start on a black frame: only the long video has them.
        black = torch.as_tensor(prev).float().mean(dim=(1, 2)) < 8
        return torch.where(black[:, None, None, None], torch.nan, real_batch(self, prev, nxt))

    monkeypatch.setattr(DifferenceFlow, "batch", batch)
    long_video = write_moving_video(video_root / "a/v0_long.avi", frames=30)
    blacken_frames(long_video, range(12, 14))
    summary = run(video_root, tmp_path / "batched", batched(threads=1))
    assert [f.video for f in summary.failures] == ["a/v0_long.avi"]
    assert summary.failures[0].reason == "ValueError: flow contains NaN"
    assert summary.done == 4 and not (tmp_path / "batched" / "a" / "v0_long").exists()
    assert not extraction_threads()


def blacken_frames(video: Path, black: range) -> None:
    """Rewrite ``video`` with the frames numbered in ``black`` (0-based) black."""
    import cv2

    reader = cv2.VideoCapture(str(video))
    frames = []
    while (frame := reader.read()[1]) is not None:
        frames.append(frame)
    reader.release()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"XVID"), 25, frames[0].shape[1::-1])
    for k, frame in enumerate(frames):
        writer.write(frame * 0 if k in black else frame)
    writer.release()


def test_a_full_disk_stops_the_batched_run(tmp_path, video_root, monkeypatch):
    import errno

    import flow.extract

    calls = []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return len(data)

    monkeypatch.setattr(flow.outputs, "write_file", full_disk)
    with pytest.raises(FatalError, match="No space left on device"):
        run(video_root, tmp_path / "batched", batched())
    assert not list((tmp_path / "batched").rglob(META_FILE))
    assert not extraction_threads()


def test_bad_batched_settings_are_refused(tmp_path, video_root):
    with pytest.raises(ValueError, match="'dis' has no batched form; batch needs one of difference, raft, tvl1_torch"):
        ExtractionConfig(algorithm="dis", batch=4)
    with pytest.raises(ValueError, match="batch must be >= 0"):
        ExtractionConfig(algorithm="difference", batch=-1)
    with pytest.raises(ValueError, match="unknown JPEG encoder"):
        ExtractionConfig(algorithm="difference", batch=4, jpeg="pillow")
    with pytest.raises(ValueError, match="one process"):
        extract_many(video_root, ["a/v1.avi"], tmp_path / "out", batched(), workers=2, progress=False)


def test_python_m_flow_extract_batched_end_to_end(tmp_path, video_root):
    (video_root / "b" / "broken.avi").write_bytes(b"\x00" * 1000)
    out = tmp_path / "frames"
    tvl1 = ["--param", "nscales=2", "--param", "warps=1", "--param", "outer_iterations=2",
            "--param", "inner_iterations=3", "--param", "median_filtering=1"]  # fmt: skip
    command = [sys.executable, "-m", "flow", "extract", str(video_root), str(out), "--algorithm", "tvl1_torch",
               *tvl1, "--device", "cpu", "--batch", "4", "--threads", "2", "--short-side", "32", "--no-progress"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "videos: 4 done, 0 skipped (already complete), 1 failed" in first.stdout
    assert "Traceback" not in first.stderr
    failures = (out / "failures_shard0of1.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in failures] == ["b/broken.avi"]
    meta = read_meta(out / "a" / "v2")
    assert (meta.algorithm, meta.num_flows, meta.params["device"], meta.params["warps"]) == ("tvl1_torch", 11, "cpu", 1)
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1 and "videos: 0 done, 4 skipped (already complete), 1 failed" in second.stdout


@pytest.mark.parametrize(
    "arguments, message",
    [(["--algorithm", "dis", "--batch", "4"], "'dis' has no batched form"),
     (["--algorithm", "tvl1_torch", "--batch", "4", "--workers", "2"], "one process"),
     (["--algorithm", "dis", "--device", "cuda"], "dis runs on no torch device"),
     (["--algorithm", "tvl1_torch", "--device", "cpu", "--param", "device=cuda"], "differs from --param device"),
     (["--algorithm", "tvl1_torch", "--batch", "4", "--jpeg", "nvjpeg"], "invalid choice: 'nvjpeg'")],
)  # fmt: skip
def test_batched_usage_errors_exit_2(tmp_path, video_root, capsys, arguments, message):
    from flow.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["extract", str(video_root), str(tmp_path / "out"), *arguments])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("algorithm", ["difference", "tvl1_torch"])
def test_batched_on_cuda_writes_the_files_of_the_cpu(tmp_path, video_root, algorithm):
    """The GPU path (pinned batches, flow and quantization on the device) writes what the CPU
    path writes: byte for byte for the exact stand-in; for tvl1_torch within a level."""
    config = batched(algorithm=algorithm, rgb=False, backward=False)
    files = {}
    for device in ("cpu", "cuda"):
        summary = run(video_root, tmp_path / device, replace(config, params={"device": device}))
        assert (summary.done, summary.failed) == (4, 0)
        files[device] = extracted(tmp_path / device)
    if algorithm == "difference":
        assert {k: v for k, v in files["cuda"].items() if not k.endswith(META_FILE)} == \
            {k: v for k, v in files["cpu"].items() if not k.endswith(META_FILE)}  # fmt: skip
        return
    from flow.store import FolderFlowStore

    for device in files:
        store = FolderFlowStore(tmp_path / device)
        files[device] = np.concatenate([store.read_flow(v, range(store.num_flows(v))).ravel().astype(int)
                                        for v in ("a/v1", "a/v2", "b/v3", "b/v4")])  # fmt: skip
    assert np.mean(np.abs(files["cuda"] - files["cpu"]) <= 1) > 0.99
