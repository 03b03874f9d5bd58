"""Features of one video: per stream a T x D array, one row per snippet (``inference.snippets``).

A snippet's frames go through the test path of the data module (``datamodules.transforms.
Augment`` at the test stage: the short-side resize, the centre crop or the ten crops;
``datamodules.batch.finish_batch``: normalisation, flow dequantization, clipping and
scaling per the network's ``InputSpec``), so features see exactly what ``cli.py test`` and
``classify`` feed the network. A network gives the feature of a view as
``forward_head(forward_features(x), pre_logits=True)`` in eval mode: timm's head interface,
the N x ``num_features`` vector its classifier reads (Inception I3D: Mixed_5c average-pooled
over 2 x 7 x 7 windows and then over time and space, 1024-d; ResNet-50: the global average
pool, 2048-d).

RGB frames come from the data's frame reader (``datamodules.decoding``), flow from a flow
store (an extracted root, or the video's flow computed in memory by ``classify``'s engine);
with flow extracted every ``step`` frames, flow frame k is video frame k * step, as in
``datamodules.datasets``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from datamodules.batch import collate_test, finish_batch
from datamodules.decoding import FrameReader
from datamodules.transforms import Augment, Augmentation
from flow.av_compat import frames_per_second, open_input
from flow.frames import VideoError
from flow.store import FolderFlowStore
from inference.snippets import SnippetGrid, resampled

Crops = Literal["center", "ten"]
CROPS = {"center": "centre", "centre": "centre", "ten": "ten"}
# Snippets are decoded in groups spanning about this many frames: one decoder opening (and
# seek) per group, and a bounded number of frames held (256 frames of 1080p: 1.6 GB).
DECODE_SPAN = 256


@dataclass(frozen=True)
class FeatureSettings:
    """How a video is cut into snippets and viewed.

    Args:
        stack: frames per snippet (``--stack-size``); None: the most frames a stream's network
            declares (``input_spec.frames``: 64 for the I3D paper's, 1 for a 2D RGB network).
        step: frames between snippet starts (``--step-size``); None: ``stack``.
        fps: resample the frames to this rate before stacking; None: the video's.
        crops: ``center`` (T x D) or ``ten`` (4 corners + centre, each mirrored: T x 10 x D).
        concat: RGB and flow features joined per snippet (RGB first): one T x (D_rgb + D_flow) array.
        batch: views forwarded together (snippets x crops).
    """

    stack: int | None = None
    step: int | None = None
    fps: float | None = None
    crops: Crops = "center"
    concat: bool = False
    batch: int = 8

    def __post_init__(self) -> None:
        if self.crops not in CROPS:
            raise ValueError(f"crops must be one of center, ten; got {self.crops!r}")
        if (self.stack is not None and self.stack < 1) or (self.step is not None and self.step < 1) or self.batch < 1:
            raise ValueError(f"stack size, step size and batch must be >= 1, got {self.stack}, {self.step}, "
                             f"{self.batch}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


@dataclass
class VideoFeatures:
    """One video's features: per stream (``rgb``, ``flow``; ``concat`` with ``--concat``)
    float32 (T, D) or (T, crops, D), the (T, 2) snippet timestamps in seconds, the video's
    length in seconds (frames when its rate is unknown), and notes (a padded short video)."""

    features: dict[str, np.ndarray]
    timestamps: np.ndarray
    duration: float
    notes: list[str] = field(default_factory=list)


FlowFor = Callable[[Path, str], FolderFlowStore]  # (video path, video id) -> a store holding that video's flow


def video_rate(path: Path) -> float:
    """The video's frame rate from its header (0.0 when unknown); VideoError when it does not open."""
    try:
        with open_input(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                raise VideoError("no video stream")
            return frames_per_second(stream)
    except VideoError:
        raise
    except Exception as error:  # noqa: BLE001 - PyAV's errors have no common base across versions
        raise VideoError(f"cannot open as a video ({getattr(error, 'strerror', None) or error})") from None


@dataclass(frozen=True)
class _Source:
    """A video being read: its flow (None without), the flow's frame step, the frames (or
    fields) its snippets are cut from, their rate, and the video's length in seconds."""

    path: Path
    video_id: str
    store: FolderFlowStore | None
    step: int
    length: int
    rate: float
    duration: float


class FeatureExtractor:
    """Features of videos from networks reading ``rgb`` and/or ``flow``.

    Args:
        networks: per batch key (``rgb``, ``flow``) the network (put in eval mode, on ``device``).
        settings: snippets and views.
        augmentation: the data's ``augment`` block (its ``short_side`` resizes frames and flow
            before cropping, as at test; a recipe's, so features see the training sizes).
        reader: the RGB frame reader (a recipe's ``decoder``).
        flow_for: where a video's quantized flow is read (an extracted root, or computed
            in memory); needed when a network reads ``flow``.
        device: where the views are cut and the networks run.
    """

    def __init__(self, networks: Mapping[str, nn.Module], settings: FeatureSettings, augmentation: Augmentation,
                 reader: FrameReader, flow_for: FlowFor | None = None, device: str | torch.device = "cpu"):
        unknown = set(networks) - {"rgb", "flow"}
        if unknown or not networks:
            raise ValueError(f"networks are keyed by what they read, rgb and/or flow; got {sorted(networks)}")
        if "flow" in networks and flow_for is None:
            raise ValueError("a network reads flow: give the flow (an extracted root, or computed on the fly)")
        if settings.concat and set(networks) != {"rgb", "flow"}:
            raise ValueError(f"concat joins rgb and flow features, but the networks read {sorted(networks)}")
        self.device = torch.device(device)
        self.networks = {key: net.to(self.device).eval() for key, net in sorted(networks.items())}
        self.specs = {key: net.input_spec for key, net in self.networks.items()}
        self.settings = settings if settings.stack else replace(
            settings, stack=max(spec.frames for spec in self.specs.values()))
        if settings.crops == "ten" and augmentation.flip is False:
            # The data turned flips off because its labels name directions (Something-Something):
            # a mirrored view would be a view of another class.
            raise ValueError("--crops ten mirrors five of its crops, but this model's data never mirrors (its labels "
                             "name directions): use --crops center")
        flip = True if settings.crops == "ten" else bool(augmentation.flip)
        self.augmentation = replace(augmentation, flip=flip)
        self.augment = Augment("test", self.specs, self.augmentation, test_crops=CROPS[settings.crops])
        self.reader, self.flow_for = reader, flow_for

    def extract(self, path: Path | str, video_id: str) -> VideoFeatures:
        """The features of the video at ``path`` (``video_id`` names its flow)."""
        path, settings = Path(path), self.settings
        source = self._source(path, video_id)
        if settings.fps is not None and not source.rate > 0:
            raise VideoError("its frame rate is unknown, so it cannot be resampled to --fps")
        sequence = resampled(source.length, source.rate, settings.fps)
        grid = SnippetGrid(len(sequence), settings.stack, settings.step or settings.stack, settings.fps or source.rate)
        notes = []
        if grid.padded:
            notes.append(f"{len(sequence)} frames, fewer than one stack of {settings.stack}: one snippet, "
                         f"its frames looped as the test protocol pads a short clip")
        rows: dict[str, list[np.ndarray]] = {key: [] for key in self.networks}
        starts = grid.starts
        group = max(1, (DECODE_SPAN - grid.stack) // grid.step + 1)
        for first in range(0, len(starts), group):
            chunk = starts[first:first + group]
            frames, bound = self._read(source, {key: sequence[grid.positions(spec, chunk)]
                                                for key, spec in self.specs.items()})
            for key, values in self._forward(frames, bound, len(chunk)).items():
                rows[key].append(values)
        features = {key: np.concatenate(values) for key, values in rows.items()}
        if settings.concat:
            features = {"concat": np.concatenate([features["rgb"], features["flow"]], axis=-1)}
        return VideoFeatures(features, grid.timestamps(), source.duration, notes)

    def _source(self, path: Path, video_id: str) -> _Source:
        """Where the video's frames (and flow) come from, and how many there are."""
        if "flow" not in self.networks:
            length = self.reader.num_frames(path)
            if length < 1:
                raise VideoError("no frames")
            rate = video_rate(path)
            return _Source(path, video_id, None, 1, length, rate, length / rate if rate > 0 else float(length))
        store = self.flow_for(path, video_id)
        meta = store.meta(video_id)
        length = store.num_flows(video_id)  # field k pairs with frame k (datamodules.datasets)
        if length < 1:
            raise VideoError(f"no flow fields for {video_id} in {store.root}")
        step = meta.step if meta else 1
        rate = meta.fps if meta and meta.fps > 0 else video_rate(path)
        frames = (meta.num_frames if meta else length + 1) * step
        return _Source(path, video_id, store, step, length, rate / step, frames / rate if rate > 0 else float(frames))

    def _read(self, source: _Source, indices: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], float]:
        """uint8 (B, t, C, H, W) per key at ``indices`` (B, t) of the flow's frames (or the
        video's, without flow), and the flow's quantization bound (0.0 without flow)."""
        frames, bound = {}, 0.0
        for key, where in indices.items():
            if key == "rgb":
                video_frames = (where * source.step).reshape(-1).tolist()  # flow frame k is video frame k * step
                decoded = torch.from_numpy(self.reader.read_frames(source.path, video_frames))
                frames[key] = decoded.permute(0, 3, 1, 2).reshape(*where.shape, 3, *decoded.shape[1:3])
            else:
                fields = source.store.read_fields(source.video_id, where.reshape(-1).tolist())
                frames[key], bound = fields.planes.reshape(*where.shape, *fields.planes.shape[1:]), fields.bound
        return frames, bound

    @torch.inference_mode()
    def _forward(self, frames: dict[str, torch.Tensor], bound: float, count: int) -> dict[str, np.ndarray]:
        """uint8 snippets (B, t, C, H, W) per key -> float32 (B, D) or (B, crops, D) per key."""
        sample = self.augment(frames, bound) if "flow" in frames else self.augment(frames)
        batch = collate_test([{key: value.to(self.device) for key, value in sample.items()}])
        batch = finish_batch(batch, self.specs, self.augmentation.flow_mean_subtraction)
        out = {}
        for key, network in self.networks.items():
            views = batch[key]  # TestViews: this batch's B snippets x K crops, snippet-major
            pooled = [network.forward_head(network.forward_features(x), pre_logits=True)
                      for x in views.chunks(self.settings.batch)]
            values = torch.cat(pooled).float().cpu().numpy().reshape(count, views.shape[1] // count, -1)
            out[key] = values[:, 0] if CROPS[self.settings.crops] == "centre" else values
        return out
