"""Decoding a video into the frames flow is computed on: sampled, resized, gray and/or RGB.

Two decoders, picked by name (``ExtractionConfig.decoder``):

- ``pyav`` (the default): FFmpeg through PyAV. A gray frame is the decoded picture's luma
  plane, range-expanded and resized by swscale in one pass: no RGB conversion, and one
  channel to resize instead of three. On 720p H.264 this costs ~2.5 ms of CPU a frame
  against ~7 ms for decord + OpenCV (``benchmarks/flow_speed.py``), which matters because
  the fast flow algorithms (DIS: ~10 ms a pair) would otherwise wait on the decoder.
- ``decord``: RGB frames from decord, converted to gray before resizing (OpenCV INTER_AREA).

Both give the same frames up to rounding (luma vs. RGB-weighted gray: ~1 level on
average, constant over a video, so flow is unaffected); meta.json records which one ran.
Gray frames never depend on whether RGB frames are also written.

Frames are upright: a phone video's display rotation (``flow.orientation``) is applied,
by decord itself and by ``pyav`` after resizing, so flow is computed on what a player shows
and lines up with the RGB frames the training readers (decord, torchcodec) decode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import partial
from itertools import chain
from pathlib import Path
from typing import ClassVar, NamedTuple

import av
import cv2
import decord
import numpy as np
from av.video.reformatter import VideoReformatter

from flow.av_compat import display_matrix, frames_per_second, open_input
from flow.orientation import quarter_turns, upright, upright_size


class VideoError(Exception):
    """This video cannot be extracted; the message says why."""


class Frame(NamedTuple):
    """One sampled, resized frame: (H, W, 3) RGB and/or (H, W) gray uint8, None where not asked for."""

    rgb: np.ndarray | None
    gray: np.ndarray | None


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The frame size with the short side scaled to ``short_side`` (0 keeps the size)."""
    if short_side == 0:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def first_line(error: BaseException) -> str:
    """An error's message without the C++ stack trace decord appends."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class VideoFrames(ABC):
    """The frames of one video, every ``step``-th, resized so the short side is ``short_side``.

    Opening reads the header (size, fps); frames are decoded while iterating, a few at a
    time, so memory stays bounded for long videos. Any decoding problem is a VideoError.
    """

    name: ClassVar[str]

    def __init__(self, path: Path, short_side: int, step: int = 1, gray: bool = True, rgb: bool = False) -> None:
        if not path.is_file():
            raise VideoError("no such file")
        if path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes)")
        self.step, self.gray, self.rgb = step, gray, rgb
        width, height, self.fps = self._open(path)
        self.source_size = (width, height)
        self.size = resized_size(width, height, short_side)
        self.downscaling = self.size[0] < width

    @abstractmethod
    def _open(self, path: Path) -> tuple[int, int, float]:
        """Open the file; returns its frame width, height and fps."""

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """The sampled frames in order."""


class PyAVFrames(VideoFrames):
    name = "pyav"

    def _open(self, path: Path) -> tuple[int, int, float]:
        try:
            self._container = open_input(str(path))
        except av.FFmpegError as error:
            raise VideoError(f"cannot open as a video ({error.strerror or error})") from None
        try:
            return self._open_stream()
        except BaseException:
            self._container.close()
            raise

    def _open_stream(self) -> tuple[int, int, float]:
        # FFmpeg's choice of stream, as decord's (it passes over cover art).
        self._stream = self._container.streams.best("video")
        if self._stream is None:
            raise VideoError("no video stream")
        context = self._stream.codec_context
        if context is None:
            raise VideoError("no decoder for its video codec")
        if context.width <= 0 or context.height <= 0:
            raise VideoError(f"unknown frame size ({context.width}x{context.height})")
        # The decode thread is one of the extraction's stages: FFmpeg's own threads
        # would compete with the flow threads for the same cores.
        self._stream.thread_count = 1
        # The display matrix comes with the decoded frames: the first one says the upright size.
        self._decoded = self._container.decode(self._stream)
        try:
            self._first: av.VideoFrame | None = next(self._decoded, None)
        except av.FFmpegError as error:
            raise VideoError(f"cannot decode frame 1 ({error.strerror or error})") from None
        try:
            self._turns = quarter_turns(display_matrix(self._first) if self._first is not None else None)
        except ValueError as error:
            raise VideoError(str(error)) from None
        return *upright_size(context.width, context.height, self._turns), frames_per_second(self._stream)

    def __iter__(self) -> Iterator[Frame]:
        # swscale resizes the stored picture; the small result is then turned upright.
        width, height = upright_size(*self.size, self._turns)
        # One reformatter per output format keeps its swscale context from frame to frame
        # (built anew for every frame, it would cost a third of the decoding).
        convert = {
            name: partial(_array, VideoReformatter(), format=name, width=width, height=height,
                          interpolation="AREA" if self.downscaling else "BILINEAR")
            for name, wanted in (("rgb24", self.rgb), ("gray", self.gray)) if wanted
        }  # fmt: skip
        decoded = self._decoded if self._first is None else chain([self._first], self._decoded)
        self._first = None  # the iterator holds it now
        k = -1
        try:
            for k, frame in enumerate(decoded):
                if k % self.step == 0:
                    yield Frame(*(upright(convert[name](frame), self._turns) if name in convert else None
                                  for name in ("rgb24", "gray")))
        except av.FFmpegError as error:
            raise VideoError(f"cannot decode frame {k + 1} ({error.strerror or error})") from None
        finally:
            self._container.close()


def _array(reformatter: VideoReformatter, frame: av.VideoFrame, **target: str | int) -> np.ndarray:
    # PyAV returns a view of FFmpeg's padded lines where a line is not a multiple of its
    # alignment; OpenCV's solvers need contiguous images.
    return np.ascontiguousarray(reformatter.reformat(frame, **target).to_ndarray())


# Decoded frames per decord call (a 1080p RGB frame is ~6 MiB), at most 8: larger batches
# cost more than they save (every call allocates a fresh buffer, paid in page faults).
_BATCH_BYTES = 16 * 2**20


class DecordFrames(VideoFrames):
    name = "decord"

    def _open(self, path: Path) -> tuple[int, int, float]:
        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            fps = float(self._reader.get_avg_fps())
            # Read on, not by index: reader[0] would make the next batch seek back to 0.
            self._first = self._reader.next().asnumpy()
        except (RuntimeError, decord.DECORDError, StopIteration) as error:
            raise VideoError(f"cannot open as a video ({first_line(error)})") from None
        if self._first.ndim != 3 or self._first.shape[2] != 3:
            # decord 0.6 takes padded rows for extra channels at some widths (48, 72 px).
            raise VideoError(f"decord returned a frame of shape {self._first.shape}, not RGB; use --decoder pyav")
        height, width = self._first.shape[:2]
        self._batch = max(1, min(8, _BATCH_BYTES // (width * height * 3)))
        return width, height, fps

    def __iter__(self) -> Iterator[Frame]:
        indices = range(0, len(self._reader), self.step)
        yield self._frame(self._first)
        for start in range(1, len(indices), self._batch):
            chunk = list(indices[start : start + self._batch])
            try:
                batch = self._reader.get_batch(chunk).asnumpy()
            except (RuntimeError, decord.DECORDError) as error:
                raise VideoError(f"cannot decode frames {chunk[0]}..{chunk[-1]} ({first_line(error)})") from None
            for frame in batch:
                yield self._frame(frame)

    def _frame(self, rgb: np.ndarray) -> Frame:
        return Frame(self._resized(rgb) if self.rgb else None,
                     self._resized(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)) if self.gray else None)

    def _resized(self, image: np.ndarray) -> np.ndarray:
        if image.shape[1::-1] == self.size:
            return image
        interpolation = cv2.INTER_AREA if self.downscaling else cv2.INTER_LINEAR
        return cv2.resize(image, self.size, interpolation=interpolation)


DECODERS: dict[str, type[VideoFrames]] = {cls.name: cls for cls in (PyAVFrames, DecordFrames)}
