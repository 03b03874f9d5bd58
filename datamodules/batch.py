"""A batch's life: collated from uint8 samples in the loader, finished on the device.

Samples leave the workers as uint8 (``datamodules.datasets``): train and val samples one
crop per key, (T, C, h, w); test samples every position at its stored (short-side
resized) size, (P, T, C, H, W), with their crop boxes in ``views`` (K, 5: top, left,
height, width, flip). Flow samples carry ``flow_quantization`` (the video's [step, bound])
and ``flow_scale`` (how much resizing stretched x and y), as the bits of their float32
values (``datamodules.inputs.as_bits``).

``finish_batch`` runs once the batch is on the device (the datamodules'
``on_after_batch_transfer``): train and val keys become network inputs at once; test keys
become ``TestViews`` (``datamodules.test_views``), cut and converted one chunk at a time by
the evaluation's chunked forward.

Trajectory stacking (``sampling.stacking: trajectory``, ``datamodules.trajectory``) needs the
whole field, since a trajectory may leave the crop: train and val flow then leaves the
workers uncropped too, with its view in ``flow_view`` (``trajectory_inputs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torch.utils.data import default_collate

from datamodules.inputs import flow_pixels, from_bits, mirror_flow, pixels_to_input, subtracts_flow_mean, to_input
from datamodules.test_views import TestViews
from datamodules.trajectory import trajectory_stack
from models.input_spec import InputSpec

FRAME_KEYS = ("rgb", "flow")
VIEWS_KEY = "views"
FLOW_VIEW_KEY = "flow_view"  # a train or val sample's uncropped flow's view, with trajectory stacking


def collate_test(samples: Sequence[dict]) -> dict:
    """Test samples into a batch: each video's positions stay a tensor of their own in a list
    (videos of a batch may differ in size, e.g. Kinetics' aspect ratios), the rest stacks."""
    frames = {key: [sample[key] for sample in samples] for key in FRAME_KEYS if key in samples[0]}
    rest = default_collate([{key: value for key, value in sample.items() if key not in frames} for sample in samples])
    return {**rest, **frames}


def collate_flat(items: Sequence[dict | list[dict]]) -> dict:
    """Training items of several samples each (``clips_per_video``) into one batch of all their samples.

    Uncropped flow (trajectory stacking, ``flow_view``) stays a list of tensors, as test
    positions do: videos of a batch may differ in size."""
    samples = [sample for item in items for sample in (item if isinstance(item, list) else [item])]
    if FLOW_VIEW_KEY not in samples[0]:
        return default_collate(samples)
    rest = default_collate([{key: value for key, value in sample.items() if key != "flow"} for sample in samples])
    return {**rest, "flow": [sample["flow"] for sample in samples]}


def trajectory_inputs(fields: Sequence[Tensor], views: Tensor, spec: InputSpec, quantized: Tensor,
                      scale: Tensor | None = None, subtract_flow_mean: bool | None = None,
                      backward: int = 0) -> Tensor:
    """Train and val flow with trajectory stacking: each sample's whole uint8 fields (L, 2, H, W)
    and its view (``flow_view``: top, left, height, width, flip, resized height, width) to the
    network's input. In order: dequantize, the resize's stretch (``scale``), trajectories
    started in the crop (``datamodules.trajectory``), the multi-scale resize of the stack and
    its stretch, the flip (mirror, x negated), then mean subtraction, clipping, normalisation.
    Samples sharing a frame size and a view's shape are stacked together."""
    groups: dict[tuple, list[int]] = {}
    for i, (top, left, height, width, flip, out_h, out_w) in enumerate(views.tolist()):
        groups.setdefault((tuple(fields[i].shape), height, width, flip, out_h, out_w), []).append(i)
    out: Tensor | None = None
    for (_, height, width, flip, out_h, out_w), rows in groups.items():
        pixels = flow_pixels(torch.stack([fields[i] for i in rows]), quantized[rows],
                             None if scale is None else scale[rows])
        stacks = trajectory_stack(pixels, views[rows, :2], (height, width), backward)
        if (out_h, out_w) != (height, width):  # TSN's multi-scale crop, resized to the network's size
            stacks = F.resize(stacks, [out_h, out_w], antialias=True)
            stacks *= stacks.new_tensor([out_w / width, out_h / height]).view(1, 1, 2, 1, 1)
        x = pixels_to_input(mirror_flow(stacks) if flip else stacks, spec,
                            subtracts_flow_mean(spec, subtract_flow_mean))
        if out is None:
            out = x.new_empty(len(fields), *x.shape[1:])
        out[rows] = x
    return out


def finish_batch(batch: dict, specs: Mapping[str, InputSpec], subtract_flow_mean: bool | None = None,
                 dtype: torch.dtype | None = None, stacking: str = "optical_flow", bidirectional: bool = False) -> dict:
    """The uint8 batch (see module docstring), on its device, as the networks take it.

    Train and val keys become float inputs; test keys (a batch with ``views``) ``TestViews``.
    Keys already finished (float) are left as they are.

    Args:
        batch: a collated batch of ``datamodules.datasets.VideoDataset`` samples.
        specs: the InputSpec per key (``rgb``, ``flow``) of the networks reading them.
        subtract_flow_mean: see ``datamodules.inputs.subtracts_flow_mean``.
        dtype: the inputs' dtype (``input_dtype`` of the trainer); None: float32.
        stacking: ``optical_flow`` or ``trajectory`` (``datamodules.settings.FrameSampling``);
            trajectory batches carry uncropped flow (``flow_view`` in train and val).
        bidirectional: the flow stacks are L/2 backward then L/2 forward fields.
    """
    quantized, scale = batch.get("flow_quantization"), batch.get("flow_scale")
    quantized = from_bits(quantized) if quantized is not None else None
    scale = from_bits(scale) if scale is not None else None
    trajectory = stacking == "trajectory" and "flow" in specs
    backward = specs["flow"].frames // 2 if trajectory and bidirectional else 0
    if FLOW_VIEW_KEY in batch and not trajectory:
        raise ValueError("the batch's flow is uncropped (flow_view: its dataset was built for stacking: "
                         "trajectory), but stacking is optical_flow")
    for key in FRAME_KEYS:
        frames = batch.get(key)
        if frames is None or isinstance(frames, TestViews) or (isinstance(frames, Tensor) and frames.is_floating_point()):
            continue
        if key not in specs:
            raise KeyError(f"no InputSpec for batch key {key!r}; have {sorted(specs)}")
        if VIEWS_KEY in batch:
            boxes = [[tuple(box) for box in video] for video in batch[VIEWS_KEY].tolist()]
            batch[key] = TestViews(key, list(frames), boxes, specs[key], quantized, scale, subtract_flow_mean,
                                   dtype=dtype, backward=backward if trajectory else None)
        elif key == "flow" and trajectory:
            if FLOW_VIEW_KEY not in batch:
                raise ValueError("stacking: trajectory, but the batch's flow is cropped (no flow_view): its "
                                 "dataset was built for optical_flow stacking")
            inputs = trajectory_inputs(frames, batch[FLOW_VIEW_KEY], specs[key], quantized, scale,
                                       subtract_flow_mean, backward)
            batch[key] = inputs if dtype is None else inputs.to(dtype)
        else:
            inputs = to_input(key, frames, specs[key], quantized, scale, subtract_flow_mean)
            batch[key] = inputs if dtype is None else inputs.to(dtype)
    return batch


def input_dtype(trainer: object | None) -> torch.dtype | None:
    """The dtype the trainer's precision gives network inputs (bfloat16 under ``bf16-true``,
    float64 under ``64-true``); None where it leaves float32 (32-true, the mixed precisions).

    Lightning casts the host batch before the transfer, while it is still uint8; the inputs
    made on the device must be cast as it would have."""
    plugin = getattr(trainer, "precision_plugin", None)
    if plugin is None:
        return None
    dtype = plugin.convert_input(torch.zeros(())).dtype
    return None if dtype == torch.float32 else dtype
