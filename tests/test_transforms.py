import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F

from torch.utils.data import default_collate

from datamodules.batch import collate_test, finish_batch
from datamodules.inputs import from_bits
from datamodules.transforms import (
    Augment,
    Augmentation,
    View,
    apply_view,
    multiscale_box,
    three_crop_boxes,
)
from flow.codec import dequantize, quantize
from models.input_spec import InputSpec, flow_pixels

BOUND = 20.0
PLAIN_RGB = InputSpec("rgb", 3, size=32, mean=(0.0,) * 3, std=(1.0,) * 3)  # output = value / 255


def quantized(flow: np.ndarray, bound: float = BOUND) -> torch.Tensor:
    """(L, 2, H, W) float pixels -> uint8 planes, as the flow store returns them."""
    return torch.from_numpy(quantize(flow, bound))


def augment_of(stage: str, specs: dict, test_crops: str = "ten", **settings) -> Augment:
    """An Augment with flips on unless ``settings`` say otherwise."""
    return Augment(stage, specs, Augmentation(**{"flip": True, **settings}), test_crops)


def finished(augment: Augment, frames: dict, rng: np.random.Generator | None = None) -> dict:
    """One sample through the host half (Augment) and the device half (finish_batch), as
    the loader and the datamodule's on_after_batch_transfer run them; test keys as all views."""
    sample = augment(frames, BOUND, rng)
    test = augment.stage == "test"
    batch = finish_batch((collate_test if test else default_collate)([sample]), augment.specs,
                         augment.subtract_flow_mean)
    return {key: (batch[key].materialise() if test else batch[key])[0] for key in frames}


def levels(flow: torch.Tensor) -> torch.Tensor:
    """Flow in pixels back to the uint8 levels it was dequantized from."""
    return torch.round((flow + BOUND) * 255 / (2 * BOUND)).to(torch.int64)


def test_flip_of_quantized_levels_is_exact_negation():
    q = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(dequantize(255 - q, BOUND), -dequantize(q, BOUND), atol=1e-5)
    assert dequantize(np.array([0, 255], np.uint8), BOUND).tolist() == [-BOUND, BOUND]


@pytest.mark.parametrize("seed", range(6))
def test_rgb_and_flow_of_a_sample_share_crop_and_flip(seed):
    # Pixel values encode their own coordinates: channel 0 / x plane the column, 1 / y the row.
    height, width = 40, 50
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    coords = torch.stack([cols, rows]).to(torch.uint8)  # (2, H, W)
    rgb = torch.cat([coords, coords[:1]])[None]  # (1, 3, H, W)
    flow = coords[None].repeat(2, 1, 1, 1)  # (2 fields, 2, H, W)
    specs = {"rgb": PLAIN_RGB, "flow": flow_pixels(2, size=32)}
    augment = augment_of("train", specs, short_side=None, flow_mean_subtraction=False)
    out = finished(augment, {"rgb": rgb, "flow": flow}, np.random.default_rng(seed))
    rgb_cols = torch.round(out["rgb"][0] * 255).to(torch.int64)
    rgb_rows = torch.round(out["rgb"][1] * 255).to(torch.int64)
    flow_x, flow_y = levels(out["flow"][0]), levels(out["flow"][2])
    flipped = bool(rgb_cols[0, 0] > rgb_cols[0, -1])
    assert torch.equal(flow_x, 255 - rgb_cols if flipped else rgb_cols)
    assert torch.equal(flow_y, rgb_rows)
    assert torch.equal(levels(out["flow"][1]), flow_x)


def test_random_flip_happens_about_half_the_time():
    augment = augment_of("train", {"rgb": PLAIN_RGB}, short_side=None)
    views = [augment.views(40, 50, np.random.default_rng(seed))[0] for seed in range(200)]
    assert 60 < sum(view.flip for view in views) < 140


def test_ten_crop_equals_torchvision():
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=generator)  # odd margins
    out = finished(augment_of("test", {"rgb": PLAIN_RGB}, short_side=None), {"rgb": image[None]})
    expected = torch.stack(F.ten_crop(image, [32])).float() / 255
    torch.testing.assert_close(out["rgb"], expected)


def test_ten_crop_flips_negate_flow_x():
    flow = np.full((1, 2, 40, 50), 3.0, np.float32)  # uniform rightward and downward motion
    augment = augment_of("test", {"flow": flow_pixels(1, size=32)}, short_side=None, flow_mean_subtraction=False)
    out = finished(augment, {"flow": quantized(flow)})
    assert out["flow"].shape == (10, 2, 32, 32)
    x, y = out["flow"][:, 0].mean(dim=(1, 2)), out["flow"][:, 1].mean(dim=(1, 2))
    assert (x[:5] > 2.9).all() and (x[5:] < -2.9).all() and (y > 2.9).all()


