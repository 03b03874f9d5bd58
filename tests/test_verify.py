from pathlib import Path

import numpy as np
import pytest

from datamodules.verify import count_disagreement, verify_many, verify_video
from flow.codec import encode_jpeg
from flow.layout import OURS
from flow.meta import FlowMeta, write_meta
from flow.store import FolderFlowStore


def _folder(root: Path, video_id: str, fields: int, meta: bool = True, rgb: bool = False) -> Path:
    """A flow folder of real JPEGs (48x32), 1-based, with or without meta.json."""
    folder = root / video_id
    folder.mkdir(parents=True)
    plane = encode_jpeg(np.arange(48 * 32, dtype=np.uint8).reshape(32, 48))
    for k in range(1, fields + 1):
        for axis in "xy":
            (folder / f"flow_{axis}_{k:05d}.jpg").write_bytes(plane)
    if rgb:
        for k in range(1, fields + 2):
            (folder / f"img_{k:05d}.jpg").write_bytes(encode_jpeg(np.zeros((32, 48, 3), np.uint8)))
    if meta:
        write_meta(folder, FlowMeta("dis", {}, 20.0, 95, 48, 32, fields + 1, fields, 25.0, "v.avi", rgb=rgb))
    return folder


def test_whole_folders_pass_with_and_without_meta(tmp_path):
    _folder(tmp_path, "a", 4, rgb=True)
    _folder(tmp_path, "b", 3, meta=False)
    store = FolderFlowStore(tmp_path)
    assert verify_video(store, "a") is None and verify_video(store, "b") is None
    assert verify_many(tmp_path, OURS, ["a", "b"], workers=2) == {}


def test_sizes_extra_fields_and_promised_rgb_are_checked(tmp_path):
    folder = _folder(tmp_path, "a", 3, rgb=True)
    (folder / "flow_y_00002.jpg").write_bytes(encode_jpeg(np.zeros((16, 16), np.uint8)))
    (folder / "flow_x_00004.jpg").write_bytes((folder / "flow_x_00001.jpg").read_bytes())
    (folder / "img_00003.jpg").unlink()
    reason = verify_video(FolderFlowStore(tmp_path), "a")
    assert "1 of the 10 files meta.json's 3 fields need are missing: img_00003.jpg" in reason
    assert "flow_y_00002.jpg: 16x16, expected 48x32" in reason
    assert "holds flow_x_00004.jpg beyond the 3 fields meta.json says" in reason


def test_without_meta_every_counted_x_needs_its_y_and_the_first_size_rules(tmp_path):
    folder = _folder(tmp_path, "a", 4, meta=False)
    (folder / "flow_y_00004.jpg").unlink()
    (folder / "flow_x_00003.jpg").write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    reason = verify_video(FolderFlowStore(tmp_path), "a")
    assert "1 of the 8 files the x files counted need are missing: flow_y_00004.jpg" in reason
    assert "flow_x_00003.jpg: not a decodable image" in reason
    assert verify_video(FolderFlowStore(tmp_path), "absent").startswith("[Errno 2]")


@pytest.mark.parametrize(("fields", "meta", "listed", "decoder", "agrees"), [
    (11, None, 12, None, True), (11, None, 11, None, True), (10, None, 12, None, False),
    (11, None, None, 12, True), (5, None, None, 12, False),  # an interrupted extraction
    (11, FlowMeta("dis", {}, 20.0, 95, 1, 1, 12, 11, 25.0, "v"), 12, None, True),
    (11, FlowMeta("dis", {}, 20.0, 95, 1, 1, 12, 11, 25.0, "v"), 11, None, True),
    (11, FlowMeta("dis", {}, 20.0, 95, 1, 1, 12, 11, 25.0, "v"), 13, None, False),
])
def test_count_disagreement(fields, meta, listed, decoder, agrees):
    assert (count_disagreement(fields, meta, listed, decoder) is None) == agrees
