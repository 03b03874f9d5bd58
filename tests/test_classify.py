"""``python cli.py classify``: a real two-stream checkpoint (one training batch of tiny networks on
the tiny synthetic UCF-101, written by ``cli.py fit``) on real videos, flow computed in memory.

What a user sees: the printed top-k per stream and fused, the JSON lines (every class's
probability, the protocol), folders, globs and list files, a corrupt video named and skipped
(exit 1), a checkpoint that is not one (exit 2, one line), sliding windows, a rendered video
with as many frames as its source (a rotated phone video: drawn upright), and Ctrl-C / SIGTERM
leaving no output that looks complete.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from flow.frames import PyAVFrames
from inference import classify
from inference.classify_output import top_table
from inference.scoring import VideoScorer
from tests.test_checkpoints import bad_copies
from tests.test_rotation import rotated_copy
from tests.test_scoring import experiment

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["GreenSquares", "MoveDown", "MoveUp", "RedCircles"]  # the tiny UCF-101's, in label order


@pytest.fixture(scope="module")
def checkpoint(ucf101_tiny, tmp_path_factory) -> Path:
    """A two-stream model's last.ckpt (ResNet-18 streams on 32 px crops, DIS flow)."""
    data, frames = ucf101_tiny
    return experiment("two_stream", data, frames, tmp_path_factory.mktemp("classify")) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def videos(ucf101_tiny) -> list[Path]:
    data, _ = ucf101_tiny
    return sorted(data.videos)


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = classify.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_glob_and_list_give_top_k_per_stream_and_every_probability(checkpoint, videos, tmp_path, capsys):
    folder, listed = videos[0].parent, videos[8]  # 4 videos per class folder
    pattern = str(videos[4].parent / "*g01_c01.avi")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{listed} 3\n{videos[0]} 0\n")  # extra columns ignored; a video named twice runs once
    output = tmp_path / "out" / "scores.jsonl"
    status, out, err = run(capsys, "--checkpoint", checkpoint, folder, pattern, listing, "--output", output,
                           "--top", "3", "--views", "2x5")
    expected = [*videos[:4], *sorted(videos[4].parent.glob("*g01_c01.avi")), listed]
    assert status == 0, err
    assert f"classified {len(expected)} of {len(expected)} videos" in err and f"wrote {output}" in err
    lines = records(output)
    assert [Path(line["video"]) for line in lines] == expected
    first = lines[0]
    assert first["classes"] == CLASSES and first["views"] == "2x5" and first["flow_engine"] == "dis"
    assert first["protocol"] == {"positions": 2, "crops": "five", "views": 10}
    assert list(first["scores"]) == ["fusion", "spatial", "temporal"]
    for probabilities in first["scores"].values():
        assert len(probabilities) == 4 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    # The printed table is the JSON's scores, top 3, fused first.
    scores = {name: np.array(values) for name, values in first["scores"].items()}
    block = out.split(f"{expected[0]}  (positions 2, crops five, views 10; flow dis)\n", 1)[1].splitlines()[:4]
    assert block == top_table(scores, CLASSES, 3)
    assert block[0].split() == ["rank", "fusion", "spatial", "temporal"] and len(block[1].split()) == 7
    assert not list(output.parent.glob("*.tmp-*")), "the temporary file was left beside the output"


