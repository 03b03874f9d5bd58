"""``python cli.py export``: every network as ONNX (checked here with ONNX Runtime against eager
PyTorch at two batch sizes and, for 3D networks, two clip lengths), TorchScript and
``torch.export`` files read back, a real fitted checkpoint through the command, and its spec."""

import json
from pathlib import Path

import pytest
import torch

from cli import run_inference_command
from inference.export import export_network, stream_files
from inference.exporters import TOLERANCE, calibrate_batch_norm, load_runner, relative_difference
from models import C3D, CNNM2048, ConvNetLSTM, GoogLeNetStream, InceptionI3D, ResNetI3D, ResNetStream
from tests.test_recipe import Fitted, fitted  # noqa: F401 - the fixture: the fit runs once per session

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

# Tiny sizes; the architectures are the papers'. (id, builder, a second clip length the
# file must take: None where the time axis is static, with the reason in the spec)
NETWORKS = {
    "resnet_stream": (lambda: ResNetStream(3, depth=18, in_channels=4, modality="flow", input_size=32), None),
    "googlenet_stream": (lambda: GoogLeNetStream(3, input_size=32), None),
    "cnn_m": (lambda: CNNM2048(3), None),  # its fully connected layers fix 224 x 224
    # 24 frames: 3 time steps reach the head (fewer fix the length; the spec gives the range).
    "inception_i3d": (lambda: InceptionI3D(3, frames=24, input_size=32), 33),
    "resnet_i3d_non_local": (lambda: ResNetI3D(3, depth=18, non_local=True, frames=8, input_size=32,
                                               non_local_blocks={"layer2.1", "layer3.1"}), 12),
    "convnet_lstm": (lambda: ConvNetLSTM(3, backbone="resnet18", frames=4, input_size=32), None),
    "c3d": (lambda: C3D(3, input_size=32), 21),  # 16 frames and more: the last pool takes the maximum over time
}


def network(name: str) -> torch.nn.Module:
    """Random weights, batch norm's statistics from random inputs (outputs that depend on the
    input), the classifier scaled to logits of about 10, as a trained network's: below 1 the
    tolerance is absolute, and CNN-M's random logits (about 0.02) vary less than it."""
    torch.manual_seed(0)
    net = NETWORKS[name][0]()
    net = calibrate_batch_norm(net, net.input_spec)
    scale = 10 / eager(net, torch.randn(shape(net.input_spec, 2))).abs().max().item()
    with torch.no_grad():
        for parameter in net.get_classifier().parameters():
            parameter.mul_(scale)
    return net


def shape(spec, batch: int, time: int | None = None) -> tuple[int, ...]:
    if spec.dims == 3:
        return batch, spec.channels, time or spec.frames, spec.size, spec.size
    return batch, spec.channels, spec.size, spec.size


def eager(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


# Slow (about 10-35 s each on an idle 2-core machine: torch.export and the ONNX translation of
# a large graph, or of 80-90 M parameters) except one 2D and one 3D network.
SLOW = {"googlenet_stream", "cnn_m", "inception_i3d", "resnet_i3d_non_local", "c3d"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                                  for name in NETWORKS])
def test_onnx_runtime_gives_eager_pytorchs_outputs_for_every_network(name, tmp_path) -> None:
    net, longer = network(name), NETWORKS[name][1]
    spec = net.input_spec
    path = tmp_path / f"{name}.onnx"
    axes, checked = export_network(net, spec, "onnx", path)
    assert axes[0].dynamic and checked.max_diff is not None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = [dim.dim_param or dim.dim_value for dim in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert declared[0] == "batch"
    inputs = [shape(spec, 1), shape(spec, 2)] + ([shape(spec, 2, longer)] if longer else [])
    for size in inputs:
        x = torch.randn(size)
        got, expected = torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), eager(net, x)
        assert relative_difference(got, expected) <= TOLERANCE, (name, size)
    # Not a constant: another input moves the logits far more than the tolerance.
    assert (eager(net, torch.randn(shape(spec, 1))) - expected[:1]).abs().max() > 10 * TOLERANCE * 10
    if spec.dims == 3:
        time = axes[2]
        assert time.dynamic == (longer is not None) and declared[2] == ("time" if longer else spec.frames)
        if not time.dynamic:  # static: said why, and ONNX Runtime refuses another length
            assert time.reason
            with pytest.raises(Exception, match="dimensions"):
                session.run(None, {"x": torch.randn(shape(spec, 1, spec.frames + 1)).numpy()})


