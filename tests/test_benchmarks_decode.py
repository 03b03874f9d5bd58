"""benchmarks/decode_speed.py: its --quick run (every decoder on the originals and their resized copies,
--json, GPU rows skipped with their reason here) and the bare PyAV clip reader it times against the
project's readers."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.decoding import create_reader

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import decode_speed  # noqa: E402

HEADER = ("| video | version | size | MiB | decoder | clip frames | frames/s per worker | wall-clock frames/s | "
          "CPU ms/frame | vs pyav | vs original | mean abs diff vs torchcodec | note |")


@pytest.fixture
def run(capsys):
    """The script's main in this process (a subprocess would spend more time importing torch
    than measuring); its stdout. It sets torch to one thread, as a worker: restored after."""
    threads = torch.get_num_threads()

    def main(*args: str) -> str:
        assert decode_speed.main(list(args)) == 0
        return capsys.readouterr().out

    yield main
    torch.set_num_threads(threads)


def test_quick_run_prints_the_table(tmp_path, run):
    out = run("--quick", "--json", str(tmp_path / "decode.json"))
    assert HEADER in out and "machine:" in out
    document = json.loads((tmp_path / "decode.json").read_text())
    (table,) = document["tables"]
    rows = {(row["video"], row["version"], row["decoder"]): row for row in table["rows"]}
    versions = {"original": "96x64", "resized mpeg4": "60x40"}
    for video in ("mpeg4 (xvid) avi", "h264 mp4"):
        for version, size in versions.items():
            for decoder in ("decord", "torchcodec", "pyav"):
                row = rows[video, version, decoder]
                assert row["size"] == size and row["MiB"] > 0, row
                assert row["frames/s per worker"] > 0 and row["CPU ms/frame"] > 0, row
                assert row["frames/s per worker"] == pytest.approx(1000 / row["CPU ms/frame"]), row
                # Every decoder read the same frames as the project's torchcodec reader.
                assert row["mean abs diff vs torchcodec"] < 1, row
            assert rows[video, version, "pyav"]["vs pyav"] == 1.0
        assert rows[video, "original", "decord"]["vs original"] == 1.0
        resized = rows[video, "resized mpeg4", "torchcodec"]
        assert resized["vs original"] == pytest.approx(
            resized["frames/s per worker"] / rows[video, "original", "torchcodec"]["frames/s per worker"])
        for name in ("torchcodec cuda (reader, frames to host)", "torchcodec cuda, frames stay on GPU"):
            row = rows[video, "original", name]
            if torch.cuda.is_available():
                assert row["frames/s per worker"] > 0, row
            else:
                assert row["frames/s per worker"] is None and row["note"] == decode_speed.NO_CUDA, row
    assert document["finished"] and document["machine"]["torchcodec"]


def test_a_video_of_ones_own(tmp_path, run):
    video = tmp_path / "mine.avi"
    assert decode_speed.generate_video(video, decode_speed.CODECS[0][2], 30, (64, 48)) is None
    out = run("--video", str(video), "--clip", "8", "--seconds", "0.05", "--rounds", "1", "--short-side", "0")
    assert out.count("| mine.avi | original |") == 5


@pytest.mark.parametrize("args, message", [
    (["--video", "absent.mp4"], "--video: no such file"),
    (["--size", "640"], "--size: expected WxH"),
    (["--short-side", "255"], "--short-side must be 0 or a positive even number"),
])
def test_bad_arguments_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        decode_speed.main(args)
    assert caught.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("suffix, encoder", [(suffix, encoder) for _, suffix, encoder in decode_speed.CODECS])
def test_pyav_clips_are_the_readers_frames(tmp_path, suffix, encoder):
    """The bare PyAV reader seeks to a key frame and keeps the wanted frames: the same ones the
    project's reader returns, wherever the clip starts."""
    video = tmp_path / f"pattern.{suffix}"
    # Key frames every 250 (h264, x264's default: one here) or 12 (mpeg4).
    assert decode_speed.generate_video(video, encoder, 120, (160, 120)) is None
    reader = create_reader("torchcodec")
    for start in (0, 37, 104):
        indices = list(range(start, start + 16))
        expected = reader.read_frames(video, indices)
        np.testing.assert_array_equal(decode_speed.pyav_clip(video, indices), expected)
