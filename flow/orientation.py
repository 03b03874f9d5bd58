"""A video's display rotation: the quarter turns that make its stored frames upright.

Phone videos store the picture as the sensor saw it, plus a display matrix saying how to
turn it for display. decord and torchcodec (>= 0.11), the training readers, apply the
matrix's rotation when decoding; PyAV hands out the stored picture, so the PyAV extractor
turns it itself, by the same rule: the matrix's rotation as FFmpeg's
``av_display_rotation_get`` reads it, in counter-clockwise quarter turns. A matrix that also
mirrors (rare) is applied as that rotation alone, as decord and torchcodec do, so that every
decoder gives the same frames and a video's flow lines up with its RGB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# FFmpeg's command line treats an angle within 1 degree of a quarter turn as that turn.
_TOLERANCE_DEGREES = 1.0


def rotation_degrees(matrix: Sequence[int]) -> float:
    """The counter-clockwise rotation of a display matrix in degrees, in [-180, 180]
    (FFmpeg's ``av_display_rotation_get``); NaN for a degenerate matrix."""
    a, b, _, c, d = (value / 65536 for value in matrix[:5])  # 16.16 fixed point
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return math.nan
    return -math.degrees(math.atan2(b / scale_y, a / scale_x))


def quarter_turns(matrix: Sequence[int] | None) -> int:
    """Counter-clockwise quarter turns (0..3) that make a frame upright; 0 without a matrix.

    Raises ValueError for a rotation that is no multiple of 90 degrees, which decord and
    torchcodec would each read differently.
    """
    if matrix is None:
        return 0
    degrees = rotation_degrees(matrix)
    turns = round(degrees / 90) if math.isfinite(degrees) else 0
    if not abs(degrees - 90 * turns) <= _TOLERANCE_DEGREES:
        raise ValueError(f"its display matrix {tuple(matrix)} rotates by {degrees:.1f} degrees, not a multiple of "
                         "90; re-encode it upright (ffmpeg -i VIDEO UPRIGHT.mp4 applies the rotation)")
    return turns % 4


def upright_size(width: int, height: int, turns: int) -> tuple[int, int]:
    """(width, height) of a width x height frame after ``turns`` quarter turns."""
    return (height, width) if turns % 2 else (width, height)


def upright(image: np.ndarray, turns: int) -> np.ndarray:
    """An (H, W) or (H, W, C) image turned ``turns`` quarter turns counter-clockwise, contiguous."""
    return np.ascontiguousarray(np.rot90(image, turns)) if turns % 4 else image
