"""A frame pair whose flow is known everywhere, to measure a flow algorithm's accuracy.

A real frame (FFmpeg's generated ``mandelbrot``, no download) and the same frame
rotated by 2 degrees, zoomed by 3% and moved by a pixel or so: a smooth flow of up to
~6 px at 160x120 (more on larger frames), known in closed form. Near the border part of
the scene left or entered the frame, so the error is measured on the interior.
``tests/test_tvl1_torch.py`` and ``benchmarks/flow_speed.py`` both use it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

# What left or entered the frame is not known: pixels this close to the border are not scored.
INTERIOR_MARGIN = 16


def ffmpeg_frames(source: str, frames: int, width: int, height: int) -> np.ndarray:
    """(N, H, W) uint8 gray frames of one of FFmpeg's generated videos (``lavfi``: testsrc2,
    mandelbrot, ...), with real motion."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is needed to generate frames (apt-get install ffmpeg)")
    command = [ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size={width}x{height}:rate=25",
               "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"]  # fmt: skip
    raw = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(frames, height, width).copy()


@dataclass(frozen=True)
class KnownFlow:
    """``prev`` and ``nxt`` (H, W) uint8 gray, and ``truth`` (H, W, 2) float64, x then y:
    ``nxt(y + v, x + u) = prev(y, x)``."""

    prev: np.ndarray
    nxt: np.ndarray
    truth: np.ndarray

    def rgb(self) -> tuple[np.ndarray, np.ndarray]:
        """The pair as (H, W, 3) RGB, for algorithms that read color."""
        return tuple(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) for frame in (self.prev, self.nxt))  # type: ignore[return-value]

    def error(self, flow: np.ndarray, margin: int = INTERIOR_MARGIN) -> float:
        """Mean end-point error of ``flow`` against the truth on the interior, in pixels."""
        return end_point_error(flow[margin:-margin, margin:-margin], self.truth[margin:-margin, margin:-margin])


def warped_pair(prev: np.ndarray) -> KnownFlow:
    """``prev`` and its affine warp (rotation 2 degrees about the centre, zoom 1.03, shift
    (1.5, -0.8) px; bicubic, the border reflected), with the warp's flow."""
    height, width = prev.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 2.0, 1.03) + [[0, 0, 1.5], [0, 0, -0.8]]
    nxt = cv2.warpAffine(prev, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[:height, :width]
    truth = np.stack([matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2] - xs,
                      matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2] - ys], axis=-1)  # fmt: skip
    return KnownFlow(prev, nxt, truth)


def mandelbrot_pair(width: int, height: int) -> KnownFlow:
    """The warped pair made from the first frame of FFmpeg's ``mandelbrot`` at ``width`` x ``height``."""
    return warped_pair(ffmpeg_frames("mandelbrot", 1, width, height)[0])


def end_point_error(flow: np.ndarray, reference: np.ndarray) -> float:
    """Mean end-point error (Euclidean distance per pixel) between two (..., 2) flows."""
    return float(np.hypot(*np.moveaxis(np.asarray(flow, np.float64) - reference, -1, 0)).mean())