def test_three_crop_positions_along_the_long_side():
    assert three_crop_boxes(256, 340, 224) == [(16, 0, 224, 224), (16, 58, 224, 224), (16, 116, 224, 224)]
    assert three_crop_boxes(340, 256, 224) == [(0, 16, 224, 224), (58, 16, 224, 224), (116, 16, 224, 224)]


def test_test_views_are_position_major_with_3d_layout():
    clips = torch.arange(4, dtype=torch.uint8).view(2, 2, 1, 1, 1).expand(2, 2, 3, 40, 60)  # (P, T, 3, H, W)
    spec = InputSpec("rgb", 3, dims=3, frames=2, size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    out = finished(augment_of("test", {"rgb": spec}, short_side=None, test_crops="three"), {"rgb": clips})["rgb"]
    assert out.shape == (6, 3, 2, 32, 32)
    np.testing.assert_allclose(out[:, 0, :, 0, 0] * 255, [[0, 1]] * 3 + [[2, 3]] * 3, atol=1e-4)


def test_multiscale_boxes_come_from_the_scales_and_five_positions():
    rng = np.random.default_rng(0)
    sides = {256, 224, 192, 168}
    for _ in range(100):
        top, left, height, width = multiscale_box(256, 340, rng)
        assert {height, width} <= sides
        assert top in (0, 256 - height, round((256 - height) / 2))
        assert left in (0, 340 - width, round((340 - width) / 2))
    augment = augment_of("train", {"rgb": PLAIN_RGB}, short_side=None, multiscale_crop=True)
    frame = torch.zeros(1, 3, 64, 80, dtype=torch.uint8)
    assert augment({"rgb": frame}, rng=rng)["rgb"].shape == (1, 3, 32, 32)  # uint8, one frame
    assert finished(augment, {"rgb": frame}, rng)["rgb"].shape == (3, 32, 32)


def test_short_side_resize_scales_flow_displacements():
    flow = np.zeros((1, 2, 100, 200), np.float32)
    flow[:, 0], flow[:, 1] = 8.0, -4.0
    augment = augment_of("val", {"flow": flow_pixels(1, size=32)}, short_side=50, flow_mean_subtraction=False)
    out = finished(augment, {"flow": quantized(flow)})["flow"]
    np.testing.assert_allclose(out[0].mean(), 4.0, atol=BOUND / 255)
    np.testing.assert_allclose(out[1].mean(), -2.0, atol=BOUND / 255)


def test_frames_smaller_than_the_crop_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        augment_of("val", {"rgb": PLAIN_RGB}, short_side=None)({"rgb": torch.zeros(1, 3, 20, 40, dtype=torch.uint8)})


def test_samples_leave_the_host_as_uint8_with_what_finishes_them():
    """Train: one crop per key; test: uncropped positions and the crop boxes; flow carries
    its [step, bound] and the resize's stretch, as float32 bits."""
    flow = quantized(np.zeros((2, 2, 100, 200), np.float32))
    rgb = torch.zeros(1, 3, 100, 200, dtype=torch.uint8)
    specs = {"rgb": PLAIN_RGB, "flow": flow_pixels(2, size=32)}
    train = augment_of("train", specs, short_side=50)({"rgb": rgb, "flow": flow}, BOUND, np.random.default_rng(0))
    assert train["rgb"].dtype == train["flow"].dtype == torch.uint8
    assert train["rgb"].shape == (1, 3, 32, 32) and train["flow"].shape == (2, 2, 32, 32)
    assert train["flow_quantization"].dtype == train["flow_scale"].dtype == torch.int32  # bits: never cast
    assert from_bits(train["flow_quantization"]).tolist() == [np.float32(2 * BOUND / 255), BOUND]
    assert from_bits(train["flow_scale"]).tolist() == [0.5, 0.5]
    test = augment_of("test", specs, short_side=50)({"rgb": rgb[None].expand(3, -1, -1, -1, -1),
                                                  "flow": flow[None].expand(3, -1, -1, -1, -1)}, BOUND)
    assert test["rgb"].shape == (3, 1, 3, 50, 100) and test["flow"].shape == (3, 2, 2, 50, 100)
    assert test["views"].shape == (10, 5) and test["views"][:, 4].tolist() == [0] * 5 + [1] * 5
