import numpy as np
import pytest
import torch

from datamodules.inputs import as_bits, dequantize_levels, flow_to_input, from_bits, quantization, rgb_to_input, to_input
from datamodules.transforms import View, apply_view
from flow.codec import dequantize, quantize
from models.input_spec import InputSpec, flow_pixels, flow_unit, symmetric_rgb

BOUND = 20.0


def quantized(flow: np.ndarray, bound: float = BOUND) -> torch.Tensor:
    """(N, L, 2, H, W) float pixels -> uint8 planes."""
    return torch.from_numpy(quantize(flow, bound))


def bounds(n: int, bound: float = BOUND) -> torch.Tensor:
    """[step, bound] of n samples quantized with ``bound``."""
    return quantization([bound] * n)


def test_dequantization_equals_the_codecs_bit_for_bit_with_a_bound_per_sample():
    levels = torch.randint(0, 256, (3, 4, 2, 5, 6), dtype=torch.uint8)
    per_video = [20.0, 15.5, 1 / 3, 12.7]
    levels = torch.cat([levels, levels[:1]])
    sent = as_bits(quantization(per_video))  # as a sample carries it: no precision plugin casts int32
    assert sent.dtype == torch.int32
    out = dequantize_levels(levels, from_bits(sent))
    for n, bound in enumerate(per_video):
        assert torch.equal(out[n], torch.from_numpy(dequantize(levels[n].numpy(), bound)))
    with pytest.raises(ValueError, match="uint8"):
        dequantize_levels(levels.float(), quantization(per_video))
    with pytest.raises(ValueError, match="positive"):
        quantization([0.0])


def test_2d_stack_is_ordered_x1_to_xL_then_y1_to_yL():
    fields = np.zeros((1, 3, 2, 4, 4), np.float32)
    for k in range(3):
        fields[0, k, 0], fields[0, k, 1] = k + 1, -(k + 1)  # field k: x = k + 1, y = -(k + 1)
    out = flow_to_input(quantized(fields), bounds(1), flow_pixels(3, size=4), subtract_mean=False)
    assert out.shape == (1, 6, 4, 4)
    np.testing.assert_allclose(out[0, :, 0, 0], [1, 2, 3, -1, -2, -3], atol=BOUND / 255)


def test_flip_negates_x_mirrors_the_field_and_keeps_y():
    # Rightward motion growing to the right: x = 1 + column / 4 > 0; y depends on the row only.
    height, width = 8, 12
    x = 1 + np.arange(width, dtype=np.float32)[None, :].repeat(height, 0) / 4
    y = np.arange(height, dtype=np.float32)[:, None].repeat(width, 1) / 2
    planes = quantized(np.stack([x, y])[None, None])
    spec = flow_pixels(1, size=height)
    box = (0, 0, height, width)
    plain = flow_to_input(apply_view(planes, View(box), flow=True), bounds(1), spec, subtract_mean=False)[0]
    flipped = flow_to_input(apply_view(planes, View(box, flip=True), flow=True), bounds(1), spec,
                            subtract_mean=False)[0]
    assert (plain[0] > 0).all() and (flipped[0] < 0).all()
    torch.testing.assert_close(flipped[0], -plain[0].flip(-1))  # mirrored and negated
    torch.testing.assert_close(flipped[1], plain[1].flip(-1))  # y: mirrored only


def test_each_sample_is_dequantized_with_its_own_bound_and_scale():
    flow = np.full((2, 1, 2, 4, 4), 3.0, np.float32)
    planes = torch.cat([quantized(flow[:1], 20.0), quantized(flow[1:], 5.0)])
    scale = torch.tensor([[1.0, 1.0], [2.0, 0.5]], dtype=torch.float64)
    out = flow_to_input(planes, quantization([20.0, 5.0]), flow_pixels(1, size=4), scale,
                        subtract_mean=False)
    np.testing.assert_allclose(out[:, :, 0, 0], [[3.0, 3.0], [6.0, 1.5]], atol=2 * 20 / 255)


def test_mean_vector_subtraction_removes_camera_motion():
    flow = np.full((1, 2, 2, 16, 16), 5.0, np.float32)
    flow[:, :, 0, :, :8] += 2.0  # an object moving on top of a panning camera
    out = flow_to_input(quantized(flow), bounds(1), flow_pixels(2, size=16))[0]
    np.testing.assert_allclose(out.mean(dim=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 0] - out[0, 0, -1], 2.0, atol=2 * BOUND / 255)


def test_i3d_flow_is_clipped_scaled_and_laid_out_in_time():
    flow = np.zeros((1, 4, 2, 8, 8), np.float32)
    flow[0, :, 0] = np.arange(4).reshape(4, 1, 1) * -10.0  # x = 0, -10, -20, -30 px
    stored_bound = 40.0  # wider than I3D's clip, so the clip at 20 px is what saturates -30
    spec = flow_unit(3, frames=4, size=8)
    out = to_input("flow", quantized(flow, stored_bound), spec, bounds(1, stored_bound))  # 3D: no mean subtraction
    assert out.shape == (1, 2, 4, 8, 8)
    half_level = 1.01 * stored_bound / 255 / 20  # rounding to the level grid, scaled by 1/20
    np.testing.assert_allclose(out[0, 0, :, 0, 0], [0.0, -0.5, -1.0, -1.0], atol=half_level)


def test_i3d_rgb_is_symmetric_and_laid_out_in_time():
    frames = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1, 1).expand(1, 2, 3, 4, 4)
    out = rgb_to_input(frames, symmetric_rgb(frames=2, size=4))
    assert out.shape == (1, 3, 2, 4, 4)
    np.testing.assert_allclose(out[0, :, :, 0, 0], [[-1.0, 1.0]] * 3)


def test_imagenet_rgb_2d_takes_one_frame():
    spec = InputSpec("rgb", 3, size=4)
    assert rgb_to_input(torch.zeros(2, 1, 3, 4, 4, dtype=torch.uint8), spec).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="one frame"):
        rgb_to_input(torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8), spec)


def test_wrong_stack_length_float_samples_and_a_missing_bound_are_refused():
    with pytest.raises(ValueError, match="channels"):
        flow_to_input(torch.zeros(1, 3, 2, 4, 4, dtype=torch.uint8), bounds(1), flow_pixels(10, size=4))
    with pytest.raises(ValueError, match="uint8"):
        to_input("rgb", torch.zeros(1, 1, 3, 4, 4), InputSpec("rgb", 3, size=4))
    with pytest.raises(ValueError, match="quantization"):
        to_input("flow", torch.zeros(1, 1, 2, 4, 4, dtype=torch.uint8), flow_pixels(1, size=4))
