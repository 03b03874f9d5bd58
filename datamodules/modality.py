"""The six input modalities: which keys a sample holds, 2D or 3D, read off the networks.

A network declares its input (``models.input_spec.InputSpec``) and the data side follows
it: ``infer_modality`` names what a set of networks reads. ``paper_specs`` are the papers'
InputSpecs for a modality (2D RGB with ImageNet mean/std, a 2D flow stack in pixels
(two-stream), 3D RGB in [-1, 1], 3D flow clipped to +-20 px and scaled to [-1, 1]
(DeepMind's I3D)), for feeding a data module without building a network (tests,
benchmarks); a data module never falls back to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from models.input_spec import (
    InputSpec,
    flow_pixels,
    flow_unit,
    imagenet_rgb,
    symmetric_rgb,
)

PAPER_CROP_SIZE = 224

Modality = Literal["rgb", "flow", "two_stream", "rgb_clip", "flow_clip", "two_stream_clip"]
MODALITIES: tuple[str, ...] = get_args(Modality)


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")


def modality_keys(modality: str) -> tuple[str, ...]:
    """The sample keys the modality fills: ``("rgb",)``, ``("flow",)`` or both."""
    check_modality(modality)
    if modality.startswith("two_stream"):
        return ("rgb", "flow")
    return ("flow",) if modality.startswith("flow") else ("rgb",)


def is_clip(modality: str) -> bool:
    """3D modalities read clips of T frames (C, T, H, W); 2D ones a frame or a flow stack."""
    check_modality(modality)
    return modality.endswith("_clip")


def paper_specs(modality: str, num_fields: int = 10, frames: int = 64,
                size: int = PAPER_CROP_SIZE) -> dict[str, InputSpec]:
    """The papers' InputSpecs for the modality's keys (see module docstring).

    Args:
        modality: one of ``MODALITIES``.
        num_fields: flow fields L per 2D stack (2L channels).
        frames: frames T per 3D clip.
        size: square crop side.
    """
    keys = modality_keys(modality)
    if is_clip(modality):
        specs = {"rgb": symmetric_rgb(3, frames, size), "flow": flow_unit(3, frames, size)}
    else:
        specs = {"rgb": imagenet_rgb(2, 1, size), "flow": flow_pixels(num_fields, size)}
    return {key: specs[key] for key in keys}


def infer_modality(specs: Mapping[str, InputSpec | None]) -> str:
    """The modality the networks' InputSpecs read (keys ``rgb``/``flow``): which keys have a
    spec, and 2D or 3D, so a config says the modality once, on its networks."""
    unknown = sorted(key for key, spec in specs.items() if spec is not None and key not in ("rgb", "flow"))
    if unknown:
        raise ValueError(f"input specs for unknown keys {unknown}: the data gives 'rgb' and 'flow'")
    keys = [key for key in ("rgb", "flow") if specs.get(key) is not None]
    if not keys:
        raise ValueError("no network InputSpec to say what the data reads: networks declare input_spec")
    for key in keys:
        if specs[key].modality != key:
            raise ValueError(f"the {key!r} InputSpec is a {specs[key].modality} spec: it does not fit key {key!r}")
    dims = {specs[key].dims for key in keys}
    if len(dims) != 1:
        raise ValueError(f"the networks mix 2D and 3D inputs ({', '.join(f'{k} {specs[k].dims}D' for k in keys)}): "
                         "one sample cannot feed both")
    name = "two_stream" if len(keys) == 2 else keys[0]
    return name + "_clip" if dims.pop() == 3 else name
