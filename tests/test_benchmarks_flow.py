"""Smoke test of benchmarks/flow_speed.py: its --quick mode runs on a tiny generated video (rows as
measured, --json), and so does its GPU flow engine table (benchmarks/flow_engine.py)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "flow_speed.py"
HEADERS = (
    "| algorithm | pairs | bare ms/pair | tool ms/pair | tool overhead | bare CPU ms/pair | tool CPU ms/pair |",
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
                  "0", "--engine", "", "--json", str(tmp_path / "flow.json"), merged=True)
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
                  "--throughput-seconds", "0", "--workers", "1", "--engine", "")
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
                  "--raft-model", "small", "--short-side", "0", "--throughput-seconds", "0", "--workers", "1",
                  "--engine", "")
    assert result.returncode == 0, result.stderr
    assert "| raft | 2 |" in result.stdout


def test_missing_raft_weights_are_reported(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    result = _run("--quick", "--video", str(video), "--raft-weights", str(tmp_path / "absent.pt"))
    assert result.returncode != 0
    assert "no such RAFT weights file" in result.stderr


ENGINE_HEADER = ("| algorithm | device | batch | pairs | bare pairs/s | tool pairs/s | tool vs bare | bare CPU ms/pair | "
                 "tool CPU ms/pair | time/pair vs OpenCV tvl1 | EPE to OpenCV tvl1 px | EPE to truth px |")


def _engine_run(tmp_path: Path, device: str) -> tuple[str, dict]:
    """The engine table alone, quick, on 64x48 clips of a tiny video, with random RAFT-small weights."""
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    result = _run("--quick", "--engine-only", "--device", device, "--video", str(video), "--engine-size", "64x48",
                  "--short-side", "0", "--raft-weights", "random", "--raft-model", "small", "--batch", "2",
                  "--engine-pairs", "4", "--json", str(tmp_path / "engine.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads((tmp_path / "engine.json").read_text())


@pytest.mark.slow
def test_engine_rows_on_the_cpu(tmp_path):
    stdout, document = _engine_run(tmp_path, "cpu")
    assert ENGINE_HEADER in stdout
    assert "| tvl1_torch | cpu | 2 | 4 |" in stdout  # 2 copies of the 3-frame clip, 2 pairs each
    assert "random weights" in stdout and "one thread per instance" in stdout
    (table,) = document["tables"]  # --engine-only: the engine table alone
    assert "64x48" in table["title"]
    opencv, tvl1_torch, raft = table["rows"]
    assert [row["algorithm"] for row in table["rows"]] == ["tvl1 (OpenCV)", "tvl1_torch", "raft-small fp32"]
    assert opencv["batch"] is None and opencv["time/pair vs OpenCV tvl1"] == 1.0
    for row in table["rows"]:
        assert row["bare pairs/s"] > 0 and row["tool pairs/s"] > 0
        assert row["tool vs bare"] == pytest.approx(row["tool pairs/s"] / row["bare pairs/s"])
        assert row["bare CPU ms/pair"] > 0 and row["tool CPU ms/pair"] > 0
    # tvl1_torch is OpenCV's solver: close to its flow, as close to the truth.
    assert tvl1_torch["EPE to OpenCV tvl1 px"] < 0.25
    assert tvl1_torch["EPE to truth px"] <= 1.1 * opencv["EPE to truth px"]
    assert raft["EPE to OpenCV tvl1 px"] is None and raft["EPE to truth px"] is None  # random weights
    assert document["finished"] and "gpu" not in document["machine"]


@pytest.mark.slow
def test_the_default_run_ends_with_the_engine_table(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    result = _run("--quick", "--video", str(video), "--algorithms", "dis", "--short-side", "0", "--throughput-seconds",
                  "0", "--workers", "1", "--engine-size", "64x48", "--json", str(tmp_path / "flow.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    titles = [table["title"] for table in json.loads((tmp_path / "flow.json").read_text())["tables"]]
    assert len(titles) == 4 and titles[-1].startswith("GPU flow engine")
    assert "| tvl1_torch | cpu | 2 |" in result.stdout
    assert "raft: not measured; pass --raft-weights" in result.stdout  # raft is in --engine by default


def test_engine_arguments_are_checked(tmp_path):
    video = _tiny_video(tmp_path / "tiny.mp4", frames=4)
    for args, message in [(["--engine", "farneback"], "--engine: unknown"), (["--engine-size", "64"], "WxH"),
                          (["--batch", "0"], "--batch"), (["--raft-precisions", "fp16"], "--raft-precisions")]:
        result = _run("--quick", "--engine-only", "--video", str(video), *args)
        assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_engine_on_cuda_without_a_gpu_is_refused(tmp_path):
    result = _run("--quick", "--engine-only", "--device", "cuda", "--video", str(tmp_path / "any.mp4"))
    assert result.returncode != 0 and "torch sees no CUDA device" in result.stderr


@pytest.mark.gpu
def test_engine_rows_on_cuda(tmp_path):
    _, document = _engine_run(tmp_path, "cuda")
    (table,) = document["tables"]
    assert document["machine"]["gpu"] in table["title"]
    assert [row["device"] for row in table["rows"]] == ["cpu", "cuda", "cuda", "cuda"]  # raft: fp32, bf16
    assert [row["algorithm"] for row in table["rows"]][2:] == ["raft-small fp32", "raft-small bf16"]
    tvl1_torch = table["rows"][1]
    assert tvl1_torch["EPE to OpenCV tvl1 px"] < 0.25 and tvl1_torch["bare pairs/s"] > 0
