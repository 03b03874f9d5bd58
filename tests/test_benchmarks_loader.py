"""Smoke test of benchmarks/loader_speed.py: its --quick mode on a tiny generated dataset."""

import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.synthetic import generate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loader_speed.py"
HEADERS = (
    "| sample | stage | source | shape | samples/s per worker (CPU time) | CPU ms/sample | "
    "wall-clock samples/s | vs decord | 2-worker DataLoader samples/s |",
    "| 16-frame rgb clip | shape | ours decord samples/s | ours torchcodec samples/s | torchvision samples/s |",
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_quick_run_prints_the_tables(tmp_path):
    data = tmp_path / "data"
    generate(data, layout="ucf101", num_classes=2, videos_per_class=3, num_frames=20, size=(320, 240))
    result = _run("--quick", "--data", str(data), "--seconds", "0.1")
    assert result.returncode == 0, result.stderr
    for header in HEADERS:
        assert header in result.stdout
    assert "6 videos" in result.stdout and "320x240" in result.stdout
    assert "machine:" in result.stdout and "CPU cores" in result.stdout
    assert len(list((data / "flow").rglob("meta.json"))) == 6  # flow extracted into --data, kept for reuse
