"""What a network expects as input, declared next to the network.

The data side reads this, so a config cannot pair a network with the wrong
normalisation or channel count.
"""

from dataclasses import dataclass
from typing import Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """Input contract of a network.

    Args:
        modality: ``"rgb"`` or ``"flow"``.
        channels: input channels (3 for RGB; 2L for a 2D flow stack; 2 for 3D flow).
        dims: 2 for image networks (N, C, H, W), 3 for video networks (N, C, T, H, W).
        frames: frames (3D) or flow fields (2D flow stack) per sample.
        size: spatial input size (square crop side).
        mean: per-channel mean subtracted after scaling pixels to [0, 1] (RGB) or
            after the flow scale (flow); one value per image channel.
        std: per-channel std divided after ``mean``.
        flow_scale: flow in pixels is multiplied by this before ``mean``/``std``
            (1.0: pixels, as the two-stream paper; 1/20 after clipping to +-20: I3D).
        flow_clip: flow is clipped to +-this many pixels first (None: no clipping).
    """

    modality: Literal["rgb", "flow"]
    channels: int
    dims: Literal[2, 3] = 2
    frames: int = 1
    size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    flow_scale: float = 1.0
    flow_clip: float | None = None


def imagenet_rgb(dims: Literal[2, 3] = 2, frames: int = 1, size: int = 224) -> InputSpec:
    """ImageNet mean/std on [0, 1] RGB: torchvision's 2D weights."""
    return InputSpec("rgb", 3, dims, frames, size)


def symmetric_rgb(dims: Literal[2, 3] = 3, frames: int = 64, size: int = 224) -> InputSpec:
    """RGB scaled to [-1, 1] (x / 127.5 - 1): DeepMind's Inception I3D."""
    return InputSpec("rgb", 3, dims, frames, size, mean=(0.5,) * 3, std=(0.5,) * 3)


def flow_pixels(fields: int = 10, size: int = 224) -> InputSpec:
    """A 2D stack of `fields` flow fields in pixels (2L channels): the two-stream paper."""
    return InputSpec("flow", 2 * fields, 2, fields, size, mean=(0.0,), std=(1.0,))


def flow_unit(dims: Literal[2, 3] = 3, frames: int = 64, size: int = 224, bound: float = 20.0) -> InputSpec:
    """Flow clipped to +-bound pixels and scaled to [-1, 1]: I3D's flow stream."""
    channels = 2 if dims == 3 else 2 * frames
    return InputSpec("flow", channels, dims, frames, size, mean=(0.0,), std=(1.0,),
                     flow_scale=1.0 / bound, flow_clip=bound)
