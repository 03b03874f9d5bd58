"""The six input modalities: which keys a sample holds, 2D or 3D, and default InputSpecs.

A network declares its input (``models.input_spec.InputSpec``) and the data side follows
it. The defaults here apply only when no network spec is given, and follow the papers:
2D RGB with ImageNet mean/std, a 2D flow stack in pixels (two-stream), 3D RGB in
[-1, 1] and 3D flow clipped to +-20 px and scaled to [-1, 1] (DeepMind's I3D).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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


def default_specs(modality: str, num_fields: int, frames: int, crop_size: int | None) -> dict[str, InputSpec]:
    """InputSpecs for the modality's keys when no network supplies them (see module docstring)."""
    keys = modality_keys(modality)
    crop_size = crop_size or PAPER_CROP_SIZE
    if is_clip(modality):
        specs = {"rgb": symmetric_rgb(3, frames, crop_size), "flow": flow_unit(3, frames, crop_size)}
    else:
        specs = {"rgb": imagenet_rgb(2, 1, crop_size), "flow": flow_pixels(num_fields, crop_size)}
    return {key: specs[key] for key in keys}


def resolve_specs(
    modality: str, given: Mapping[str, InputSpec | None], num_fields: int, frames: int, crop_size: int | None
) -> dict[str, InputSpec]:
    """The spec of every key of the modality: the given one (a network's) where present,
    else the default; checks that given specs fit the modality (key, 2D/3D).

    An explicit ``crop_size`` overrides the size a network declares (most networks pool
    adaptively, and smaller crops make quick experiments cheap); None keeps it.
    """
    specs = default_specs(modality, num_fields, frames, crop_size)
    dims = 3 if is_clip(modality) else 2
    for key, spec in given.items():
        if spec is None or key not in specs:
            continue
        if spec.modality != key or spec.dims != dims:
            raise ValueError(f"the {key!r} InputSpec ({spec.modality}, {spec.dims}D) does not fit "
                             f"modality {modality!r} ({key}, {dims}D)")
        specs[key] = spec if crop_size is None else replace(spec, size=crop_size)
    return specs


def infer_modality(specs: Mapping[str, InputSpec | None]) -> str:
    """The modality the networks' InputSpecs read (keys ``rgb``/``flow``): which keys have a
    spec, and 2D or 3D, so a config says the modality once, on its networks."""
    keys = [key for key in ("rgb", "flow") if specs.get(key) is not None]
    if not keys:
        raise ValueError("no network InputSpec to infer the data's modality from: set data modality "
                         f"(one of {', '.join(MODALITIES)})")
    dims = {specs[key].dims for key in keys}
    if len(dims) != 1:
        raise ValueError(f"the networks mix 2D and 3D inputs ({', '.join(f'{k} {specs[k].dims}D' for k in keys)}): "
                         "one sample cannot feed both")
    name = "two_stream" if len(keys) == 2 else keys[0]
    return name + "_clip" if dims.pop() == 3 else name
