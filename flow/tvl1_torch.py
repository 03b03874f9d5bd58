"""Dual TV-L1 optical flow (Zach, Pock & Bischof 2007) in PyTorch, batched over frame pairs.

The same solver as OpenCV's ``DualTVL1OpticalFlow`` (opencv_contrib ``optflow``), on any
torch device: an image pyramid made by bilinear resizing by ``scale_step`` (no blur),
coarsest level first from zero flow, flow resized bilinearly to the next level and
multiplied by ``1 / scale_step``; per level, ``warps`` times: warp the second frame and
its centred gradient by the flow (bicubic, taps outside the image are 0), then up to
``outer_iterations`` blocks of a median filter on the flow followed by up to
``inner_iterations`` iterations of the primal-dual scheme (thresholding step, divergence
with zero boundary, forward-difference gradient, dual update). Frames are (B, H, W),
flow comes back as (B, H, W, 2) float32 in pixels, x then y.

Stopping rule. OpenCV ends a warp's iterations once the summed squared update of the
flow falls to ``epsilon**2 * H * W`` (a mean squared update of ``epsilon**2``). Here every
pair in a batch keeps its own ``active`` flag, computed on the device each iteration and
used as a mask: a pair that has converged stops changing, exactly as if it had stopped,
so a pair's flow does not depend on the rest of its batch. Reading the flags on the host
(to leave the loop when every pair has converged) is a device sync, done only every
``check_every`` iterations; that choice changes how much work is wasted, never the
result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# OpenCV's threshold step treats |grad I1|^2 <= FLT_EPSILON as "no gradient".
_FLT_EPSILON = float(torch.finfo(torch.float32).eps)
# OpenCV stops adding pyramid levels once one would be smaller than this.
_MIN_LEVEL_SIZE = 16


@dataclass(frozen=True)
class TVL1Settings:
    """The solver's parameters: OpenCV's names (``lambda_`` for its lambda) and defaults."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def __post_init__(self) -> None:
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"tvl1_torch: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"tvl1_torch: scale_step must be in (0, 1), got {self.scale_step}")
        for name in ("tau", "theta", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"tvl1_torch: {name} must be positive, got {getattr(self, name)}")
        if self.median_filtering > 1 and self.median_filtering % 2 == 0:
            raise ValueError(f"tvl1_torch: median_filtering must be odd (or <= 1: off), got {self.median_filtering}")


