"""benchmarks/export_speed.py: a --quick run on one network (the row as measured, 3 significant
digits, --json), and its refusals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "export_speed.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import export_speed  # noqa: E402
import table  # noqa: E402

HEADER = ("| network | input per clip | export s | time axis | PyTorch ms | ONNX Runtime ms | ONNX Runtime speed-up "
          "| max difference |")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=600)


@pytest.mark.slow  # about 25 s on an idle 2-core machine: C3D's export and 16 x 112 x 112 clips
def test_quick_run_prints_the_row_and_writes_the_json(tmp_path) -> None:
    path = tmp_path / "export_speed.json"
    result = _run("--quick", "--models", "c3d", "--threads", "1", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert HEADER in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| c3d |"))
    document = json.loads(path.read_text())
    assert document["benchmark"] == "export_speed" and document["finished"]
    assert document["machine"]["threads"] == 1 and document["machine"]["onnxruntime"]
    speed = document["tables"][0]
    (measured,) = speed["rows"]
    printed = dict(zip(speed["columns"], row.strip("| ").split(" | ")))
    assert printed["input per clip"] == "3x16x112x112"  # C3D keeps its paper's size under --quick
    assert printed["time axis"] == "16+"  # the clip length stays symbolic in the ONNX file
    assert printed["PyTorch ms"] == table.significant(measured["PyTorch ms"])
    assert measured["max difference"] <= 1e-4
    assert measured["ONNX Runtime speed-up"] == pytest.approx(measured["PyTorch ms"] / measured["ONNX Runtime ms"])


@pytest.mark.parametrize(("args", "message"), [(["--models", "r3d_18"], "unknown network r3d_18"),
                                               (["--threads", "0"], "--threads must be at least 1")])
def test_bad_options_are_refused(args, message, capsys) -> None:
    with pytest.raises(SystemExit):
        export_speed.parse_args(args)
    assert message in capsys.readouterr().err


def test_the_default_run_is_every_network_of_ours() -> None:
    assert export_speed.parse_args([]).models == [name for name in export_speed.NETWORKS if name != "r3d_18"]
