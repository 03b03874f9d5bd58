"""Optical-flow algorithms behind one call: ``algorithm(prev, nxt) -> (H, W, 2)`` float32.

Adding an algorithm is one small registered class: its ``defaults`` name every parameter
it accepts, and ``params()`` (recorded in meta.json) holds the values actually used.
Objects are built once per worker and reused across frame pairs, because some
(TV-L1, RAFT) are expensive to set up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import cv2
import numpy as np


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Give a value the default's type, so ``tau=0.1`` typed on a command line works."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, bool):
            return value
    else:
        try:
            converted = type(default)(value)
        except (TypeError, ValueError):
            converted = None
        # int("1.5") fails above; int(1.5) would silently truncate, so compare back.
        if converted is not None and (not isinstance(default, int) or converted == float(value)):
            return converted
    raise ValueError(f"parameter {name!r}: expected {type(default).__name__}, got {value!r}")


class FlowAlgorithm(ABC):
    """Flow from ``prev`` to ``nxt``: ``nxt(y + v, x + u) ~ prev(y, x)``, in pixels.

    Inputs are uint8 frames of equal size: grayscale (H, W), or RGB (H, W, 3) when the
    class sets ``needs_color``.
    """

    name: ClassVar[str]
    needs_color: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    # Whether instances on several threads, each computing its own frame pairs, speed it
    # up (OpenCV's CPU solvers). False where one call already fills the device (RAFT
    # with torch's threads or a GPU, OpenCV's CUDA solvers): one instance is used.
    parallel_copies: ClassVar[bool] = True
    # The library thread pool a call runs on ("opencv" or "torch": its intra-op threads), which
    # a worker process sizes by ``threads_per_worker`` so that workers share the cores.
    thread_pool: ClassVar[str] = "opencv"

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}")
        self._params = {
            key: _coerce(key, params.get(key, default), default) for key, default in self.defaults.items()
        }

    def params(self) -> dict:
        return dict(self._params)

    def threads_per_worker(self, cores: int) -> int:
        """Threads of ``thread_pool`` for a worker process whose share of the machine is
        ``cores``. OpenCV's solvers: 1, as the worker's flow threads, each running its own
        instance (``parallel_copies``), are their parallelism."""
        return 1

    def size_worker_threads(self, cores: int) -> None:
        """Set ``thread_pool``'s size for this process, a worker with ``cores`` cores."""
        THREAD_POOLS[self.thread_pool](self.threads_per_worker(cores))

    def _check(self, prev: np.ndarray, nxt: np.ndarray) -> None:
        trailing = (3,) if self.needs_color else ()
        for frame in (prev, nxt):
            if frame.dtype != np.uint8 or frame.ndim != 2 + len(trailing) or frame.shape[2:] != trailing:
                kind = "RGB (H, W, 3)" if self.needs_color else "grayscale (H, W)"
                raise ValueError(f"{self.name} expects {kind} uint8 frames, got {frame.dtype} {frame.shape}")
        if prev.shape != nxt.shape:
            raise ValueError(f"{self.name}: frames differ in size, {prev.shape} vs {nxt.shape}")

    @abstractmethod
    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from ``prev`` to ``nxt`` as (H, W, 2) float32 pixels, x then y."""


def _set_torch_threads(count: int) -> None:
    import torch  # only algorithms running on torch declare its pool, and they import it anyway

    torch.set_num_threads(count)


# How to size each library's thread pool in this process, by ``FlowAlgorithm.thread_pool``.
THREAD_POOLS: dict[str, Callable[[int], None]] = {"opencv": cv2.setNumThreads, "torch": _set_torch_threads}

ALGORITHMS: dict[str, type[FlowAlgorithm]] = {}


def register(cls: type[FlowAlgorithm]) -> type[FlowAlgorithm]:
    ALGORITHMS[cls.name] = cls
    return cls


def create_algorithm(name: str, **params: Any) -> FlowAlgorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown flow algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name](**params)


@register
class TVL1(FlowAlgorithm):
    """Dual TV-L1 (Zach et al. 2007), the flow of I3D and most two-stream work.

    Defaults are OpenCV's; they are set explicitly so meta.json records them.
    """

    name = "tvl1"
    _SETTERS: ClassVar[dict[str, str]] = {
        "tau": "setTau", "lambda_": "setLambda", "theta": "setTheta", "nscales": "setScalesNumber",
        "warps": "setWarpingsNumber", "epsilon": "setEpsilon", "inner_iterations": "setInnerIterations",
        "outer_iterations": "setOuterIterations", "scale_step": "setScaleStep", "gamma": "setGamma",
        "median_filtering": "setMedianFiltering",
    }  # fmt: skip
    defaults = {
        "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 5, "warps": 5, "epsilon": 0.01,
        "inner_iterations": 30, "outer_iterations": 10, "scale_step": 0.8, "gamma": 0.0,
        "median_filtering": 5,
    }  # fmt: skip

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._solver = cv2.optflow.DualTVL1OpticalFlow_create()
        for key, value in self._params.items():
            getattr(self._solver, self._SETTERS[key])(value)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        return self._solver.calc(prev, nxt, None)


@register
class DIS(FlowAlgorithm):
    """Dense Inverse Search (Kroeger et al. 2016): fast, a little less accurate than TV-L1."""

    name = "dis"
    _PRESETS: ClassVar[dict[str, int]] = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    defaults = {"preset": "medium"}

    def __init__(self, **params: Any):
        super().__init__(**params)
        preset = self._params["preset"]
        if preset not in self._PRESETS:
            raise ValueError(f"dis: preset must be one of {sorted(self._PRESETS)}, got {preset!r}")
        self._solver = cv2.DISOpticalFlow_create(self._PRESETS[preset])
        self._scale_and_patch = self._solver.getFinestScale(), self._solver.getPatchSize()

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        # On frames too small for the preset's pyramid, OpenCV's DIS picks a smaller patch
        # and finest scale and keeps them for the next call: the flow of a pair would then
        # depend on what this instance computed before (which pairs a flow thread drew, which
        # video a worker did first). The preset's values, restored, make every call a first.
        finest_scale, patch_size = self._scale_and_patch
        self._solver.setFinestScale(finest_scale)
        self._solver.setPatchSize(patch_size)
        return self._solver.calc(prev, nxt, None)


@register
class Farneback(FlowAlgorithm):
    """Farneback's polynomial expansion; defaults are those of OpenCV's own sample."""

    name = "farneback"
    defaults = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, flags=0, **self._params)


@register
class RAFT(FlowAlgorithm):
    """RAFT (Teed & Deng 2020) from torchvision, with weights from a local state-dict file.

    Nothing is downloaded: ``weights`` names a file saved with ``torch.save(model.state_dict())``
    (e.g. torchvision's Raft_Large_Weights checkpoint fetched once by hand). ``batch`` runs
    B pairs in one forward. ``precision``: ``fp32`` (the default) or ``bf16`` (the network
    under bf16 autocast; the flow comes back as float32), recorded in meta.json.
    """

    name = "raft"
    needs_color = True
    parallel_copies = False
    thread_pool = "torch"
    defaults = {"model": "large", "weights": None, "device": "cpu", "num_flow_updates": 12, "precision": "fp32"}
    _PRECISIONS = ("fp32", "bf16")

    def __init__(self, **params: Any):
        super().__init__(**params)
        import torch  # torch is only needed here; importing `flow` stays light
        from torchvision.models.optical_flow import raft_large, raft_small

        builders = {"small": raft_small, "large": raft_large}
        model, weights = self._params["model"], self._params["weights"]
        if model not in builders:
            raise ValueError(f"raft: model must be one of {sorted(builders)}, got {model!r}")
        if self._params["precision"] not in self._PRECISIONS:
            precision = self._params["precision"]
            raise ValueError(f"raft: precision must be one of {list(self._PRECISIONS)}, got {precision!r}")
        if not weights:
            raise ValueError("raft: weights=PATH, a local state-dict file, is required (nothing is downloaded)")
        self._torch = torch
        self._device = torch_device(self.name, self._params["device"])
        network = builders[model](weights=None, progress=False)
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self._network = network.eval().to(self._device)

    def batch(self, prev: Any, nxt: Any) -> Any:
        """Flow of B pairs in one forward: (B, H, W, 3) uint8 RGB frames (tensors on any device,
        arrays, or sequences of (H, W, 3) frames of one size) -> (B, H, W, 2) float32 tensor on
        ``device``."""
        torch = self._torch
        first = frame_batch(self.name, "prev", prev, color=True, device=self._device)
        second = frame_batch(self.name, "nxt", nxt, color=True, device=self._device)
        if first.shape != second.shape:
            sizes = f"{tuple(first.shape)} vs {tuple(second.shape)}"
            raise ValueError(f"{self.name}: frame batches differ in size, {sizes}")
        height, width = first.shape[1:3]
        # RAFT works at 1/8 resolution and its correlation pyramid needs 128 px: pad right
        # and bottom (replicating the border) to a multiple of 8, at least 128, crop back.
        pad = (0, _padded(width) - width, 0, _padded(height) - height)
        images = [
            torch.nn.functional.pad(frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0, pad, mode="replicate")
            for frames in (first, second)
        ]
        bf16 = self._params["precision"] == "bf16"
        with torch.inference_mode(), torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=bf16):
            flow = self._network(*images, num_flow_updates=self._params["num_flow_updates"])[-1]
        return flow[:, :, :height, :width].permute(0, 2, 3, 1).float()

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        return self.batch(prev[None], nxt[None])[0].cpu().numpy()

    def threads_per_worker(self, cores: int) -> int:
        """The worker's share of the cores: one large network call fills them."""
        return cores


def _padded(size: int) -> int:
    return max(128, size + -size % 8)


def torch_device(algorithm: str, text: str) -> Any:
    """``text`` as a torch.device, refusing nonsense and CUDA where torch sees none."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ValueError(f"{algorithm}: device {text!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{algorithm}: device={text}, but torch sees no CUDA device")
    return device


def frame_batch(algorithm: str, name: str, frames: Any, color: bool, device: Any) -> Any:
    """A batch of uint8 frames, (B, H, W) or with ``color`` (B, H, W, 3), as a tensor on ``device``.

    ``frames``: a tensor on any device, an array, or a sequence of frames of one size;
    frames of different sizes, other dtypes and shapes are refused (``name`` says which input).
    """
    import torch

    if not isinstance(frames, (torch.Tensor, np.ndarray)):
        sizes = sorted({tuple(frame.shape) for frame in frames})
        if not sizes:
            raise ValueError(f"{algorithm}: empty batch ({name})")
        if len(sizes) > 1:
            raise ValueError(f"{algorithm}: frames of different sizes in one batch ({name}): {sizes}")
        frames = torch.stack([torch.as_tensor(frame) for frame in frames])
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 3 + color or (color and frames.shape[3] != 3):
        kind = "(B, H, W, 3) RGB" if color else "(B, H, W)"
        raise ValueError(f"{algorithm} expects a {kind} uint8 batch ({name}), got {frames.dtype} {tuple(frames.shape)}")
    return frames.to(device)


@register
class TVL1Torch(FlowAlgorithm):
    """OpenCV's Dual TV-L1 (``tvl1``: same parameters, same flow) in PyTorch, on any device,
    for a pair or a batch of pairs (``flow/tvl1_torch.py``). No weights.

    ``compile``: ``auto`` (on CUDA, not on a CPU), ``true`` or ``false``; params() records
    what was used. One instance: torch's own threads (or the GPU) run each call.
    """

    name = "tvl1_torch"
    parallel_copies = False
    thread_pool = "torch"
    defaults = {**TVL1.defaults, "device": "cpu", "compile": "auto"}

    def __init__(self, **params: Any):
        super().__init__(**params)
        import torch  # torch is only needed here; importing `flow` stays light

        from flow.tvl1_torch import TVL1Settings

        self._settings = TVL1Settings(**{key: self._params[key] for key in TVL1.defaults})
        self._device = torch_device(self.name, self._params["device"])
        compile_choice = str(self._params["compile"]).lower()
        if compile_choice not in ("auto", "true", "false"):
            raise ValueError(f"tvl1_torch: compile must be auto, true or false, got {self._params['compile']!r}")
        self._params["compile"] = compile_choice == "true" or (compile_choice == "auto" and self._device.type == "cuda")
        self._torch = torch

    def batch(self, prev: Any, nxt: Any) -> Any:
        """Flow of B pairs at once: (B, H, W) uint8 frames (tensors on any device, arrays, or
        sequences of (H, W) frames of one size) -> (B, H, W, 2) float32 tensor on ``device``."""
        from flow.tvl1_torch import tvl1_flow

        first, second = self._as_batch("prev", prev), self._as_batch("nxt", nxt)
        with self._torch.inference_mode():
            return tvl1_flow(first, second, self._settings, compile=self._params["compile"])

    def threads_per_worker(self, cores: int) -> int:
        """One: its many small operations gain little from torch's threads, and beside other
        jobs they lose badly (measured on a busy 2-core machine: 10 s a pair with 2 torch
        threads, 0.58 s with one)."""
        return 1

    def _as_batch(self, name: str, frames: Any) -> Any:
        return frame_batch(self.name, name, frames, color=False, device=self._device)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        return self.batch(prev[None], nxt[None])[0].cpu().numpy()


class _CudaOpenCV(FlowAlgorithm):
    """An OpenCV CUDA solver with its OpenCV defaults; frames go through GpuMat."""

    factory: ClassVar[str]
    parallel_copies = False

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._solver = getattr(cv2.cuda, self.factory)()

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        self._check(prev, nxt)
        flow = self._solver.calc(cv2.cuda_GpuMat(prev), cv2.cuda_GpuMat(nxt), None)
        return flow.download()


def _opencv_cuda_devices() -> int:
    try:
        return cv2.cuda.getCudaEnabledDeviceCount()
    except (AttributeError, cv2.error):
        return 0


if _opencv_cuda_devices() > 0:

    @register
    class CudaTVL1(_CudaOpenCV):
        name = "cuda_tvl1"
        factory = "OpticalFlowDual_TVL1_create"

    @register
    class CudaFarneback(_CudaOpenCV):
        name = "cuda_farneback"
        factory = "FarnebackOpticalFlow_create"
