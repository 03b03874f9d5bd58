"""The codec's first steps on a torch device: quantizing flow where it was computed, and
JPEG encoders for the quantized planes.

``quantize_tensor`` gives the bytes ``flow.codec.quantize`` gives, so a field quantized
on a GPU is stored exactly as one quantized on the CPU. On CUDA it runs there
(``quantize_with_torch``), and only the uint8 levels come back, a quarter of the float32
bytes; elsewhere OpenCV's single pass on the host is 20x faster than torch's passes on a
CPU (and MPS has no float64). OpenCV computes ``clip(f) * scale + offset`` as one fused
multiply-add in float32 and rounds half to even; in torch the product of two float32
numbers is exact in float64 and so is the sum (values under 256 need fewer than 53 bits),
so rounding that sum to float32 once is the fused result.

Encoders (``ExtractionConfig.jpeg``):

- ``opencv`` (the default): the planes come back to the host and the writing threads
  encode them with ``flow.codec.encode_jpeg``, the per-video path's encoder, so the files
  are byte-identical to it. It costs the GPU nothing: ~0.4 ms of one core a 341x256 plane.
- ``torchvision``: ``torchvision.io.encode_jpeg`` on the device's tensors, a batched call
  (nvjpeg on CUDA, torchvision >= 0.19; libjpeg-turbo on a CPU, giving OpenCV's bytes).
  The GPU spends time on it that flow could use, so it is an opt-in to measure.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flow.codec import DEFAULT_BOUND, encode_jpeg, quantize

if TYPE_CHECKING:
    from torch import Tensor

JPEG_ENCODERS = ("opencv", "torchvision")


def quantize_tensor(flow: Tensor, bound: float = DEFAULT_BOUND) -> Tensor:
    """``flow.codec.quantize`` of a tensor: uint8 levels of the same shape, on the flow's
    device when that is CUDA, else on the host."""
    import torch

    if flow.device.type != "cuda":
        return torch.from_numpy(quantize(flow.detach().cpu().numpy(), bound))
    return quantize_with_torch(flow, bound)


def quantize_with_torch(flow: Tensor, bound: float = DEFAULT_BOUND) -> Tensor:
    """``flow.codec.quantize`` in torch's operations, on the tensor's device (one with float64)."""
    import torch

    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    flow = flow.float()
    if bool(torch.isnan(flow).any()):
        # NaN would cast to an arbitrary byte and silently corrupt the stored field.
        raise ValueError("flow contains NaN")
    # The float32 constants of OpenCV's pass, from the float64 ones flow.codec hands it.
    scale = 255.0 / (2.0 * bound)
    limit, scale32, offset32 = (float(np.float32(value)) for value in (bound, scale, bound * scale))
    levels = flow.clamp(-limit, limit).double().mul_(scale32).add_(offset32).float()
    return levels.round_().clamp_(0, 255).to(torch.uint8)


class JpegEncoder:
    """Encodes (N, H, W) uint8 planes on a device: ``prepare`` runs in the flow thread and
    returns one host payload per plane, ``finish`` turns a payload into JPEG bytes in a
    writing thread."""

    name = "opencv"

    def __init__(self, quality: int) -> None:
        if not 0 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 0..100, got {quality!r}")
        self.quality = quality

    def prepare(self, planes: Tensor) -> Sequence[Any]:
        return list(planes.cpu().numpy())

    def finish(self, payload: Any) -> bytes:
        return encode_jpeg(payload, self.quality)


class TorchvisionJpegEncoder(JpegEncoder):
    name = "torchvision"

    def __init__(self, quality: int) -> None:
        super().__init__(quality)
        if quality < 1:
            raise ValueError(f"the torchvision JPEG encoder takes quality 1..100, got {quality}")
        try:
            from torchvision.io import encode_jpeg as torchvision_encode_jpeg
        except ImportError as error:
            raise ValueError(f"this torchvision has no encode_jpeg ({error}); use the opencv encoder") from None
        self._encode = torchvision_encode_jpeg

    def prepare(self, planes: Tensor) -> Sequence[Any]:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its image codecs (in favour of torchcodec's) but still has them.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                encoded = self._encode([plane[None] for plane in planes.contiguous()], quality=self.quality)
            except RuntimeError as error:
                if planes.device.type == "cuda":
                    raise ValueError(f"torchvision cannot JPEG-encode CUDA tensors here ({error}); it needs "
                                     "torchvision >= 0.19, or use the opencv encoder") from None
                raise
        return [data.cpu().numpy().tobytes() for data in encoded]

    def finish(self, payload: Any) -> bytes:
        return payload


def create_jpeg_encoder(name: str, quality: int) -> JpegEncoder:
    encoders = {cls.name: cls for cls in (JpegEncoder, TorchvisionJpegEncoder)}
    if name not in encoders:
        raise ValueError(f"unknown JPEG encoder {name!r}; known: {', '.join(JPEG_ENCODERS)}")
    return encoders[name](quality)
