"""benchmarks/loader_speed.py: its --quick mode on a tiny generated dataset (rows as measured, --json),
and the torchvision comparison where torchvision lacks what its UCF101 needs."""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.synthetic import generate

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "loader_speed.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import loader_speed  # noqa: E402
import table  # noqa: E402

HEADERS = (
    "| sample | stage | source | shape | samples/s per worker (CPU time) | CPU ms/sample | "
    "wall-clock samples/s | vs decord | 2-worker DataLoader samples/s |",
    "| 16-frame rgb clip | shape | ours decord samples/s | ours torchcodec samples/s | torchvision samples/s |",
)


def _run(*args: str) -> subprocess.CompletedProcess:
    """The script, its stderr (progress) merged into stdout in the order both were written."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)


@pytest.mark.slow
def test_quick_run_prints_the_tables(tmp_path):
    data = tmp_path / "data"
    generate(data, layout="ucf101", num_classes=2, videos_per_class=3, num_frames=20, size=(320, 240))
    result = _run("--quick", "--data", str(data), "--seconds", "0.1", "--json", str(tmp_path / "loader.json"))
    assert result.returncode == 0, result.stdout
    for header in HEADERS:
        assert header in result.stdout
    assert "6 videos" in result.stdout and "320x240" in result.stdout
    assert "machine:" in result.stdout and "CPU cores" in result.stdout
    assert len(list((data / "flow").rglob("meta.json"))) == 6  # flow extracted into --data, kept for reuse
    # Each group's rows are out before the next group is timed.
    assert result.stdout.index("| rgb frame | train | torchcodec |") < result.stdout.index("timing flow train")
    document = json.loads((tmp_path / "loader.json").read_text())
    ours, reference = document["tables"]
    assert len(ours["rows"]) == 9 and [row["16-frame rgb clip"] for row in reference["rows"]] == [
        "decode only", "train augmentation"]
    assert {"cpu_count", "torch", "device", "torchvision", "torchcodec"} <= set(document["machine"])
    first = ours["rows"][0]
    assert f"| {table.significant(first['samples/s per worker (CPU time)'])} |" in result.stdout


def test_torchvision_installed_here_is_compared():
    reference = loader_speed.torchvision_reference()
    assert reference.missing is None, reference.missing
    assert reference.decoder.split()[0] in ("torchcodec", "torchvision.io.read_video")


def test_torchvision_needing_an_absent_torchcodec_is_skipped_with_the_reason(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcodec" else find_spec(name))
    reference = loader_speed.torchvision_reference("decoder = torchcodec.decoders.VideoDecoder(video_path)")
    assert "decodes its video datasets with torchcodec, which is not installed" in reference.missing


def test_torchvision_calling_a_removed_read_video_is_skipped_with_the_reason(monkeypatch):
    """An older torchvision's UCF101 (up to 0.25: read_video) on an io module without read_video (0.26 on)."""
    monkeypatch.delattr(loader_speed.torchvision.io, "read_video", raising=False)
    reference = loader_speed.torchvision_reference("video, audio, info = read_video(video_path, start_pts, end_pts)")
    assert reference.decoder.startswith("torchvision.io.read_video")
    assert "calls torchvision.io.read_video, which this torchvision lacks" in reference.missing
    unknown = loader_speed.torchvision_reference("video = some_future_decoder(video_path)")
    assert "decodes with neither torchcodec nor torchvision.io.read_video" in unknown.missing


def test_skipped_comparison_is_reported_not_measured(tmp_path):
    out = io.StringIO()
    report = table.Report("loader_speed", table.describe_machine(), tmp_path / "loader.json", out=out)
    reference = loader_speed.Reference("torchcodec", "torchvision 9.9 decodes with something absent")
    loader_speed.measure_torchvision(tmp_path / "no_data", loader_speed.QUICK, 1, reference, report)
    assert "comparison skipped: torchvision 9.9 decodes with something absent." in out.getvalue()
    document = json.loads((tmp_path / "loader.json").read_text())
    assert document["tables"] == [] and "comparison skipped" in document["notes"][-1]
