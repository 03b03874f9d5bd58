import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from flow.layout import DENSEFLOW, MMACTION2, OURS, FrameLayout
from flow.meta import META_FILE, FlowMeta, read_meta, write_json_atomic, write_meta
from flow.paths import safe_join


def test_layout_names_and_start_index():
    folder = Path("v")
    assert OURS.flow_paths(folder, 0) == (folder / "flow_x_00001.jpg", folder / "flow_y_00001.jpg")
    backward = OURS.flow_paths(folder, 4, backward=True)
    assert backward == (folder / "flow_bx_00005.jpg", folder / "flow_by_00005.jpg")
    assert OURS.rgb_path(folder, 0) == folder / "img_00001.jpg"
    assert DENSEFLOW.flow_paths(folder, 0)[0] == folder / "flow_x_00000.jpg"
    assert DENSEFLOW.rgb_path(folder, 9) == folder / "img_00009.jpg"
    assert MMACTION2.flow_paths(folder, 0) == (folder / "x_00001.jpg", folder / "y_00001.jpg")
    with pytest.raises(IndexError):
        OURS.rgb_path(folder, -1)


def test_printf_templates_are_accepted():
    layout = FrameLayout.from_printf(flow_x="flow_x_%05d.jpg", flow_y="flow_y_%05d.jpg", start_index=0)
    assert layout == DENSEFLOW
    assert FrameLayout(rgb="frame%d.jpg").rgb_path(Path("."), 1).name == "frame2.jpg"


@pytest.mark.parametrize("template", ["flow_x.jpg", "../x_{:05d}.jpg", "sub/x_{:05d}.jpg", "x_{}_{}.jpg"])
def test_bad_templates_are_rejected(template):
    with pytest.raises(ValueError, match="flow_x"):
        FrameLayout(flow_x=template)


def _meta(**changes) -> FlowMeta:
    meta = FlowMeta(
        algorithm="tvl1", params={"tau": 0.25}, bound=20.0, jpeg_quality=95, width=64, height=48,
        num_frames=12, num_flows=11, fps=25.0, source="videos/a.avi",
    )  # fmt: skip
    return replace(meta, **changes)


def test_meta_round_trip_and_atomic_write(tmp_path):
    assert read_meta(tmp_path) is None
    meta = _meta(start_index=0, backward=True, layout=DENSEFLOW.templates())
    write_meta(tmp_path, meta)
    assert os.listdir(tmp_path) == [META_FILE]  # no temporary file left behind
    assert read_meta(tmp_path) == meta
    assert read_meta(tmp_path).frame_layout() == DENSEFLOW


def test_meta_json_is_readable_by_other_users(tmp_path):
    # A shared dataset's flow is read by other users; the temporary file's 0600 would hide it.
    write_meta(tmp_path, _meta())
    assert (tmp_path / META_FILE).stat().st_mode & 0o777 == 0o644


def test_json_written_atomically_replaces_the_old_file_or_leaves_it(tmp_path):
    path = tmp_path / "cache.json"
    write_json_atomic(path, {"a": [1, 2]})
    write_json_atomic(path, {"b": 3}, indent=2)
    assert json.loads(path.read_text()) == {"b": 3} and path.read_text().endswith("\n")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    assert json.loads(path.read_text()) == {"b": 3}
    assert os.listdir(tmp_path) == ["cache.json"]  # no temporary file left behind, after a failure either


@pytest.mark.parametrize("layout", [OURS, DENSEFLOW, MMACTION2, FrameLayout(flow_x="x.{:d}.jpg", flow_y="y+{:03d}.jpg")])
def test_a_layout_owns_the_names_its_templates_make_and_nothing_else(layout):
    for k in (0, 7, 123456):
        assert all(layout.owns(path.name) for path in layout.flow_paths(Path("f"), k, backward=True))
        assert layout.owns(layout.flow_paths(Path("f"), k)[0].name) and layout.owns(layout.rgb_path(Path("f"), k).name)
    others = [META_FILE, "notes.txt", "flow_x_.jpg", "flow_x_0001.jpg.tmp", "img_00001.png", "xflow_x_00001.jpg",
              "x.1.jpgx", "y+1a.jpg"]
    for other in others:
        assert not layout.owns(other), other


def test_meta_ignores_unknown_keys_and_fills_defaults(tmp_path):
    data = {k: v for k, v in vars(_meta()).items() if k not in ("layout", "step", "version")}
    (tmp_path / META_FILE).write_text(json.dumps({**data, "written_by": "a future version"}))
    meta = read_meta(tmp_path)
    assert meta.step == 1 and meta.frame_layout() == OURS


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "malformed"), ("[1, 2]", "JSON object"), ('{"algorithm": "tvl1"}', "missing keys")],
)
def test_malformed_meta_names_the_file(tmp_path, text, message):
    (tmp_path / META_FILE).write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_meta(tmp_path)
    assert str(tmp_path / META_FILE) in str(info.value)


def test_meta_with_wrong_types_or_layout_is_rejected(tmp_path):
    write_meta(tmp_path, _meta(width="64"))
    with pytest.raises(ValueError, match="width"):
        read_meta(tmp_path)
    write_meta(tmp_path, _meta(layout={"flow_x": "../../x_{:05d}.jpg"}))
    with pytest.raises(ValueError, match="layout"):
        read_meta(tmp_path)


def test_safe_join_keeps_entries_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "Class").mkdir(parents=True)
    assert safe_join(root, "Class/v_1") == (root / "Class" / "v_1").resolve()
    for entry in ["../x", "/etc/passwd", "Class/../../x", "Class/x/../../../x", ".", ""]:
        with pytest.raises(ValueError, match="entry"):
            safe_join(root, entry)


def test_safe_join_follows_the_users_own_symlinks(tmp_path):
    """A dataset root whose videos are symlinks to another disk is the user's layout."""
    elsewhere = tmp_path / "other_disk" / "v_1.avi"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"video")
    (tmp_path / "root" / "Class").mkdir(parents=True)
    (tmp_path / "root" / "Class" / "v_1.avi").symlink_to(elsewhere)
    assert safe_join(tmp_path / "root", "Class/v_1.avi").read_bytes() == b"video"
