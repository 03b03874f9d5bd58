"""A test video's P x K views, cut and converted on the device one chunk at a time.

The test protocols score a video by the mean over many views: the two-stream paper's
25 positions x 10 crops (4 corners, centre, each mirrored), I3D's clips x crops. A test
sample leaves the workers as its P positions uncropped at their stored (short-side
resized) size, with its K crop boxes (``datamodules.transforms.Augment``, test stage);
``datamodules.batch.finish_batch`` wraps them, on the device, in ``TestViews``; the
evaluation's chunked forward (``lightning_modules.evaluation.views.forward_views``) asks
for the views ``chunk_size`` at a time. So no float32 of the views' size exists on the
host, and on the device only a chunk's worth: 25 x 10 flow views at 224 px are 0.93 GiB
of float32, their 25 uncropped uint8 positions 44 MB.

With trajectory stacking (``datamodules.trajectory``) a trajectory may leave the crop, so
a video's positions are stacked once, whole, and its views cut from those stacks; its P
float32 stacks (25 x 10 fields at 340 x 256: 174 MB) live on the device while its views
are cut.

The whole test path, top to bottom, is told in ``lightning_modules.evaluation``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from datamodules.inputs import flow_pixels, mirror_flow, pixels_to_input, subtracts_flow_mean, to_input
from datamodules.trajectory import trajectory_stack
from datamodules.transforms import View, apply_view
from models.input_spec import InputSpec


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
        subtract_flow_mean: see ``datamodules.inputs.subtracts_flow_mean``.
        layout: applied to every chunk of inputs (e.g. channels-last for a channels-last network:
            ``GPUSettings`` gives the batch views made ``with_layout``).
        dtype: the chunks' dtype (the precision's input dtype, e.g. bfloat16 under
            ``bf16-true``); None: float32.
        backward: flow with trajectory stacking: its stacks' backward fields (``trajectory_stack``);
            None: optical-flow stacking. Each video's P positions are stacked once, whole, when
            its first view is cut; its views are cut from those stacks.
    """

    __test__ = False  # its name starts with "Test": pytest must not collect it where a test imports it

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
                               subtracts_flow_mean(self.spec, self.subtract_flow_mean))
