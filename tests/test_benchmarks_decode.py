"""benchmarks/decode_speed.py: its --quick run (table, --json, GPU rows skipped with their
reason here) and the bare PyAV clip reader it times against the project's readers."""

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

HEADER = ("| video | decoder | clip frames | frames/s per worker | wall-clock frames/s | CPU ms/frame | vs decord | "
          "mean abs diff vs torchcodec | note |")


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
    rows = {(row["video"], row["decoder"]): row for row in table["rows"]}
    for video in ("mpeg4 (xvid) avi", "h264 mp4"):
        for decoder in ("decord", "torchcodec", "pyav"):
            row = rows[video, decoder]
            assert row["frames/s per worker"] > 0 and row["CPU ms/frame"] > 0, row
            assert row["frames/s per worker"] == pytest.approx(1000 / row["CPU ms/frame"]), row
            # Every decoder read the same frames as the project's torchcodec reader.
            assert row["mean abs diff vs torchcodec"] < 1, row
        assert rows[video, "decord"]["vs decord"] == 1.0
        cuda_rows = [rows[video, name] for name in ("torchcodec cuda (reader, frames to host)",
                                                   "torchcodec cuda, frames stay on GPU")]
        for row in cuda_rows:
            if torch.cuda.is_available():
                assert row["frames/s per worker"] > 0, row
            else:
                assert row["frames/s per worker"] is None and row["note"] == decode_speed.NO_CUDA, row
    assert document["finished"] and document["machine"]["torchcodec"]


def test_a_video_of_ones_own(tmp_path, run):
    video = tmp_path / "mine.avi"
    assert decode_speed.generate_video(video, decode_speed.CODECS[0][2], 30) is None
    out = run("--video", str(video), "--clip", "8", "--seconds", "0.05", "--rounds", "1")
    assert out.count("| mine.avi |") == 5


def test_missing_video_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        decode_speed.main(["--video", str(tmp_path / "absent.mp4")])
    assert caught.value.code == 2 and "--video: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("suffix, encoder", [(suffix, encoder) for _, suffix, encoder in decode_speed.CODECS])
def test_pyav_clips_are_the_readers_frames(tmp_path, suffix, encoder):
    """The bare PyAV reader seeks to a key frame and keeps the wanted frames: the same ones the
    project's reader returns, wherever the clip starts."""
    video = tmp_path / f"pattern.{suffix}"
    assert decode_speed.generate_video(video, encoder, 120) is None  # key frames every 50 (h264) or 12 (mpeg4)
    reader = create_reader("torchcodec")
    for start in (0, 37, 104):
        indices = list(range(start, start + 16))
        expected = reader.read_frames(video, indices)
        np.testing.assert_array_equal(decode_speed.pyav_clip(video, indices), expected)
