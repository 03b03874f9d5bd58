"""Smoke test of benchmarks/model_speed.py: its --quick mode on one small network."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "model_speed.py"
HEADER = "| network | input per sample | params (M) | GFLOPs | cpu batch | cpu fwd ms | cpu fwd+bwd ms |"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_quick_run_prints_the_table():
    result = _run("--quick", "--models", "cnn_m_rgb", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert HEADER in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| cnn_m_rgb |"))
    assert "| 3x224x224 |" in row  # CNN-M keeps the paper's size even in --quick


def test_unknown_network_is_reported():
    result = _run("--quick", "--models", "no_such_net")
    assert result.returncode != 0
    assert "unknown network" in result.stderr
