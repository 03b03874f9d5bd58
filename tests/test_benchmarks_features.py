"""benchmarks/features_speed.py: its --quick run (end to end against the bare steps, --json)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import `table`
import features_speed

HEADER = "| step | seconds | s per minute of video | videos per hour | share of the bare sum |"


def test_quick_run_prints_the_steps_and_end_to_end_and_writes_the_json(tmp_path, capsys):
    assert features_speed.main(["--quick", "--dir", str(tmp_path), "--json", str(tmp_path / "features.json")]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and HEADER in out and "end-to-end rate / bare rate:" in out
    document = json.loads((tmp_path / "features.json").read_text())
    assert document["finished"] and list(tmp_path.iterdir()) == [tmp_path / "features.json"]  # the data is removed
    rows = document["tables"][0]["rows"]
    assert [row["step"].split(":")[0] for row in rows] == ["bare"] * 4 + ["bare steps, summed",
                                                                          "end to end (cli.py features' run)"]
    bare, end_to_end = rows[-2], rows[-1]
    assert bare["seconds"] == pytest.approx(sum(row["seconds"] for row in rows[:4]))
    assert end_to_end["s per minute of video"] == pytest.approx(end_to_end["seconds"] / 0.5 * 60, rel=0.05)
    assert all(row["seconds"] > 0 and row["videos per hour"] > 0 for row in rows)