# A 3D network whose time axis follows (the trace must follow it), one whose time axis is
# static (torch.export's guards refuse another length).
@pytest.mark.parametrize(("name", "fmt"), [pytest.param("c3d", "torchscript", marks=pytest.mark.slow),
                                           ("convnet_lstm", "exported")])
def test_torchscript_and_exported_files_read_back_give_the_same_outputs(name, fmt, tmp_path) -> None:
    net, longer = network(name), NETWORKS[name][1]
    spec = net.input_spec
    path = tmp_path / f"{name}.{fmt}"
    axes, _ = export_network(net, spec, fmt, path)
    runner = load_runner(fmt, path)
    for size in [shape(spec, 1), shape(spec, 3)] + ([shape(spec, 2, longer)] if longer else []):
        x = torch.randn(size)
        assert relative_difference(runner(x), eager(net, x)) <= TOLERANCE, (name, fmt, size)
    if spec.dims == 3 and not axes[2].dynamic:  # another length is refused, not computed wrongly
        with pytest.raises(Exception, match="time|size|Guard"):
            runner(torch.randn(shape(spec, 1, spec.frames + 1)))


@pytest.mark.slow
def test_a_two_stream_checkpoint_exports_one_checked_file_per_stream_with_its_spec(fitted, tmp_path,
                                                                                   capsys) -> None:
    out = tmp_path / "export" / "quickstart.onnx"
    status = run_inference_command("export", ["--checkpoint", str(fitted.checkpoint), "--format", "onnx", str(out)])
    assert status == 0, capsys.readouterr().err
    reference = torch.load(fitted.reference, weights_only=True)
    files = stream_files(out, ["spatial", "temporal"], "onnx")
    for stream, path in files.items():
        spec = json.loads((path.with_name(path.name + ".json")).read_text())
        key = spec["input_spec"]["batch_key"]
        assert spec["input"]["shape"][:2] == ["batch", 3 if key == "rgb" else 20]
        assert spec["classes"] == fitted.classes and spec["stream"] == stream
        assert spec["checked"]["max_diff"] <= TOLERANCE and spec["notes"]
        assert (spec["flow"] is not None) == (key == "flow")
        if key == "flow":  # the training flow's settings: what a deployment must compute
            assert spec["flow"]["algorithm"] == "dis" and spec["flow"]["short_side"] == 48
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": reference["inputs"][key].numpy()})[0]
        # Two fitting steps on noise leave logits near 1e13: compared relative to the largest.
        assert relative_difference(torch.from_numpy(got), reference["outputs"][stream]) <= TOLERANCE
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        name for path in files.values() for name in (path.name, path.name + ".json"))  # no temporary left
    assert "wrote" in capsys.readouterr().err


def test_a_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    bad = tmp_path / "last.ckpt"
    bad.write_text("not a checkpoint")
    assert run_inference_command("export", ["--checkpoint", str(bad), str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert not (tmp_path / "x.onnx").exists()


def test_the_specs_preprocessing_names_the_flow_mean_subtraction_and_stacking_test_applied() -> None:
    from dataclasses import replace

    from datamodules.settings import FrameSampling
    from datamodules.transforms import Augmentation
    from inference.export_spec import preprocessing
    from inference.recipe import Recipe
    from models.input_spec import InputSpec

    stack = InputSpec("flow", channels=20, dims=2, frames=10, mean=(0.0,), std=(1.0,))
    clip = InputSpec("flow", channels=2, dims=3, frames=8, mean=(0.0,), std=(1.0,), flow_clip=20.0)
    recipe = Recipe({"class_path": "x.Y", "init_args": {}})
    mean_step = "each field minus its mean vector over the crop (camera motion)"
    assert mean_step in preprocessing(stack, recipe)  # on by default for 2D networks, as test applies it
    assert mean_step not in preprocessing(clip, recipe)  # off for 3D ones
    assert mean_step not in preprocessing(stack, replace(recipe, augment=Augmentation(flow_mean_subtraction=False)))
    steps = preprocessing(stack, replace(recipe, sampling=FrameSampling(bidirectional_flow=True)))
    assert any("5 backward then 5 forward" in step for step in steps)
    assert steps.index(mean_step) < len(steps) - 1  # before the normalisation, as datamodules.inputs does
