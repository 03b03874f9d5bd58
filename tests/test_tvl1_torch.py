import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from test_flow_extract import stored_flow, write_moving_video

from flow.algorithms import create_algorithm
from flow.known_flow import ffmpeg_frames, mandelbrot_pair
from flow.meta import read_meta
from flow.tvl1_torch import (
    TVL1Settings,
    _median_network,
    centred_gradient,
    compiled,
    median_filter,
    primal_dual_iteration,
    pyramid_sizes,
    resize_bilinear,
    tvl1_flow,
    warp_bicubic,
)

WIDTH, HEIGHT = 160, 120


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return ffmpeg_frames("testsrc2", 4, WIDTH, HEIGHT)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Torch's threads fight the other jobs on a busy 2-core runner (10x slower on these
    small images); the result does not depend on them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch_flow(frames) -> np.ndarray:
    """The three pairs of ``frames`` in one batch."""
    with torch.inference_mode():
        return tvl1_flow(torch.from_numpy(frames[:-1]), torch.from_numpy(frames[1:])).numpy()


def _epe(flow: np.ndarray, reference: np.ndarray) -> float:
    return float(np.hypot(*(flow - reference).transpose(2, 0, 1)).mean())


def _smooth_image(seed: int = 0, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    noise = np.random.default_rng(seed).random(size).astype(np.float32) * 255
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


# The pieces, each against the OpenCV function it stands for.


def test_pyramid_levels_are_opencvs():
    image = _smooth_image()
    assert pyramid_sizes(240, 320, 5, 0.8) == [(240, 320), (192, 256), (154, 205), (123, 164), (98, 131)]
    assert pyramid_sizes(40, 30, 5, 0.8) == [(40, 30), (32, 24), (26, 19)]  # (21, 15): OpenCV stops under 16
    ours, theirs = torch.from_numpy(image), image
    for size in pyramid_sizes(HEIGHT, WIDTH, 5, 0.8)[1:]:
        theirs = cv2.resize(theirs, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
        ours = resize_bilinear(ours, size, (1 / 0.8, 1 / 0.8))
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)
    up = cv2.resize(theirs, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)  # flow to the next level
    np.testing.assert_allclose(resize_bilinear(ours, (HEIGHT, WIDTH)).numpy(), up, atol=1e-3)


def test_warp_is_opencvs_bicubic_remap_with_a_zero_border():
    image = _smooth_image()
    rng = np.random.default_rng(1)
    flow = np.stack([cv2.GaussianBlur(rng.normal(0, 40, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 6)
                     for _ in range(2)])  # fmt: skip
    assert np.abs(flow).max() > 3  # some samples fall outside the image
    map_x = (np.arange(WIDTH)[None] + flow[0]).astype(np.float32)
    map_y = (np.arange(HEIGHT)[:, None] + flow[1]).astype(np.float32)
    theirs = cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC)
    ours = warp_bicubic(torch.from_numpy(image)[None, None], torch.from_numpy(flow)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=0.02)


def test_median_filter_is_medianblur_also_with_ties():
    values = np.random.default_rng(2).integers(0, 4, (2, 37, 41)).astype(np.float32)  # many equal values
    for size in (3, 5):
        ours = median_filter(torch.from_numpy(values)[None], size)[0].numpy()
        for channel in range(2):
            np.testing.assert_array_equal(ours[channel], cv2.medianBlur(values[channel], size))


def test_centred_gradient_is_half_the_one_sided_difference_at_the_border():
    image = torch.tensor([[0.0, 2.0, 8.0], [1.0, 1.0, 1.0], [4.0, 0.0, 2.0]])
    dx, dy = (d[0, 0] for d in centred_gradient(image[None, None]))
    assert dx.tolist() == [[1.0, 4.0, 3.0], [0.0, 0.0, 0.0], [-2.0, -1.0, 1.0]]
    assert dy.tolist() == [[0.5, -0.5, -3.5], [2.0, -1.0, -3.0], [1.5, -0.5, 0.5]]


# The whole solver.


def test_matches_opencv_on_real_frames(frames, batch_flow):
    opencv = cv2.optflow.DualTVL1OpticalFlow_create()
    for index, flow in enumerate(batch_flow):
        reference = opencv.calc(frames[index], frames[index + 1], None)
        assert np.abs(reference).max() > 1  # testsrc2 moves
        assert _epe(flow, reference) <= 0.25


def test_as_close_to_a_known_flow_as_opencv():
    """A real frame and the same frame rotated by 2 degrees, zoomed by 3% and moved by a
    pixel or so: flow of up to 6 px, known everywhere (flow/known_flow.py, which the
    benchmark uses too)."""
    known = mandelbrot_pair(WIDTH, HEIGHT)
    opencv = cv2.optflow.DualTVL1OpticalFlow_create().calc(known.prev, known.nxt, None)
    ours = tvl1_flow(torch.from_numpy(known.prev)[None], torch.from_numpy(known.nxt)[None])[0].numpy()
    assert known.error(ours) <= 1.1 * known.error(opencv)


def test_a_batch_is_its_pairs_one_by_one(frames, batch_flow):
    for index, flow in enumerate(batch_flow):
        single = tvl1_flow(torch.from_numpy(frames[index : index + 1]), torch.from_numpy(frames[index + 1 : index + 2]))
        np.testing.assert_allclose(single[0].numpy(), flow, atol=1e-4)


def test_deterministic_and_independent_of_how_often_the_stopping_rule_is_read(frames, batch_flow):
    prev, nxt = torch.from_numpy(frames[:-1]), torch.from_numpy(frames[1:])
    assert np.array_equal(tvl1_flow(prev, nxt).numpy(), batch_flow)
    # Pairs that have stopped are masked, so reading the rule less often changes nothing.
    assert np.array_equal(tvl1_flow(prev, nxt, check_every=7).numpy(), batch_flow)
    assert tvl1_flow(prev[:0], nxt[:0]).shape == (0, HEIGHT, WIDTH, 2)


def test_frames_of_different_sizes_are_refused(frames):
    small = frames[0, :60, :80]
    with pytest.raises(ValueError, match="differ in size"):
        tvl1_flow(torch.from_numpy(frames[:2]), torch.from_numpy(frames[:2, :60]))
    algorithm = create_algorithm("tvl1_torch")
    with pytest.raises(ValueError, match="frames of different sizes in one batch"):
        algorithm.batch([frames[0], small], [frames[1], frames[2]])
    with pytest.raises(ValueError, match="differ"):
        algorithm(frames[0], small)
    with pytest.raises(ValueError, match="uint8"):
        algorithm.batch(frames[:2].astype(np.float32), frames[1:3].astype(np.float32))


def test_registry_entry_per_pair_and_batched(frames, batch_flow):
    algorithm = create_algorithm("tvl1_torch", tau="0.25")  # as typed on a command line
    params = algorithm.params()
    assert {key: params[key] for key in create_algorithm("tvl1").params()} == create_algorithm("tvl1").params()
    assert params["device"] == "cpu" and params["compile"] is False  # auto: eager on a CPU
    assert not algorithm.parallel_copies
    flow = algorithm(frames[0], frames[1])
    assert flow.shape == (HEIGHT, WIDTH, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(flow, batch_flow[0], atol=1e-4)
    batched = algorithm.batch(torch.from_numpy(frames[:-1]), list(frames[1:]))
    assert batched.dtype == torch.float32 and batched.device.type == "cpu"
    np.testing.assert_allclose(batched.numpy(), batch_flow, atol=1e-4)


@pytest.mark.parametrize(
    "params, message",
    [({"compile": "maybe"}, "compile"), ({"median_filtering": 4}, "median_filtering"), ({"warps": 0}, "warps"),
     ({"device": "nonsense"}, "device")],
)  # fmt: skip
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        create_algorithm("tvl1_torch", **params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="no CUDA device"):
        create_algorithm("tvl1_torch", device="cuda")


def test_flow_extract_with_tvl1_torch(tmp_path):
    write_moving_video(tmp_path / "videos" / "Slide" / "v_Slide_g01.avi", frames=4, speed=2)  # 2 px right a frame
    out = tmp_path / "flow"
    # A noise texture never meets the stopping rule: fewer iterations keep this test short.
    command = [sys.executable, "-m", "flow", "extract", str(tmp_path / "videos"), str(out), "--algorithm",
               "tvl1_torch", "--param", "warps=2", "--param", "outer_iterations=2", "--short-side", "0",
               "--no-progress"]  # fmt: skip
    # One torch thread, as in one_torch_thread.
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = out / "Slide" / "v_Slide_g01"
    meta = read_meta(folder)
    assert meta.algorithm == "tvl1_torch" and meta.num_flows == 3
    assert meta.params["compile"] is False and meta.params["warps"] == 2
    flow = stored_flow(folder)  # (pairs, 2, H, W) after dequantizing
    inner = flow[:, :, 8:-8, 8:-8]
    assert abs(float(np.median(inner[:, 0])) - 2) < 0.3 and abs(float(np.median(inner[:, 1]))) < 0.3


def test_illumination_term_matches_opencv():
    """gamma > 0 adds OpenCV's third field, a brightness change (fewer iterations: a noise
    texture never meets the stopping rule)."""
    image = _smooth_image()
    nxt = cv2.warpAffine(image, np.float32([[1, 0, 1.0], [0, 1, 0.5]]), (WIDTH, HEIGHT)) + 10  # and brighter
    settings = {"gamma": 0.1, "warps": 2, "outer_iterations": 2}
    flow = tvl1_flow(torch.from_numpy(image)[None], torch.from_numpy(nxt)[None], TVL1Settings(**settings))
    opencv = cv2.optflow.DualTVL1OpticalFlow_create(gamma=0.1, warps=2, outerIterations=2)
    reference = opencv.calc(image / 255, nxt / 255, None)  # OpenCV's float frames are 0..1
    assert _epe(flow[0].numpy(), reference) <= 0.05


@pytest.mark.slow
def test_compiled_iteration_matches_eager(frames):
    """torch.compile on a CPU (a C++ compiler; ~30-90 s of compiling): the same iteration,
    and the same flow up to float rounding, which the solver amplifies a little."""
    prev, nxt = torch.from_numpy(frames[:2, :48, :64]), torch.from_numpy(frames[1:3, :48, :64])
    compiled_flow, eager_flow = tvl1_flow(prev, nxt, compile=True), tvl1_flow(prev, nxt)
    for ours, reference in zip(compiled_flow.numpy(), eager_flow.numpy()):
        assert _epe(ours, reference) < 0.05
    generator = torch.Generator().manual_seed(0)
    flow, p_x, p_y, image_gradient = torch.randn(4, 2, 2, 48, 64, generator=generator)
    step_per_rho, rho_constant = -torch.rand(2, 2, 1, 48, 64, generator=generator)
    arguments = (flow, p_x, p_y, torch.tensor([True, False]), image_gradient, step_per_rho, rho_constant,
                 0.045, 0.25 / 0.3, 0.3, 0.01)  # fmt: skip
    for ours, reference in zip(compiled(primal_dual_iteration)(*arguments), primal_dual_iteration(*arguments)):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    network = _median_network(25)
    assert torch.equal(compiled(median_filter)(flow, 5, network), median_filter(flow, 5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_matches_cpu(frames, batch_flow):
    algorithm = create_algorithm("tvl1_torch", device="cuda")  # compiled: auto on CUDA
    assert algorithm.params()["compile"] is True
    flow = algorithm.batch(torch.from_numpy(frames[:-1]).cuda(), torch.from_numpy(frames[1:]).cuda())
    assert flow.device.type == "cuda" and flow.shape == batch_flow.shape
    for ours, reference in zip(flow.cpu().numpy(), batch_flow):
        assert _epe(ours, reference) < 0.05
