import numpy as np
import pytest
import torch

from flow.codec import decode_jpeg, encode_jpeg, quantize
from flow.torch_codec import create_jpeg_encoder, quantize_tensor, quantize_with_torch


def values_at_every_rounding_tie(bound: float) -> np.ndarray:
    """Flow values within 40 float32 steps of each half level, where rounding decides, plus
    random values over and beyond the range, infinities, signed zeros and the bounds."""
    scale = 255.0 / (2.0 * bound)
    ties = ((np.arange(256) + 0.5 - bound * scale) / scale).astype(np.float32)
    near = np.concatenate([ties.view(np.int32) + step for step in range(-40, 41)]).view(np.float32)
    spread = np.random.default_rng(0).uniform(-1.5 * bound, 1.5 * bound, 20000).astype(np.float32)
    special = np.array([np.inf, -np.inf, 0.0, -0.0, bound, -bound], np.float32)
    return np.concatenate([near[np.isfinite(near)], spread, special])


# quantize_with_torch is the CUDA path, run here on the CPU; quantize_tensor on a CPU is OpenCV's pass.
QUANTIZERS = [quantize_with_torch, quantize_tensor]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("bound", [20.0, 15.0, 1.0, 3.3, 127.5, 1e-3])
def test_quantize_on_a_tensor_gives_the_bytes_of_the_numpy_path(quantizer, bound):
    flow = values_at_every_rounding_tie(bound)
    levels = quantizer(torch.from_numpy(flow), bound)
    assert levels.dtype == torch.uint8
    np.testing.assert_array_equal(levels.numpy(), quantize(flow, bound))


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_quantize_on_a_tensor_keeps_the_shape_clips_and_rounds_half_to_even(quantizer):
    flow = torch.tensor([[[0.0, 1.0], [2.0, -1.0]], [[-200.0, 200.0], [-127.5, 127.5]]])
    # bound 127.5: one level per pixel, offset 127.5, so 0 and 1 px sit exactly on ties.
    assert quantizer(flow, 127.5).tolist() == [[[128, 128], [130, 126]], [[0, 255], [0, 255]]]
    assert quantizer(torch.zeros(2, 0, 3, 2)).shape == (2, 0, 3, 2)
    assert quantizer(torch.ones(4, dtype=torch.float64), 20).tolist() == quantize(np.ones(4), 20).tolist()


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_nan_and_a_bad_bound_are_refused(quantizer):
    with pytest.raises(ValueError, match="NaN"):
        quantizer(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="bound"):
        quantizer(torch.zeros(3), 0.0)


def smooth_planes() -> np.ndarray:
    """Three (24, 40) planes like quantized flow: smooth, around the zero level."""
    y, x = np.mgrid[:24, :40]
    return np.stack([127.5 + 20 * np.sin(x / (4 + k)) * np.cos(y / 5) for k in range(3)]).astype(np.uint8)


@pytest.mark.parametrize("name", ["opencv", "torchvision"])
def test_encoders_give_opencvs_bytes_on_a_cpu(name):
    planes = smooth_planes()
    encoder = create_jpeg_encoder(name, 90)
    payloads = encoder.prepare(torch.from_numpy(planes))
    encoded = [encoder.finish(payload) for payload in payloads]
    assert encoded == [encode_jpeg(plane, 90) for plane in planes]
    np.testing.assert_array_equal(decode_jpeg(encoded[2]).shape, (24, 40))


def test_unknown_encoders_and_qualities_are_refused():
    with pytest.raises(ValueError, match="unknown JPEG encoder 'nvjpeg'; known: opencv, torchvision"):
        create_jpeg_encoder("nvjpeg", 95)
    with pytest.raises(ValueError, match="1..100"):
        create_jpeg_encoder("torchvision", 0)
    with pytest.raises(ValueError, match="0..100"):
        create_jpeg_encoder("opencv", 101)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quantize_and_nvjpeg_on_cuda():
    flow = values_at_every_rounding_tie(20.0)
    levels = quantize_tensor(torch.from_numpy(flow).cuda())
    assert levels.device.type == "cuda"
    np.testing.assert_array_equal(levels.cpu().numpy(), quantize(flow))
    planes = smooth_planes()
    encoder = create_jpeg_encoder("torchvision", 95)
    encoded = [encoder.finish(payload) for payload in encoder.prepare(torch.from_numpy(planes).cuda())]
    # nvjpeg's bytes are its own; its files read back with the same reader as OpenCV's, within 2 levels.
    for plane, data in zip(planes, encoded):
        assert np.abs(decode_jpeg(data).astype(int) - decode_jpeg(encode_jpeg(plane, 95))).max() <= 2
