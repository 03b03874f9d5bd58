"""benchmarks/test_memory.py: its --quick mode end to end (rows as measured, --json), and its report
on made-up measurements."""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "test_memory.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import table  # noqa: E402

HEADER = (
    "| stream | sample (views x C x H x W) | chunk | baseline RSS MiB | sample MiB | peak building MiB "
    "| RSS before scoring MiB | peak scoring MiB | activations MiB | activations per view in chunk MiB "
    "| process peak MiB | s/video build + score |"
)


def _load_script():
    """The script as a module (its top level imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _measurement(bench, chunk: int, per_view: float):
    """Baseline 800 MiB, a 1000 MiB sample (built through a second copy), activations 20 + per_view x chunk."""
    return bench.Measurement(shape=(250, 20, 224, 224), sample=1000.0, baseline=800.0, load_peak=820.0,
                             build_peak=2800.0, held=1800.0, score_peak=1820.0 + per_view * chunk,
                             build_seconds=1.0, score_seconds=2.0)


def test_report_bounds_activations_linearly_in_the_chunk():
    bench = _load_script()
    results = [(bench.Row(depth, "flow", chunk), _measurement(bench, chunk, per_view))
               for depth, per_view in ((18, 3.0), (50, 12.0)) for chunk in (250, 50, 10, 1)]
    results.append((bench.Row(50, "rgb", 50), _measurement(bench, 50, 12.0)))
    out = io.StringIO()
    rows = bench.memory_table(table.Report("test_memory", table.describe_machine(), out=out))
    for row, measurement in results:
        bench.add_measurement(rows, row, measurement)
    lines = out.getvalue().splitlines()
    assert lines[lines.index(HEADER) + 2] == (
        "| ResNet-18 flow | 250x20x224x224 | 250 | 800 | 1000 | 2800 | 1800 | 2570 | 770 | 3.08 | 2800 | 1.00 + 2.00 |")
    bound = bench.format_bound(results, bench.FULL)
    assert "baseline + 2.0 x sample while building it" in bound
    assert "ResNet-18 23 + 3.0 x (chunk - 1); ResNet-50 32 + 12.0 x (chunk - 1) MiB" in bound


@pytest.mark.slow
def test_quick_run_prints_the_table(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(tmp_path / "memory.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    assert HEADER in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| ResNet-18 flow |"))
    assert "| 20x20x64x64 | 20 |" in row  # 2 positions x 10 crops of a 10-field stack
    assert "bound: peak RSS <=" in result.stdout
    # The first row is out before the second configuration is measured (progress is on stderr, merged here).
    assert result.stdout.index("| ResNet-18 flow |") < result.stdout.index("measuring ResNet-18 rgb")
    document = json.loads((tmp_path / "memory.json").read_text())
    rows = document["tables"][0]["rows"]
    assert [(r["stream"], r["chunk"]) for r in rows] == [("ResNet-18 flow", 20), ("ResNet-18 rgb", 5)]
    assert all(r["activations MiB"] > 0 and len(r["s/video build + score"]) == 2 for r in rows)
    assert document["machine"]["torch_threads_per_child"] == 1 and document["machine"]["ram_gib"] > 0
