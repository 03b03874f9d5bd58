"""uint8 frames and quantized flow to a network's input, a batch at a time, on the batch's device.

The loaders ship uint8 (4x fewer bytes than float32 through worker queues, pinned memory
and the host-to-device copy); the float conversion, the flow's dequantization with each
video's bound, its rescaling, mean subtraction and clipping, and the normalisation run
here, after the batch reached the device (``datamodules.batch.finish_batch``). The crop
and flip geometry is ``datamodules.transforms``' and stays on the uint8 planes, where the
flip of quantized flow is exact (``255 - x``).

Dequantization is ``flow.codec.dequantize``'s arithmetic: the step ``2B/255`` computed in
float64 and rounded to float32 on the host (``quantization``), so a batch finished on the
device equals the samples the host used to finish one by one, bit for bit. The step, the
bound and the resize's stretch travel as the int32 bits of their float32 values
(``as_bits``): Lightning's true precisions (``bf16-true``, ``16-true``) cast every float
tensor of the host batch to the network's dtype before the transfer, which would round
them (a stretch of 256/240 becomes 1.0703 in bfloat16).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

from models.input_spec import InputSpec


def as_bits(values: Tensor) -> Tensor:
    """float32 ``values`` as int32 bits, which no precision plugin casts (module docstring)."""
    return values.to(torch.float32).view(torch.int32)


def from_bits(bits: Tensor) -> Tensor:
    """The float32 values ``as_bits`` packed."""
    return bits.view(torch.float32) if bits.dtype == torch.int32 else bits.to(torch.float32)


def quantization(bounds: Tensor | float | list[float]) -> Tensor:
    """(N, 2) float32 [step, bound] of quantization bounds: ``flow.codec.dequantize``'s step
    ``2B/255``, computed in float64 and rounded to float32 as numpy does."""
    bound = torch.as_tensor(bounds, dtype=torch.float64).reshape(-1)
    if not bool((bound > 0).all()):
        raise ValueError(f"flow bounds must be positive, got {bound.tolist()}")
    return torch.stack([(2.0 * bound / 255.0).float(), bound.float()], dim=1)


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (N,) shaped to broadcast over ``like`` (N, ...): one value per sample."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def dequantize_levels(levels: Tensor, quantized: Tensor) -> Tensor:
    """uint8 levels (N, ...) to flow in pixels (float32), with each sample's [step, bound]
    (``quantization``, (N, 2))."""
    if levels.dtype != torch.uint8:
        raise ValueError(f"flow levels must be uint8, got {levels.dtype}")
    quantized = quantized.to(device=levels.device, dtype=torch.float32)
    return levels.float() * per_sample(quantized[:, 0], levels) - per_sample(quantized[:, 1], levels)


def rgb_to_input(frames: Tensor, spec: InputSpec) -> Tensor:
    """uint8 (N, T, 3, H, W) -> float normalised per ``spec``: 2D (N, 3, H, W), 3D (N, 3, T, H, W)."""
    x = F.normalize(frames.float() / 255.0, list(spec.mean), list(spec.std))
    if spec.dims == 2:
        if x.shape[1] != 1:
            raise ValueError(f"a 2D RGB network takes one frame, got {x.shape[1]}")
        return x[:, 0]
    return x.transpose(1, 2)


def flow_to_input(planes: Tensor, quantized: Tensor, spec: InputSpec, scale: Tensor | None = None,
                  subtract_mean: bool = True) -> Tensor:
    """Quantized uint8 (N, L, 2, H, W) [x, y] fields -> the network's flow input.

    Dequantize with each sample's [step, bound] (``quantization``, (N, 2)) to pixels, multiply x, y by the sample's
    ``scale`` (N, 2) (resizing), subtract each field's mean vector if ``subtract_mean``
    (the two-stream paper's camera motion compensation), clip to ``spec.flow_clip``,
    multiply by ``spec.flow_scale``, normalise by ``spec.mean``/``spec.std``. Layout: 2D
    (N, 2L, H, W) ordered x1..xL, y1..yL; 3D (N, 2, L, H, W).
    """
    return pixels_to_input(flow_pixels(planes, quantized, scale), spec, subtract_mean)


def flow_pixels(planes: Tensor, quantized: Tensor, scale: Tensor | None = None) -> Tensor:
    """Quantized uint8 (N, L, 2, H, W) [x, y] fields -> float32 flow in pixels, x and y
    stretched by each sample's ``scale`` (N, 2) (resizing)."""
    flow = dequantize_levels(planes, quantized)
    if scale is not None:
        flow *= scale.to(device=flow.device, dtype=torch.float32).view(-1, 1, 2, 1, 1)
    return flow


def pixels_to_input(flow: Tensor, spec: InputSpec, subtract_mean: bool = True) -> Tensor:
    """float (N, L, 2, H, W) flow in pixels, cropped, -> the network's input (``flow_to_input``'s
    steps after the dequantization and stretch; ``flow`` may be modified in place)."""
    if subtract_mean:
        flow -= flow.mean(dim=(-2, -1), keepdim=True)
    if spec.flow_clip is not None:
        flow.clamp_(-spec.flow_clip, spec.flow_clip)
    flow = F.normalize(flow * spec.flow_scale, list(spec.mean), list(spec.std))
    flow = flow.transpose(1, 2)  # (N, 2, L, H, W): all x planes, then all y planes
    if spec.dims == 3:
        return flow
    if 2 * flow.shape[2] != spec.channels:
        fields = flow.shape[2]
        raise ValueError(f"a stack of {fields} fields gives {2 * fields} channels; the network takes {spec.channels}")
    return flow.reshape(flow.shape[0], -1, *flow.shape[3:])


def mirror_flow(flow: Tensor) -> Tensor:
    """float (..., 2, H, W) [x, y] fields of the mirrored video: mirrored along x, x negated (a copy)."""
    out = flow.flip(-1)
    out[..., 0, :, :].neg_()
    return out


def subtracts_flow_mean(spec: InputSpec, subtract_flow_mean: bool | None = None) -> bool:
    """Whether a flow field's mean vector is subtracted: ``subtract_flow_mean`` where set, else
    for 2D networks only (two-stream paper), not 3D ones (I3D)."""
    return spec.dims == 2 if subtract_flow_mean is None else subtract_flow_mean


def to_input(key: str, frames: Tensor, spec: InputSpec, quantized: Tensor | None = None,
             scale: Tensor | None = None, subtract_flow_mean: bool | None = None) -> Tensor:
    """A batch of one key's uint8 samples (N, T, C, H, W) as the network reading it takes them.

    Args:
        key: ``rgb`` or ``flow``.
        frames: uint8 RGB frames or quantized [x, y] flow fields, already cropped.
        spec: the network's InputSpec.
        quantized: flow only: each sample's [step, bound] (``quantization``, (N, 2)).
        scale: flow only: how much resizing stretched each sample's x, y (N, 2); None: 1.
        subtract_flow_mean: see ``subtracts_flow_mean``.
    """
    if frames.dtype != torch.uint8:
        raise ValueError(f"{key!r} samples must be uint8 to be finished on the device, got {frames.dtype}")
    if key == "rgb":
        return rgb_to_input(frames, spec)
    if quantized is None:
        raise ValueError("flow samples need their quantization (the batch's flow_quantization)")
    return flow_to_input(frames, quantized, spec, scale, subtracts_flow_mean(spec, subtract_flow_mean))
