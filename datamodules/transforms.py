"""Crops and flips, shared by every key of a sample, on uint8 frames on any device.

The geometry of a sample (crop boxes, flips) is drawn once and applied to all its keys, so
the RGB frame and the flow stack of a two-stream sample get the same crop and flip.
Geometry runs on the uint8 planes (cheap, and exact for the flip below); the conversion to
float inputs runs later, on the device (``datamodules.inputs``), with the scale the
geometry applied (``flow_scale``) and the video's quantization (``flow_quantization``) carried along.

Flow under geometry:
- resizing a field by (sx, sy) scales its displacements by the same factors: the planes
  are resized as images and the dequantized x, y values multiplied by sx, sy;
- a horizontal flip mirrors the field and negates x. On the uint8 planes that is
  ``x -> 255 - x``: denseflow's grid ``f = q * 2B / 255 - B`` is symmetric about 0
  (``255 - q`` decodes to exactly ``-f``) because 255 levels span [-B, B]. mmaction2's
  ``TenCrop`` flips flow without this negation; TSN's test code has it.

Crop geometry follows torchvision: ten-crop corners are flush with the borders, the centre
crop rounds its offset, and the flipped five are the five crops of the mirrored frame
(``torchvision.transforms.v2.functional.ten_crop``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from datamodules.inputs import as_bits, quantization
from datamodules.sampling import Stage
from flow.codec import DEFAULT_BOUND
from flow.frames import resized_size
from models.input_spec import InputSpec

Box = tuple[int, int, int, int]  # top, left, height, width
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)  # TSN's multi-scale crop, relative to the short side
TestCrops = Literal["ten", "five", "three", "centre"]


@dataclass(frozen=True)
class View:
    """One spatial view of a frame: crop ``box`` (in unflipped coordinates), then resize the
    crop to ``size`` (h, w) if given (multi-scale crops), then mirror it if ``flip``."""

    box: Box
    flip: bool = False
    size: tuple[int, int] | None = None

    def scale(self) -> tuple[float, float]:
        """(sx, sy): how much the resize to ``size`` stretches displacements."""
        if self.size is None:
            return 1.0, 1.0
        return self.size[1] / self.box[3], self.size[0] / self.box[2]


def _check_fits(height: int, width: int, crop_h: int, crop_w: int) -> None:
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} does not fit a {height}x{width} frame; resize the short side first")


def center_box(height: int, width: int, crop_h: int, crop_w: int) -> Box:
    _check_fits(height, width, crop_h, crop_w)
    return round((height - crop_h) / 2), round((width - crop_w) / 2), crop_h, crop_w


def five_crop_boxes(height: int, width: int, crop_h: int, crop_w: int) -> list[Box]:
    """Top-left, top-right, bottom-left, bottom-right (flush with the borders), centre."""
    _check_fits(height, width, crop_h, crop_w)
    bottom, right = height - crop_h, width - crop_w
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right)]
    return [(top, left, crop_h, crop_w) for top, left in corners] + [center_box(height, width, crop_h, crop_w)]


def three_crop_boxes(height: int, width: int, crop: int) -> list[Box]:
    """Square crops at the start, centre and end of the long side, centred on the short side."""
    top, left, _, _ = center_box(height, width, crop, crop)
    if width >= height:
        return [(top, offset, crop, crop) for offset in (0, left, width - crop)]
    return [(offset, left, crop, crop) for offset in (0, top, height - crop)]


def random_box(height: int, width: int, crop_h: int, crop_w: int, rng: np.random.Generator) -> Box:
    _check_fits(height, width, crop_h, crop_w)
    top = int(rng.integers(0, height - crop_h, endpoint=True))
    left = int(rng.integers(0, width - crop_w, endpoint=True))
    return top, left, crop_h, crop_w


def multiscale_box(height: int, width: int, rng: np.random.Generator, scales: Sequence[float] = TSN_SCALES) -> Box:
    """TSN's multi-scale crop: side lengths from ``scales`` x the short side, width and height
    at most one scale apart, placed at one of the five fixed positions of ``five_crop_boxes``."""
    sides = [int(min(height, width) * scale) for scale in scales]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= 1]
    crop_h, crop_w = pairs[rng.integers(len(pairs))]
    boxes = five_crop_boxes(height, width, crop_h, crop_w)
    return boxes[rng.integers(len(boxes))]


def mirror(box: Box, width: int) -> Box:
    """The box at the mirrored position of a frame ``width`` wide."""
    top, left, crop_h, crop_w = box
    return top, width - left - crop_w, crop_h, crop_w


def apply_view(frames: torch.Tensor, view: View, flow: bool = False) -> torch.Tensor:
    """Crop, resize and flip uint8 (..., C, H, W) frames; for flow (C = 2, [x, y]) a flip
    also negates x, as ``255 - x`` on the quantized planes (exact, see module docstring)."""
    out = F.crop(frames, *view.box)
    if view.size is not None:
        out = F.resize(out, list(view.size), antialias=True)
    if view.flip:
        out = F.horizontal_flip(out)  # a copy, safe to modify
        if flow:
            out[..., 0, :, :] = 255 - out[..., 0, :, :]
    return out


@dataclass(frozen=True)
class Augmentation:
    """How frames become a network's crop: the short-side resize of every stage, and what
    training randomises. A new augmentation is a field here and its use in ``Augment``.

    Args:
        short_side: frames and flow are resized so their shorter side has this length
            before cropping (the flow extractor's default is the same 256, so flow is
            usually stored at size); None keeps the stored size.
        multiscale_crop: training crops by TSN's multi-scale corner crop, not a random crop.
        scales: side lengths of multi-scale crops, relative to the short side (TSN's).
        flip: random horizontal flips in training (and mirrored test crops may be asked
            for); None: as the annotations say (off where a flip changes the label, e.g.
            Something-Something's "from left to right").
        flow_mean_subtraction: subtract each flow field's mean vector (camera motion);
            None: on for 2D networks (two-stream paper), off for 3D ones (I3D). Applied on
            the device.
    """

    short_side: int | None = 256
    multiscale_crop: bool = False
    scales: tuple[float, ...] = TSN_SCALES
    flip: bool | None = None
    flow_mean_subtraction: bool | None = None


class Augment:
    """Draws the views of a sample once and applies them to every key's uint8 frames (the
    host half of the input pipeline; ``datamodules.batch.finish_batch`` is the device half).

    Train: a random crop (or TSN's multi-scale crop) and a random horizontal flip.
    Val: the centre crop. Test: ten crops (2D protocol), five (ten without the mirrored
    ones), three crops along the long side (3D protocol) or the centre crop, for every
    sampled position. Without ``flip`` nothing is ever mirrored (labels that name a
    direction, Something-Something's "from left to right"): ten crops are refused.

    Args:
        stage: "train", "val" or "test".
        specs: the InputSpec of the network reading each key (``rgb``, ``flow``); all
            must agree on the crop size.
        settings: the augmentation; its ``flip`` must be decided (True/False) by now.
        test_crops: "ten", "five", "three" or "centre" crops per position at test.
        stacking: ``trajectory``: train and val flow leaves uncropped (short-side resized) with
            its view in ``flow_view``, for the device to stack it from the whole field
            (``datamodules.batch.trajectory_inputs``); ``optical_flow``: cropped here.
    """

    def __init__(
        self,
        stage: Stage,
        specs: Mapping[str, InputSpec],
        settings: Augmentation = Augmentation(flip=True),
        test_crops: TestCrops = "ten",
        stacking: str = "optical_flow",
    ):
        if stage not in ("train", "val", "test"):
            raise ValueError(f"unknown stage {stage!r}; expected 'train', 'val' or 'test'")
        if test_crops not in ("ten", "five", "three", "centre"):
            raise ValueError(f"unknown test_crops {test_crops!r}; expected 'ten', 'five', 'three' or 'centre'")
        if settings.flip is None:
            raise ValueError("Augment: flip is not decided (None: the data module sets it from the annotations)")
        if test_crops == "ten" and not settings.flip:
            raise ValueError("test_crops 'ten' mirrors five of its crops, but flip is off (labels that name a "
                             "direction): use 'five', 'three' or 'centre'")
        sizes = {spec.size for spec in specs.values()}
        if len(sizes) != 1:
            raise ValueError(f"the networks of one sample must take one crop size, got {sorted(sizes)}")
        self.stage, self.specs, self.crop = stage, dict(specs), sizes.pop()
        self.settings, self.test_crops = settings, test_crops
        self.short_side, self.multiscale, self.flip = settings.short_side, settings.multiscale_crop, settings.flip
        self.scales, self.subtract_flow_mean = tuple(settings.scales), settings.flow_mean_subtraction
        self.stacking = stacking

    def views(self, height: int, width: int, rng: np.random.Generator | None = None) -> list[View]:
        """The views of one sample taken from frames of this size (after the short-side resize)."""
        crop = self.crop
        if self.stage == "train":
            if rng is None:
                raise ValueError("training views are random: pass rng (a numpy Generator)")
            if self.multiscale:
                box, size = multiscale_box(height, width, rng, self.scales), (crop, crop)
            else:
                box, size = random_box(height, width, crop, crop, rng), None
            flip = self.flip and bool(rng.integers(2))
            return [View(box, flip, size)]
        if self.stage == "val" or self.test_crops == "centre":
            return [View(center_box(height, width, crop, crop))]
        if self.test_crops == "three":
            return [View(box) for box in three_crop_boxes(height, width, crop)]
        boxes = five_crop_boxes(height, width, crop, crop)
        mirrored = [View(mirror(box, width), True) for box in boxes] if self.test_crops == "ten" else []
        return [View(box) for box in boxes] + mirrored

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of height x width frames after the short-side resize."""
        if self.short_side is None or min(height, width) == self.short_side:
            return height, width
        # The extractor's rule (flow/frames.py), so frames resized here match flow stored at a short side.
        new_w, new_h = resized_size(width, height, self.short_side)
        return new_h, new_w

    def _resize(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
        """Short-side resize of (P, T, C, H, W); returns the frames and the (sx, sy) it applied."""
        height, width = frames.shape[-2:]
        new_h, new_w = self.resized_size(height, width)
        if (new_h, new_w) == (height, width):
            return frames, (1.0, 1.0)
        return F.resize(frames, [new_h, new_w], antialias=True), (new_w / width, new_h / height)

    def __call__(
        self,
        frames: Mapping[str, torch.Tensor],
        flow_bound: float = DEFAULT_BOUND,
        rng: np.random.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """uint8 frames per key, (T, C, H, W) or (P, T, C, H, W) with P sampled positions
        (RGB (T, 3, H, W); quantized flow (L, 2, H, W) [x, y]), to a uint8 sample.

        Train and val: each key's one view (T, C, crop, crop). Test: each key's positions
        short-side resized, uncropped (P, T, C, H, W), and ``views`` (K, 5): the crop boxes
        (top, left, height, width, flip) that ``datamodules.test_views.TestViews`` cuts on the
        device. With flow: ``flow_quantization`` ([step, bound]) and ``flow_scale`` (x, y
        stretch of the resize and of a multi-scale crop), float32 values as int32 bits
        (``datamodules.inputs.as_bits``: no precision plugin may round them). With trajectory
        stacking, train and val flow is (L, 2, H, W) uncropped, ``flow_scale`` the resize's
        stretch alone, and ``flow_view`` (7,) its view: top, left, height, width, flip, and the
        (height, width) the crop is resized to (its own size without a multi-scale resize).
        """
        resized = {}
        for key, clip in frames.items():
            if key not in self.specs:
                raise KeyError(f"no InputSpec for key {key!r}; have {sorted(self.specs)}")
            clip = clip if clip.ndim == 5 else clip.unsqueeze(0)
            if self.stage != "test" and clip.shape[0] != 1:
                raise ValueError(f"{self.stage} samples take one position, got {clip.shape[0]} for {key!r}")
            resized[key] = self._resize(clip)
        shapes = {tuple(clip.shape[-2:]) for clip, _ in resized.values()}
        if len(shapes) != 1:
            raise ValueError(f"keys of one sample differ in frame size after resizing: {sorted(shapes)}")
        views = self.views(*shapes.pop(), rng=rng)
        sample: dict[str, torch.Tensor] = {}
        for key, (clip, resize_scale) in resized.items():
            if self.stage == "test":
                sample[key] = clip
                view_scale = (1.0, 1.0)
            elif key == "flow" and self.stacking == "trajectory":
                view = views[0]
                sample[key], view_scale = clip[0], (1.0, 1.0)  # the device stacks, then crops and stretches
                sample["flow_view"] = torch.tensor([*view.box, int(view.flip), *(view.size or view.box[2:])],
                                                   dtype=torch.int64)
            else:
                sample[key] = apply_view(clip[0], views[0], flow=key == "flow")
                view_scale = views[0].scale()
            if key == "flow":
                sample["flow_quantization"] = as_bits(quantization(float(flow_bound))[0])
                sample["flow_scale"] = as_bits(torch.tensor(
                    (resize_scale[0] * view_scale[0], resize_scale[1] * view_scale[1]), dtype=torch.float64))
        if self.stage == "test":
            sample["views"] = torch.tensor([[*view.box, int(view.flip)] for view in views], dtype=torch.int64)
        return sample
