"""The one place that knows how the PyAV versions the project admits differ (pyproject: ``av``).

- ``av.open``: up to PyAV 18 metadata is decoded strictly as UTF-8 unless ``metadata_errors``
  says otherwise, so an old AVI whose title is Latin-1 fails to open; PyAV 19 removed
  ``metadata_encoding``, ``metadata_errors`` and ``stream_options`` (passing one is a
  TypeError) and always decodes metadata as UTF-8 with ``surrogateescape``, which never fails.
- Rational attributes (``average_rate``, ``guessed_rate``, ...): ``Fraction`` or None up to
  18; from 19 an ``AVRational`` that is never None (unset: the falsy ``0/1``).
- Colour tags: frames carry their range and YUV matrix from 14 on (earlier ones assumed),
  their primaries and transfer characteristic only from 18 (``copy_colour_tags``).
- The display matrix (a phone video's rotation): FFmpeg >= 7, which every admitted PyAV is
  built on, attaches the stream's matrix to each decoded frame as side data, readable the
  same way from 14 on (``VideoFrame.rotation`` only exists from 15, ``Stream.side_data`` was
  removed in 14).
"""

from __future__ import annotations

import re
import struct
from fractions import Fraction

import av
from av.sidedata.sidedata import Type as SideDataType


def pyav_major() -> int:
    """The installed PyAV's major version (read at each call, so a test can stand in another)."""
    return int(re.match(r"\d+", av.__version__).group())


def open_input(path: str) -> av.container.InputContainer:
    """Open a media file for reading; metadata in any encoding never fails the open."""
    if pyav_major() < 19:
        return av.open(path, metadata_errors="replace")
    return av.open(path)


def frame_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's average frame rate, else FFmpeg's guess, exactly (30000/1001); None when
    neither is known."""
    rate = stream.average_rate or stream.guessed_rate  # None (<= 18) and 0/1 (19) are both falsy
    return Fraction(rate.numerator, rate.denominator) if rate else None


def frames_per_second(stream: av.video.stream.VideoStream) -> float:
    """The stream's average frame rate, else FFmpeg's guess; 0.0 when neither is known."""
    rate = stream.average_rate or stream.guessed_rate  # None (<= 18) and 0/1 (19) are both falsy
    return float(rate) if rate else 0.0


# A frame's colour description, which decoders follow when they convert to RGB.
_COLOUR_TAGS = ("color_range", "colorspace", "color_primaries", "color_trc")


def copy_colour_tags(frame: av.VideoFrame, context: av.video.codeccontext.VideoCodecContext) -> None:
    """Tag an encoder with ``frame``'s colour range, matrix, primaries and transfer, those this
    PyAV exposes on both (before 18 a frame has no primaries or transfer: they stay unset)."""
    for name in _COLOUR_TAGS:
        value = getattr(frame, name, None)
        if value is not None and hasattr(context, name):
            setattr(context, name, value)


def display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The frame's 3x3 display matrix (FFmpeg's layout: 9 native int32, row-major, 16.16 and
    2.30 fixed point), None when it has none."""
    side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side_data is None:
        return None
    return struct.unpack("=9i", bytes(side_data))
