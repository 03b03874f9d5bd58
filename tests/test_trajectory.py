"""datamodules/trajectory.py: trajectory stacking on flow fields of known motion (translations,
rotations, none), its crops and flips, bi-directional stacks, and the refusals."""

import math

import pytest
import torch
import torch.nn.functional as F

from datamodules.trajectory import (
    bound_problem,
    channels_to_fields,
    check_stacking,
    fields_to_channels,
    trajectory_stack,
)

PX = 1e-4  # the tolerance, in pixels


def constant(n: int, length: int, height: int, width: int, dx: float, dy: float, dtype=torch.float32) -> torch.Tensor:
    fields = torch.empty(n, length, 2, height, width, dtype=dtype)
    fields[:, :, 0], fields[:, :, 1] = dx, dy
    return fields


def flipped(fields: torch.Tensor) -> torch.Tensor:
    """The flow of the mirrored video: mirrored along x, x displacement negated."""
    out = fields.flip(-1).clone()
    out[:, :, 0] = -out[:, :, 0]
    return out


def rotation_fields(angles: list[float], height: int, width: int, dtype=torch.float32) -> tuple[torch.Tensor, tuple]:
    """Field k rotates every pixel by angles[k] about the frame's centre: d_k(p) = (R_k - I)(p - c)."""
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    fields = torch.empty(1, len(angles), 2, height, width, dtype=torch.float64)
    for k, angle in enumerate(angles):
        fields[0, k] = rotate_displacement(angle, x - cx, y - cy)
    return fields.to(dtype), (cx, cy, x, y)


