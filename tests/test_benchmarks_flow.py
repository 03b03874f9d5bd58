"""Smoke test of benchmarks/flow_speed.py: its --quick mode runs on a tiny generated video (rows as
measured, --json)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "flow_speed.py"
HEADERS = (
    "| algorithm | pairs | bare ms/pair | tool ms/pair | tool overhead | decord, 1 thread ms/pair |",
    "| algorithm | videos | pairs | 1 worker pairs/s | 2 workers pairs/s | 2 vs 1 |",
    "| JPEG quality | KiB/pair (x+y) | vs float32 | mean abs err px | max abs err px |",
)


def _tiny_video(path: Path, frames: int = 6, width: int = 64, height: int = 48) -> Path:
    """A smooth texture drifting right by 2 px a frame."""
    noise = np.random.default_rng(0).random((height, width + 2 * frames)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    assert writer.isOpened()
    for k in range(frames):
        window = texture[:, 2 * (frames - k) : 2 * (frames - k) + width]
        writer.write(cv2.cvtColor(np.ascontiguousarray(window), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def _run(*args: str, merged: bool = False) -> subprocess.CompletedProcess:
    """The script; ``merged``: its stderr (progress) in stdout, in the order both were written."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merged else {"capture_output": True}
    return subprocess.run([sys.executable, str(SCRIPT), *args], text=True, timeout=300, **streams)


@pytest.mark.slow
@pytest.mark.parametrize(
    "frames",
    [
        "0",  # whole video, no ffmpeg needed
        "4",  # a 4-frame clip cut with ffmpeg (installed by .ci/run)
    ],
)
def test_quick_run_prints_the_tables(tmp_path, frames):
    video = _tiny_video(tmp_path / "tiny.mp4")
    # One pass over the three copies of the video per worker count keeps the test short.
    result = _run("--quick", "--video", str(video), "--frames", frames, "--short-side", "0", "--throughput-seconds",
                  "0", "--json", str(tmp_path / "flow.json"), merged=True)
    assert result.returncode == 0, result.stdout
    for header in HEADERS:
        assert header in result.stdout
    assert "64x48 -> 64x48" in result.stdout
    # Each row is out before the next algorithm is timed.
    assert result.stdout.index("| tvl1 |") < result.stdout.index("timing dis")
    document = json.loads((tmp_path / "flow.json").read_text())
    overhead, throughput, storage = document["tables"]
    assert [row["algorithm"] for row in overhead["rows"]] == ["tvl1", "dis", "farneback"]
    pairs = 5 if frames == "0" else 3  # the 6-frame video, or its 4-frame clip
    assert all(row["pairs"] == pairs and row["bare ms/pair"] > 0 for row in overhead["rows"])
    assert [row["JPEG quality"] for row in storage["rows"]] == [100, 95, 90, 75]
    assert {"cpu_count", "torch", "device", "opencv"} <= set(document["machine"])


@pytest.mark.slow
def test_fast_algorithms_run_on_whole_videos_by_default(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=9)
    result = _run("--video", str(video), "--algorithms", "dis", "--short-side", "0", "--repeats", "1",
                  "--throughput-seconds", "0", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "| dis | 8 |" in result.stdout  # all 9 frames, not a clip


def test_missing_video_is_reported(tmp_path):
    result = _run("--quick", "--video", str(tmp_path / "absent.mp4"))
    assert result.returncode != 0
    assert "no such video" in result.stderr


@pytest.mark.slow
def test_raft_is_timed_with_random_weights_in_the_real_format(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    result = _run("--quick", "--video", str(video), "--algorithms", "dis", "--raft-weights", "random",
                  "--raft-model", "small", "--short-side", "0", "--throughput-seconds", "0", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "| raft | 2 |" in result.stdout


def test_missing_raft_weights_are_reported(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    result = _run("--quick", "--video", str(video), "--raft-weights", str(tmp_path / "absent.pt"))
    assert result.returncode != 0
    assert "no such RAFT weights file" in result.stderr
