"""Drawing one synthetic video: textured objects moving over a static textured background.

The objects live on one periodic RGBA layer the size of the frame, drawn once per
video; each frame warps that layer with an affine map (translation, rotation or
scale about the frame centre), wrapping around, so objects leaving one side come
back on the other and every frame is equally full. The background stays
still, so the motion is the objects' own and survives the mean-flow subtraction
of the two-stream paper. Everything scales with the frame's short side, so a
small test video is the same scene as a full-size one.
"""

import math

import cv2
import numpy as np

from datamodules.synthetic.classes import MOTIONS, SHAPES, ClassSpec

# Per-frame speeds, drawn per video within these ranges. Translation is in
# fractions of the short side (0.7 to 6 px at 240 px, so some are sub-pixel),
# rotation in degrees (1 to 4.5 px at 100 px from the centre), scale as the log
# of the per-frame factor.
TRANSLATION_SPEED = (0.003, 0.025)
ROTATION_SPEED = (0.6, 2.6)
SCALE_SPEED = (0.006, 0.02)
# Zooming is not periodic like the other motions: cap the zoom over a whole video.
MAX_ZOOM = 2.0
APPEARANCE_HUE_JITTER = 8.0
VERTICES = {"circle": 32, "square": 4, "triangle": 3}
MOTION_DIRECTIONS = list(MOTIONS.values())


