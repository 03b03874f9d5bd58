import math

import numpy as np
import pytest

from flow.orientation import quarter_turns, rotation_degrees, upright, upright_size

F, W = 65536, 1 << 30  # 1.0 in the display matrix's 16.16 and 2.30 fixed point

# The matrices FFmpeg's mp4 demuxer reads for these rotations (counter-clockwise, as ffprobe
# reports them); tests/test_rotation.py checks the frames.
MATRICES = {
    0: (F, 0, 0, 0, F, 0, 0, 0, W),
    90: (0, -F, 0, F, 0, 0, 0, 0, W),
    180: (-F, 0, 0, 0, -F, 0, 0, 0, W),
    270: (0, F, 0, -F, 0, 0, 0, 0, W),
}


@pytest.mark.parametrize("degrees", MATRICES)
def test_quarter_turns_of_each_rotation(degrees):
    assert rotation_degrees(MATRICES[degrees]) % 360 == pytest.approx(degrees)
    assert quarter_turns(MATRICES[degrees]) == degrees // 90


def test_no_matrix_is_upright_already():
    assert quarter_turns(None) == 0


def test_a_scaled_matrix_turns_the_same():
    assert quarter_turns(tuple(2 * value for value in MATRICES[90][:8]) + (W,)) == 1


def test_a_mirror_counts_as_its_rotation_only():
    # av_display_rotation_get's reading, which decord and torchcodec apply.
    assert quarter_turns((-F, 0, 0, 0, F, 0, 0, 0, W)) == 2  # mirrored left-right
    assert quarter_turns((F, 0, 0, 0, -F, 0, 0, 0, W)) == 0  # mirrored top-bottom


def test_odd_angles_and_degenerate_matrices_are_refused():
    c = round(F * math.cos(math.radians(30))), round(F * math.sin(math.radians(30)))
    with pytest.raises(ValueError, match="rotates by -?30.0 degrees, not a multiple of 90"):
        quarter_turns((c[0], -c[1], 0, c[1], c[0], 0, 0, 0, W))
    with pytest.raises(ValueError, match="nan degrees"):
        quarter_turns((0,) * 9)


def test_upright_turns_counter_clockwise():
    image = np.arange(6).reshape(2, 3)  # 2 rows, 3 columns
    assert upright(image, 0) is image
    np.testing.assert_array_equal(upright(image, 1), [[2, 5], [1, 4], [0, 3]])
    np.testing.assert_array_equal(upright(image, 2), image[::-1, ::-1])
    np.testing.assert_array_equal(upright(image, 3), [[3, 0], [4, 1], [5, 2]])
    color = np.zeros((2, 3, 3), np.uint8)
    assert upright(color, 1).shape == (3, 2, 3) and upright(color, 1).flags.c_contiguous
    assert upright_size(96, 64, 1) == (64, 96) and upright_size(96, 64, 2) == (96, 64)
