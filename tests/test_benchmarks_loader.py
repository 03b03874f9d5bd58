"""benchmarks/loader_speed.py: its --quick mode on a tiny generated dataset (rows as measured, --json), also
where torchcodec does not load; the GPU rates it divides by; and the torchvision comparison where torchvision
lacks what its UCF101 needs."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.synthetic import generate

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "loader_speed.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import loader_speed  # noqa: E402
import table  # noqa: E402

OURS_HEADER = ("| sample | stage | source | shape (uint8) | MB per sample | samples/s per worker | CPU ms/sample | "
               "wall-clock samples/s | 2-worker DataLoader samples/s |")
CORES_HEADER = "| network | sample | GPU pass | GPU samples/s | per-worker samples/s | cores |"
REFERENCE_HEADER = ("| 16-frame rgb clip | shape | ours (torchcodec) samples/s | torchvision samples/s | "
                    "ours / torchvision | same ratio, wall clock |")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The script, its stderr (progress) merged into stdout in the order both were written."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, env=env)


def _model_speed_json(path: Path, rates: dict[str, tuple[float, float]], device: str = "NVIDIA H100") -> Path:
    """A --json as benchmarks/model_speed.py writes it on a GPU: network -> (fwd, fwd+bwd) samples/s."""
    report = table.Report("model_speed", table.describe_machine(device), path, out=io.StringIO())
    speed = report.table("Networks at their papers' input sizes", [
        "network", "input per sample", "params (M)", "GFLOPs", "cuda batch", "cuda fwd ms", "cuda fwd samples/s",
        "cuda fwd+bwd ms", "cuda fwd+bwd samples/s"])
    for name, (forward, train) in rates.items():
        speed.add(name, "-", 1.0, 1.0, 8, 1000 / forward, forward, 1000 / train, train)
    report.finish()
    return path


@pytest.mark.slow
def test_quick_run_prints_the_tables(tmp_path):
    data = tmp_path / "data"
    generate(data, layout="ucf101", num_classes=2, videos_per_class=3, num_frames=20, size=(320, 240))
    gpu = _model_speed_json(tmp_path / "gpu.json", {"i3d_rgb": (400.0, 120.0), "resnet50_flow": (9000.0, 3000.0)})
    result = _run("--quick", "--data", str(data), "--seconds", "0.1", "--gpu-rates", str(gpu),
                  "--json", str(tmp_path / "loader.json"))
    assert result.returncode == 0, result.stdout
    for header in (OURS_HEADER, CORES_HEADER, REFERENCE_HEADER):
        assert header in result.stdout
    assert "6 videos" in result.stdout and "320x240" in result.stdout and "machine:" in result.stdout
    assert len(list((data / "flow").rglob("meta.json"))) == 6  # flow extracted into --data, kept for reuse
    # Each row is out before the next is timed.
    assert result.stdout.index("| rgb frame | train | torchcodec |") < result.stdout.index("timing flow train")
    # The worker's uint8 positions at stored size: 2 positions x L x 2 x 256 x 341.
    test_row = next(line for line in result.stdout.splitlines() if line.startswith("| 20-view flow stacks |"))
    assert "| 2x10x2x256x341 |" in test_row
    assert "smoke numbers only" in result.stdout  # 16-frame clips and 20 views: not the networks' samples
    document = json.loads((tmp_path / "loader.json").read_text())
    ours, cores, reference = document["tables"]
    assert len(ours["rows"]) == 6 and [row["16-frame rgb clip"] for row in reference["rows"]] == [
        "decode only", "train augmentation"]
    assert {"cpu_count", "torch", "device", "torchvision", "torchcodec"} <= set(document["machine"])
    first = ours["rows"][0]
    assert f"| {table.significant(first['samples/s per worker'])} |" in result.stdout
    for row in ours["rows"]:
        assert row["CPU ms/sample"] == pytest.approx(1000 / row["samples/s per worker"])
    for row in reference["rows"]:
        assert row["ours / torchvision"] == pytest.approx(row["ours (torchcodec) samples/s"]
                                                          / row["torchvision samples/s"])
    # Only the networks the model_speed run measured: I3D RGB training, ResNet-50 flow training and testing.
    assert [(row["network"], row["GPU pass"]) for row in cores["rows"]] == [
        ("resnet50_flow", "fwd+bwd"), ("i3d_rgb", "fwd+bwd"), ("resnet50_flow", "fwd")]
    i3d = cores["rows"][1]
    clip = next(row for row in ours["rows"] if row["sample"] == "16-frame rgb clip")
    assert i3d["GPU samples/s"] == 120.0 and i3d["cores"] == pytest.approx(120.0 / clip["samples/s per worker"])
    flow_test = cores["rows"][2]
    flow_views = next(row for row in ours["rows"] if row["sample"] == "20-view flow stacks")
    # A test consumes a video's 20 views: the GPU's views/s over 20 are its videos/s.
    assert flow_test["GPU samples/s"] == pytest.approx(9000.0 / 20)
    assert flow_test["cores"] == pytest.approx(9000.0 / 20 / flow_views["samples/s per worker"])


@pytest.mark.slow
def test_quick_run_without_torchcodec_reads_with_decord_and_assumes_no_gpu(tmp_path):
    """A machine without FFmpeg: torchcodec's import fails; RGB is read with decord and torchvision's
    comparison (torchcodec underneath) is skipped; without --gpu-rates no cores table."""
    data = tmp_path / "data"
    generate(data, layout="ucf101", num_classes=2, videos_per_class=3, num_frames=20, size=(320, 240))
    shadow = tmp_path / "shadow" / "torchcodec"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise RuntimeError("Could not load libtorchcodec: libavutil.so not found")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    result = _run("--quick", "--data", str(data), "--seconds", "0.05", "--workers", "1", "--json",
                  str(tmp_path / "loader.json"), env=env)
    assert result.returncode == 0, result.stdout
    assert "torchcodec does not load here: " in result.stdout and "libavutil.so not found" in result.stdout
    assert "| torchcodec |" not in result.stdout and "no GPU rate is assumed" in result.stdout
    document = json.loads((tmp_path / "loader.json").read_text())
    (ours,) = document["tables"]
    assert [row["source"] for row in ours["rows"]] == ["decord", "flow JPEGs", "decord", "flow JPEGs", "flow JPEGs",
                                                        "decord"]
    assert document["machine"]["torchcodec"] == "not loadable"


def test_gpu_rates_are_read_from_a_model_speed_run(tmp_path):
    path = _model_speed_json(tmp_path / "gpu.json", {"i3d_rgb": (400.0, 120.0)}, device="NVIDIA H100")
    assert loader_speed.read_gpu_rates(path) == ("NVIDIA H100", {("i3d_rgb", "fwd"): 400.0,
                                                                 ("i3d_rgb", "fwd+bwd"): 120.0})


def test_gpu_rates_from_another_file_are_refused_naming_it(tmp_path):
    other = tmp_path / "loader.json"
    report = table.Report("loader_speed", table.describe_machine(), other, out=io.StringIO())
    report.finish()
    with pytest.raises(SystemExit, match="loader.json is not the --json of a benchmarks/model_speed.py run on a GPU"):
        loader_speed.read_gpu_rates(other)
    with pytest.raises(SystemExit, match="--gpu-rates: cannot read"):
        loader_speed.read_gpu_rates(tmp_path / "missing.json")


def test_torchvision_installed_here_is_compared():
    reference = loader_speed.torchvision_reference()
    assert reference.missing is None, reference.missing
    assert reference.decoder.split()[0] in ("torchcodec", "torchvision.io.read_video")


def test_torchvision_needing_an_absent_torchcodec_is_skipped_with_the_reason(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcodec" else find_spec(name))
    reference = loader_speed.torchvision_reference("decoder = torchcodec.decoders.VideoDecoder(video_path)")
    assert "decodes its video datasets with torchcodec, which is not installed" in reference.missing


def test_torchvision_needing_a_torchcodec_that_does_not_load_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(loader_speed, "torchcodec_import_problem", lambda: "RuntimeError: no FFmpeg")
    reference = loader_speed.torchvision_reference("decoder = torchcodec.decoders.VideoDecoder(video_path)")
    assert "decodes its video datasets with torchcodec, which does not load here: RuntimeError: no FFmpeg" in \
        reference.missing


def test_torchvision_calling_a_removed_read_video_is_skipped_with_the_reason(monkeypatch):
    """An older torchvision's UCF101 (up to 0.25: read_video) on an io module without read_video (0.26 on)."""
    monkeypatch.delattr(loader_speed.torchvision.io, "read_video", raising=False)
    reference = loader_speed.torchvision_reference("video, audio, info = read_video(video_path, start_pts, end_pts)")
    assert reference.decoder.startswith("torchvision.io.read_video")
    assert "calls torchvision.io.read_video, which this torchvision lacks" in reference.missing
    unknown = loader_speed.torchvision_reference("video = some_future_decoder(video_path)")
    assert "decodes with neither torchcodec nor torchvision.io.read_video" in unknown.missing


def test_skipped_comparison_is_reported_not_measured(tmp_path):
    out = io.StringIO()
    report = table.Report("loader_speed", table.describe_machine(), tmp_path / "loader.json", out=out)
    reference = loader_speed.Reference("torchcodec", "torchvision 9.9 decodes with something absent")
    loader_speed.measure_torchvision(tmp_path / "no_data", loader_speed.QUICK, 1, "decord", reference, report)
    assert "comparison skipped: torchvision 9.9 decodes with something absent." in out.getvalue()
    document = json.loads((tmp_path / "loader.json").read_text())
    assert document["tables"] == [] and "comparison skipped" in document["notes"][-1]
