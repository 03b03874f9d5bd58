import cv2
import numpy as np
import pytest

from flow.algorithms import ALGORITHMS, create_algorithm

SHIFT = (1.3, -0.7)  # sub-pixel, in x and y


def _translated_pair(width: int = 128, height: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and the same texture moved by SHIFT."""
    noise = np.random.default_rng(0).random((height, width)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX)
    matrix = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])  # content moves by +SHIFT
    moved = cv2.warpAffine(
        texture, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    as_uint8 = lambda image: np.clip(np.rint(image), 0, 255).astype(np.uint8)  # noqa: E731
    return as_uint8(texture), as_uint8(moved)


def _interior_epe(flow: np.ndarray, margin: int = 16) -> float:
    inner = flow[margin:-margin, margin:-margin]
    return float(np.hypot(inner[..., 0] - SHIFT[0], inner[..., 1] - SHIFT[1]).mean())


@pytest.mark.parametrize("name, limit", [("tvl1", 0.3), ("dis", 0.3), ("farneback", 0.5)])
def test_recovers_a_known_translation(name, limit):
    prev, nxt = _translated_pair()
    algorithm = create_algorithm(name)
    flow = algorithm(prev, nxt)
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    assert _interior_epe(flow) < limit
    assert _interior_epe(algorithm(prev, nxt)) < limit  # the object is reusable


@pytest.mark.parametrize("name", ["tvl1", "dis", "farneback"])
@pytest.mark.parametrize("size", [(42, 32), (64, 48), (128, 96)])
def test_a_pairs_flow_does_not_depend_on_the_instances_earlier_calls(name, size):
    """One instance per flow thread takes whichever pair comes next: its history must not show.
    (OpenCV's DIS, on frames too small for its preset, kept a smaller patch for later calls.)"""
    prev, nxt = _translated_pair(*size)
    first = create_algorithm(name)(prev, nxt)
    reused = create_algorithm(name)
    reused(*_translated_pair(size[0] + 8, size[1] + 8))
    assert np.array_equal(reused(prev, nxt), first)
    assert np.array_equal(reused(prev, nxt), first)


def test_params_are_recorded_and_checked():
    tvl1 = create_algorithm("tvl1", tau="0.2", warps=3)  # strings as typed on a command line
    assert tvl1.params()["tau"] == 0.2 and tvl1.params()["warps"] == 3 and tvl1.params()["theta"] == 0.3
    with pytest.raises(TypeError, match="taux"):
        create_algorithm("tvl1", taux=0.2)
    with pytest.raises(ValueError, match="warps"):
        create_algorithm("tvl1", warps=2.5)
    with pytest.raises(ValueError, match="preset"):
        create_algorithm("dis", preset="slow")


def test_typo_in_name_lists_known_algorithms():
    with pytest.raises(ValueError, match="dis.*farneback.*raft.*tvl1"):
        create_algorithm("tvl")
    assert {"tvl1", "dis", "farneback", "raft"} <= set(ALGORITHMS)


def test_wrong_frames_are_rejected():
    with pytest.raises(ValueError, match="grayscale"):
        create_algorithm("dis")(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="differ"):
        create_algorithm("dis")(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_raft_runs_from_a_local_state_dict(tmp_path):
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pt"
    torch.save(raft_small(weights=None).state_dict(), weights)
    raft = create_algorithm("raft", model="small", weights=str(weights), num_flow_updates=2)
    assert raft.needs_color
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 60, 70, 3), dtype=np.uint8)
    flow = raft(frames[0], frames[1])  # 60 x 70 is padded for the network and cropped back
    assert flow.shape == (60, 70, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    with pytest.raises(ValueError, match="weights"):
        create_algorithm("raft", model="small")


@pytest.fixture(scope="module")
def raft_small_weights(tmp_path_factory):
    """Random RAFT-small weights saved as torchvision's state dict, the real format."""
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("raft") / "raft_small.pt"
    torch.save(raft_small(weights=None).state_dict(), weights)
    return str(weights)


def _moving_rgb_frames(count: int, height: int = 60, width: int = 70) -> np.ndarray:
    noise = np.random.default_rng(0).random((height + 8, width + 2 * count, 3)).astype(np.float32)
    texture = (cv2.GaussianBlur(noise, (0, 0), 2.0) * 255).astype(np.uint8)
    return np.stack([texture[k % 8 : k % 8 + height, 2 * k : 2 * k + width] for k in range(count)])


def test_raft_batch_gives_each_pairs_flow(raft_small_weights):
    import torch

    raft = create_algorithm("raft", model="small", weights=raft_small_weights, num_flow_updates=2)
    frames = _moving_rgb_frames(4)
    batched = raft.batch(frames[:-1], list(frames[1:]))  # arrays or lists of frames, as tvl1_torch takes
    assert batched.shape == (3, 60, 70, 2) and batched.dtype == torch.float32 and batched.device.type == "cpu"
    for k in range(3):  # oneDNN picks its kernels by batch size: equal to float32 rounding
        np.testing.assert_allclose(batched[k].numpy(), raft(frames[k], frames[k + 1]), atol=1e-3)
    with pytest.raises(ValueError, match="frames of different sizes in one batch"):
        raft.batch([frames[0], frames[1, :50]], frames[1:3])
    with pytest.raises(ValueError, match="differ in size"):
        raft.batch(frames[:2], frames[:2, :50])
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\) RGB uint8"):
        raft.batch(frames[:2, ..., 0], frames[1:3, ..., 0])


def test_raft_bf16_autocast_stays_close_to_fp32(raft_small_weights):
    fp32 = create_algorithm("raft", model="small", weights=raft_small_weights, num_flow_updates=2)
    bf16 = create_algorithm("raft", model="small", weights=raft_small_weights, num_flow_updates=2, precision="bf16")
    assert (fp32.params()["precision"], bf16.params()["precision"]) == ("fp32", "bf16")
    frames = _moving_rgb_frames(3)
    reference, approximate = fp32.batch(frames[:-1], frames[1:]), bf16.batch(frames[:-1], frames[1:])
    assert approximate.dtype == reference.dtype
    end_point_error = (approximate - reference).norm(dim=-1)
    assert 0 < end_point_error.mean() < 0.05 * reference.norm(dim=-1).mean()
    with pytest.raises(ValueError, match="precision must be one of"):
        create_algorithm("raft", model="small", weights=raft_small_weights, precision="fp16")
