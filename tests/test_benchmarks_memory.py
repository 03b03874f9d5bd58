"""benchmarks/test_memory.py: its --quick mode end to end (the bare network call and ours per configuration,
rows as measured, --json), and its report on made-up measurements (tables, bound)."""

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
    "| stream | path | sample scored | chunk | baseline RSS MiB | sample MiB | peak building MiB "
    "| building MiB over baseline | build CPU s | RSS before scoring MiB | peak scoring MiB | activations MiB "
    "| activations per view in chunk MiB | process peak MiB | s/video build + score |"
)
RATIO_HEADER = (
    "| stream | chunk | building MiB over baseline bare / ours | host memory bare / ours "
    "| build CPU s bare / ours | build CPU bare / ours | peak scoring MiB bare / ours "
    "| process peak MiB bare / ours | max score difference |"
)


def _load_script():
    """The script as a module (its top level imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _bare(bench, chunk: int, per_view: float):
    """Baseline 800 MiB, a 1000 MiB float32 sample built through a second copy in 1.2 CPU s,
    activations 20 + per_view x chunk."""
    return bench.Measurement(shape=(250, 20, 224, 224), sample=1000.0, baseline=800.0, load_peak=820.0,
                             build_peak=2800.0, held=1800.0, score_peak=1820.0 + per_view * chunk,
                             build_seconds=1.0, build_cpu_seconds=1.2, score_seconds=2.0, scores=(0.25, 0.75))


def _ours(bench, chunk: int, per_view: float, building: float = 80.0, build_cpu_seconds: float = 0.2):
    """The same video as 40 MiB of uint8 positions: ``building`` MiB over the baseline to build."""
    return bench.Measurement(shape=(25, 10, 2, 256, 341), sample=40.0, baseline=800.0, load_peak=820.0,
                             build_peak=800.0 + building, held=840.0, score_peak=860.0 + per_view * chunk,
                             build_seconds=0.3, build_cpu_seconds=build_cpu_seconds, score_seconds=2.5,
                             scores=(0.25 + 1e-7, 0.75 - 2e-7))


def _results(bench, **ours):
    results = [(bench.Row(depth, "flow", chunk), _bare(bench, chunk, per_view),
                _ours(bench, chunk, per_view, **ours))
               for depth, per_view in ((18, 3.0), (50, 12.0)) for chunk in (250, 50, 10, 1)]
    results.append((bench.Row(50, "rgb", 50), _bare(bench, 50, 12.0), _ours(bench, 50, 12.0)))
    return results


def test_report_shows_both_paths_their_ratios_and_bounds_activations_linearly_in_the_chunk():
    bench = _load_script()
    results = _results(bench)
    out = io.StringIO()
    report = table.Report("test_memory", table.describe_machine(), out=out)
    rows = bench.memory_table(report)
    for row, bare, ours in results:
        bench.add_measurement(rows, row, "bare", bare)
        bench.add_measurement(rows, row, "ours", ours)
    ratios = bench.ratio_table(report)
    for result in results:
        bench.add_ratio(ratios, *result)
    lines = out.getvalue().splitlines()
    assert lines[lines.index(HEADER) + 2] == (
        "| ResNet-18 flow | bare | 250x20x224x224 float32 | 250 | 800 | 1000 | 2800 | 2000 | 1.20 | 1800 | 2570 "
        "| 770 | 3.08 | 2800 | 1.00 + 2.00 |")
    assert lines[lines.index(HEADER) + 3] == (
        "| ResNet-18 flow | ours | 25x10x2x256x341 uint8 | 250 | 800 | 40 | 880 | 80 | 0.200 | 840 | 1610 "
        "| 770 | 3.08 | 1610 | 0.300 + 2.50 |")
    first = lines[lines.index(RATIO_HEADER) + 2].split(" | ")
    assert first[:8] == ["| ResNet-18 flow", "250", "2000 / 80", "25.0x", "1.20 / 0.200", "6.00x", "2570 / 1610",
                         "2800 / 1610"]
    assert float(first[8].rstrip(" |")) == pytest.approx(2e-7)
    bound = bench.format_bound(results, bench.FULL)
    assert "baseline + 2.0 x sample while building it" in bound
    assert "ResNet-18 23 + 3.0 x (chunk - 1); ResNet-50 32 + 12.0 x (chunk - 1) MiB" in bound


@pytest.mark.slow
def test_quick_run_prints_the_table(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(tmp_path / "memory.json")],
                            check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    assert HEADER in result.stdout and RATIO_HEADER in result.stdout
    lines = result.stdout.splitlines()
    bare, ours = (next(line for line in lines if line.startswith(f"| ResNet-18 flow | {path} |"))
                  for path in ("bare", "ours"))
    assert "| 20x20x64x64 float32 | 20 |" in bare  # 2 positions x 10 crops of a 10-field stack, 64 px crops
    assert "| 2x10x2x72x96 uint8 | 20 |" in ours  # 2 positions of the stack at the stored size, boxes beside
    assert "bound (ours): peak RSS <=" in result.stdout
    # The first rows are out before the second configuration is measured (progress is on stderr, merged here).
    assert result.stdout.index("| ResNet-18 flow | ours |") < result.stdout.index("measuring ResNet-18 rgb")
    document = json.loads((tmp_path / "memory.json").read_text())
    rows, ratios = (t["rows"] for t in document["tables"])
    assert [(r["stream"], r["path"], r["chunk"]) for r in rows] == [
        ("ResNet-18 flow", "bare", 20), ("ResNet-18 flow", "ours", 20),
        ("ResNet-18 rgb", "bare", 20), ("ResNet-18 rgb", "ours", 5)]  # bare: all 20 views in one forward
    assert all(r["activations MiB"] > 0 and len(r["s/video build + score"]) == 2 and r["build CPU s"] > 0
               for r in rows)
    flow = ratios[0]
    assert flow["stream"] == "ResNet-18 flow" and flow["host memory bare / ours"] == pytest.approx(
        rows[0]["building MiB over baseline"] / rows[1]["building MiB over baseline"])
    assert flow["build CPU bare / ours"] == pytest.approx(rows[0]["build CPU s"] / rows[1]["build CPU s"])
    assert all(r["max score difference"] < 1e-5 for r in ratios)  # the same network scores the same views
    assert document["machine"]["torch_threads_per_child"] == 1 and document["machine"]["ram_gib"] > 0
