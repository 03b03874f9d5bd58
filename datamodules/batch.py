"""A batch's life: collated from uint8 samples in the loader, finished on the device.

Samples leave the workers as uint8 (``datamodules.datasets``): train and val samples one
crop per key, (T, C, h, w); test samples every position at its stored (short-side
resized) size, (P, T, C, H, W), with their crop boxes in ``views`` (K, 5: top, left,
height, width, flip). Flow samples carry ``flow_quantization`` (the video's [step, bound])
and ``flow_scale`` (how much resizing stretched x and y), as the bits of their float32
values (``datamodules.inputs.as_bits``).

``finish_batch`` runs once the batch is on the device (the datamodules'
``on_after_batch_transfer``): train and val keys become network inputs at once; test keys
become ``TestViews``, whose P x K views are cut and converted one chunk at a time inside
the chunked forward (``lightning_modules.evaluation.views.forward_views``; the whole test
path is told in ``lightning_modules.evaluation``). So no float32 of the
views' size exists on the host, and on the device only a chunk's worth: 25 x 10 flow views
at 224 px are 0.93 GiB of float32, their 25 uncropped uint8 positions 44 MB.

Trajectory stacking (``sampling.stacking: trajectory``, ``datamodules.trajectory``) needs the
whole field, since a trajectory may leave the crop: train and val flow then leaves the
workers uncropped too, with its view in ``flow_view`` (``trajectory_inputs``), and a test
video's positions are stacked once, whole, and cut (``TestViews``); a video's P float32
stacks (25 x 10 fields at 340 x 256: 174 MB) live on the device while its views are cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torch.utils.data import default_collate

from datamodules.inputs import flow_pixels, from_bits, mirror_flow, pixels_to_input, to_input
from datamodules.trajectory import trajectory_stack
from datamodules.transforms import View, apply_view
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


@dataclass(frozen=True)
class TestViews:
    """The V = P x K test views of N videos of one key, cut and converted on the device chunk by chunk.

    View v of a video is position ``v // K`` cut by box ``v % K`` (position-major, the order
    the scores were always averaged in).

    Args:
        key: ``rgb`` or ``flow``.
        positions: per video, uint8 (P, T, C, H, W) on the device.
        boxes: per video, K (top, left, height, width, flip) crop boxes.
        spec: the InputSpec of the network reading ``key``.
        quantized: flow: each video's [step, bound] (N, 2), float32.
        scale: flow: how much resizing stretched each video's x, y (N, 2), float32.
        subtract_flow_mean: see ``datamodules.inputs.to_input``.
        layout: applied to every chunk of inputs (e.g. channels-last for a channels-last network:
            ``GPUSettings`` gives the batch views made ``with_layout``).
        dtype: the chunks' dtype (the precision's input dtype, e.g. bfloat16 under
            ``bf16-true``); None: float32.
        backward: flow with trajectory stacking: its stacks' backward fields (``trajectory_stack``);
            None: optical-flow stacking. Each video's P positions are stacked once, whole, when
            its first view is cut; its views are cut from those stacks.
    """

    key: str
    positions: list[Tensor]
    boxes: list[list[tuple[int, int, int, int, int]]]
    spec: InputSpec
    quantized: Tensor | None = None
    scale: Tensor | None = None
    subtract_flow_mean: bool | None = None
    layout: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    dtype: torch.dtype | None = None
    backward: int | None = None
    _stacks: dict[int, Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = {len(boxes) for boxes in self.boxes}
        positions = {len(p) for p in self.positions}
        if len(self.boxes) != len(self.positions) or len(counts) != 1 or len(positions) != 1:
            raise ValueError(f"test views need one box list per video and equal view counts, got "
                             f"{len(self.positions)} videos, positions {sorted(positions)}, boxes {sorted(counts)}")

    @property
    def shape(self) -> tuple[int, int]:
        """(N videos, V views per video)."""
        return len(self.positions), len(self.positions[0]) * len(self.boxes[0])

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, keep: Tensor | Sequence[bool]) -> TestViews:
        """The videos where the boolean mask ``keep`` (N,) holds, like indexing a tensor of views."""
        mask = keep.tolist() if isinstance(keep, Tensor) else list(keep)
        if len(mask) != len(self) or not all(isinstance(value, bool) for value in mask):
            raise IndexError(f"TestViews are selected by a boolean mask over its {len(self)} videos")
        rows = [n for n, kept in enumerate(mask) if kept]
        return replace(self, positions=[self.positions[n] for n in rows], boxes=[self.boxes[n] for n in rows],
                       quantized=None if self.quantized is None else self.quantized[rows],
                       scale=None if self.scale is None else self.scale[rows])

    def with_layout(self, layout: Callable[[Tensor], Tensor] | None) -> TestViews:
        """The same views, their chunks laid out by ``layout``."""
        return replace(self, layout=layout)

    def _views(self) -> Iterator[tuple[int, int, int]]:
        """(video, position, box) of every view, in order."""
        for n, positions in enumerate(self.positions):
            for p in range(len(positions)):
                for k in range(len(self.boxes[n])):
                    yield n, p, k

    def chunks(self, size: int) -> Iterator[Tensor]:
        """The network inputs of all N x V views, at most ``size`` per tensor, in order."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        chunk: list[tuple[int, int, int]] = []
        for view in self._views():
            chunk.append(view)
            if len(chunk) == size:
                yield self._cut(chunk)
                chunk = []
        if chunk:
            yield self._cut(chunk)

    def materialise(self, chunk_size: int = 64) -> Tensor:
        """All views at once, (N, V, ...): for small sets and tests; the chunks bound memory."""
        views = torch.cat(list(self.chunks(chunk_size)))
        return views.reshape(*self.shape, *views.shape[1:])

    def _cut(self, views: list[tuple[int, int, int]]) -> Tensor:
        """Inputs of ``views``: those sharing a video and a box are cut and converted together."""
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for slot, (n, p, k) in enumerate(views):
            groups.setdefault((n, k), []).append((slot, p))
        out: Tensor | None = None
        for (n, k), members in groups.items():
            slots, rows = zip(*members)
            frames = self.positions[n][list(rows)]
            top, left, height, width, flip = self.boxes[n][k]
            if self.backward is not None and self.key == "flow":
                x = self._trajectory_view(n, list(rows), (top, left, height, width), bool(flip))
            else:
                cropped = apply_view(frames, View((top, left, height, width), bool(flip)), flow=self.key == "flow")
                count = len(rows)
                quantized = self.quantized[n].expand(count, 2) if self.quantized is not None else None
                scale = self.scale[n].expand(count, 2) if self.scale is not None else None
                x = to_input(self.key, cropped, self.spec, quantized, scale, self.subtract_flow_mean)
            if out is None:
                out = x.new_empty(len(views), *x.shape[1:])
            out[list(slots)] = x
        if self.dtype is not None:
            out = out.to(self.dtype)
        return self.layout(out) if self.layout is not None else out

    def _trajectory_view(self, n: int, rows: list[int], box: tuple[int, int, int, int], flip: bool) -> Tensor:
        """Positions ``rows`` of video n cut by ``box`` from their whole-frame trajectory stacks."""
        if n not in self._stacks:
            self._stacks.clear()  # views come video by video: one video's stacks at a time
            positions = self.positions[n]
            pixels = flow_pixels(positions, self.quantized[n].expand(len(positions), 2),
                                 None if self.scale is None else self.scale[n].expand(len(positions), 2))
            self._stacks[n] = trajectory_stack(pixels, backward=self.backward)
        top, left, height, width = box
        stacks = self._stacks[n][rows][..., top:top + height, left:left + width]  # a copy: indexed by a list
        return pixels_to_input(mirror_flow(stacks) if flip else stacks, self.spec,
                               _subtract(self.spec, self.subtract_flow_mean))


def _subtract(spec: InputSpec, subtract_flow_mean: bool | None) -> bool:
    """Whether flow mean subtraction applies (``datamodules.inputs.to_input``'s default)."""
    return spec.dims == 2 if subtract_flow_mean is None else subtract_flow_mean


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
        x = pixels_to_input(mirror_flow(stacks) if flip else stacks, spec, _subtract(spec, subtract_flow_mean))
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
        subtract_flow_mean: see ``datamodules.inputs.to_input``.
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
