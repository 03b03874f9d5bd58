"""The input spec written beside an exported network: what a deployment must feed it.

``<file>.json`` beside ``<file>`` (``i3d.onnx`` -> ``i3d.onnx.json``), written atomically
after the network's file, so a spec means its file is complete. It holds the input's axes
(dynamic ones named, with the range the exporter proved; static ones with the reason),
the network's ``InputSpec`` (modality, channels, frames, crop size, mean/std, flow
scale and clip), how pixels and flow become that input, the short side frames are resized
to before the crop, the class names, for flow streams the settings the training flow was
extracted with (the same flow must be computed for the scores to mean anything), and the
check the export ran against eager PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from datamodules.inputs import subtracts_flow_mean
from inference.exporters import DIFFERENCE, INPUT_NAME, OUTPUT_NAME, TOLERANCE, Axis, Checked, Format
from inference.recipe import Recipe
from models.input_spec import InputSpec

SPEC_VERSION = 1


def spec_path(path: Path) -> Path:
    """Where the spec of the exported file ``path`` goes: ``<path>.json``."""
    return path.with_name(path.name + ".json")


def preprocessing(spec: InputSpec, recipe: Recipe | None = None) -> list[str]:
    """The steps from decoded frames (or flow in pixels) to the network's input, in order
    (``recipe``: the data's flow mean subtraction and stacking, as ``datamodules.inputs`` applies them)."""
    if spec.modality == "rgb":
        steps = ["RGB frames, channels first, scaled to [0, 1] (pixel / 255)"]
    else:
        steps = ["optical flow in pixels (x then y)"]
        sampling = recipe.sampling if recipe is not None else None
        if sampling is not None and spec.dims == 2 and sampling.bidirectional_flow:
            steps.append(f"the stack's {spec.frames} fields: {spec.frames // 2} backward then {spec.frames // 2} "
                         "forward (sampling.bidirectional_flow)")
        if sampling is not None and spec.dims == 2 and sampling.stacking == "trajectory":
            steps.append("fields read along the trajectories of the first field's points (sampling.stacking: "
                         "trajectory)")
        if subtracts_flow_mean(spec, recipe.augment.flow_mean_subtraction if recipe is not None else None):
            steps.append("each field minus its mean vector over the crop (camera motion)")
        if spec.flow_clip is not None:
            steps.append(f"clipped to +-{spec.flow_clip:g} pixels")
        if spec.flow_scale != 1.0:
            steps.append(f"multiplied by {spec.flow_scale:g}")
        if spec.dims == 2:
            steps.append(f"{spec.frames} fields stacked as {spec.channels} channels: x1..x{spec.frames}, "
                         f"y1..y{spec.frames}")
    steps.append("minus mean, divided by std (per channel; one value: every channel)")
    return steps


def _axes(axes: tuple[Axis, ...]) -> dict[str, Any]:
    shape = [axis.name if axis.dynamic else axis.size for axis in axes]
    dynamic = {axis.name: {"min": axis.min, "max": axis.max} for axis in axes if axis.dynamic}
    static = {axis.name: axis.reason for axis in axes if axis.reason}
    return {"name": INPUT_NAME, "shape": shape, "dtype": "float32", "dynamic": dynamic, "static_reasons": static}


def export_spec(*, fmt: Format, path: Path, network: torch.nn.Module, stream: str, batch_key: str,
                spec: InputSpec, axes: tuple[Axis, ...], output_shape: list[str | int], logits: bool,
                checked: Checked, classes: list[str] | None, recipe: Recipe | None, source: str,
                notes: list[str] | None = None) -> dict[str, Any]:
    """The spec of one exported network (module docstring).

    Args:
        fmt: the file's format.
        path: the exported file.
        network: the network exported.
        stream: its stream's name in the module (``rgb``, ``spatial``, ...).
        batch_key: the input it reads in training (``rgb`` or ``flow``).
        spec: its ``InputSpec``.
        axes: the input's axes as the file takes them.
        output_shape: the output's shape, dynamic axes named.
        logits: the output is class logits (else the pre-logits features: a network without classifier).
        checked: the check against eager PyTorch.
        classes: class names in label order (None: by index).
        recipe: the checkpoint's recipe (short side, test protocol, flow settings).
        source: the checkpoint (or config) the network came from.
        notes: anything else a user must know (two streams: how to fuse them).
    """
    flow = recipe.flow if recipe is not None and spec.modality == "flow" else None
    return {
        "version": SPEC_VERSION,
        "format": fmt,
        "file": path.name,
        "source": source,
        "stream": stream,
        "network": f"{type(network).__module__}.{type(network).__name__}",
        "input": _axes(axes),
        "output": {"name": OUTPUT_NAME, "shape": output_shape,
                   "meaning": "class logits (softmax gives the probabilities)" if logits else "pre-logits features"},
        "input_spec": {"batch_key": batch_key, **asdict(spec)},
        "preprocessing": preprocessing(spec, recipe),
        "resize_short_side": recipe.augment.short_side if recipe is not None else None,
        "test_protocol": asdict(recipe.test) if recipe is not None else None,
        "classes": classes,
        "flow": asdict(flow) if flow is not None else None,
        "checked": {"shapes": [list(shape) for shape in checked.shapes], "max_diff": checked.max_diff,
                    "difference": DIFFERENCE, "tolerance": TOLERANCE, "skipped": checked.skipped or None},
        "torch": torch.__version__,
        "notes": notes or [],
    }
