import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import datamodules.index as index_module
from datamodules.annotations import read_kinetics, read_list_file
from datamodules.index import build_index
from flow.meta import FlowMeta, write_meta


def write_video(path: Path, num_frames: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (32, 32))
    for k in range(num_frames):
        writer.write(np.full((32, 32, 3), 40 * k % 255, np.uint8))
    writer.release()
    return path


def write_flow(folder: Path, num_flows: int, with_meta: bool, num_frames: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, num_flows + 1):
        (folder / f"flow_x_{k:05d}.jpg").touch()  # the index counts names, never decodes them
        (folder / f"flow_y_{k:05d}.jpg").touch()
    if with_meta:
        frames = num_flows + 1 if num_frames is None else num_frames
        write_meta(folder, FlowMeta("dis", {}, 20.0, 95, 32, 32, frames, num_flows, 25.0, "video.mp4"))


@pytest.fixture
def kinetics(tmp_path):
    """5 clips listed, 3 on disk: one per layout the downloaders use, 2 never downloaded."""
    csv_path = tmp_path / "val.csv"
    csv_path.write_text("label,youtube_id,time_start,time_end,split,is_cc\n"
                        '"air drumming",aaa,0,10,val,0\n'
                        '"air drumming",bbb,5.0,15.0,val,0\n'
                        "abseiling,ccc,1,11,val,0\n"
                        "abseiling,ddd,2,12,val,0\n"
                        "abseiling,eee,3,13,val,0\n")
    root = tmp_path / "videos"
    write_video(root / "val" / "air drumming" / "aaa_000000_000010.mp4")
    write_video(root / "val" / "air_drumming" / "bbb_000005_000015.mp4")
    write_video(root / "ccc_000001_000011.mp4")
    return csv_path, root


def test_kinetics_missing_clips_are_dropped_with_one_warning(kinetics, tmp_path):
    csv_path, root = kinetics
    with pytest.warns(UserWarning) as caught:
        index = build_index(read_kinetics(csv_path), root, cache_dir=tmp_path / "cache")
    assert len(caught) == 1
    assert "2 of 5 videos dropped (2 missing video); list written to" in str(caught[0].message)
    assert index.video_ids == ["val/air drumming/aaa_000000_000010", "val/air_drumming/bbb_000005_000015",
                               "ccc_000001_000011"]
    assert index.paths[2] == str(root.resolve() / "ccc_000001_000011.mp4")
    assert index.labels == [1, 1, 0] and index.num_frames == [6, 6, 6]
    assert index.missing == ["val/abseiling/ddd_000002_000012", "val/abseiling/eee_000003_000013"]
    problems = Path(index.problems_file).read_text()
    assert "missing\tval/abseiling/ddd_000002_000012" in problems


def test_path_escaping_the_root_is_rejected_and_never_opened(tmp_path, monkeypatch):
    write_video(tmp_path / "videos" / "a" / "ok.mp4")
    (tmp_path / "outside.mp4").write_bytes(b"secret")
    listed = tmp_path / "list.txt"
    listed.write_text("../../etc/passwd 1\na/ok.mp4 0\n../outside.mp4 0\n/etc/hosts 0\n")
    opened = []
    real_probe = index_module.probe_num_frames
    monkeypatch.setattr(index_module, "probe_num_frames", lambda path: opened.append(path) or real_probe(path))
    with pytest.warns(UserWarning, match="3 of 4 videos dropped \\(3 rejected path\\)"):
        index = build_index(read_list_file(listed), tmp_path / "videos", cache_dir=tmp_path / "cache")
    assert index.rejected == ["../../etc/passwd", "../outside.mp4", "/etc/hosts"]
    assert index.video_ids == ["a/ok"] and opened == [str((tmp_path / "videos" / "a" / "ok.mp4").resolve())]


def test_cache_is_reused_then_rebuilt_when_annotations_or_videos_change(kinetics, tmp_path, monkeypatch):
    csv_path, root = kinetics
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        first = build_index(read_kinetics(csv_path), root, cache_dir=cache)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached index should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(index_module, "_build", no_rebuild)
        with pytest.warns(UserWarning, match="2 of 5 videos dropped"):  # still said on every start
            second = build_index(read_kinetics(csv_path), root, cache_dir=cache)
    assert second.from_cache and not first.from_cache
    assert second.video_ids == first.video_ids and second.num_frames == first.num_frames

    def no_probe(path):
        raise AssertionError(f"{path} was probed already")

    # An annotation change rebuilds; the frame counts of known videos are not probed again.
    monkeypatch.setattr(index_module, "probe_num_frames", no_probe)
    csv_path.write_text(csv_path.read_text().replace("abseiling,eee,3,13,val,0\n", ""))
    with pytest.warns(UserWarning, match="1 of 4 videos dropped"):
        third = build_index(read_kinetics(csv_path), root, cache_dir=cache)
    assert not third.from_cache and third.num_frames == [6, 6, 6]

    # A downloaded clip lands in a listed folder: the folder's time changes, the index is rebuilt.
    monkeypatch.setattr(index_module, "probe_num_frames", lambda path: 6)
    write_video(root / "ddd_000002_000012.mp4")
    fourth = build_index(read_kinetics(csv_path), root, cache_dir=cache)
    assert not fourth.from_cache and fourth.missing == [] and len(fourth) == 4


