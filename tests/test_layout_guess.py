import pytest

from datamodules.layout_guess import guess_layout, layout_mismatch, stored_fields
from flow.layout import DENSEFLOW, MMACTION2, OURS


def _names(x: str, y: str, numbers: range) -> set[str]:
    return {template.format(k) for template in (x, y) for k in numbers}


@pytest.mark.parametrize(("names", "name", "start", "fields"), [
    (_names("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg", range(5)), "denseflow", 0, 5),
    (_names("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg", range(1, 6)), "ours", 1, 5),
    (_names("x_{:05d}.jpg", "y_{:05d}.jpg", range(1, 4)) | {"img_00001.jpg", "meta.txt"}, "mmaction2", 1, 3),
])
def test_the_layout_a_folder_follows_is_named(names, name, start, fields):
    guess = guess_layout(names)
    assert (guess.name, guess.layout.start_index, guess.fields) == (name, start, fields)


def test_unnamed_templates_are_inferred_and_backward_flow_is_not_forward():
    guess = guess_layout(_names("flow_x_{:04d}.png", "flow_y_{:04d}.png", range(1, 4)))
    assert guess.name is None and (guess.layout.flow_x, guess.fields) == ("flow_x_{:04d}.png", 3)
    assert "flow_x='flow_x_{:04d}.png'" in guess.describe()
    assert guess_layout(_names("flow_bx_{:05d}.jpg", "flow_by_{:05d}.jpg", range(1, 4))) is None
    assert guess_layout({"x_00001.jpg", "notes.txt"}) is None  # no y partner


def test_a_mismatch_is_reported_only_when_another_layout_reads_more():
    zero_based = _names("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg", range(5))
    assert stored_fields(zero_based, OURS) == 4 and stored_fields(zero_based, DENSEFLOW) == 5
    mismatch = layout_mismatch(zero_based, OURS)
    assert mismatch.reads == 4 and mismatch.guess.name == "denseflow"
    assert mismatch.describe().endswith("reads 4, each one field late")
    assert layout_mismatch(zero_based, DENSEFLOW) is None
    assert layout_mismatch(_names("x_{:05d}.jpg", "y_{:05d}.jpg", range(1, 4)), MMACTION2) is None
    assert layout_mismatch(set(), OURS) is None
