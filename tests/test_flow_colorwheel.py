import numpy as np
import pytest

from flow.colorwheel import flow_to_color


def _colour(u: float, v: float, max_magnitude: float | None = 1.0) -> np.ndarray:
    return flow_to_color(np.array([[[u, v]]], np.float32), max_magnitude)[0, 0].astype(int)


def test_known_directions_follow_the_middlebury_wheel():
    assert _colour(1, 0).tolist() == [255, 0, 0]  # rightward: red
    left = _colour(-1, 0)  # leftward: cyan
    assert left[0] < 10 and left[1] > 150 and left[2] > 240
    down = _colour(0, 1)  # downward (image y grows down): orange-yellow
    assert down[0] == 255 and 150 < down[1] < 250 and down[2] == 0
    up = _colour(0, -1)  # upward: blue-violet
    assert up[2] == 255 and up[1] == 0 and up[0] < 128


def test_zero_flow_is_white_and_magnitude_desaturates():
    assert _colour(0, 0, None).tolist() == [255, 255, 255]
    half = _colour(0.5, 0)
    assert half[0] == 255 and 120 < half[1] < 135 and half[1] == half[2]
    assert _colour(2, 0).tolist() == [191, 0, 0]  # beyond max_magnitude: darkened


def test_field_is_normalised_by_its_own_maximum():
    field = np.zeros((4, 5, 2), np.float32)
    field[0, 0] = (3, 0)
    image = flow_to_color(field)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0] and image[1, 1].tolist() == [255, 255, 255]


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        flow_to_color(np.zeros((4, 5)))
