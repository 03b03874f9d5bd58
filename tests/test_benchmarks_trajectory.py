"""benchmarks/trajectory_speed.py: a small run prints the row and writes --json; bad options get one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "trajectory_speed.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import trajectory_speed  # noqa: E402

SMALL = ["--batch", "2", "--fields", "3", "--size", "40x52", "--crop", "32", "--repeats", "1", "--device", "cpu"]
ROW = "| cpu | 2 | 3 | 40x52 | 32 |"


def test_small_run_prints_the_row_and_writes_the_json(tmp_path, capsys):
    path = tmp_path / "trajectory.json"
    assert trajectory_speed.main([*SMALL, "--json", str(path)]) == 0
    assert ROW in capsys.readouterr().out
    document = json.loads(path.read_text())
    assert document["benchmark"] == "trajectory_speed" and document["finished"]
    (row,) = document["tables"][0]["rows"]
    assert row["optical flow samples/s"] > 0 and row["trajectory samples/s"] > 0
    slowdown = row["optical flow samples/s"] / row["trajectory samples/s"]
    assert row["trajectory time / optical flow time"] == pytest.approx(slowdown)


def test_a_crop_larger_than_the_fields_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        trajectory_speed.parse_args(["--size", "40x52", "--crop", "48"])
    assert stopped.value.code == 2
    assert "--crop 48 does not fit the 40x52 fields" in capsys.readouterr().err


@pytest.mark.slow
def test_the_script_runs_as_a_command():
    result = subprocess.run([sys.executable, str(SCRIPT), *SMALL], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert ROW in result.stdout
