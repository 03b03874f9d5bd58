"""benchmarks/model_speed.py: a --quick run on small networks (rows as measured, 3 significant
digits, --json), and what a GPU run times, checked on the CPU."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "model_speed.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import model_speed  # noqa: E402
import table  # noqa: E402

HEADER = ("| network | input per sample | params (M) | GFLOPs | cpu batch | cpu fwd ms | cpu fwd samples/s "
          "| cpu fwd+bwd ms | cpu fwd+bwd samples/s |")
TIMES = ("cpu fwd ms", "cpu fwd samples/s", "cpu fwd+bwd ms", "cpu fwd+bwd samples/s")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The script, its stderr (progress) merged into stdout in the order both were written."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    path = tmp_path_factory.mktemp("model_speed") / "speed.json"
    result = _run("--quick", "--models", "googlenet_rgb,cnn_m_rgb", "--device", "cpu", "--json", str(path))
    assert result.returncode == 0, result.stdout
    return result, json.loads(path.read_text())


def _row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"| {name} |"))


def test_quick_run_prints_the_table(quick_run):
    result, _ = quick_run
    assert HEADER in result.stdout
    assert "| 3x112x112 |" in _row(result.stdout, "googlenet_rgb")  # --quick reduces the size...
    assert "| 3x224x224 |" in _row(result.stdout, "cnn_m_rgb")  # ...but CNN-M keeps the paper's size


def test_rows_are_printed_as_they_are_measured(quick_run):
    result, _ = quick_run
    assert result.stdout.index("| googlenet_rgb |") < result.stdout.index("timing cnn_m_rgb on cpu")


def test_times_print_with_three_significant_digits(quick_run):
    result, document = quick_run
    speed = document["tables"][0]
    for row in speed["rows"]:
        printed = dict(zip(speed["columns"], _row(result.stdout, row["network"]).strip("| ").split(" | ")))
        for column in TIMES:
            assert printed[column] == table.significant(row[column]), column


def test_json_holds_the_table_and_the_machine(quick_run):
    _, document = quick_run
    assert document["benchmark"] == "model_speed" and document["finished"]
    assert {"cpu_count", "torch", "device"} <= set(document["machine"])
    speed = document["tables"][0]
    assert "| " + " | ".join(speed["columns"]) + " |" == HEADER
    assert [row["network"] for row in speed["rows"]] == ["googlenet_rgb", "cnn_m_rgb"]
    assert speed["rows"][1]["input per sample"] == [[3, 224, 224]]
    assert all(row["cpu fwd ms"] > 0 for row in speed["rows"])


def test_unknown_network_is_reported():
    result = _run("--quick", "--models", "no_such_net")
    assert result.returncode != 0
    assert "unknown network" in result.stdout


def test_gpu_default_run_is_the_speed_table_with_the_fast_settings():
    plan = model_speed.plan_run([], cuda_available=True)
    assert plan.devices == ["cuda"]  # the CPU columns are --device both
    assert plan.variants == ["channels_last"]
    cuda_note = next(note for note in model_speed.method_notes(plan) if note.startswith("cuda:"))
    assert "bf16 autocast" in cuda_note and "cudnn.benchmark" in cuda_note and "'high'" in cuda_note
    # what loader_speed.py --gpu-rates reads
    assert model_speed.speed_columns(plan)[4:9] == ["cuda batch", "cuda fwd ms", "cuda fwd samples/s",
                                                    "cuda fwd+bwd ms", "cuda fwd+bwd samples/s"]


def test_variants_are_column_groups_against_the_first():
    plan = model_speed.plan_run(["--variants", "contiguous,channels_last+compiled"], cuda_available=False)
    columns = model_speed.speed_columns(plan)
    assert columns[4:] == [
        "cpu batch", "cpu contiguous fwd ms", "cpu contiguous fwd samples/s", "cpu contiguous fwd+bwd ms",
        "cpu contiguous fwd+bwd samples/s", "cpu channels_last+compiled fwd ms",
        "cpu channels_last+compiled fwd samples/s", "cpu channels_last+compiled fwd+bwd ms",
        "cpu channels_last+compiled fwd+bwd samples/s", "cpu channels_last+compiled fwd+bwd time vs contiguous",
        "cpu channels_last+compiled compile s"]
    description = model_speed.Description([(3, 8, 8)], 1.0, 0.5)
    plain = model_speed.Timing(2, forward=[0.2], train_step=[0.4, 0.5, 0.6], first_train_step=0.6)
    built = model_speed.Timing(2, forward=[0.1], train_step=[0.25], first_train_step=30.25)
    cells = dict(zip(columns, model_speed.speed_cells("net", description, [[plain, built]], plan)))
    assert cells["cpu contiguous fwd+bwd ms"] == pytest.approx(250.0)  # the median, per sample
    assert cells["cpu channels_last+compiled fwd+bwd time vs contiguous"].value == pytest.approx(0.5)
    assert cells["cpu channels_last+compiled compile s"] == pytest.approx(30.0)


@pytest.mark.parametrize("variants", ["channels_first", "contiguous,contiguous", ""])
def test_bad_variants_are_refused(variants, capsys):
    with pytest.raises(SystemExit):
        model_speed.plan_run(["--variants", variants], cuda_available=False)
    assert "--variants" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cuda", "both"])
def test_gpu_device_without_a_gpu_is_refused(device, capsys):
    with pytest.raises(SystemExit):
        model_speed.plan_run(["--device", device], cuda_available=False)
    assert f"--device {device}: torch sees no CUDA device" in capsys.readouterr().err


def test_gpu_settings_hold_while_timing_and_are_restored():
    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    with model_speed.gpu_speed_settings():
        assert torch.backends.cudnn.benchmark is True
        assert torch.get_float32_matmul_precision() == "high"
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_default_gpu_run_is_fast(tmp_path):
    """The default run on a GPU (every network, no probes) at --quick sizes; the full-size default
    run must stay under 3 minutes."""
    started = time.perf_counter()
    result = _run("--quick", "--json", str(tmp_path / "speed.json"), timeout=600)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout
    document = json.loads((tmp_path / "speed.json").read_text())
    speed = document["tables"][0]
    assert "cuda fwd ms" in speed["columns"] and "cpu fwd ms" not in speed["columns"]
    assert len(speed["rows"]) == len(model_speed.NETWORKS)
    assert document["machine"]["device"] == torch.cuda.get_device_name()
    assert elapsed < 120, f"the default GPU run took {elapsed:.0f} s at --quick sizes"