def rotate_displacement(angle: float, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    cos, sin = math.cos(angle), math.sin(angle)
    return torch.stack([(cos - 1) * rx - sin * ry, sin * rx + (cos - 1) * ry])


def test_constant_translation_gives_the_fields_back():
    fields = constant(2, 10, 24, 32, 1.25, -0.5)
    assert torch.allclose(trajectory_stack(fields), fields, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dx, dy", [(3, -2), (-1, 4)])
def test_integer_translation_reads_the_last_field_where_the_points_moved(dx, dy):
    """Fields 1..L-1 move every point by (dx, dy); the last field, random, is read (L-1) steps away."""
    length, height, width = 4, 30, 40
    fields = constant(2, length, height, width, dx, dy)
    fields[:, -1] = torch.randn(2, 2, height, width)
    out = trajectory_stack(fields)
    steps = length - 1
    sy, sx = steps * dy, steps * dx
    rows = slice(max(0, -sy), height - max(0, sy))
    cols = slice(max(0, -sx), width - max(0, sx))
    moved = fields[:, -1, :, max(0, sy):height + min(0, sy), max(0, sx):width + min(0, sx)]
    assert torch.equal(out[:, -1, :, rows, cols], moved)
    assert torch.equal(out[:, :-1], fields[:, :-1])


def test_fractional_translation_reads_a_linear_field_at_the_moved_points():
    length, height, width, (dx, dy) = 5, 40, 50, (1.3, -0.7)
    fields = constant(1, length, height, width, dx, dy, dtype=torch.float64)
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    fields[0, -1, 0], fields[0, -1, 1] = 0.3 * x - 0.1 * y + 2, 0.05 * x + 0.2 * y  # bilinear is exact on it
    expected_x, expected_y = x + 4 * dx, y + 4 * dy
    expected = torch.stack([0.3 * expected_x - 0.1 * expected_y + 2, 0.05 * expected_x + 0.2 * expected_y])
    inside = (expected_x <= width - 1) & (expected_y >= 0)
    out = trajectory_stack(fields.float())[0, -1].double()
    assert (out - expected)[:, inside].abs().max() < PX


def test_rotation_matches_the_analytically_moved_points():
    """A different rotation per field (so the order matters) about the centre of a 256 x 340
    frame: out_k(p) = (R_k - I)(p_k - c) with p_(k+1) - c = R_k (p_k - c), where every p_k stays inside."""
    height, width = 256, 340
    angles = [math.radians(a) for a in (2.0, -1.0, 3.0, 1.5, 0.5, -2.5, 1.0, 2.0, -0.5, 1.5)]
    fields, (cx, cy, x, y) = rotation_fields(angles, height, width)
    out = trajectory_stack(fields)[0].double()
    rx, ry = x - cx, y - cy
    inside = torch.ones(height, width, dtype=torch.bool)
    worst = 0.0
    for k, angle in enumerate(angles):
        inside &= (rx + cx >= 0) & (rx + cx <= width - 1) & (ry + cy >= 0) & (ry + cy <= height - 1)
        expected = rotate_displacement(angle, rx, ry)
        worst = max(worst, (out[k] - expected)[:, inside].abs().max().item())
        cos, sin = math.cos(angle), math.sin(angle)
        rx, ry = cos * rx - sin * ry, sin * rx + cos * ry
    assert inside.float().mean() > 0.5  # the check covers most of the frame
    assert worst < PX


def test_zero_motion_is_optical_flow_stacking_exactly():
    """Points that never moved read every field on the pixel grid: bit for bit the input."""
    fields = torch.zeros(1, 10, 2, 256, 340)  # at 340 px grid_sample's normalised coordinates would be off
    fields[:, -1] = torch.randn(1, 2, 256, 340) * 5
    assert torch.equal(trajectory_stack(fields), fields)
    assert torch.equal(trajectory_stack(fields, backward=5), fields)


def test_points_leaving_the_frame_stick_to_its_border():
    fields = constant(1, 3, 6, 8, 5.0, 0.0)  # two steps of 5 px leave an 8 px wide frame
    fields[0, -1] = torch.randn(2, 6, 8)
    out = trajectory_stack(fields)[0, -1]
    assert torch.equal(out, fields[0, -1, :, :, -1:].expand(2, 6, 8))  # every trajectory reads the last column


def test_a_crop_is_the_full_stack_cut_to_it():
    fields = torch.randn(3, 6, 2, 40, 52) * 4
    full = trajectory_stack(fields)
    starts = torch.tensor([[0, 0], [5, 17], [16, 28]])
    cropped = trajectory_stack(fields, starts, (24, 24))
    for n, (top, left) in enumerate(starts.tolist()):
        assert torch.equal(cropped[n], full[n, :, :, top:top + 24, left:left + 24])
    one = trajectory_stack(fields, (5, 17), (24, 24))
    assert torch.equal(one[1], cropped[1])


def test_trajectories_of_a_crop_read_the_field_outside_it():
    """Moving right by 3 px, a crop's last columns read the field beyond the crop, not its border."""
    fields = constant(1, 2, 10, 16, 3.0, 0.0)
    fields[0, 1] = torch.arange(16.0).expand(2, 10, 16)
    out = trajectory_stack(fields, (0, 4), (10, 8))
    assert out[0, 1, 0, 0].tolist() == [7.0, 8, 9, 10, 11, 12, 13, 14]


def test_flip_commutes_with_trajectory_stacking():
    """The stack of the flipped video is the flipped stack (x negated), crops with their boxes mirrored.

    Steep fields (gradients near 1 px/px) amplify a rounding ~1000-fold over ten steps: the
    float64 positions keep the two walks within float32's rounding of the output."""
    torch.manual_seed(0)
    smooth = F.interpolate(torch.randn(2 * 10, 2, 12, 16) * 4, size=(48, 64), mode="bilinear", align_corners=True)
    fields = smooth.reshape(2, 10, 2, 48, 64)
    assert (flipped(trajectory_stack(flipped(fields))) - trajectory_stack(fields)).abs().max() < PX
    top, left, h, w = 7, 10, 32, 40
    mirrored_left = 64 - left - w
    crop = trajectory_stack(fields, (top, left), (h, w))
    flipped_crop = trajectory_stack(flipped(fields), (top, mirrored_left), (h, w))
    assert (flipped(flipped_crop) - crop).abs().max() < PX


def test_bidirectional_stack_walks_back_and_forth_from_tau():
    """Backward fields tau-2, tau-1 and forward fields tau, tau+1: both walks start at tau; field
    tau-1 and field tau move by whole pixels, so the outer fields are read where they moved."""
    height, width = 20, 24
    fields = torch.randn(1, 4, 2, height, width)
    fields[0, 1, 0], fields[0, 1, 1] = -2.0, 1.0  # tau -> tau-1: 2 left, 1 down
    fields[0, 2, 0], fields[0, 2, 1] = 3.0, 0.0  # tau -> tau+1: 3 right
    out = trajectory_stack(fields, backward=2)[0]
    assert torch.equal(out[1:3], fields[0, 1:3])  # the fields next to tau are read where the walks start
    assert torch.equal(out[0, :, :-1, 2:], fields[0, 0, :, 1:, :-2])
    assert torch.equal(out[3, :, :, :-3], fields[0, 3, :, :, 3:])


def test_any_float_dtype_walks_in_float64_and_answers_in_its_own():
    """Positions are float64 whatever the fields: a half-precision stack is the float64 stack of
    the same values, rounded once at the end."""
    fields = torch.randn(2, 4, 2, 16, 20) * 3
    for dtype in (torch.bfloat16, torch.float16):
        low = fields.to(dtype)
        out = trajectory_stack(low)
        assert out.dtype == dtype and out.shape == fields.shape
        assert torch.equal(out, trajectory_stack(low.double()).to(dtype))
    assert (trajectory_stack(fields.double()) - trajectory_stack(fields)).abs().max() < 1e-5


def test_channels_follow_the_x1_to_xL_then_y1_to_yL_order():
    fields = torch.randn(2, 5, 2, 4, 6)
    channels = fields_to_channels(fields)
    assert torch.equal(channels[:, :5], fields[:, :, 0]) and torch.equal(channels[:, 5:], fields[:, :, 1])
    assert torch.equal(channels_to_fields(channels), fields)


def test_bad_arguments_are_refused_with_one_line():
    fields = torch.zeros(2, 3, 2, 10, 12)
    with pytest.raises(ValueError, match="leave the 10x12"):
        trajectory_stack(fields, (0, 5), (8, 8))
    with pytest.raises(ValueError, match="needs the crop's size"):
        trajectory_stack(fields, (0, 0))
    with pytest.raises(ValueError, match="one per sample"):
        trajectory_stack(fields, torch.zeros(3, 2), (4, 4))
    with pytest.raises(ValueError, match="backward must be 0..3"):
        trajectory_stack(fields, backward=4)
    with pytest.raises(ValueError, match=r"float \(N, L, 2, H, W\)"):
        trajectory_stack(fields.to(torch.uint8))
    with pytest.raises(ValueError, match="2L channels"):
        channels_to_fields(torch.zeros(1, 5, 4, 4))


def test_stacking_option_is_refused_for_3d_networks_and_unknown_names():
    check_stacking("trajectory", 2)
    check_stacking("optical_flow", 3)
    with pytest.raises(ValueError, match="3D network"):
        check_stacking("trajectory", 3)
    with pytest.raises(ValueError, match="optical_flow, trajectory"):
        check_stacking("trajectories", 2)


def test_bound_problem_names_the_share_at_the_bound():
    levels = torch.full((10, 2, 8, 8), 128, dtype=torch.uint8)
    assert bound_problem(levels, 20.0) is None
    levels[:2] = 255  # a fifth of the values clipped at +20 px
    reason = bound_problem(levels, 20.0)
    assert reason is not None and "20.0%" in reason and "+-20 px" in reason and "--bound" in reason
    assert bound_problem(levels, 20.0, max_share=0.25) is None
    with pytest.raises(ValueError, match="uint8"):
        bound_problem(levels.float(), 20.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cpu_and_cuda_agree():
    smooth = F.interpolate(torch.randn(4 * 10, 2, 32, 43) * 6, size=(256, 340), mode="bilinear", align_corners=True)
    fields = smooth.reshape(4, 10, 2, 256, 340)
    starts = torch.tensor([[0, 0], [32, 116], [16, 58], [10, 3]])
    cpu = trajectory_stack(fields, starts, (224, 224), backward=4)
    cuda = trajectory_stack(fields.cuda(), starts.cuda(), (224, 224), backward=4)
    assert cuda.device.type == "cuda"
    assert (cuda.cpu() - cpu).abs().max() < PX
