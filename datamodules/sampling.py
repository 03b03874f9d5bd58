"""Which frames and flow fields a sample reads: pure functions of counts and an RNG.

Every function returns int64 arrays of shape (P, T): P positions (1 in training and
validation; 25 positions or ``num_clips`` clips at test), each a window of T frames or
fields. Indices are 0-based, frame k of the (possibly step-subsampled) frames, field k
the flow from frame k to frame k + 1.

Positions by stage, for a window spanning ``span`` items out of ``n``:

- train: a start drawn uniformly from ``0 .. n - span``;
- val: the centre start ``(n - span) // 2``;
- test: ``start_k = round(k * (n - span) / (P - 1))``, k = 0..P-1, so the first window
  starts at 0 and the last ends at the video's end. This is mmaction2's formula for flow
  stacks; TSN used ``k * ((n - span) // (P - 1))`` (which can stop short of the end) and
  mmaction2's RGB test offsets ``avg / 2 + k * avg`` with ``avg = n / P`` (which never
  touches either end). All are "equally spaced"; ours includes both ends. A single test
  position (``count=1``) is the centre, as in validation.

Videos shorter than a window (fewer frames than a clip, fewer fields than a stack) loop
back to their start, as I3D pads short clips by looping: no index is ever out of range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Stage = Literal["train", "val", "test"]
TEST_POSITIONS = 25  # the two-stream paper's test protocol
TEST_CLIPS = 10  # a common 3D protocol (10 clips x 3 crops)


@dataclass(frozen=True)
class Sampling:
    """How many positions a test sample takes and how clips are spaced.

    Args:
        test_positions: 2D test positions (the two-stream paper: 25).
        test_clips: 3D test clips (e.g. 10, with 3 crops each).
        stride: frames between the frames of a 3D clip.
        whole_video: 3D test on every ``stride``-th frame of the video as one clip (I3D);
            clips then differ in length, so the test batch size must be 1.
    """

    test_positions: int = TEST_POSITIONS
    test_clips: int = TEST_CLIPS
    stride: int = 1
    whole_video: bool = False


def window_starts(
    n: int, span: int, stage: Stage, rng: np.random.Generator | None = None, count: int = TEST_POSITIONS
) -> np.ndarray:
    """Starts (P,) of windows covering ``span`` consecutive items of ``n`` (see module docstring)."""
    if n < 1:
        raise ValueError(f"need at least one frame or field, got {n}")
    if span < 1:
        raise ValueError(f"window span must be positive, got {span}")
    last = max(n - span, 0)
    if stage == "train":
        if rng is None:
            raise ValueError("training positions are random: pass rng (a numpy Generator)")
        return rng.integers(0, last, endpoint=True, size=1)
    if stage == "val" or (stage == "test" and count == 1):
        return np.array([last // 2])
    if stage == "test":
        if count < 1:
            raise ValueError(f"count of test positions must be positive, got {count}")
        return np.rint(np.linspace(0, last, count)).astype(np.int64)
    raise ValueError(f"unknown stage {stage!r}; expected 'train', 'val' or 'test'")


def windows(starts: np.ndarray, length: int, n: int, stride: int = 1) -> np.ndarray:
    """Indices (P, length): ``start + stride * t``, looping past the end of ``n`` items."""
    offsets = stride * np.arange(length)
    return (np.asarray(starts, dtype=np.int64)[:, None] + offsets[None, :]) % n


def frame_positions(
    num_frames: int, stage: Stage, rng: np.random.Generator | None = None, count: int = TEST_POSITIONS
) -> np.ndarray:
    """Single RGB frames (spatial stream): (P, 1)."""
    return windows(window_starts(num_frames, 1, stage, rng, count), 1, num_frames)


def flow_stack_positions(
    num_flows: int, length: int, stage: Stage, rng: np.random.Generator | None = None, count: int = TEST_POSITIONS
) -> np.ndarray:
    """Stacks of ``length`` consecutive flow fields (temporal stream): (P, length).

    At test the 25 positions are the stacks' starts, as in the paper.
    """
    return windows(window_starts(num_flows, length, stage, rng, count), length, num_flows)


def two_stream_positions(
    num_frames: int,
    num_flows: int,
    length: int,
    stage: Stage,
    rng: np.random.Generator | None = None,
    count: int = TEST_POSITIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames (P, 1) and flow stacks (P, length) of a two-stream sample, aligned.

    A stack of fields s .. s+L-1 describes the motion across frames s .. s+L; the RGB frame
    paired with it is the middle one, s + L // 2 (exactly the centre for even L, the
    paper's L = 10), so the appearance is taken where the motion is centred.
    """
    starts = window_starts(num_flows, length, stage, rng, count)
    return windows(starts + length // 2, 1, num_frames), windows(starts, length, num_flows)


def bidirectional_stack_positions(
    num_flows: int, length: int, stage: Stage, rng: np.random.Generator | None = None, count: int = TEST_POSITIONS
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's bi-directional stack around frame tau: backward and forward fields (P, L/2) each.

    Backward fields tau - L/2 .. tau - 1 (backward field k goes from frame k + 1 to k) cover
    frames tau - L/2 .. tau; forward fields tau .. tau + L/2 - 1 cover tau .. tau + L/2.
    Together they span the same L + 1 frames as a forward stack starting at tau - L/2, so
    positions (and the paired RGB frame, tau) are those of ``two_stream_positions``.
    Returns ``(backward, forward)``.
    """
    if length % 2:
        raise ValueError(f"a bi-directional stack needs an even number of fields, got {length}")
    half = length // 2
    starts = window_starts(num_flows, length, stage, rng, count)
    return windows(starts, half, num_flows), windows(starts + half, half, num_flows)


def clip_positions(
    num_frames: int,
    frames: int,
    stride: int,
    stage: Stage,
    rng: np.random.Generator | None = None,
    count: int = TEST_CLIPS,
) -> np.ndarray:
    """Clips of ``frames`` frames taken every ``stride`` frames (3D networks): (P, frames)."""
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    span = (frames - 1) * stride + 1
    return windows(window_starts(num_frames, span, stage, rng, count), frames, num_frames, stride)


def whole_video_positions(num_frames: int, stride: int = 1, min_frames: int = 1) -> np.ndarray:
    """Every ``stride``-th frame of the video as one clip (I3D's test protocol): (1, T).

    A video shorter than ``min_frames`` (the fewest a network's temporal pooling accepts)
    is looped up to it.
    """
    if num_frames < 1 or stride < 1:
        raise ValueError(f"need num_frames >= 1 and stride >= 1, got {num_frames}, {stride}")
    frames = max(-(-num_frames // stride), min_frames)
    return windows(np.array([0]), frames, num_frames, stride)
