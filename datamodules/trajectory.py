"""Trajectory stacking (the two-stream paper's section 3.1): each flow field of a stack sampled
along the motion path that starts at the output pixel, instead of at the pixel itself.

For a stack of L fields d_1..d_L (in pixels) and an output pixel p: p_1 = p,
p_(k+1) = p_k + d_k(p_k), and the k-th output field is d_k(p_k). Optical-flow stacking (the
project's default) is d_k(p) at every k; the two agree wherever nothing moves.

Sampling is ``torch.nn.functional.grid_sample(..., mode="bilinear", padding_mode="border",
align_corners=True)``: pixel centres at integer coordinates 0..W-1. Positions and the sampling
run in float64 (float32 on MPS, which has no float64) whatever the fields' dtype, and the output
is rounded once to the fields' dtype: grid_sample's normalised coordinates (``2x/(W-1) - 1``,
undone inside) round, in float32 up to ~2e-5 px at 340 px, so a point on the pixel grid would
read a blend of its neighbours; in float64 the blend is ~1e-16 of a neighbour, which rounding
to float32 removes. So zero motion gives optical-flow stacking bit for bit for float32 and lower
precisions (float64 fields: to ~1e-12), and bfloat16 fields still move points to 1e-4 px
(bfloat16 cannot hold a position of 300 px to better than 2 px). On a CPU float64 costs ~2x
float32 (``benchmarks/trajectory_speed.py`` times the whole step).

Points that leave the frame are clamped to its border after every step (the trajectory sticks
to the edge and reads the edge's flow), as dense-trajectory practice clamps rather than
inventing flow outside the frame.

Crops. ``top_left`` and ``size`` start the trajectories at the pixels of a crop while sampling
the whole field, so a trajectory may leave the crop and still read true flow. The result is
exactly the full frame's trajectory stack cut to the crop (every point follows the same
arithmetic), so the crop commutes with trajectory stacking only when it is applied after it
(or given here): stacking an already cropped field clamps trajectories to the crop's border.

Flips. A flipped stack is the trajectory stack of the flipped video: mirror the fields along
x and negate their x component (``255 - x`` on quantized levels, exact), then stack; or stack,
then mirror the result and negate its x. The two agree to float rounding (the test pins
1e-4 px). A flipped crop is the crop whose box is mirrored (``datamodules.transforms.mirror``).

Bi-directional stacks (``backward`` > 0; the layout of ``datamodules.datasets``): the first
``backward`` fields are backward fields in time order, tau - B .. tau - 1, field k mapping frame
k + 1 to frame k; the rest are forward fields tau .. The trajectory starts at frame tau in both
directions: forward through fields tau, tau + 1, ..., backward through fields tau - 1,
tau - 2, ... (each backward field read at the point the later ones reached). So the output
keeps the input's field order and, for zero motion, equals optical-flow stacking too.

Layouts. Fields are (N, L, 2, H, W), [x, y] per field (the finishing step's layout,
``datamodules.inputs.flow_to_input``); 2D networks take channels (N, 2L, H, W) ordered
x1..xL, y1..yL: ``fields_to_channels`` and ``channels_to_fields`` convert.

Mean-flow subtraction (camera motion) must come after stacking: trajectories follow the
displacements the pixels really made, then each output field's mean is subtracted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

STACKINGS = ("optical_flow", "trajectory")
# Above this share of quantized values at the bound, the stored flow clipped real motion.
MAX_SATURATED_SHARE = 0.01


def check_stacking(stacking: str, dims: int) -> None:
    """Fail with one line unless ``stacking`` is known and fits a network of ``dims`` (2 or 3)."""
    if stacking not in STACKINGS:
        raise ValueError(f"stacking must be one of {', '.join(STACKINGS)}, got {stacking!r}")
    if stacking == "trajectory" and dims != 2:
        raise ValueError("stacking: trajectory builds the 2D temporal stream's 2L-channel stack (two-stream paper, "
                         f"section 3.1); a {dims}D network reads flow fields as a time axis: use optical_flow")


def fields_to_channels(fields: Tensor) -> Tensor:
    """(N, L, 2, H, W) [x, y] fields -> (N, 2L, H, W) channels x1..xL, y1..yL."""
    n, length, two, height, width = fields.shape
    if two != 2:
        raise ValueError(f"flow fields must be (N, L, 2, H, W), got {tuple(fields.shape)}")
    return fields.transpose(1, 2).reshape(n, 2 * length, height, width)


def channels_to_fields(channels: Tensor) -> Tensor:
    """(N, 2L, H, W) channels x1..xL, y1..yL -> (N, L, 2, H, W) [x, y] fields."""
    n, count, height, width = channels.shape
    if count % 2:
        raise ValueError(f"a flow stack has 2L channels, got {count}")
    return channels.reshape(n, 2, count // 2, height, width).transpose(1, 2)


def bound_problem(levels: Tensor, bound: float, max_share: float = MAX_SATURATED_SHARE) -> str | None:
    """Why trajectories through quantized flow ``levels`` (uint8, any shape) would be unreliable, or None.

    Levels 0 and 255 are the bound -B and +B: motion beyond it was clipped when the flow was
    stored, so trajectories following it stop short and read the wrong pixels. A few such values
    are normal (fast edges); above ``max_share`` of them the bound is too small for the video.
    """
    if levels.dtype != torch.uint8:
        raise ValueError(f"bound_problem reads the stored uint8 levels, got {levels.dtype}")
    if levels.numel() == 0:
        return None
    share = ((levels == 0) | (levels == 255)).float().mean().item()
    if share <= max_share:
        return None
    return (f"{100 * share:.1f}% of the flow values sit at the quantization bound +-{bound:g} px (more than "
            f"{100 * max_share:g}%): motion beyond it was clipped when the flow was stored, so trajectories stop "
            f"short; re-extract the flow with a larger --bound or use stacking: optical_flow")


def trajectory_stack(fields: Tensor, top_left: Tensor | Sequence[int] | None = None,
                     size: tuple[int, int] | None = None, backward: int = 0) -> Tensor:
    """Flow fields in pixels (N, L, 2, H, W) sampled along their trajectories (module docstring).

    Args:
        fields: float displacement fields, [x, y] per field, in pixels of this H x W grid
            (after any resize stretch), on any device.
        top_left: where the trajectories start: a crop's (top, left), one pair for all or (N, 2)
            per sample; None: the whole frame.
        size: the crop's (height, width); needed with ``top_left``.
        backward: how many leading fields are backward fields (bi-directional stacks).

    Returns:
        (N, L, 2, h, w) in the fields' dtype, (h, w) = ``size`` or (H, W).
    """
    if fields.ndim != 5 or fields.shape[2] != 2 or not fields.is_floating_point():
        raise ValueError(f"flow fields must be float (N, L, 2, H, W), got {fields.dtype} {tuple(fields.shape)}")
    n, length, _, height, width = fields.shape
    if not 0 <= backward <= length:
        raise ValueError(f"backward must be 0..{length} (the stack's fields), got {backward}")
    work = torch.float32 if fields.device.type == "mps" else torch.float64
    start, (crop_h, crop_w) = _start(top_left, size, n, height, width, fields.device)
    rows = torch.arange(crop_h, device=fields.device, dtype=work).view(1, -1, 1) + start[:, 0].view(-1, 1, 1).to(work)
    cols = torch.arange(crop_w, device=fields.device, dtype=work).view(1, 1, -1) + start[:, 1].view(-1, 1, 1).to(work)
    grid_y, grid_x = rows.expand(n, crop_h, crop_w), cols.expand(n, crop_h, crop_w)
    to_unit_x, to_unit_y = 2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)  # grid_sample's [-1, 1]
    out = fields.new_empty(n, length, 2, crop_h, crop_w)
    # Backward fields are walked from the one next to tau back in time; forward ones from tau on.
    for order in (range(backward - 1, -1, -1), range(backward, length)):
        y, x = grid_y, grid_x
        for k in order:
            grid = torch.stack([x * to_unit_x - 1, y * to_unit_y - 1], dim=-1)  # N x h x w x 2
            d = F.grid_sample(fields[:, k].to(work), grid, mode="bilinear", padding_mode="border",
                              align_corners=True)  # N x 2 x h x w
            out[:, k] = d.to(fields.dtype)
            x = (x + d[:, 0]).clamp(0, width - 1)
            y = (y + d[:, 1]).clamp(0, height - 1)
    return out


def _start(top_left: Tensor | Sequence[int] | None, size: tuple[int, int] | None, n: int, height: int, width: int,
           device: torch.device) -> tuple[Tensor, tuple[int, int]]:
    """Per-sample (top, left) (N, 2) long and the crop's (h, w), checked to lie in the frame."""
    if top_left is None:
        if size is not None and tuple(size) != (height, width):
            raise ValueError(f"a crop size {tuple(size)} needs its top_left")
        return torch.zeros(n, 2, dtype=torch.long, device=device), (height, width)
    if size is None:
        raise ValueError("top_left needs the crop's size (height, width)")
    start = torch.as_tensor(top_left, device=device).long().reshape(-1, 2)
    if len(start) not in (1, n):
        raise ValueError(f"top_left must be one (top, left) pair or one per sample ({n}), got {len(start)}")
    start = start.expand(n, 2)
    crop_h, crop_w = int(size[0]), int(size[1])
    low, high = start.min(dim=0).values.tolist(), start.max(dim=0).values.tolist()
    if crop_h < 1 or crop_w < 1 or min(low) < 0 or high[0] + crop_h > height or high[1] + crop_w > width:
        raise ValueError(f"crops of {crop_h}x{crop_w} at top_left in [{low}, {high}] leave the {height}x{width} fields")
    return start, (crop_h, crop_w)