def test_flow_completeness(tmp_path):
    videos, frames = tmp_path / "videos", tmp_path / "frames"
    listed = tmp_path / "list.txt"
    names = ["meta", "denseflow", "empty", "absent", "escape", "broken"]
    listed.write_text("".join(f"c/{name}.mp4 0\n" for name in names).replace("c/escape", "c/../../escape"))
    for name in names:
        write_video(videos / "c" / f"{name}.mp4")
    write_flow(frames / "c" / "meta", 5, with_meta=True)
    write_flow(frames / "c" / "denseflow", 4, with_meta=False)  # extracted by another tool: no meta.json
    (frames / "c" / "empty").mkdir()  # an extraction that never wrote a field
    write_flow(frames / "c" / "broken", 3, with_meta=False)
    (frames / "c" / "broken" / "meta.json").write_text("{")  # malformed: the folder is not trusted
    with pytest.warns(UserWarning, match="4 of 6 videos dropped \\(3 without complete flow, 1 rejected path\\)"):
        index = build_index(read_list_file(listed), videos, frames, needs_flow=True, cache_dir=tmp_path / "cache")
    assert index.video_ids == ["c/meta", "c/denseflow"]
    assert index.num_flows == [5, 4] and index.num_frames == [6, 6]
    assert index.flow_without_meta == ["c/denseflow"]
    assert index.incomplete_flow == ["c/empty", "c/absent", "c/broken"]
    assert index.rejected == ["c/../../escape.mp4"]  # as listed

    # Finishing the extraction writes meta.json into the folder: the cache notices.
    write_flow(frames / "c" / "empty", 5, with_meta=True)
    with pytest.warns(UserWarning, match="3 of 6"):
        assert build_index(read_list_file(listed), videos, frames, needs_flow=True,
                           cache_dir=tmp_path / "cache").incomplete_flow == ["c/absent", "c/broken"]


def test_frame_count_mismatch_and_unreadable_video(tmp_path):
    videos, frames = tmp_path / "videos", tmp_path / "frames"
    write_video(videos / "a.mp4", num_frames=6)
    write_video(videos / "b.mp4", num_frames=6)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    write_flow(frames / "a", 5, with_meta=True)  # meta: 6 frames, agrees
    write_flow(frames / "b", 9, with_meta=True, num_frames=10)  # meta: 10 frames, decoder: 6
    listed = tmp_path / "list.txt"
    listed.write_text("a.mp4 0\nb.mp4 1\nbroken.mp4 1\n")
    with pytest.warns(UserWarning, match="1 of 3 videos dropped \\(1 unreadable video\\)"):
        index = build_index(read_list_file(listed), videos, frames, verify_frames=True, cache_dir=tmp_path / "cache")
    assert index.frame_count_mismatch == [("b", 6, 10)]
    assert index.num_frames == [6, 10]  # meta.json describes the flow folder the sampler reads
    assert index.unreadable == ["broken"]
    cached = json.loads(next((tmp_path / "cache").glob("index-*.json")).read_text())
    assert cached["index"]["frame_count_mismatch"] == [["b", 6, 10]]


def test_rawframe_list_needs_the_frames_folder(tmp_path):
    frames = tmp_path / "frames"
    write_flow(frames / "x" / "v1", 3, with_meta=False)
    listed = tmp_path / "rawframes.txt"
    listed.write_text("x/v1 4 0\nx/v2 4 1\n")
    annotations = read_list_file(listed, "rawframes")
    with pytest.raises(ValueError, match="frames_root"):
        build_index(annotations, tmp_path / "videos")
    with pytest.warns(UserWarning, match="1 of 2 videos dropped \\(1 missing video\\)"):
        index = build_index(annotations, tmp_path / "videos", frames, cache_dir=tmp_path / "cache")
    assert index.video_ids == ["x/v1"] and index.num_frames == [4] and index.num_flows == [3]
    assert index.paths == [None]
