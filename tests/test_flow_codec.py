import numpy as np
import pytest

from flow.codec import (
    decode_flow,
    decode_jpeg,
    dequantize,
    encode_flow,
    encode_jpeg,
    quantize,
)

BOUND = 20.0


def test_round_trip_error_is_at_most_half_a_level():
    flow = np.random.default_rng(0).uniform(-BOUND, BOUND, size=(48, 64, 2)).astype(np.float32)
    error = np.abs(dequantize(quantize(flow, BOUND), BOUND) - flow)
    assert error.max() <= BOUND / 255 + 1e-5  # half of one level, 2B/255


def test_grid_values_survive_exactly():
    levels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(quantize(dequantize(levels, BOUND), BOUND), levels)
    assert dequantize(np.array([0, 255], np.uint8), BOUND).tolist() == [-BOUND, BOUND]


def test_quantize_rounds_instead_of_flooring():
    # A value 0.9 of a level above level 127: flooring writes 127, rounding 128.
    value = np.float32((127.9 * 2 * BOUND / 255) - BOUND)
    assert quantize(np.array([value]), BOUND)[0] == 128
    assert int(np.floor(255 * (value + BOUND) / (2 * BOUND))) == 127


def test_quantize_keeps_any_shape():
    assert quantize(np.float64(0.0), BOUND).shape == ()
    assert quantize(np.zeros((0, 2)), BOUND).shape == (0, 2)
    strided = np.zeros((4, 6, 2), np.float32)[:, ::2, 0]
    assert quantize(strided, BOUND).shape == (4, 3)


def test_quantize_clips_at_the_bound():
    assert quantize(np.array([-1000.0, 1000.0, -np.inf, np.inf, -1e30, 1e30]), BOUND).tolist() == [0, 255] * 3


def test_quantize_rejects_nan_and_bad_bound():
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan]))
    with pytest.raises(ValueError, match="bound"):
        quantize(np.zeros(3), bound=0)


def test_jpeg_flow_round_trip_is_close_at_quality_95():
    import cv2

    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.normal(0, 20, size=(48, 64, 2)).astype(np.float32), (0, 0), 3)
    x_jpeg, y_jpeg = encode_flow(smooth, BOUND, quality=95)
    decoded = decode_flow(x_jpeg, y_jpeg, BOUND)
    assert decoded.shape == (48, 64, 2) and decoded.dtype == np.float32
    assert np.abs(decoded - np.clip(smooth, -BOUND, BOUND)).mean() < 0.15


def test_rgb_jpeg_keeps_channel_order():
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = 250  # pure red
    decoded = decode_jpeg(encode_jpeg(image), color=True)
    assert decoded.shape == (16, 16, 3)
    assert decoded[..., 0].mean() > 240 and decoded[..., 2].mean() < 15


def test_undecodable_data_raises_value_error():
    with pytest.raises(ValueError, match="decodable"):
        decode_jpeg(b"not a jpeg")
    with pytest.raises(ValueError, match="shape"):
        encode_flow(np.zeros((4, 4, 3), np.float32))
