"""The snippets a feature extractor cuts a video into, and the frames each stream reads.

A video's frames are its decoded frames at the video's rate, or (``fps``) resampled: frame
i of the resampled sequence is the source frame shown at time i / fps, ``floor(i * rate /
fps)`` (frames repeat when fps is above the video's rate; a flow field read at frame i is the
one starting at its source frame, the motion to the next source frame as extracted). Snippet k covers the
``stack`` frames ``k * step .. k * step + stack - 1`` of that sequence (v-iashin/video_features'
``stack_size`` / ``step_size``); its timestamps are ``(k * step / fps, (k * step + stack) / fps)``
seconds. T = 1 + (n - stack) // step snippets for n >= stack frames; a video shorter than
one stack gives one snippet whose frames loop back to the start, as the test protocol pads
a short clip (``datamodules.sampling.windows``), its end timestamp the video's end.

What each network reads of a snippet (indices into the sequence):
- 3D networks (I3D, I3D-ResNet): every frame of the stack (RGB frame j; flow field j, the
  motion from frame j to j + 1, the data module's pairing for 3D clips);
- 2D RGB (a spatial stream): the snippet's middle frame, ``start + stack // 2``;
- 2D flow of L fields (a temporal stream): the L fields centred on that frame,
  ``start + stack // 2 - L // 2 ..`` (for stack = L the snippet's own fields: the pairing of
  ``datamodules.sampling.two_stream_positions``), kept inside the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.sampling import windows
from models.input_spec import InputSpec


def resampled(num_frames: int, rate: float, fps: float | None) -> np.ndarray:
    """Indices (m,) of the source frames making the sequence at ``fps`` (None: every frame)."""
    if fps is None:
        return np.arange(num_frames, dtype=np.int64)
    if not fps > 0 or not rate > 0:
        raise ValueError(f"resampling needs positive rates, got fps {fps} and the video's {rate}")
    count = int(np.ceil(num_frames * fps / rate - 1e-9))
    # floor, with a tolerance: at 30000/1001 -> 29.97 the product lands a hair below integers
    return np.minimum(np.floor(np.arange(count) * (rate / fps) + 1e-6).astype(np.int64), num_frames - 1)


@dataclass(frozen=True)
class SnippetGrid:
    """The snippets of a sequence of ``length`` frames at ``fps``.

    Args:
        length: frames in the (resampled) sequence.
        stack: frames per snippet.
        step: frames between the starts of consecutive snippets.
        fps: the sequence's frame rate (timestamps); 0 when unknown (timestamps in frames).
    """

    length: int
    stack: int
    step: int
    fps: float

    def __post_init__(self) -> None:
        if self.stack < 1 or self.step < 1:
            raise ValueError(f"stack size and step size must be >= 1, got {self.stack} and {self.step}")
        if self.length < 1:
            raise ValueError("no frames to cut into snippets")

    @property
    def padded(self) -> bool:
        """Shorter than one stack: one snippet, its frames looped."""
        return self.length < self.stack

    @property
    def starts(self) -> np.ndarray:
        """(T,) first frame of each snippet."""
        if self.padded:
            return np.zeros(1, dtype=np.int64)
        return np.arange(0, self.length - self.stack + 1, self.step, dtype=np.int64)

    def timestamps(self) -> np.ndarray:
        """(T, 2) float64 start and end of each snippet, in seconds (frames when fps is 0)."""
        starts = self.starts.astype(np.float64)
        ends = np.minimum(starts + self.stack, self.length)
        scale = self.fps if self.fps > 0 else 1.0
        return np.stack([starts, ends], axis=1) / scale

    def positions(self, spec: InputSpec, starts: np.ndarray | None = None) -> np.ndarray:
        """(T, frames) indices into the sequence that a network of ``spec`` reads per snippet
        (module docstring); ``starts``: a subset of ``self.starts``."""
        starts = self.starts if starts is None else np.asarray(starts, dtype=np.int64)
        if spec.dims == 3:
            return windows(starts, self.stack, self.length)
        middle = starts + self.stack // 2
        if spec.modality == "rgb":
            return windows(middle, 1, self.length)
        fields = spec.frames
        first = np.clip(middle - fields // 2, 0, max(self.length - fields, 0))
        return windows(first, fields, self.length)