@pytest.mark.slow
def test_a_corrupt_video_is_named_and_skipped_in_a_real_process(checkpoint, videos, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(videos[0].read_bytes()[:200])  # a download cut short
    rotated = rotated_copy(videos[1], tmp_path / "phone.mp4", 90)  # mp4v in MP4: a phone's display matrix
    output = tmp_path / "scores.jsonl"
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "classify", "--checkpoint", str(checkpoint),
                             str(corrupt), str(rotated), str(tmp_path / "missing.avi"), "--output", str(output),
                             "--views", "centre"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2 and f"failed: {corrupt}: " in failed[1] and len(failed[1]) > len(f"failed: {corrupt}: ")
    assert failed[0] == f"failed: {tmp_path / 'missing.avi'}: no such file or folder"
    assert f"{rotated}  (positions 1, crops centre, views 1; flow dis)" in result.stdout
    lines = {Path(line["video"]).name: line for line in records(output)}
    assert set(lines["corrupt.mp4"]) == {"video", "error"} and lines["phone.mp4"]["scores"]["fusion"]
    assert "error" in lines["missing.avi"]


@pytest.mark.parametrize("bad", ["missing", "truncated"])
def test_a_checkpoint_that_is_not_one_is_one_line_and_exit_2(checkpoint, videos, bad, tmp_path, capsys):
    saved = tmp_path / "last.ckpt"
    saved.write_bytes(checkpoint.read_bytes())
    status, out, err = run(capsys, "--checkpoint", bad_copies(saved)[bad], videos[0])
    assert status == 2 and not out
    (line,) = err.splitlines()
    assert line.startswith(f"error: checkpoint {tmp_path / bad}.ckpt: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusing --device cuda needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line(checkpoint, videos, capsys):
    status, _, err = run(capsys, "--checkpoint", checkpoint, videos[0], "--device", "cuda")
    assert status == 2 and err == "error: --device cuda: torch sees no CUDA device here; use --device cpu\n"


def test_windows_and_render(checkpoint, videos, tmp_path, capsys):
    """Windows of 0.2 s every 0.2 s over a 12-frame 25 fps video (the last one 2 frames: one flow field);
    the render has every source frame, upright."""
    source = rotated_copy(videos[2], tmp_path / "phone.mp4", 90)
    output, rendered = tmp_path / "windows.jsonl", tmp_path / "labelled.mp4"
    status, out, err = run(capsys, "--checkpoint", checkpoint, source, "--window", "0.2", "--output", output,
                           "--render", rendered, "--views", "centre", "--top", "2")
    assert status == 0, err
    (line,) = records(output)
    spans = [(window["start"], window["end"]) for window in line["windows"]]
    assert spans == [pytest.approx(span) for span in [(0.0, 0.2), (0.2, 0.4), (0.4, 0.48)]]
    assert "scores" not in line and all(set(w["scores"]) == {"fusion", "spatial", "temporal"}
                                        for w in line["windows"])
    assert out.splitlines()[0] == f"{source}  (3 windows of 0.2 s every 0.2 s; positions 1, crops centre, views 1; " \
                                  "flow dis)"
    windows = [line for line in out.splitlines()[1:] if "note: " not in line]
    assert [w.split()[0] for w in windows] == ["0.00-0.20", "0.20-0.40", "0.40-0.48"] and len(windows[0].split()) == 6
    # The last window's note under it: 1 field where a stack holds 10.
    assert "note: video shorter than one flow stack (1 fields" in out.split(windows[-1])[1]
    assert f"rendered 12 frames to {rendered}" in err
    with av.open(str(rendered)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 12 and decoded[0].shape == (64, 48, 3)  # the 48x64 video turned upright
    upright = [frame.rgb.astype(float) for frame in PyAVFrames(source, 0, gray=False, rgb=True)]
    changed = np.abs(decoded[5] - upright[5]).mean(axis=(1, 2))  # per row
    assert changed[:8].mean() > 20 > changed[-20:].mean(), "labels drawn at the top, the picture kept below"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_render_needs_one_video(checkpoint, videos, tmp_path, capsys):
    status, _, err = run(capsys, "--checkpoint", checkpoint, videos[0], videos[1], "--render", tmp_path / "x.mp4")
    assert status == 2 and err == "error: --render draws on one video; 2 were given\n"


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_no_output(checkpoint, videos, signum, status, tmp_path,
                                                              capsys, monkeypatch):
    """The signal arrives while the second video is scored: the first one's line is not kept as a result."""
    real_score = VideoScorer.score
    calls = []

    def score(self, path):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signum)  # SIGINT: Python raises KeyboardInterrupt; SIGTERM: stoppable's handler
        return real_score(self, path)

    monkeypatch.setattr(VideoScorer, "score", score)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores SIGINT
    try:
        stopped, out, err = run(capsys, "--checkpoint", checkpoint, videos[0], videos[1], videos[2],
                                "--output", tmp_path / "scores.jsonl", "--views", "centre")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped == status and len(calls) == 2
    assert err.splitlines()[-1].startswith(f"stopped by {'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'}")
    assert list(tmp_path.iterdir()) == []


def test_a_multi_task_checkpoint_is_refused_in_one_line() -> None:
    from types import SimpleNamespace

    module = SimpleNamespace(dataset_names=["ucf101", "hmdb51"])  # lightning_modules.multi_task's heads
    args = SimpleNamespace(checkpoint=Path("multi.ckpt"), config=None, view_choice=None)
    with pytest.raises(classify.UsageError, match="multi.ckpt: a multi-task checkpoint .*ucf101, hmdb51"):
        classify._scorer(SimpleNamespace(module=module, recipe=None), torch.device("cpu"), args)
