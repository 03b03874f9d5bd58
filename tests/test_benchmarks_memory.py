"""benchmarks/test_memory.py: its --quick mode end to end (both paths per configuration, rows as
measured, --json), and its report on made-up measurements (tables, goals, bound)."""

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
    "| stream | path | sample the worker hands over | chunk | baseline RSS MiB | sample MiB | peak building MiB "
    "| building MiB over baseline | build CPU s | RSS before scoring MiB | peak scoring MiB | activations MiB "
    "| activations per view in chunk MiB | process peak MiB | s/video build + score |"
)
RATIO_HEADER = (
    "| stream | chunk | building MiB over baseline before / after | host memory before / after "
    "| build CPU s before / after | build CPU before / after | peak scoring MiB before / after "
    "| process peak MiB before / after | max score difference |"
)


def _load_script():
    """The script as a module (its top level imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _before(bench, chunk: int, per_view: float):
    """Baseline 800 MiB, a 1000 MiB float32 sample built through a second copy in 1.2 CPU s,
    activations 20 + per_view x chunk."""
    return bench.Measurement(shape=(250, 20, 224, 224), sample=1000.0, baseline=800.0, load_peak=820.0,
                             build_peak=2800.0, held=1800.0, score_peak=1820.0 + per_view * chunk,
                             build_seconds=1.0, build_cpu_seconds=1.2, score_seconds=2.0, scores=(0.25, 0.75))


def _after(bench, chunk: int, per_view: float, building: float = 80.0, build_cpu_seconds: float = 0.2):
    """The same video as 40 MiB of uint8 positions: ``building`` MiB over the baseline to build."""
    return bench.Measurement(shape=(25, 10, 2, 256, 341), sample=40.0, baseline=800.0, load_peak=820.0,
                             build_peak=800.0 + building, held=840.0, score_peak=860.0 + per_view * chunk,
                             build_seconds=0.3, build_cpu_seconds=build_cpu_seconds, score_seconds=2.5,
                             scores=(0.25 + 1e-7, 0.75 - 2e-7))


def _results(bench, **after):
    results = [(bench.Row(depth, "flow", chunk), _before(bench, chunk, per_view),
                _after(bench, chunk, per_view, **after))
               for depth, per_view in ((18, 3.0), (50, 12.0)) for chunk in (250, 50, 10, 1)]
    results.append((bench.Row(50, "rgb", 50), _before(bench, 50, 12.0), _after(bench, 50, 12.0)))
    return results


def test_report_shows_both_paths_their_ratios_and_bounds_activations_linearly_in_the_chunk():
    bench = _load_script()
    results = _results(bench)
    out = io.StringIO()
    report = table.Report("test_memory", table.describe_machine(), out=out)
    rows = bench.memory_table(report)
    for row, before, after in results:
        bench.add_measurement(rows, row, "before", before)
        bench.add_measurement(rows, row, "after", after)
    ratios = bench.ratio_table(report)
    for result in results:
        bench.add_ratio(ratios, *result)
    lines = out.getvalue().splitlines()
    assert lines[lines.index(HEADER) + 2] == (
        "| ResNet-18 flow | before | 250x20x224x224 float32 | 250 | 800 | 1000 | 2800 | 2000 | 1.20 | 1800 | 2570 "
        "| 770 | 3.08 | 2800 | 1.00 + 2.00 |")
    assert lines[lines.index(HEADER) + 3] == (
        "| ResNet-18 flow | after | 25x10x2x256x341 uint8 | 250 | 800 | 40 | 880 | 80 | 0.200 | 840 | 1610 "
        "| 770 | 3.08 | 1610 | 0.300 + 2.50 |")
    first = lines[lines.index(RATIO_HEADER) + 2].split(" | ")
    assert first[:8] == ["| ResNet-18 flow", "250", "2000 / 80", "25.0x", "1.20 / 0.200", "6.00x", "2570 / 1610",
                         "2800 / 1610"]
    assert float(first[8].rstrip(" |")) == pytest.approx(2e-7)
    bound = bench.format_bound(results, bench.FULL)
    assert "baseline + 2.0 x sample while building it" in bound
    assert "ResNet-18 23 + 3.0 x (chunk - 1); ResNet-50 32 + 12.0 x (chunk - 1) MiB" in bound


def test_goals_are_judged_on_the_worst_flow_row():
    bench = _load_script()
    goals = bench.format_goals(_results(bench), bench.FULL)
    # 80 MiB = 83.9 MB <= 100 MB; 1.2 / 0.2 = 6x >= 5x.
    assert "host memory per video 83.9 MB, was 2,100 MB (goal <= 100 MB: met)" in goals
    assert "CPU time to build it 6.00x lower (goal >= 5x: met)" in goals
    missed = bench.format_goals(_results(bench, building=120.0, build_cpu_seconds=0.3), bench.FULL)
    assert "126 MB" in missed and "(goal <= 100 MB: NOT met)" in missed
    assert "4.00x lower (goal >= 5x: NOT met)" in missed
    assert bench.format_goals(_results(bench), bench.QUICK) == (
        "goals: not checked (20 views per video, the goals are for 250)")


@pytest.mark.slow
def test_quick_run_prints_the_table(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(tmp_path / "memory.json")],
                            check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    assert HEADER in result.stdout and RATIO_HEADER in result.stdout
    lines = result.stdout.splitlines()
    before, after = (next(line for line in lines if line.startswith(f"| ResNet-18 flow | {path} |"))
                     for path in ("before", "after"))
    assert "| 20x20x64x64 float32 | 20 |" in before  # 2 positions x 10 crops of a 10-field stack, 64 px crops
    assert "| 2x10x2x72x96 uint8 | 20 |" in after  # 2 positions of the stack at the stored size, boxes beside
    assert "goals: not checked (20 views per video" in result.stdout and "bound (after): peak RSS <=" in result.stdout
    # The first rows are out before the second configuration is measured (progress is on stderr, merged here).
    assert result.stdout.index("| ResNet-18 flow | after |") < result.stdout.index("measuring ResNet-18 rgb")
    document = json.loads((tmp_path / "memory.json").read_text())
    rows, ratios = (t["rows"] for t in document["tables"])
    assert [(r["stream"], r["path"], r["chunk"]) for r in rows] == [
        ("ResNet-18 flow", "before", 20), ("ResNet-18 flow", "after", 20),
        ("ResNet-18 rgb", "before", 5), ("ResNet-18 rgb", "after", 5)]
    assert all(r["activations MiB"] > 0 and len(r["s/video build + score"]) == 2 and r["build CPU s"] > 0
               for r in rows)
    flow = ratios[0]
    assert flow["stream"] == "ResNet-18 flow" and flow["host memory before / after"] == pytest.approx(
        rows[0]["building MiB over baseline"] / rows[1]["building MiB over baseline"])
    assert flow["build CPU before / after"] == pytest.approx(rows[0]["build CPU s"] / rows[1]["build CPU s"])
    assert all(r["max score difference"] < 1e-5 for r in ratios)  # the same network scores the same views
    assert document["machine"]["torch_threads_per_child"] == 1 and document["machine"]["ram_gib"] > 0