def periodic_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Smooth noise in [-1, 1] that tiles seamlessly (a Gaussian low-pass in Fourier space)."""
    spectrum = np.fft.rfft2(rng.standard_normal((height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    spectrum *= np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return np.clip(noise / (2.5 * noise.std() + 1e-12), -1.0, 1.0).astype(np.float32)


def hsv_to_bgr(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] BGR from hue in degrees, saturation and value in [0, 1]."""
    hsv = np.stack([hue % 360.0, saturation, value], axis=-1).astype(np.float32)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two muted colours mixed by coarse noise, shaded by fine noise; float32 BGR in [0, 1]."""
    unit = min(height, width)
    colours = hsv_to_bgr(rng.uniform(0, 360, 2), rng.uniform(0.05, 0.3, 2), rng.uniform(0.3, 0.8, 2))
    mix = 0.5 + 0.5 * periodic_noise(rng, height, width, 0.08 * unit)
    shade = 0.85 + 0.15 * periodic_noise(rng, height, width, 0.01 * unit)
    background = colours[0] * (1 - mix[..., None]) + colours[1] * mix[..., None]
    return background * shade[..., None]


def draw_objects(rng: np.random.Generator, spec: ClassSpec, height: int, width: int) -> np.ndarray:
    """The periodic object layer: premultiplied BGR and alpha, uint8 (H, W, 4).

    Motion classes draw every object's hue and shape from one distribution;
    appearance classes fix them (hue up to a small jitter).
    """
    unit = min(height, width)
    # Objects sit in distinct cells of a jittered grid, so they cover the frame evenly.
    columns, rows = max(1, round(width / (0.28 * unit))), max(1, round(height / (0.28 * unit)))
    count = int(rng.integers(int(0.6 * columns * rows), columns * rows + 1))
    cells = rng.permutation(columns * rows)[:count]
    centres = (np.stack([cells % columns, cells // columns], axis=1) + rng.uniform(0.2, 0.8, (count, 2)))
    centres *= (width / columns, height / rows)
    if spec.kind == "appearance":
        hues = spec.hue + rng.normal(0.0, APPEARANCE_HUE_JITTER, count)
        shapes = [spec.shape] * count
    else:
        hues = rng.uniform(0.0, 360.0, count)
        shapes = [SHAPES[i] for i in rng.integers(0, len(SHAPES), count)]
    palette = np.concatenate([np.zeros((1, 3), np.float32),
                              hsv_to_bgr(hues, rng.uniform(0.6, 1.0, count), rng.uniform(0.7, 1.0, count))])
    labels = np.zeros((height, width), np.uint8)
    for index, (shape, centre) in enumerate(zip(shapes, centres), start=1):
        sides = VERTICES[shape]
        # Equal areas for all shapes, so that size says nothing about the class.
        radius = unit * rng.uniform(0.07, 0.13) * math.sqrt(2 * math.pi / (sides * math.sin(2 * math.pi / sides)))
        angles = rng.uniform(0, 2 * math.pi) + np.linspace(0, 2 * math.pi, sides, endpoint=False)
        polygon = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius + centre
        # Draw the copies one period away too, so the layer tiles seamlessly.
        copies = [polygon + (dx * width, dy * height) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        cv2.fillPoly(labels, [np.round(c * 16).astype(np.int32) for c in copies], index, cv2.LINE_8, 4)
    # Fine texture inside the objects gives optical flow something to track.
    shade = 0.6 + 0.4 * periodic_noise(rng, height, width, 0.015 * unit)
    alpha = (labels > 0).astype(np.float32)
    layer = np.concatenate([palette[labels] * shade[..., None], alpha[..., None]], axis=-1)
    # Soften the edges (premultiplied, so colour and alpha blur together).
    layer = cv2.GaussianBlur(layer, (0, 0), max(0.4, 0.002 * unit))
    # A random integer shift of a periodic layer is free, unlike a fractional one.
    shift = (int(rng.integers(height)), int(rng.integers(width)))
    return np.roll(np.clip(layer * 255 + 0.5, 0, 255).astype(np.uint8), shift, axis=(0, 1))


def motion_matrices(rng: np.random.Generator, spec: ClassSpec, num_frames: int,
                    height: int, width: int) -> list[np.ndarray]:
    """One 2x3 affine matrix per frame, mapping the layer to the frame.

    The layer's source points stay within one period of the frame (translations
    are taken modulo the layer's period, rotation and zoom are about the centre
    with zoom at least 1/sqrt(2)), which :func:`render_video` relies on. The layer
    is random already, so its starting angle and position need no randomness.
    """
    if spec.kind == "motion":
        dx, dy, rotation, scale = spec.motion
    else:
        dx, dy, rotation, scale = MOTION_DIRECTIONS[rng.integers(len(MOTION_DIRECTIONS))]
    unit = min(height, width)
    speed = unit * rng.uniform(*TRANSLATION_SPEED)
    turn = rng.uniform(*ROTATION_SPEED)
    zoom = min(rng.uniform(*SCALE_SPEED), math.log(MAX_ZOOM) / (num_frames - 1))
    centre = (width / 2, height / 2)
    matrices = []
    for t in range(num_frames):
        # Zoom symmetrically about the middle frame, so zooming in and out show the
        # same range of object sizes. OpenCV's positive angle turns counter-clockwise.
        factor = math.exp(scale * zoom * (t - (num_frames - 1) / 2))
        matrix = cv2.getRotationMatrix2D(centre, -rotation * turn * t, factor)
        # Shift the layer in its own coordinates, where it is periodic, so the modulo changes nothing.
        shift = np.linalg.solve(matrix[:, :2], speed * t * np.array([dx, dy]))
        matrix[:, 2] += matrix[:, :2] @ np.mod(shift, (width, height))
        matrices.append(matrix)
    return matrices


def render_video(spec: ClassSpec, num_frames: int, size: tuple[int, int],
                 rng: np.random.Generator, background_rng: np.random.Generator) -> np.ndarray:
    """Frames of one video of class ``spec``: uint8 BGR (T, H, W, 3).

    ``background_rng`` is separate so that clips can share a background (UCF-101's groups).
    """
    width, height = size
    background = np.clip(draw_background(background_rng, height, width) * 255 + 0.5, 0, 255).astype(np.uint8)
    # Tiled 3x3, so every source point lies inside the image: OpenCV's border
    # handling (BORDER_WRAP) is ten times slower per pixel than the inside.
    tiled = np.tile(draw_objects(rng, spec, height, width), (3, 3, 1))
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t, matrix in enumerate(motion_matrices(rng, spec, num_frames, height, width)):
        matrix[:, 2] -= matrix[:, :2] @ (width, height)
        warped = cv2.warpAffine(tiled, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_WRAP)
        transparency = cv2.merge([255 - warped[..., 3]] * 3)
        frames[t] = cv2.add(cv2.multiply(background, transparency, scale=1 / 255), warped[..., :3])
    return frames