def pyramid_sizes(height: int, width: int, nscales: int, scale_step: float) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level, finest first, as OpenCV sizes them.

    ``cv::resize`` with a scale factor rounds the size half to even (Python's ``round``);
    a level under 16 px on either side ends the pyramid.
    """
    sizes = [(height, width)]
    while len(sizes) < nscales:
        h, w = (round(side * scale_step) for side in sizes[-1])
        if h < _MIN_LEVEL_SIZE or w < _MIN_LEVEL_SIZE:
            break
        sizes.append((h, w))
    return sizes


def _linear_taps(size_in: int, size_out: int, scale: float, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of a bilinear resize along one axis, OpenCV's mapping.

    Output pixel ``d`` samples ``(d + 0.5) * scale - 0.5``, clamped to the first and last
    source pixels (``scale``: source pixels per output pixel).
    """
    position = (torch.arange(size_out, dtype=torch.float64, device=device) + 0.5) * scale - 0.5
    position = position.float().clamp(0, size_in - 1)
    left = position.floor().long().clamp(max=size_in - 1)
    right = (left + 1).clamp(max=size_in - 1)
    weight = position - left
    return left, right, weight


def resize_bilinear(images: Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> Tensor:
    """Resize (..., H, W) to ``size`` bilinearly as ``cv::resize(INTER_LINEAR)`` does.

    ``scale`` (source pixels per output pixel, y then x) defaults to the size ratio;
    OpenCV uses ``1 / fx`` instead when the size came from a scale factor ``fx``.
    Separable gathers rather than a matrix product: exact in float32 whatever the
    device's matmul precision (TF32 would cost a tenth of a grey level).
    """
    height, width = images.shape[-2:]
    scale_y, scale_x = scale if scale is not None else (height / size[0], width / size[1])
    top, bottom, weight_y = _linear_taps(height, size[0], scale_y, images.device)
    left, right, weight_x = _linear_taps(width, size[1], scale_x, images.device)
    rows = images.index_select(-2, top).lerp(images.index_select(-2, bottom), weight_y[:, None])
    return rows.index_select(-1, left).lerp(rows.index_select(-1, right), weight_x)


def centred_gradient(images: Tensor) -> tuple[Tensor, Tensor]:
    """x and y derivatives of (B, C, H, W): half the central difference, at the borders half
    the one-sided one (OpenCV's)."""
    # Replicating the border makes the central difference the one-sided one there.
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    dy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return dx, dy


def warp_bicubic(images: Tensor, flow: Tensor) -> Tensor:
    """``images`` (B, C, H, W) sampled at ``(x + u, y + v)`` for ``flow`` (B, 2, H, W).

    Bicubic (a = -0.75, as OpenCV and torch) at the exact positions, as the installed
    OpenCV's remap does with float maps (the tests check it); taps outside the image read
    as 0 (remap's default border).
    """
    height, width = images.shape[-2:]
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device)
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device)
    x = xs + flow[:, 0]
    y = ys[:, None] + flow[:, 1]
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack((x * (2 / max(width - 1, 1)) - 1, y * (2 / max(height - 1, 1)) - 1), dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


@functools.cache
def _median_network(count: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Compare-exchanges that bring the median of ``count`` wires to wire ``count // 2``.

    Batcher's odd-even merge sort (for the next power of two; comparators that touch
    the missing wires, +inf, never swap and are dropped), then only the comparators the
    middle wire depends on, each keeping the min and/or the max as needed: 202 min/max
    for 25 values, a few ms on a CPU where ``Tensor.median`` over unfolded windows
    takes ~70.
    """
    size = 1 << max(count - 1, 0).bit_length()
    sorting: list[tuple[int, int]] = []
    merge = 1
    while merge < size:
        stride = merge
        while stride >= 1:
            for start in range(stride % merge, size - stride, 2 * stride):
                for offset in range(min(stride, size - start - stride)):
                    low, high = start + offset, start + offset + stride
                    if low // (2 * merge) == high // (2 * merge) and high < count:
                        sorting.append((low, high))
            stride //= 2
        merge *= 2
    needed, network = {count // 2}, []
    for low, high in reversed(sorting):
        if low in needed or high in needed:
            network.append((low, high, low in needed, high in needed))
            needed |= {low, high}
    return tuple(reversed(network))


def median_filter(images: Tensor, size: int, network: tuple | None = None) -> Tensor:
    """Median over ``size`` x ``size`` windows of (B, C, H, W), borders replicated (cv::medianBlur).

    ``network``: ``_median_network(size * size)``, given by callers that compile this
    (torch.compile would trace into the cached function and warn).
    """
    network = _median_network(size * size) if network is None else network
    radius = size // 2
    height, width = images.shape[-2:]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    wires = [padded[..., dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size)]
    for low, high, keep_min, keep_max in network:
        smaller = torch.minimum(wires[low], wires[high]) if keep_min else None
        if keep_max:
            wires[high] = torch.maximum(wires[low], wires[high])
        if keep_min:
            wires[low] = smaller
    return wires[size * size // 2]


def _forward_gradient(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences, 0 on the last column (x) and last row (y)."""
    return F.pad(flow.diff(dim=-1), (0, 1)), F.pad(flow.diff(dim=-2), (0, 0, 0, 1))


def _divergence(p_x: Tensor, p_y: Tensor) -> Tensor:
    """Backward differences with the dual field taken as 0 left of and above the image."""
    divergence = p_x + p_y
    divergence[..., 1:] -= p_x[..., :-1]
    divergence[..., 1:, :] -= p_y[..., :-1, :]
    return divergence


def primal_dual_iteration(
    flow: Tensor,
    p_x: Tensor,
    p_y: Tensor,
    active: Tensor | None,
    image_gradient: Tensor,
    step_per_rho: Tensor,
    rho_constant: Tensor,
    lambda_theta: float,
    tau_over_theta: float,
    theta: float,
    epsilon: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One inner iteration for a batch; pairs not ``active`` come back unchanged.

    ``flow``, ``p_x``, ``p_y``, ``image_gradient``: (B, C, H, W), C = 2 (u1, u2) or 3 with
    OpenCV's illumination term u3 (whose "image gradient" is the constant gamma).
    ``rho_constant`` and ``step_per_rho`` (``-1 / |grad I1|^2``): (B, 1, H, W).
    ``active``: (B,) bool, or None for "all" (saves the masking). Returns the new flow,
    dual field and which pairs go on (a pair stops once its mean squared update, summed
    over C, is at most ``epsilon**2``).
    """
    # Thresholding step: OpenCV's three cases of the L1 data term are one clamp.
    rho = (image_gradient * flow).sum(dim=1, keepdim=True).add_(rho_constant)
    step = rho.mul_(step_per_rho).clamp_(-lambda_theta, lambda_theta)
    updated = torch.addcmul(flow, step, image_gradient).add_(_divergence(p_x, p_y), alpha=theta)
    # The threshold comes from the shape, not an argument, so that torch.compile (which
    # may specialise on float arguments) does not recompile for every pyramid level.
    going_on = (updated - flow).square_().sum(dim=(1, 2, 3)) > epsilon**2 * flow.shape[-2] * flow.shape[-1]
    grad_x, grad_y = _forward_gradient(updated)
    shrink = torch.addcmul(grad_x.square(), grad_y, grad_y).sqrt_().mul_(tau_over_theta).add_(1)
    new_p_x = torch.add(p_x, grad_x, alpha=tau_over_theta).div_(shrink)
    new_p_y = torch.add(p_y, grad_y, alpha=tau_over_theta).div_(shrink)
    if active is None:
        return updated, new_p_x, new_p_y, going_on
    keep = active[:, None, None, None]
    return (
        torch.where(keep, updated, flow),
        torch.where(keep, new_p_x, p_x),
        torch.where(keep, new_p_y, p_y),
        going_on & active,
    )


@functools.cache
def compiled(function: Callable) -> Callable:
    """``function`` through torch.compile, once per process: the ~30 operations of
    ``primal_dual_iteration`` or the ~200 of ``median_filter`` become a few fused kernels.
    Dynamic shapes: one compilation serves every pyramid level and batch size."""
    return torch.compile(function, fullgraph=True, dynamic=True)


def _solve_level(frames: Tensor, flow: Tensor, settings: TVL1Settings, check_every: int, compile: bool) -> Tensor:
    """Refine ``flow`` (B, C, H, W) on one pyramid level of ``frames`` (B, 2, H, W)."""
    first, second = frames[:, :1], frames[:, 1:]
    second_and_gradient = torch.cat((second, *centred_gradient(second)), dim=1)
    p_x, p_y = torch.zeros_like(flow), torch.zeros_like(flow)
    for _ in range(settings.warps):
        warped, warped_x, warped_y = warp_bicubic(second_and_gradient, flow[:, :2]).split(1, dim=1)
        step_per_rho = -1 / (warped_x.square() + warped_y.square()).clamp_min(_FLT_EPSILON)
        rho_constant = warped - warped_x * flow[:, :1] - warped_y * flow[:, 1:2] - first
        image_gradient = torch.cat((warped_x, warped_y), dim=1)
        if settings.gamma != 0:
            image_gradient = torch.cat((image_gradient, torch.full_like(warped_x, settings.gamma)), dim=1)
        flow, p_x, p_y = _iterate(
            flow, p_x, p_y, (image_gradient, step_per_rho, rho_constant), settings, check_every, compile
        )
    return flow


def _iterate(
    flow: Tensor,
    p_x: Tensor,
    p_y: Tensor,
    warp_terms: tuple[Tensor, Tensor, Tensor],
    settings: TVL1Settings,
    check_every: int,
    compile: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One warp's outer and inner iterations, until every pair meets the stopping rule.

    At each host check, pairs that have stopped leave the working batch (their flow and
    dual field are kept aside), so a batch costs the sum of its pairs' iterations, not
    B times the slowest pair's; between checks they are masked.
    """
    iteration = compiled(primal_dual_iteration) if compile else primal_dual_iteration
    median = compiled(median_filter) if compile else median_filter
    constants = (settings.lambda_ * settings.theta, settings.tau / settings.theta, settings.theta, settings.epsilon)
    state = (flow, p_x, p_y)
    results, rows = state, None  # the whole batch, and which of its pairs ``state`` holds (None: all)
    active = torch.ones(flow.shape[0], dtype=torch.bool, device=flow.device)
    everyone = True  # every pair in ``state`` still going, as last read on the host: no masking needed
    for done in range(settings.outer_iterations * settings.inner_iterations):
        if done % settings.inner_iterations == 0 and settings.median_filtering > 1:
            # The flow, not u3, is filtered; a pair that has stopped is left as it is.
            flow = state[0]
            filtered = median(flow[:, :2], settings.median_filtering, _median_network(settings.median_filtering**2))
            if not everyone:
                filtered = torch.where(active[:, None, None, None], filtered, flow[:, :2])
            state = (torch.cat((filtered, flow[:, 2:]), dim=1) if flow.shape[1] > 2 else filtered, *state[1:])
        *state, active = iteration(*state, None if everyone else active, *warp_terms, *constants)
        everyone = False
        if (done + 1) % check_every == 0:
            going_on = int(active.sum())  # the host sync
            if going_on < len(active):
                if rows is None:
                    results, rows = tuple(state), torch.arange(len(active), device=active.device)
                else:
                    for whole, part in zip(results, state):
                        whole.index_copy_(0, rows, part)
                if going_on == 0:
                    return results
                kept = active.nonzero().squeeze(1)
                rows, state = rows[kept], [part[kept] for part in state]
                warp_terms = tuple(term[kept] for term in warp_terms)
                active = active[kept]
            everyone = True
    if rows is None:
        return tuple(state)
    for whole, part in zip(results, state):
        whole.index_copy_(0, rows, part)
    return results


def check_frame_pairs(prev: Tensor, nxt: Tensor) -> None:
    """Refuse anything but two (B, H, W) batches of the same size, at least 3 x 3."""
    for name, frames in (("prev", prev), ("nxt", nxt)):
        if not isinstance(frames, Tensor) or frames.ndim != 3:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"tvl1_torch: {name} must be a (B, H, W) tensor of grayscale frames, got {shape}")
    if prev.shape != nxt.shape:
        raise ValueError(f"tvl1_torch: frame batches differ in size, {tuple(prev.shape)} vs {tuple(nxt.shape)}")
    if prev.shape[1] < 3 or prev.shape[2] < 3:
        raise ValueError(f"tvl1_torch: frames must be at least 3 x 3, got {prev.shape[1]} x {prev.shape[2]}")
    if prev.device != nxt.device:
        raise ValueError(f"tvl1_torch: frames on different devices, {prev.device} vs {nxt.device}")


def tvl1_flow(
    prev: Tensor,
    nxt: Tensor,
    settings: TVL1Settings = TVL1Settings(),
    compile: bool = False,
    check_every: int | None = None,
) -> Tensor:
    """TV-L1 flow from each ``prev[i]`` to ``nxt[i]``: (B, H, W) -> (B, H, W, 2) float32.

    Frames are grayscale on a 0..255 scale (uint8, or float like OpenCV's 8-bit input);
    the flow is computed on their device. ``compile``: the inner iteration through
    torch.compile, and the median filter (needs a C++ compiler on a CPU, Triton on a GPU;
    the first call compiles, for tens of seconds). ``check_every``:
    iterations between host reads of the stopping rule (module docstring); by default
    1 on a CPU, where reading costs nothing, and 10 elsewhere.
    """
    check_frame_pairs(prev, nxt)
    if check_every is None:
        check_every = 1 if prev.device.type == "cpu" else 10
    if check_every < 1:
        raise ValueError(f"tvl1_torch: check_every must be >= 1, got {check_every}")
    if prev.shape[0] == 0:
        return prev.new_zeros((*prev.shape, 2), dtype=torch.float32)
    frames = torch.stack((prev, nxt), dim=1).float()
    sizes = pyramid_sizes(frames.shape[-2], frames.shape[-1], settings.nscales, settings.scale_step)
    pyramid = [frames]
    for size in sizes[1:]:
        pyramid.append(resize_bilinear(pyramid[-1], size, (1 / settings.scale_step,) * 2))
    channels = 3 if settings.gamma != 0 else 2
    flow = frames.new_zeros(frames.shape[0], channels, *sizes[-1])
    for level in reversed(range(len(sizes))):
        flow = _solve_level(pyramid[level], flow, settings, check_every, compile)
        if level > 0:
            flow = resize_bilinear(flow, sizes[level - 1])
            # u3 (illumination) is not a displacement: it keeps its scale.
            flow = torch.cat((flow[:, :2] / settings.scale_step, flow[:, 2:]), dim=1)
    return flow[:, :2].permute(0, 2, 3, 1).contiguous()


__all__ = [
    "TVL1Settings",
    "centred_gradient",
    "check_frame_pairs",
    "compiled",
    "median_filter",
    "primal_dual_iteration",
    "pyramid_sizes",
    "resize_bilinear",
    "tvl1_flow",
    "warp_bicubic",
]
