"""benchmarks/table.py: 3 significant digits, rows printed as they are added, the --json file."""

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import it as `table`
import table  # noqa: E402


@pytest.mark.parametrize(("value", "text"), [
    (0.012345, "0.0123"),
    (0.1, "0.100"),
    (1.5, "1.50"),
    (12.345, "12.3"),
    (123.4, "123"),
    (999.7, "1,000"),
    (1234.5, "1,230"),
    (1_234_567.0, "1,230,000"),
    (-5.234, "-5.23"),
    (0.0, "0"),
    (math.inf, "inf"),
    (math.nan, "nan"),
])
def test_significant_keeps_three_digits(value, text):
    assert table.significant(value) == text


def test_cells_print_rounded_and_save_unrounded():
    assert table.cell_text(0.11234) == "0.112"
    assert table.cell_text(64) == "64"
    assert table.cell_text(None) == "-"
    assert table.cell_text(table.ratio(1.6349)) == "1.63x"
    assert table.cell_text(table.percent(0.0523)) == "+5.2%"
    assert table.cell_text(table.fixed(3554.4, 0)) == "3554"
    assert table.cell_text(table.joined([12.34, 0.5], " / ")) == "12.3 / 0.500"
    assert table.cell_text(table.shape((3, 224, 224))) == "3x224x224"
    assert table.json_value(table.ratio(1.6349)) == 1.6349
    assert table.json_value(table.joined([12.34, math.nan], " + ")) == [12.34, None]


def _report(tmp_path, out):
    machine = table.describe_machine(device="a test device", opencv="5.0")
    return table.Report("a benchmark", machine, tmp_path / "out.json", out=out)


def test_each_row_is_printed_when_it_is_added(tmp_path):
    out = io.StringIO()
    report = _report(tmp_path, out)
    rows = report.table("Speed", ["network", "fwd ms"])
    assert out.getvalue().endswith("### Speed\n\n| network | fwd ms |\n|---|---|\n")
    rows.add("resnet", 0.11234)
    assert out.getvalue().endswith("| resnet | 0.112 |\n")
    report.note("a note after the table")
    assert out.getvalue().endswith("| resnet | 0.112 |\n\na note after the table\n")


def test_stdout_is_flushed_at_every_line(tmp_path, monkeypatch):
    """A row reaches a pipe when it is measured, not when the process ends."""
    flushes = []

    class Pipe(io.StringIO):
        def flush(self):
            flushes.append(self.getvalue())

    out = Pipe()
    report = _report(tmp_path, out)
    report.table("Speed", ["network", "fwd ms"]).add("resnet", 1.0)
    assert flushes[-1].endswith("| resnet | 1.00 |\n")


def test_json_file_holds_the_tables_and_the_machine(tmp_path):
    report = _report(tmp_path, io.StringIO())
    rows = report.table("Speed", ["network", "fwd ms", "vs decord"])
    rows.add("resnet", 0.11234, table.ratio(math.inf))
    partial = json.loads((tmp_path / "out.json").read_text())
    assert partial["finished"] is None and partial["tables"][0]["rows"][0]["fwd ms"] == 0.11234  # kept row by row
    report.finish()
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["benchmark"] == "a benchmark" and document["finished"]
    machine = document["machine"]
    assert machine["device"] == "a test device" and machine["opencv"] == "5.0"
    assert machine["cpu_count"] >= 1 and machine["usable_cpus"] >= 1 and machine["torch"]
    assert document["notes"][0].startswith("machine: a test device, ")
    assert document["tables"] == [{"title": "Speed", "columns": ["network", "fwd ms", "vs decord"],
                                   "rows": [{"network": "resnet", "fwd ms": 0.11234, "vs decord": None}],
                                   "text": [["resnet", "0.112", "infx"]]}]
    assert document["commit"] is None or len(document["commit"].rstrip("+")) == 10


def test_unwritable_json_file_fails_before_anything_is_measured(tmp_path):
    with pytest.raises(SystemExit, match="--json: cannot write .*no_such_folder"):
        table.Report("a benchmark", table.describe_machine(), tmp_path / "no_such_folder" / "out.json",
                     out=io.StringIO())


def test_a_row_must_fill_every_column(tmp_path):
    rows = _report(tmp_path, io.StringIO()).table("Speed", ["network", "fwd ms"])
    with pytest.raises(ValueError, match="1 cells for the 2 columns"):
        rows.add("resnet")


def test_machine_description_needs_no_torch_import():
    """benchmarks/test_memory.py's parent must stay small: describing the machine imports nothing heavy."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import table; m = table.describe_machine(); "
            "assert 'torch' not in sys.modules, 'torch imported'; assert m['torch'], m; print(m['cpu_count'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
