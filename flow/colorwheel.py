"""Middlebury colour coding of flow (Baker et al., "A Database and Evaluation Methodology
for Optical Flow", 2011): hue is the direction, saturation the magnitude, white is zero.
"""

from __future__ import annotations

import numpy as np

# The wheel's corners (red, yellow, green, cyan, blue, magenta) and how many colours
# each ramp to the next corner gets: RY 15, YG 6, GC 4, CB 11, BM 13, MR 6 (55 colours).
_CORNERS = np.array([(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)])
_RAMP_LENGTHS = (15, 6, 4, 11, 13, 6)


def _colorwheel() -> np.ndarray:
    """(55, 3) float colours; one channel ramps per segment, the other two stay put."""
    segments = []
    for start, end, length in zip(_CORNERS, np.roll(_CORNERS, -1, axis=0), _RAMP_LENGTHS):
        ramp = np.floor(255 * np.arange(length) / length)
        segments.append(start + np.sign(end - start) * ramp[:, None])
    return np.concatenate(segments).astype(np.float64)


_WHEEL = _colorwheel()


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour an (H, W, 2) field as (H, W, 3) uint8 RGB.

    Magnitudes are divided by ``max_magnitude`` (default: the field's largest); vectors
    beyond it keep their hue and are darkened, as in the Middlebury code.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    scale = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
    radius = magnitude / max(scale, np.finfo(np.float64).eps)

    # Angle of (-u, -v) in [-1, 1]: rightward motion lands on the wheel's first colour, red.
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(_WHEEL) - 1)
    below = np.floor(position).astype(int)
    above = (below + 1) % len(_WHEEL)
    weight = (position - below)[..., None]
    colour = ((1 - weight) * _WHEEL[below] + weight * _WHEEL[above]) / 255

    inside = (radius <= 1)[..., None]
    colour = np.where(inside, 1 - radius[..., None] * (1 - colour), colour * 0.75)
    return np.floor(255 * colour).astype(np.uint8)
