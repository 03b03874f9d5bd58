import cv2
import numpy as np

from flow.known_flow import INTERIOR_MARGIN, end_point_error, mandelbrot_pair


def test_the_truth_maps_the_second_frame_back_onto_the_first():
    known = mandelbrot_pair(96, 64)
    assert known.prev.shape == known.nxt.shape == (64, 96) and known.truth.shape == (64, 96, 2)
    assert 1 < np.abs(known.truth).max() < 6  # a real motion, sub-pixel almost nowhere
    xs, ys = np.meshgrid(np.arange(96), np.arange(64))
    map_x, map_y = (xs + known.truth[..., 0]).astype(np.float32), (ys + known.truth[..., 1]).astype(np.float32)
    back = cv2.remap(known.nxt, map_x, map_y, cv2.INTER_CUBIC).astype(np.float64)
    inside = (slice(INTERIOR_MARGIN, -INTERIOR_MARGIN),) * 2
    # Two bicubic resamplings of a detailed frame: a few grey levels, against ~40 without the flow.
    assert np.abs(back - known.prev)[inside].mean() < 0.25 * np.abs(known.nxt - known.prev.astype(np.float64))[inside].mean()


def test_the_error_is_the_mean_end_point_error_on_the_interior():
    known = mandelbrot_pair(64, 48)
    assert known.error(known.truth) == 0
    flow = known.truth + [3.0, 4.0]
    assert known.error(flow) == 5.0
    flow[:INTERIOR_MARGIN] = 100  # the border is not scored
    assert known.error(flow) == 5.0
    assert end_point_error(np.zeros((2, 2, 2)), np.array([[[3.0, 4.0], [0, 0]], [[0, 0], [0, 1.0]]])) == 1.5
    prev, _ = known.rgb()
    assert prev.shape == (48, 64, 3) and np.array_equal(prev[..., 1], known.prev)
