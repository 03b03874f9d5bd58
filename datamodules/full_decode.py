"""Whether every frame of a video decodes: ``python -m datamodules check --decode``.

The index opens each video once and trusts the container's frame count, so a video whose
packets are damaged mid-file (a truncated or bit-flipped download: decord's test video
``corrupted.mp4`` stops decoding at frame 28 of 50) is counted usable, and training only
meets it when a clip reaches the damage. ``first_undecodable`` decodes every frame with
the reader training uses (the data setting ``decoder``) and names the first frame that
does not decode.

Cost: one full decode per video, about 0.1 s per 10 s of 320x240 H.264 on one core
(docs/faults.md, "The doctor", has the measured figures).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from datamodules.decoding import FrameReader, VideoDecodeError

_SOURCE_REFERENCE = re.compile(r"\S+\.(?:cc|cpp|c|h):\d+[:,]?\s*")
CHUNK = 32  # frames decoded per call: per-frame calls cost up to 6x more in decord


def _why(error: VideoDecodeError) -> str:
    """The decoder's own words, on one line, without the source-file references before them
    ("/.../threaded_decoder.cc:218:", "SingleStreamDecoder.cpp:1493,")."""
    return _SOURCE_REFERENCE.split(" ".join(error.reason.split()))[-1]


def first_undecodable(reader: FrameReader, path: str) -> str | None:
    """Why ``path`` does not decode to its last frame ("frame 28 of 50 does not decode:
    ..."), or None when every frame decodes."""
    done = 0
    try:
        for first, length in reader.decode_all(path, chunk=CHUNK):
            done = min(first + CHUNK, length)
    except VideoDecodeError as error:
        return _first_bad_frame(reader, path, done, error)
    return None if done else "no frames"


def _first_bad_frame(reader: FrameReader, path: str, start: int, error: VideoDecodeError) -> str:
    """The chunk from ``start`` failed: decoded again frame by frame, which frame fails."""
    try:
        length = reader.num_frames(path)
    except VideoDecodeError:
        return f"does not open: {_why(error)}"
    bad = start
    try:
        for first, _ in reader.decode_all(path, start=start, chunk=1):
            if first + 1 == min(start + CHUNK, length):
                # Alone, each frame decodes: the chunk fails only in sequence.
                return f"frames {start}-{first} of {length} do not decode in sequence: {_why(error)}"
            bad = first + 1
    except VideoDecodeError as single:
        error = single
    return f"frame {bad} of {length} does not decode: {_why(error)}"


def undecodable_many(reader: FrameReader, paths: dict[str, str], workers: int | None = None) -> dict[str, str]:
    """``first_undecodable`` for each video (id -> path) on threads (the decoders release the
    GIL); the videos that fail, with why."""

    def one(item: tuple[str, str]) -> tuple[str, str | None]:
        video_id, path = item
        return video_id, first_undecodable(reader, path)

    with ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:
        return {video_id: reason for video_id, reason in pool.map(one, paths.items()) if reason is not None}
