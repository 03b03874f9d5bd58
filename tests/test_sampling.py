import numpy as np
import pytest

from datamodules.sampling import (
    bidirectional_stack_positions,
    clip_positions,
    flow_stack_positions,
    frame_positions,
    two_stream_positions,
    whole_video_positions,
    window_starts,
)

STAGES = ("train", "val", "test")


def test_test_positions_are_25_equally_spaced_from_first_to_last():
    starts = flow_stack_positions(300, 10, "test")[:, 0]
    assert len(starts) == 25 and len(set(starts.tolist())) == 25
    assert starts[0] == 0 and starts[-1] == 300 - 10
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1  # equal up to rounding
    np.testing.assert_array_equal(starts, np.rint(np.arange(25) * (300 - 10) / 24))


def test_test_frames_span_the_whole_video():
    frames = frame_positions(100, "test")[:, 0]
    assert frames[0] == 0 and frames[-1] == 99 and len(frames) == 25


def test_val_is_the_centre():
    assert window_starts(101, 11, "val").tolist() == [45]
    np.testing.assert_array_equal(flow_stack_positions(30, 10, "val"), [np.arange(10, 20)])


def test_train_stack_is_consecutive_and_covers_every_start():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(400):
        stack = flow_stack_positions(20, 10, "train", rng)
        assert stack.shape == (1, 10)
        np.testing.assert_array_equal(np.diff(stack[0]), 1)
        starts.add(int(stack[0, 0]))
    assert starts == set(range(11))


def test_training_needs_an_rng():
    with pytest.raises(ValueError, match="rng"):
        frame_positions(10, "train")


def test_two_stream_rgb_frame_is_the_stack_middle():
    rng = np.random.default_rng(1)
    for stage in STAGES:
        rgb, flow = two_stream_positions(50, 49, 10, stage, rng)
        np.testing.assert_array_equal(rgb[:, 0], flow[:, 0] + 5)
        assert rgb.max() <= 49 and flow.max() <= 48


def test_bidirectional_stack_surrounds_tau():
    backward, forward = bidirectional_stack_positions(40, 10, "val")
    tau = forward[0, 0]
    np.testing.assert_array_equal(backward[0], np.arange(tau - 5, tau))
    np.testing.assert_array_equal(forward[0], np.arange(tau, tau + 5))
    _, plain = two_stream_positions(41, 40, 10, "val")
    assert tau == plain[0, 0] + 5
    with pytest.raises(ValueError, match="even"):
        bidirectional_stack_positions(40, 9, "val")


def test_clips_are_strided_and_loop_when_short():
    np.testing.assert_array_equal(clip_positions(100, 4, 2, "val"), [[46, 48, 50, 52]])
    np.testing.assert_array_equal(clip_positions(5, 8, 1, "val"), [[0, 1, 2, 3, 4, 0, 1, 2]])
    clips = clip_positions(200, 64, 1, "test")
    assert clips.shape == (10, 64) and clips[0, 0] == 0 and clips[-1, -1] == 199


def test_whole_video():
    np.testing.assert_array_equal(whole_video_positions(10, 2), [[0, 2, 4, 6, 8]])
    np.testing.assert_array_equal(whole_video_positions(3, 1, min_frames=5), [[0, 1, 2, 0, 1]])


@pytest.mark.parametrize("stage", STAGES)
def test_short_videos_stay_in_range(stage):
    rng = np.random.default_rng(2)
    for n in range(1, 30):
        assert frame_positions(n, stage, rng).max() < n
        assert clip_positions(n, 8, 2, stage, rng).max() < n
        assert whole_video_positions(n, 2, min_frames=8).max() < n
        assert flow_stack_positions(n, 10, stage, rng).max() < n
        rgb, flow = two_stream_positions(n + 1, n, 10, stage, rng)
        assert rgb.max() <= n and flow.max() < n
        assert max(a.max() for a in bidirectional_stack_positions(n, 10, stage, rng)) < n
        for array in (rgb, flow):
            assert array.min() >= 0
