"""``classify --render OUT.mp4``: the video with its top labels drawn on every frame.

As mmaction2's demo does: each frame of the source (upright, at its own size and rate) gets
the labels of the window it lies in (``--window``: the window whose middle is nearest the
frame's time; without windows, the whole video's), drawn with OpenCV on a dark band, and
the frames are encoded with PyAV (H.264 in MP4), one output frame per source frame. The
file is written under a temporary name and renamed once complete (``flow.ownership.completed_file``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from flow.frames import PyAVFrames
from flow.ownership import completed_file

CODEC = "libx264"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Caption:
    """The lines drawn on the frames shown from ``start_s`` to ``end_s`` (seconds)."""

    start_s: float
    end_s: float
    lines: tuple[str, ...]


def caption_at(captions: Sequence[Caption], time_s: float) -> Caption:
    """The caption of a frame shown at ``time_s``: of the captions spanning it (else of all), the one
    whose middle is nearest."""
    spanning = [c for c in captions if c.start_s <= time_s < c.end_s] or list(captions)
    return min(spanning, key=lambda c: abs((c.start_s + c.end_s) / 2 - time_s))


def draw_lines(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``image`` (H, W, 3, uint8) with ``lines`` written top left on a darkened band, sized to the frame."""
    height, width = image.shape[:2]
    scale = max(0.35, min(height, width) / 600)
    thickness = max(1, round(scale * 2))
    (_, text_height), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    line_height = text_height + baseline + max(2, text_height // 2)
    band = min(height, line_height * len(lines) + baseline)
    image[:band] = (image[:band] * 0.4).astype(np.uint8)  # dark enough for white text on any scene
    for k, line in enumerate(lines):
        origin = (max(2, text_height // 2), (k + 1) * line_height - baseline)
        cv2.putText(image, line, origin, _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def render_captions(source: Path, out: Path, captions: Sequence[Caption]) -> int:
    """Write ``source`` with ``captions`` drawn on it to ``out`` (MP4); returns the frames written.

    Args:
        source: the classified video.
        out: the MP4 to write (complete when it appears under this name).
        captions: what to draw, by time; at least one.

    Raises:
        flow.frames.VideoError: the source cannot be decoded (the decoder's reason).
    """
    if not captions:
        raise ValueError("nothing to draw: no captions")
    frames = PyAVFrames(source, short_side=0, gray=False, rgb=True)
    rate = Fraction(frames.fps).limit_denominator(1001) if frames.fps > 0 else Fraction(25)
    width, height = frames.size
    # H.264 in 4:2:0 needs even sides: an odd one gets a copied last row or column.
    even_width, even_height = width + width % 2, height + height % 2
    written = 0
    with completed_file(out) as partial:
        with av.open(str(partial), "w", format="mp4") as container:
            stream = container.add_stream(CODEC, rate=rate)
            stream.width, stream.height, stream.pix_fmt = even_width, even_height, "yuv420p"
            stream.time_base = 1 / rate
            for frame in frames:
                image = frame.rgb
                if (even_width, even_height) != (width, height):
                    image = cv2.copyMakeBorder(image, 0, even_height - height, 0, even_width - width,
                                               cv2.BORDER_REPLICATE)
                caption = caption_at(captions, written / rate)
                video_frame = av.VideoFrame.from_ndarray(draw_lines(np.ascontiguousarray(image), caption.lines),
                                                         format="rgb24")
                video_frame.pts = written
                video_frame.time_base = stream.time_base
                container.mux(stream.encode(video_frame))
                written += 1
            container.mux(stream.encode(None))
    return written
