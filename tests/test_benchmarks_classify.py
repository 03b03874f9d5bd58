"""benchmarks/classify_speed.py: a small run on a real (generated) video prints a row per model kind and
writes --json; bad options get one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import classify_speed  # noqa: E402

SMALL = ["--frames", "0", "--short-side", "40", "--crop", "32", "--i3d-frames", "8", "--views", "centre",
         "--repeats", "1", "--algorithm", "dis", "--threads", "1"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """12 frames of FFmpeg's test pattern moving, 64x48, H.264 in MP4."""
    path = tmp_path_factory.mktemp("classify_speed") / "testsrc.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "12",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)], check=True)
    return path


def test_small_run_prints_a_row_per_kind_and_writes_the_json(video, tmp_path, capsys):
    path = tmp_path / "classify.json"
    assert classify_speed.main(["--video", str(video), *SMALL, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for kind in classify_speed.KINDS:
        assert f"| {kind} | 12 | 1 |" in out
    document = json.loads(path.read_text())
    assert document["benchmark"] == "classify_speed" and document["finished"]
    rows = {row["model"]: row for row in document["tables"][0]["rows"]}
    assert list(rows) == list(classify_speed.KINDS)
    for kind, row in rows.items():
        bare = row["decode s"] + row["flow s"] + row["forward s"]
        assert row["bare sum s"] == pytest.approx(bare) and row["forward s"] > 0 and row["decode s"] > 0
        assert row["end to end / bare sum"] == pytest.approx(row["end to end s/video"] / bare)
        assert (row["flow s"] > 0) == (kind in ("temporal", "two-stream"))


def test_bad_options_are_refused_in_one_line(capsys):
    for argv, message in [(["--kinds", "c3d"], "--kinds: unknown c3d"), (["--views", "x"], "--views 'x'"),
                          (["--crop", "300"], "--crop <= --short-side")]:
        with pytest.raises(SystemExit) as stopped:
            classify_speed.parse_args(argv)
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err
